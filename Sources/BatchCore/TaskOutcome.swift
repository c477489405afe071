/// How one attempt of a task ended. A value, not an error: a task that exits
/// 3 is an ordinary outcome.
public enum TaskOutcome: Sendable, Equatable, Codable {
    /// The command exited with this code.
    case exited(code: Int32)
    /// The command was killed by this signal (not by us).
    case signaled(signal: Int32)
    /// It ran past the manifest's timeout and was killed.
    case timedOut(seconds: Double)
    /// It could not be started (or its inputs could not be staged).
    case launchFailed(reason: String)
    /// It exited 0 but its outputs could not be collected.
    case outputsFailed(reason: String)
    /// Its process or node vanished without a recorded status (daemon crash,
    /// reboot, a node gone); free, up to `TaskMachine.freeRunLimit` times.
    case lost
    /// The daemon stopped it while shutting down.
    case interrupted
    /// The job was cancelled.
    case cancelled

    /// Whether the attempt succeeded.
    public var isSuccess: Bool { self == .exited(code: 0) }

    /// Whether this attempt uses up one of the user's retries. Attempts that
    /// ended through no fault of the task (a crash of ours, a shutdown, a
    /// cancel) do not.
    public var countsAsAttempt: Bool {
        switch self {
        case .lost, .interrupted, .cancelled: return false
        default: return true
        }
    }

    /// One short word for tables and the database: exited, signaled, ...
    public var kind: String { outcomeKind.rawValue }

    /// The kind, as the store keeps it.
    public var outcomeKind: OutcomeKind {
        switch self {
        case .exited: return .exited
        case .signaled: return .signaled
        case .timedOut: return .timedOut
        case .launchFailed: return .launchFailed
        case .outputsFailed: return .outputsFailed
        case .lost: return .lost
        case .interrupted: return .interrupted
        case .cancelled: return .cancelled
        }
    }

    /// A sentence for people: "exited with code 3", "killed by signal 9", ...
    public var summary: String {
        switch self {
        case .exited(let code): return "exited with code \(code)"
        case .signaled(let s): return "killed by signal \(s)"
        case .timedOut(let s): return "timed out after \(HumanDuration.format(s))"
        case .launchFailed(let r): return "could not start: \(r)"
        case .outputsFailed(let r): return "outputs not collected: \(r)"
        case .lost: return "lost (its process or node vanished without a status)"
        case .interrupted: return "interrupted by a daemon shutdown"
        case .cancelled: return "cancelled"
        }
    }
}

/// What to do with a task after an attempt ends.
public enum TaskDecision: Sendable, Equatable {
    case succeeded
    case retry
    case failed
    case cancelled
}
