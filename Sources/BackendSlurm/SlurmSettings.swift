import BatchControl
import BatchCore
import Foundation

/// The `slurm:` section of the daemon's config: the backend's own,
/// decoded with its defaults. The backend is on when `sharedDirectory` is set.
public struct SlurmSettings: Sendable, Equatable {
    /// The section's name.
    public static let section = "slurm"

    /// A directory the daemon and every node see at the same path: the
    /// input store, the tasks' working directories, batchd-exec.
    public var sharedDirectory = ""
    /// Defaults for what a manifest's pool leaves out.
    public var partition: String?
    /// See `partition`.
    public var account: String?
    /// See `partition`.
    public var qos: String?
    /// The tag in each array's comment (`batchd owner=...`); empty means
    /// `batchd@<host name>`. Orphans are looked for among arrays with it.
    public var owner = ""
    /// Shortest and longest time between squeue calls.
    public var pollMinInterval: Double = 1
    /// See `pollMinInterval`.
    public var pollMaxInterval: Double = 60
    /// How long an element that no source knows (not in squeue, no status
    /// file, not in sacct) is given before it counts as vanished: lost,
    /// and run again without using a retry.
    public var missingGrace: Double = 120
    /// Use sacct for ended jobs: `auto` (when the cluster has an
    /// accounting database), `always` or `never`.
    public var accounting = "auto"
    /// Cancel, at start, arrays of this owner that no job in the
    /// database knows (otherwise they are only reported).
    public var cancelOrphans = false
    /// Longest a Slurm command may take before it counts as failed.
    public var commandTimeout: Double = 60
    /// What runs a job's `container:` image on the nodes: `podman` (or
    /// `docker`), `apptainer` or `singularity`, found on the nodes' PATH, or
    /// an absolute path to one (docs/containers.md).
    public var containerEngine = "podman"
    /// Options before the engine's subcommand, on every call.
    public var containerEngineOptions: [String] = []
    /// Variables set for the engine on the nodes (`NAME=VALUE`), e.g.
    /// CONTAINERS_CONF: over the task's own, never passed into the container.
    public var containerEnvironment: [String: String] = [:]
    /// Options added to every run (podman and docker), before the manifest's.
    public var containerRunOptions: [String] = []

    /// Every default.
    public init() {}

    static let keys = ["sharedDirectory", "partition", "account", "qos", "owner", "pollMinInterval", "pollMaxInterval",
                       "missingGrace", "accounting", "cancelOrphans", "commandTimeout",
                       "containerEngine", "containerEngineOptions", "containerEnvironment", "containerRunOptions"]

    /// The settings a config's section gives (every default without one).
    public init(_ section: ConfigSection?) throws {
        guard let section else { return }
        try section.decode(keys: Self.keys) { v in
            func name() throws -> String {
                let text = try v.text()
                guard text.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", options: .regularExpression) != nil else {
                    throw v.fail("not a Slurm name", "1-64 letters, digits, '-', '_' and '.', starting with a letter or digit")
                }
                return text
            }
            switch v.key {
            case "sharedDirectory":
                // Empty (the shipped default) leaves the backend off.
                sharedDirectory = try v.text()
                guard sharedDirectory.isEmpty || sharedDirectory.hasPrefix("/") else {
                    throw v.fail("expected an absolute path", "a directory every node sees at the same path")
                }
            case "partition": partition = try name()
            case "account": account = try name()
            case "qos": qos = try name()
            case "owner": owner = try v.text()
            case "pollMinInterval": pollMinInterval = try v.seconds()
            case "pollMaxInterval": pollMaxInterval = try v.seconds()
            case "missingGrace": missingGrace = try v.seconds()
            case "commandTimeout": commandTimeout = try v.seconds()
            case "accounting":
                accounting = try v.text()
                guard ["auto", "always", "never"].contains(accounting) else { throw v.fail("expected auto, always or never") }
            case "cancelOrphans": cancelOrphans = try v.bool()
            case "containerEngine":
                containerEngine = try v.text()
                guard SlurmContainers.family(containerEngine) != nil else {
                    throw v.fail("expected podman, docker, apptainer or singularity (or an absolute path to one)")
                }
            case "containerEngineOptions": containerEngineOptions = try v.list("options")
            case "containerRunOptions": containerRunOptions = try v.list("options")
            case "containerEnvironment":
                for item in try v.list("NAME=VALUE") {
                    guard let eq = item.firstIndex(of: "="), ManifestParser.isEnvName(String(item[..<eq])) else {
                        throw v.fail("expected NAME=VALUE, found \(Printable.quote(item))", "e.g. CONTAINERS_CONF=/etc/batchd/containers.conf")
                    }
                    containerEnvironment[String(item[..<eq])] = String(item[item.index(after: eq)...])
                }
            default: return false
            }
            return true
        }
        guard pollMinInterval > 0, pollMinInterval <= pollMaxInterval else {
            throw section.fail("pollMinInterval", "must be above 0 and at most slurm.pollMaxInterval")
        }
        guard commandTimeout >= 1 else { throw section.fail("commandTimeout", "must be at least 1s") }
    }
}
