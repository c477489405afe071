/// An accepted job, as the daemon runs it: everything taken from its
/// manifest at intake (and what intake decided: the backend, the base
/// directory, the destination, the submitter), stored once with the job and
/// read back as this type. Nothing parses the manifest again.
public struct JobSpec: Sendable, Equatable, Codable {
    /// The manifest's name.
    public var name: String
    /// The backend the job runs on.
    public var backend: BackendKind
    /// Where relative paths started.
    public var baseDirectory: String
    /// The absolute output directory.
    public var destination: String
    /// The uid the job acts for (the manifest file's owner).
    public var submitterUID: UInt32
    /// The compute pool.
    public var pool: PoolSpec
    /// How many times a failed task is tried again.
    public var retries: Int
    /// Per-attempt time limit in seconds.
    public var timeoutSeconds: Double?
    /// What to delete when the job ends.
    public var cleanup: CleanupPolicy
    /// Limits on the whole job.
    public var limits: Limits
    /// Output globs, relative to each task's working directory.
    public var outputPatterns: [String]
    /// Files staged into every task.
    public var sharedInputs: [InputFile]
    /// One file gathered from each task, in task order (`outputs.merge`).
    public var merge: MergeSpec?
    /// `secrets:`: variable name → absolute path of the file its value is
    /// read from at each launch (the value itself is stored nowhere).
    /// Optional: nil in jobs accepted before it existed.
    public var secrets: [String: String]?
    /// The image every task runs in (`container:`); nil runs them on the
    /// backend's own system, as before it existed.
    public var container: ContainerSpec?

    /// The spec of a parsed manifest, with what intake decided (`secrets`:
    /// the manifest's, their paths made absolute).
    public init(_ m: Manifest, backend: BackendKind, baseDirectory: String, destination: String, submitterUID: UInt32, sharedInputs: [InputFile],
                secrets: [String: String] = [:]) {
        name = m.name
        self.backend = backend
        self.baseDirectory = baseDirectory
        self.destination = destination
        self.submitterUID = submitterUID
        pool = m.pool
        retries = m.retries
        timeoutSeconds = m.timeoutSeconds
        cleanup = m.cleanup
        limits = m.limits
        outputPatterns = m.outputs.patterns
        self.sharedInputs = sharedInputs
        merge = m.outputs.merge
        self.secrets = secrets.isEmpty ? nil : secrets
        container = m.container
    }
}
