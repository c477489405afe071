import BatchCore
import BatchSupport
import Synchronization

/// The signals the supervisor sends one job's runner.
public final class JobControl: Sendable {
    /// Start no new attempts (shutdown or cancel).
    public let halt = AsyncEvent<Void>()
    /// Stop running attempts, and why.
    public let stop = AsyncEvent<StopReason>()
    /// Fired by the runner once it has reconciled what a crash left behind.
    public let reconciled = AsyncEvent<Void>()
    /// Fired by `shutDown()`: the job resumes from its saved phase at the
    /// next start. (A cancelled job's halt has fired already; this still
    /// reaches its clean-up.)
    public let shutdown = AsyncEvent<Void>()

    /// Set before `halt` fires, so whoever wakes on `halt` knows at once
    /// whether it is a cancel (act on it) or a shutdown (save and return).
    private let cancelled = Atomic<Bool>(false)

    /// Cancels the job: no new attempts, running ones stopped.
    public func cancel() {
        cancelled.store(true, ordering: .sequentiallyConsistent)
        halt.fire(())
        stop.fire(.cancel)
    }

    /// The daemon is stopping: no new attempts; the runner saves where it
    /// is and returns, even in the middle of a cancel.
    public func shutDown() {
        shutdown.fire(())
        halt.fire(())
    }

    public var isCancelled: Bool { cancelled.load(ordering: .sequentiallyConsistent) }

    /// Whether the runner should save where it is and return.
    public var isShuttingDown: Bool { shutdown.value != nil }

    /// Whether the job is halted (cancel or shutdown): start nothing new.
    public var isHalted: Bool { halt.value != nil }

    /// What the job was told, for the state machine to decide on.
    public var signal: JobSignal {
        isShuttingDown ? .shutdown : (isCancelled ? .cancel : .none)
    }

    /// Signals for one job.
    public init() {}
}
