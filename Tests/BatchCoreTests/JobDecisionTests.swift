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
}
