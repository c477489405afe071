import BatchControl
import BatchCore
import BatchStore
import Logging

/// The backend port: the steps of the job state machine that depend on where
/// tasks run. The runner calls them through a `JobHandle`, knowing no backend
/// by name; a backend is one module implementing this and one registration
/// (docs/architecture.md, "Adding a backend").
///
/// Every step must be safe to repeat after a crash at any point: the runner
/// saves the phase before a step and again after it, and a restart repeats
/// the step of the saved phase. A step records its intent before a side
/// effect and the result after it (`JobHandle.crashPoint` marks both), and
/// looks up what a crash may have left before acting again.
public protocol JobBackend: Sendable {
    /// Why this backend would not run a job, checked at intake (nil: it would).
    func refusal(_ spec: JobSpec) async -> ManifestIssue?
    /// Whether `batchctl retry` can run a failed job's failed tasks again here.
    var canRetry: Bool { get }
    /// Readies a failed job for `batchctl retry`, before its failed tasks
    /// are reopened (and the job provisioned and submitted again). Throws
    /// why it cannot be retried.
    func prepareRetry(_ job: JobRecord) async throws
    /// Puts the job's inputs where its tasks will find them.
    func stage(_ job: JobHandle) async -> StepResult
    /// Makes sure the compute the job needs exists.
    func provision(_ job: JobHandle) async -> StepResult
    /// Hands the job's open tasks to the backend, each once.
    func submit(_ job: JobHandle) async -> StepResult
    /// The backend's part of the running phase for one run of it (nil when
    /// the daemon stopped first). The shared `RunningPhase` drives it.
    func adapter(for job: JobHandle) async -> (any TaskAdapter)?
    /// The running phase: reconciles what a restart found (and fires
    /// `job.control.reconciled`), then runs the tasks until none is open
    /// (`.done`), the job is halted (`.interrupted`) or it fails. Every
    /// backend has the shared one (`RunningPhase`), around its adapter.
    func monitor(_ job: JobHandle) async -> StepResult
    /// Stops the job's tasks and records the open ones cancelled (only once
    /// they are stopped: a shutdown first leaves them open, and the next
    /// start stops them again).
    func cancel(_ job: JobHandle) async
    /// Deletes or stops what the job made on the backend, per its policy and
    /// verdict; recorded done only once done. (The attempts' work
    /// directories are the runner's, for every backend: `attemptsDirectory`.)
    func cleanup(_ job: JobHandle, _ verdict: Verdict) async
    /// Where the job's attempt directories are (`<task>/attempt-<n>`): the
    /// state directory's `jobs/<id>/tasks`, or the backend's own (Slurm's
    /// shared directory). The runner applies the cleanup policy there.
    func attemptsDirectory(_ job: JobHandle) -> String
    /// What this backend holds that is tagged as this daemon's (`batchctl
    /// pools`); nil when it keeps nothing of the kind.
    func owned() async throws -> (owner: String, items: [HeldItem])?
    /// Creates, resizes or deletes a pool outside any job (`batchctl pool`);
    /// what was done, or nil when this backend keeps no pools. Throws the
    /// reason a change is refused (a pool another owner made, one a job uses).
    func managePool(_ change: PoolChange) async throws -> String?
    /// The backend's input store, for `batchctl files put` and `prune`; nil
    /// when it keeps none.
    var inputFiles: (any InputFiles)? { get }
    /// Work the backend does for every job at once while the daemon runs
    /// (Azure's account-wide task poller); nil when it has none. It returns
    /// when its task is cancelled.
    var background: (@Sendable () async -> Void)? { get }
    /// Releases what the backend holds (its HTTP transport); at daemon exit.
    func shutdown()
}

extension JobBackend {
    public func attemptsDirectory(_ job: JobHandle) -> String { "\(job.jobsDirectory)/\(job.id)/tasks" }
    public func monitor(_ job: JobHandle) async -> StepResult {
        guard let adapter = await adapter(for: job) else { return .interrupted }
        return await RunningPhase(job: job, adapter: adapter).run()
    }
    public func refusal(_ spec: JobSpec) async -> ManifestIssue? { nil }
    public var canRetry: Bool { true }
    public func prepareRetry(_ job: JobRecord) async throws {}
    public func owned() async throws -> (owner: String, items: [HeldItem])? { nil }
    public func managePool(_ change: PoolChange) async throws -> String? { nil }
    public var background: (@Sendable () async -> Void)? { nil }
    public var inputFiles: (any InputFiles)? { nil }
    public func shutdown() {}
}

/// Something a backend holds that is tagged as this daemon's (a pool, a
/// Batch job, a Slurm array), for `batchctl pools`.
public struct HeldItem: Sendable, Equatable {
    public var kind: String
    public var id: String
    public var state: String
    /// The batchd job it belongs to, when its tag says.
    public var job: String?
    public var nodes: Int?
    /// No job in the database knows it.
    public var orphan: Bool
    public init(kind: String, id: String, state: String, job: String?, nodes: Int?, orphan: Bool) {
        self.kind = kind
        self.id = id
        self.state = state
        self.job = job
        self.nodes = nodes
        self.orphan = orphan
    }
}

/// A change to a pool kept outside jobs (`batchctl pool`).
public enum PoolChange: Sendable {
    case create(PoolSpec)
    case resize(id: String, dedicated: Int, spot: Int)
    case delete(id: String)
}

/// The backends this daemon knows: those it runs, and for each it cannot
/// run (not configured, credentials missing), why. Each comes with its
/// pool options, so a manifest for a backend that is off still reads, and
/// is refused with the reason.
public struct BackendRegistry: Sendable {
    private var backends: [BackendKind: any JobBackend] = [:]
    private var order: [BackendKind] = []
    private var missing: [BackendKind: ManifestIssue] = [:]
    private var options: [BackendKind: [PoolOption]] = [:]

    /// No backends.
    public init() {}

    /// Registers a backend under its manifest name, with its pool options.
    public mutating func register(_ name: BackendKind, _ backend: any JobBackend, poolOptions: [PoolOption] = []) {
        if backends[name] == nil, missing[name] == nil { order.append(name) }
        backends[name] = backend
        missing[name] = nil
        options[name] = poolOptions
    }

    /// Records that `name` cannot run here, and why (with the fix).
    public mutating func unavailable(_ name: BackendKind, message: String, hint: String?, poolOptions: [PoolOption] = []) {
        if backends[name] == nil, missing[name] == nil { order.append(name) }
        missing[name] = ManifestIssue(line: nil, column: nil, field: "backend", message: message, hint: hint)
        options[name] = poolOptions
    }

    /// The names of the backends this daemon runs, in registration order.
    public var names: [BackendKind] { order.filter { backends[$0] != nil } }

    /// What a manifest may name and put under `pool:` here: every backend
    /// known (one that cannot run is refused with its reason), with its options.
    public var catalog: BackendCatalog {
        BackendCatalog(order.map { .init(name: $0.rawValue, available: backends[$0] != nil, poolOptions: options[$0] ?? []) })
    }

    /// Why there is no backend called `name`.
    public struct Missing: Error, Sendable, CustomStringConvertible {
        public let issue: ManifestIssue
        public var description: String { "\(issue.message)\(issue.hint.map { " (\($0))" } ?? "")" }
    }

    /// The backend called `name`, or why there is none.
    public func lookup(_ name: BackendKind) -> Result<any JobBackend, Missing> {
        if let b = backends[name] { return .success(b) }
        return .failure(Missing(issue: missing[name] ?? ManifestIssue(line: nil, column: nil, field: "backend",
            message: "backend '\(name.rawValue)' is not available in this daemon", hint: "available: \(names.map(\.rawValue).joined(separator: ", "))")))
    }

    /// The backend for a job the daemon already accepted: one that went
    /// missing (credentials removed since) fails each step with the reason.
    public func forJob(_ name: BackendKind) -> any JobBackend {
        switch lookup(name) {
        case .success(let b): return b
        case .failure(let m): return MissingBackend(reason: m.description)
        }
    }

    /// Why each backend this daemon lacks is missing, with the fix.
    public var missingReasons: [String] {
        order.compactMap { missing[$0] }.map { Missing(issue: $0).description }
    }

    /// Every registered backend.
    public var all: [any JobBackend] { order.compactMap { backends[$0] } }
}

/// Stands in for a backend the daemon no longer has: every step fails with
/// the reason; nothing is stopped or deleted (there is no way to reach it).
public struct MissingBackend: JobBackend {
    public let reason: String
    public init(reason: String) { self.reason = reason }
    public func stage(_ job: JobHandle) async -> StepResult { .failed(reason: reason) }
    public func provision(_ job: JobHandle) async -> StepResult { .failed(reason: reason) }
    public func submit(_ job: JobHandle) async -> StepResult { .failed(reason: reason) }
    public func monitor(_ job: JobHandle) async -> StepResult { .failed(reason: reason) }
    public func adapter(for job: JobHandle) async -> (any TaskAdapter)? { nil }
    public func cancel(_ job: JobHandle) async {}
    public func cleanup(_ job: JobHandle, _ verdict: Verdict) async {}
}

/// What a backend is made from when the daemon starts.
public struct BackendSetup: Sendable {
    /// The daemon's config (its backend's section: `sections[name]`).
    public let config: DaemonConfig
    /// What the backend may know of all its jobs.
    public let ledger: BackendLedger
    public let logger: Logging.Logger
    /// The daemon's environment (credentials, PATH).
    public let variables: [String: String]
    /// This machine's name (owner tags default to `batchd@<host>`).
    public let hostName: String
    /// batchd-exec, the helper every attempt runs under.
    public let exec: String
    /// What tasks get from the daemon's environment (`local.passEnvironment`).
    public let baseEnvironment: [String: String]
    /// Paths other users' tasks must not reach (Landlock).
    public let hidden: [String]

    public init(config: DaemonConfig, store: Store, logger: Logging.Logger, variables: [String: String] = [:], hostName: String = "",
                exec: String = "", baseEnvironment: [String: String] = [:], hidden: [String] = []) {
        self.config = config
        self.ledger = BackendLedger(store)
        self.logger = logger
        self.variables = variables
        self.hostName = hostName
        self.exec = exec
        self.baseEnvironment = baseEnvironment
        self.hidden = hidden
    }
}

/// A backend as the daemon registers it (one line in the daemon's list):
/// its name, its pool options, and how it is made from its config section.
public protocol BackendPlugin {
    /// Its name in manifests and in the store.
    static var name: BackendKind { get }
    /// Its own options under a manifest's `pool:`.
    static var poolOptions: [PoolOption] { get }
    /// Where to read how to set it up, for the refusal of a manifest that
    /// names it while it is off (e.g. "see docs/azure.md").
    static var setupHint: String { get }
    /// Makes the backend from its config section (nil when the config has
    /// none). Throws a `ConfigError` for a bad section (the daemon does not
    /// start), any other error when it cannot run here (it is off, and
    /// manifests naming it are refused with the reason).
    static func make(_ setup: BackendSetup, section: ConfigSection?) throws -> any JobBackend
}

extension BackendPlugin {
    public static var poolOptions: [PoolOption] { [] }
    public static var setupHint: String { "see the backend's docs" }
}
