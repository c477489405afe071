/// The job state machine: `(state, event) → (state, actions)`. Pure and
/// total: an event that does not apply leaves the state alone and says why.
public struct JobState: Sendable, Equatable {
    /// The phase.
    public var phase: JobPhase
    /// Set once the outcome is known (entering collecting or finalizing).
    public var verdict: Verdict?

    /// A state.
    public init(phase: JobPhase, verdict: Verdict? = nil) {
        self.phase = phase
        self.verdict = verdict
    }
}

/// The result of applying an event.
public struct Transition: Sendable, Equatable {
    /// The new state (the old one when `ignored`).
    public var state: JobState
    /// What to do, in order.
    public var actions: [JobAction]
    /// Why the event changed nothing, if it did not apply.
    public var ignored: String?
}

/// The transition function. Terminal states take no event but one: a failed
/// job may be reopened with `retryRequested`, which provisions and submits
/// again, running its failed tasks.
public enum JobMachine {
    /// Applies `event` to `state`.
    public static func apply(_ event: JobEvent, to state: JobState) -> Transition {
        func go(_ phase: JobPhase, _ actions: [JobAction], verdict: Verdict? = nil) -> Transition {
            Transition(state: JobState(phase: phase, verdict: verdict ?? state.verdict), actions: actions, ignored: nil)
        }
        func ignore() -> Transition {
            Transition(state: state, actions: [], ignored: "\(event) does not apply in \(state.phase.rawValue)")
        }
        if state.phase == .failed, event == .retryRequested {
            // Provision and submit again: a no-op where tasks were recorded at
            // acceptance (local), the reopened tasks on a backend that takes
            // them in (a cluster's new arrays, a service's new job).
            return Transition(state: JobState(phase: .provisioning), actions: [.provisionPool], ignored: nil)
        }
        if state.phase.isTerminal { return ignore() }

        switch (state.phase, event) {
        // Start (or restart): resume the action of the phase we are in.
        case (.accepted, .start): return go(.staging, [.stageInputs])
        case (.staging, .start): return go(.staging, [.stageInputs])
        case (.provisioning, .start): return go(.provisioning, [.provisionPool])
        case (.submitting, .start): return go(.submitting, [.submitTasks])
        case (.running, .start): return go(.running, [.monitorTasks])
        case (.collecting, .start): return go(.collecting, [.verifyOutputs])
        case (.finalizing, .start):
            // Stopping the tasks again is safe, and needed if the stop was cut short.
            let v = state.verdict ?? .failure(reason: "interrupted while finalizing")
            let stop: [JobAction] = v == .success ? [] : [.cancelTasks]
            return go(.finalizing, stop + [.cleanup(v), .writeSummary(v)], verdict: v)

        case (.staging, .staged): return go(.provisioning, [.provisionPool])
        case (.provisioning, .provisioned): return go(.submitting, [.submitTasks])
        case (.submitting, .submitted): return go(.running, [.monitorTasks])

        case (.running, .progress(let counts)):
            // Tasks left over (one whose attempt could not be recorded, say): keep monitoring.
            guard counts.allFinished else { return go(.running, [.monitorTasks]) }
            let verdict: Verdict = counts.failed == 0 && counts.cancelled == 0
                ? .success
                : .failure(reason: "\(counts.failed) of \(counts.total) tasks failed")
            return go(.collecting, [.verifyOutputs], verdict: verdict)
        case (_, .progress):
            return ignore()

        case (.collecting, .collected):
            let v = state.verdict ?? .success
            return go(.finalizing, [.cleanup(v), .writeSummary(v)])
        case (.finalizing, .finalized):
            return go((state.verdict ?? .success).phase, [])

        case (.finalizing, .failed), (.finalizing, .cancelRequested):
            return ignore()
        case (_, .failed(let reason)):
            let v = Verdict.failure(reason: reason)
            let stop: [JobAction] = state.phase == .running || state.phase == .submitting ? [.cancelTasks] : []
            return go(.finalizing, stop + [.cleanup(v), .writeSummary(v)], verdict: v)
        case (_, .cancelRequested):
            let stop: [JobAction] = [.accepted, .staging, .provisioning].contains(state.phase) ? [] : [.cancelTasks]
            return go(.finalizing, stop + [.cleanup(.cancelled), .writeSummary(.cancelled)], verdict: .cancelled)
        default:
            return ignore()
        }
    }
}

/// Why the daemon stops an attempt that has not finished.
public enum StopReason: Sendable, Equatable {
    /// The job was cancelled.
    case cancel
    /// The daemon is shutting down.
    case shutdown
}

/// What a job's runner has been told from outside.
public enum JobSignal: Sendable, Equatable {
    /// Nothing: carry on.
    case none
    /// `batchctl cancel`: stop the tasks and finish the job cancelled.
    case cancel
    /// The daemon is stopping: save the phase and return; the job resumes
    /// from it at the next start (even in the middle of a cancel).
    case shutdown
}

/// How a backend's step ended.
public enum StepResult: Sendable, Equatable {
    /// It did what it was asked (for monitoring: no task is left open).
    case done
    /// It cannot be done, for good (transient errors are retried inside).
    case failed(reason: String)
    /// The job was halted first (cancel or shutdown); the machine decides.
    case interrupted
}

/// What the runner does after a step.
public enum RunnerNext: Sendable, Equatable {
    /// Apply this event.
    case apply(JobEvent)
    /// Return, leaving the saved phase for the next start.
    case suspend
}

extension JobMachine {
    /// The event a step's result means (nil when the step has none of its
    /// own: stopping tasks and cleaning up lead on to the next action).
    /// `counts` are the job's task counts, read after monitoring ended.
    public static func event(for action: JobAction, _ result: StepResult, counts: TaskCounts? = nil) -> JobEvent? {
        switch result {
        case .interrupted: return nil
        case .failed(let reason): return .failed(reason: reason)
        case .done:
            switch action {
            case .stageInputs: return .staged
            case .provisionPool: return .provisioned
            case .submitTasks: return .submitted
            case .monitorTasks: return counts.map { .progress($0) }
            case .verifyOutputs: return .collected
            case .writeSummary: return .finalized
            case .cancelTasks, .cleanup: return nil
            }
        }
    }

    /// What the runner does next, given the event a step produced (nil:
    /// interrupted) and what the job was told. A shutdown always suspends;
    /// a cancel outranks any step's result until the job is finalizing.
    public static func next(_ event: JobEvent?, signal: JobSignal, phase: JobPhase) -> RunnerNext {
        switch signal {
        case .shutdown: return .suspend
        case .cancel where phase != .finalizing && !phase.isTerminal: return .apply(.cancelRequested)
        default: return event.map { .apply($0) } ?? .suspend
        }
    }
}

extension JobAction {
    /// The action's name in crash points and logs: `stage`, `provision`,
    /// `submit`, `monitor`, `cancel`, `verify`, `cleanup`, `summary`.
    public var stepName: String {
        switch self {
        case .stageInputs: return "stage"
        case .provisionPool: return "provision"
        case .submitTasks: return "submit"
        case .monitorTasks: return "monitor"
        case .cancelTasks: return "cancel"
        case .verifyOutputs: return "verify"
        case .cleanup: return "cleanup"
        case .writeSummary: return "summary"
        }
    }
}
