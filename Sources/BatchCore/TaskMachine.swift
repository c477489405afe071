/// The task state machine: `(state, event) → (state, actions)`, the same
/// for every backend. Pure and total, like `JobMachine`: an event that does
/// not apply leaves the state alone and says why.
///
/// The machine decides; the backend carries out. It owns every rule about a
/// task's fate: what counts against `retries`, that a vanished attempt runs
/// again for free (but not forever), that a cancelled job runs nothing
/// again, that a task the crash-loop breaker set aside fails, and that a
/// backend whose service retried the task itself (a batch service's own
/// retry count) reports its end.
public enum TaskMachine {
    /// Attempts a task may lose (its process or node vanished without a
    /// word) before it fails. A lost attempt is free, but a task that kills
    /// its own supervisor, or a node that dies under it every time, must not
    /// run forever.
    public static let freeRunLimit = 5

    /// Applies `event` to `state` under `rules`.
    public static func apply(_ event: TaskEvent, to state: TaskMachineState, rules: TaskRules) -> TaskTransition {
        func go(_ phase: TaskPhase, _ actions: [TaskAction], _ change: (inout TaskMachineState) -> Void = { _ in }) -> TaskTransition {
            var s = state
            s.phase = phase
            change(&s)
            return TaskTransition(state: s, actions: actions, ignored: nil)
        }
        func ignore(_ why: String) -> TaskTransition {
            TaskTransition(state: state, actions: [], ignored: "\(event.name) in \(state.phase.rawValue): \(why)")
        }
        if state.phase.isFinished { return ignore("the task is over") }

        switch (state.phase, event) {
        case (.pending, .launched): return go(.launching, [])
        case (_, .launched): return ignore("an attempt is already live")

        case (.pending, .running), (.launching, .running): return go(.running, [.markRunning])
        case (.running, .running): return ignore("already running")
        case (.collecting, .running): return ignore("it ended already")

        case (.running, .requeued): return go(.launching, [])
        case (_, .requeued): return ignore("it is not running")

        case (.pending, .ended): return ignore("no attempt is live")
        case (.collecting, .ended(let outcome)) where outcome.isSuccess: return ignore("its outputs are being collected")
        case (.launching, .ended(let outcome)), (.running, .ended(let outcome)), (.collecting, .ended(let outcome)):
            if outcome.isSuccess { return go(.collecting, [.collectOutputs]) }
            return ended(outcome, state, rules)

        case (.collecting, .collected):
            return go(.succeeded, [.record(.exited(code: 0), .succeeded)])
        case (_, .collected): return ignore("nothing was being collected")

        case (.pending, .cancel):
            return go(.cancelled, [.recordUnstarted(.cancelled)]) { $0.cancelling = true }
        case (.launching, .cancel), (.running, .cancel):
            // Recorded once the attempt is stopped, through its end.
            if state.cancelling { return ignore("already being stopped") }
            return go(state.phase, [.kill]) { $0.cancelling = true }
        case (.collecting, .cancel):
            // It succeeded: its outputs are kept and it stays a success.
            return go(.collecting, []) { $0.cancelling = true }

        case (.pending, .limitReached): return go(.pending, [])
        case (.launching, .limitReached), (.running, .limitReached(stop: true)):
            // What has not started yet does not, and the wall clock stops what runs.
            if state.cancelling { return ignore("already being stopped") }
            return go(state.phase, [.kill]) { $0.cancelling = true }
        case (.running, .limitReached(stop: false)): return ignore("it may finish")
        case (.collecting, .limitReached): return ignore("it succeeded")

        case (.launching, .setAside), (.running, .setAside):
            let why = "the daemon stopped twice while starting or taking over this task, so it is not run again"
            return go(.failed, [.kill, .record(.launchFailed(reason: why), .failed)]) { $0.counted += 1 }
        case (_, .setAside): return ignore("no attempt is live")

        default:
            return ignore("does not apply")
        }
    }

    /// How an attempt that did not succeed decides the task's fate.
    static func ended(_ outcome: TaskOutcome, _ state: TaskMachineState, _ rules: TaskRules) -> TaskTransition {
        var s = state
        let decision: TaskDecision
        if outcome == .cancelled {
            decision = .cancelled
        } else if outcome.countsAsAttempt {
            s.counted += 1
            if state.cancelling { decision = .cancelled }
            else if rules.retriedByService.contains(outcome.outcomeKind) || s.counted > rules.retries { decision = .failed }
            else { decision = .retry }
        } else {
            // Lost or interrupted: free. A task lost `freeRunLimit` times
            // (its free runs counted) fails; a shutdown of ours never fails it.
            s.free += 1
            if state.cancelling { decision = .cancelled }
            else if outcome == .lost, s.free >= freeRunLimit { decision = .failed }
            else { decision = .retry }
        }
        var actions: [TaskAction] = [.record(outcome, decision)]
        switch decision {
        case .retry: s.phase = .pending; actions.append(.launch)
        case .failed: s.phase = .failed
        case .cancelled: s.phase = .cancelled
        case .succeeded: s.phase = .succeeded
        }
        return TaskTransition(state: s, actions: actions, ignored: nil)
    }

}

/// A task's phase, as the machine sees it.
public enum TaskPhase: String, Sendable, Equatable, CaseIterable {
    /// No attempt is live: it waits for its turn (or for its first).
    case pending
    /// An attempt was recorded and handed to the backend; not seen running yet.
    case launching
    /// The backend says it runs.
    case running
    /// It exited 0; its outputs are being collected.
    case collecting
    case succeeded, failed, cancelled

    /// Whether the task is over.
    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// A task's state: its phase and what its attempts so far have used.
public struct TaskMachineState: Sendable, Equatable {
    public var phase: TaskPhase
    /// Attempts that used up one of the `retries` (failed ones).
    public var counted: Int
    /// Attempts that ended through no fault of the task (lost, interrupted).
    public var free: Int
    /// The task's job was cancelled (or its limit stopped it): it runs nothing again.
    public var cancelling: Bool

    public init(phase: TaskPhase, counted: Int = 0, free: Int = 0, cancelling: Bool = false) {
        self.phase = phase
        self.counted = counted
        self.free = free
        self.cancelling = cancelling
    }
}

/// What the job says about all of its tasks.
public struct TaskRules: Sendable, Equatable {
    /// The manifest's `retries`.
    public var retries: Int
    /// Failures the backend's service retries itself, up to `retries` (a
    /// batch service that retries a nonzero exit): one it reports is the
    /// task's end. Any other failure is retried here (an upload the node
    /// could not make, say), counting what the service spent.
    public var retriedByService: Set<OutcomeKind>

    public init(retries: Int, retriedByService: Set<OutcomeKind> = []) {
        self.retries = retries
        self.retriedByService = retriedByService
    }
}

/// What happened to a task, as its backend reports it.
public enum TaskEvent: Sendable, Equatable {
    /// An attempt was recorded and handed to the backend.
    case launched
    /// The backend says the attempt runs.
    case running
    /// The attempt ended: exited, signaled, timed out, lost, could not
    /// start, or its outputs could not be collected.
    case ended(TaskOutcome)
    /// Its outputs were collected.
    case collected
    /// The service put a running attempt back in its queue (its node was
    /// preempted or rebooted); it runs again there, as the same attempt.
    case requeued
    /// The job was cancelled.
    case cancel
    /// The job's limits were reached: `stop` (the wall clock) stops what
    /// runs; otherwise (core-hours) it may finish and nothing new starts.
    case limitReached(stop: Bool)
    /// The crash-loop breaker: the daemon died twice while starting or
    /// taking over this task.
    case setAside

    /// The event's name, for the reason it was ignored.
    public var name: String {
        switch self {
        case .launched: return "launched"
        case .running: return "running"
        case .ended(let o): return "ended (\(o.kind))"
        case .collected: return "collected"
        case .requeued: return "requeued"
        case .cancel: return "cancel"
        case .limitReached(let stop): return stop ? "wall clock reached" : "core-hours used up"
        case .setAside: return "set aside"
        }
    }

    /// Every kind of event, with a representative outcome of each kind, for tables.
    public static let all: [TaskEvent] = [.launched, .running, .collected, .requeued, .cancel,
                                          .limitReached(stop: true), .limitReached(stop: false), .setAside]
        + [TaskOutcome.exited(code: 0), .exited(code: 1), .signaled(signal: 9), .timedOut(seconds: 5), .launchFailed(reason: "r"),
           .outputsFailed(reason: "r"), .lost, .interrupted, .cancelled].map { .ended($0) }
}

/// What the running phase does for a task, in order.
public enum TaskAction: Sendable, Equatable {
    /// Start a new attempt (record it first).
    case launch
    /// Record that it runs.
    case markRunning
    /// Collect the attempt's outputs; `.collected` or `.ended(.outputsFailed)` follows.
    case collectOutputs
    /// Record how the attempt ended, and the task's fate.
    case record(TaskOutcome, TaskDecision)
    /// Record the fate of a task that never started.
    case recordUnstarted(TaskDecision)
    /// Stop the live attempt.
    case kill
}

/// The result of applying an event.
public struct TaskTransition: Sendable, Equatable {
    /// The new state (the old one when `ignored`).
    public var state: TaskMachineState
    /// What to do, in order.
    public var actions: [TaskAction]
    /// Why the event changed nothing, if it did not apply.
    public var ignored: String?

    /// The attempt's end and the task's fate it records, if it records one.
    public var recorded: (outcome: TaskOutcome, decision: TaskDecision)? {
        for a in actions { if case .record(let o, let d) = a { return (o, d) } }
        return nil
    }

    /// The task's fate, when the transition records an attempt's end.
    public var decision: TaskDecision? { recorded?.decision }
}
