import BatchCore
import Testing

/// The decisions the runner used to make in place: what a step's result
/// means under a cancel or a shutdown, and a task's fate after an attempt.
@Suite("the machine's decisions")
struct JobDecisionTests {
    struct NextRow: Sendable, CustomStringConvertible {
        let event: JobEvent?
        let signal: JobSignal
        let phase: JobPhase
        let expected: RunnerNext
        var description: String { "\(event.map { "\($0)" } ?? "interrupted") + \(signal) in \(phase.rawValue)" }
    }

    static let nextRows: [NextRow] = [
        // Nothing said: the step's event goes on; an interrupted step waits for the next start.
        NextRow(event: .staged, signal: .none, phase: .staging, expected: .apply(.staged)),
        NextRow(event: .failed(reason: "x"), signal: .none, phase: .submitting, expected: .apply(.failed(reason: "x"))),
        NextRow(event: nil, signal: .none, phase: .running, expected: .suspend),
        // A cancel outranks any result until the job is finalizing.
        NextRow(event: .staged, signal: .cancel, phase: .staging, expected: .apply(.cancelRequested)),
        NextRow(event: nil, signal: .cancel, phase: .running, expected: .apply(.cancelRequested)),
        NextRow(event: .progress(TaskCounts(succeeded: 3)), signal: .cancel, phase: .running, expected: .apply(.cancelRequested)),
        NextRow(event: .start, signal: .cancel, phase: .accepted, expected: .apply(.cancelRequested)),
        NextRow(event: .finalized, signal: .cancel, phase: .finalizing, expected: .apply(.finalized)),
        NextRow(event: nil, signal: .cancel, phase: .finalizing, expected: .suspend),
        // A shutdown always suspends: the saved phase resumes at the next start, even mid-cancel.
        NextRow(event: .staged, signal: .shutdown, phase: .staging, expected: .suspend),
        NextRow(event: .finalized, signal: .shutdown, phase: .finalizing, expected: .suspend),
        NextRow(event: .start, signal: .shutdown, phase: .running, expected: .suspend),
    ]

    @Test("what the runner does after a step", arguments: nextRows)
    func next(_ row: NextRow) {
        #expect(JobMachine.next(row.event, signal: row.signal, phase: row.phase) == row.expected)
    }

    @Test("the event each step's result means")
    func events() {
        #expect(JobMachine.event(for: .stageInputs, .done) == .staged)
        #expect(JobMachine.event(for: .provisionPool, .done) == .provisioned)
        #expect(JobMachine.event(for: .submitTasks, .done) == .submitted)
        #expect(JobMachine.event(for: .monitorTasks, .done, counts: TaskCounts(succeeded: 2)) == .progress(TaskCounts(succeeded: 2)))
        #expect(JobMachine.event(for: .monitorTasks, .done) == nil, "no counts, no progress")
        #expect(JobMachine.event(for: .verifyOutputs, .done) == .collected)
        #expect(JobMachine.event(for: .writeSummary(.success), .done) == .finalized)
        #expect(JobMachine.event(for: .cancelTasks, .done) == nil)
        #expect(JobMachine.event(for: .cleanup(.cancelled), .done) == nil)
        #expect(JobMachine.event(for: .submitTasks, .failed(reason: "r")) == .failed(reason: "r"))
        #expect(JobMachine.event(for: .stageInputs, .interrupted) == nil)
    }

    struct FateRow: Sendable, CustomStringConvertible {
        let outcome: TaskOutcome
        let counted: Int
        let cancelled: Bool
        let setAside: Bool
        let expected: TaskDecision
        var description: String { "\(outcome.summary), attempt \(counted)\(cancelled ? ", cancelled" : "")\(setAside ? ", set aside" : "")" }
    }

    /// With `retries: 1`.
    static let fateRows: [FateRow] = [
        FateRow(outcome: .exited(code: 0), counted: 1, cancelled: false, setAside: false, expected: .succeeded),
        FateRow(outcome: .exited(code: 1), counted: 1, cancelled: false, setAside: false, expected: .retry),
        FateRow(outcome: .exited(code: 1), counted: 2, cancelled: false, setAside: false, expected: .failed),
        FateRow(outcome: .exited(code: 1), counted: 1, cancelled: true, setAside: false, expected: .cancelled),
        FateRow(outcome: .lost, counted: 5, cancelled: false, setAside: false, expected: .retry),
        FateRow(outcome: .lost, counted: 0, cancelled: true, setAside: false, expected: .cancelled),
        FateRow(outcome: .cancelled, counted: 0, cancelled: true, setAside: false, expected: .cancelled),
        FateRow(outcome: .launchFailed(reason: "x"), counted: 1, cancelled: false, setAside: true, expected: .failed),
        FateRow(outcome: .exited(code: 0), counted: 1, cancelled: true, setAside: false, expected: .succeeded),
    ]

    @Test("a task's fate after an attempt", arguments: fateRows)
    func fate(_ row: FateRow) {
        #expect(JobMachine.taskDecision(row.outcome, countedAttempts: row.counted, retries: 1, cancelled: row.cancelled,
                                        setAside: row.setAside) == row.expected)
    }

    @Test("a backend that retried itself reports the end")
    func finalFate() {
        #expect(JobMachine.finalTaskDecision(.exited(code: 0)) == .succeeded)
        #expect(JobMachine.finalTaskDecision(.exited(code: 2)) == .failed)
        #expect(JobMachine.finalTaskDecision(.cancelled) == .cancelled)
        #expect(JobMachine.finalTaskDecision(.timedOut(seconds: 5)) == .failed)
    }
}
