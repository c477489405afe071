/// The phases a job goes through, in order; the last three are terminal.
///
/// ```
/// accepted → staging → provisioning → submitting → running → collecting → finalizing
///                                                                           ├→ succeeded
///   any phase before finalizing ──cancel/failure──► finalizing ────────────├→ failed
///                                                                           └→ cancelled
/// ```
public enum JobPhase: String, Sendable, Equatable, CaseIterable, Codable {
    case accepted, staging, provisioning, submitting, running, collecting, finalizing
    case succeeded, failed, cancelled

    /// Whether the job is over.
    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// How a job ends, decided before finalizing runs (cleanup depends on it).
public enum Verdict: Sendable, Equatable {
    case success
    case failure(reason: String)
    case cancelled

    /// The terminal phase this verdict leads to.
    public var phase: JobPhase {
        switch self {
        case .success: return .succeeded
        case .failure: return .failed
        case .cancelled: return .cancelled
        }
    }

    /// The stored text of a verdict: `success`, `cancelled`, or the failure reason.
    public var reason: String? {
        if case .failure(let r) = self { return r }
        return nil
    }
}

/// Counts of a job's tasks by state.
public struct TaskCounts: Sendable, Equatable, Codable {
    /// Not yet started (or waiting for a retry).
    public var pending = 0
    /// Running now.
    public var running = 0
    /// Finished with exit code 0 and outputs collected.
    public var succeeded = 0
    /// Failed after all retries.
    public var failed = 0
    /// Cancelled before finishing.
    public var cancelled = 0

    /// All zero.
    public init() {}

    /// Creates counts.
    public init(pending: Int = 0, running: Int = 0, succeeded: Int = 0, failed: Int = 0, cancelled: Int = 0) {
        self.pending = pending
        self.running = running
        self.succeeded = succeeded
        self.failed = failed
        self.cancelled = cancelled
    }

    /// Every task.
    public var total: Int { pending + running + succeeded + failed + cancelled }
    /// Whether no task is left to run.
    public var allFinished: Bool { pending == 0 && running == 0 }
}

/// Something that happened to a job.
public enum JobEvent: Sendable, Equatable {
    /// The supervisor picked the job up (also after a restart).
    case start
    /// Inputs are in the store.
    case staged
    /// The pool is ready.
    case provisioned
    /// Every task is with the backend.
    case submitted
    /// Task counts changed.
    case progress(TaskCounts)
    /// Outputs were verified.
    case collected
    /// Cleanup and summary are done.
    case finalized
    /// A step failed for good (not a transient error: those are retried).
    case failed(reason: String)
    /// The user asked to cancel.
    case cancelRequested
    /// The user asked to run a failed job's failed tasks again.
    case retryRequested
}

/// What the owner of a job must do next; the machine itself does no I/O.
public enum JobAction: Sendable, Equatable {
    /// Hash inputs and put what the store lacks into it.
    case stageInputs
    /// Make sure the pool exists (or create the auto-pool).
    case provisionPool
    /// Hand the tasks to the backend (idempotent: deterministic ids).
    case submitTasks
    /// Run or poll tasks until all are finished.
    case monitorTasks
    /// Stop every running task of the job.
    case cancelTasks
    /// Check that every collected output is in place.
    case verifyOutputs
    /// Delete scratch data, per the cleanup policy and the verdict.
    case cleanup(Verdict)
    /// Write the job's summary.
    case writeSummary(Verdict)
}
