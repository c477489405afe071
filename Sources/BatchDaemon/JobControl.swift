import BatchControl
import BackendAzure
import BackendLocal
import BatchStore
import BatchSupport
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The signals the supervisor sends one job's runner.
final class JobControl: Sendable {
    /// Start no new attempts (shutdown or cancel).
    let halt = AsyncEvent<Void>()
    /// Stop running attempts, and why.
    let stop = AsyncEvent<StopReason>()
    /// Fired by the runner once it has reconciled what a crash left behind.
    let reconciled = AsyncEvent<Void>()
    /// Fired by `shutDown()`: the job resumes from its saved phase at the
    /// next start. (A cancelled job's halt has fired already; this still
    /// reaches its clean-up.)
    let shutdown = AsyncEvent<Void>()

    /// Set before `halt` fires, so whoever wakes on `halt` knows at once
    /// whether it is a cancel (act on it) or a shutdown (save and return).
    private let cancelled = Atomic<Bool>(false)

    /// Cancels the job: no new attempts, running ones stopped.
    func cancel() {
        cancelled.store(true, ordering: .sequentiallyConsistent)
        halt.fire(())
        stop.fire(.cancel)
    }

    /// The daemon is stopping: no new attempts; the runner saves where it
    /// is and returns, even in the middle of a cancel.
    func shutDown() {
        shutdown.fire(())
        halt.fire(())
    }

    var isCancelled: Bool { cancelled.load(ordering: .sequentiallyConsistent) }

    /// Whether the runner should save where it is and return.
    var isShuttingDown: Bool { shutdown.value != nil }
}

/// What every job runner shares.
struct JobContext: Sendable {
    let config: DaemonConfig
    let store: Store
    let runner: LocalRunner
    let slots: SlotPool
    let logger: Logger
    /// Variables passed through from the daemon's environment to tasks.
    let baseEnvironment: [String: String]
    let clock: @Sendable () -> Double
    /// The Azure backend, when credentials for it were found.
    var azure: AzureBackend? = nil
    /// The backends this daemon runs (registered in `Daemon.run`).
    var backends = BackendRegistry()
    /// Directories no submitter's path may reach (state, runtime, credentials).
    var protected: [(path: String, why: String)] = []
    /// Paths a task of another user than the daemon's must not reach
    /// (canonical; batchd-exec hides them with Landlock).
    var hidden: [String] = []

    /// The rule for a job's files: its submitter's rights, the daemon's
    /// directories refused. Jobs from before submitters were recorded act
    /// for the owner of their manifest.
    func policy(_ job: JobRecord) -> AccessPolicy {
        AccessPolicy(submitter: Submitter.lookup(uid: submitterUID(job)), protected: protected)
    }

    /// What a job's tasks must not reach: nothing more for the daemon's own
    /// user (they could read it all anyway), everything in `hidden` for
    /// anyone else's.
    func hidden(for job: JobRecord) -> [String] {
        submitterUID(job) == geteuid() ? [] : hidden
    }

    /// The uid a job acts for.
    func submitterUID(_ job: JobRecord) -> UInt32 {
        if let spec = job.spec { return spec.submitterUID }
        var st = stat()
        return stat(job.manifestPath, &st) == 0 ? st.st_uid : geteuid()
    }
}
