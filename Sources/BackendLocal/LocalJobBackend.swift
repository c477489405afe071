import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The workstation's own cores: inputs in the content store, tasks under
/// batchd-exec in the slots every local job shares, outputs copied as each
/// task ends. Tasks were recorded at acceptance with deterministic ids, so
/// there is nothing to provision or submit.
public struct LocalJobBackend: JobBackend {
    /// Its name in manifests: the embedded default, which needs no account.
    public static let name = BackendKind(rawValue: "local")
    /// Starts and waits for attempts under batchd-exec.
    public let runner: LocalRunner
    /// The slots shared by every local job.
    public let slots: SlotPool
    /// Variables passed through from the daemon's environment to tasks.
    public let baseEnvironment: [String: String]
    /// Paths a task of another user than the daemon's must not reach
    /// (canonical; batchd-exec hides them with Landlock).
    public let hidden: [String]
    /// The config's `containers:`.
    public let containers: ContainersConfig
    /// The container engine, when it is on the daemon's PATH.
    public let engine: ContainerEngine?

    /// The local backend.
    public init(runner: LocalRunner, slots: SlotPool, baseEnvironment: [String: String], hidden: [String],
                containers: ContainersConfig = ContainersConfig(), engine: ContainerEngine? = nil) {
        self.runner = runner
        self.slots = slots
        self.baseEnvironment = baseEnvironment
        self.hidden = hidden
        self.containers = containers
        self.engine = engine
    }

    /// What a job's tasks must not reach: nothing more for the daemon's own
    /// user (they could read it all anyway), everything in `hidden` for
    /// anyone else's.
    func hidden(for spec: JobSpec) -> [String] {
        spec.submitterUID == geteuid() ? [] : hidden
    }

    /// A job of another user than the daemon's runs its tasks as them: the
    /// daemon must be able to switch users (the system unit lets it), and
    /// they must be in the user database. Otherwise it is refused at intake,
    /// rather than run with the daemon's rights. A job with a container also
    /// needs the engine, a registry the config names, and an image the
    /// engine has or may pull.
    public func refusal(_ spec: JobSpec) async -> ManifestIssue? {
        if let container = spec.container {
            if let why = await containerRefusal(container, submitter: spec.submitterUID) {
                return ManifestIssue(line: nil, column: nil, field: why.field, message: why.message, hint: why.hint)
            }
        }
        // The engine runs a container as its submitter, but the daemon still
        // reads their inputs and writes their outputs as them.
        return Identity.refusal(forTasksOf: spec.submitterUID)
    }

    /// Hashes every input and copies into the content store what it lacks.
    public func stage(_ job: JobHandle) async -> StepResult { await job.stage(into: runner.contents) }
    public var inputFiles: (any InputFiles)? { ContentStoreFiles(runner.contents) }

    /// Local slots need no pool; a job's image is pulled here, once, before
    /// any of its tasks starts.
    public func provision(_ job: JobHandle) async -> StepResult {
        guard let container = job.spec.container else { return .done }
        return await provisionImage(container, job: job)
    }

    /// The tasks were recorded at acceptance, with deterministic ids.
    public func submit(_ job: JobHandle) async -> StepResult { .done }

    /// Stops attempts still running, then records the pending tasks cancelled
    /// (and removes any container of the job still there).
    public func cancel(_ job: JobHandle) async {
        await stopLiveAttempts(job)
        if job.spec.container != nil, let engine {
            for name in await engine.containers(of: job.id) ?? [] { await engine.remove(name, grace: 0) }
        }
        _ = await job.cancelPendingTasks()
    }

    /// Nothing beyond the work directories, which the runner deletes for every backend.
    public func cleanup(_ job: JobHandle, _ verdict: Verdict) async {}
}
