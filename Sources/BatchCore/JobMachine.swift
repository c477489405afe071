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
/// job may be reopened with `retryRequested`, which runs its failed tasks again.
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
            return Transition(state: JobState(phase: .running), actions: [.monitorTasks], ignored: nil)
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
