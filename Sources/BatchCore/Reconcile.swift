/// What to do with an attempt the store records as unfinished when the
/// daemon starts (it was running, or being started, when the daemon
/// stopped). Pure: the caller finds out the facts, this decides.
public enum Reconcile {
    /// The decision for one attempt.
    public enum Decision: Sendable, Equatable {
        /// It ended while the daemon was away: record how.
        case finished(TaskOutcome)
        /// The daemon died twice while launching or taking over this task:
        /// stop what is left of it and fail the task for good.
        case setAside
        /// Its process still runs: watch it again.
        case adopt
        /// It vanished without a word (a reboot): it runs again, free.
        case lost
    }

    /// The crash-loop breaker's limit: launches or adoptions the daemon may
    /// die in before the task is set aside.
    public static let strikeLimit = 2

    /// - Parameters:
    ///   - recorded: how the attempt ended, if its supervisor wrote it down.
    ///   - alive: whether its supervisor process still runs.
    ///   - strikes: launches and adoptions of the task the daemon did not live through.
    public static func decide(recorded: TaskOutcome?, alive: Bool, strikes: Int) -> Decision {
        if let recorded { return .finished(recorded) }
        if strikes >= strikeLimit { return .setAside }
        return alive ? .adopt : .lost
    }
}
