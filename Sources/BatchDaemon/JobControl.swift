import BackendAzure
import BackendLocal
import BatchStore
import Foundation
import Logging
import Synchronization

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
    /// Why there is no Azure backend (what to set), when there is none.
    var azureProblem: String? = nil
}
