import BatchCore
import Testing

/// The task machine as tables: every event in every state.
@Suite("Task state machine")
struct TaskMachineTests {
    /// What an event does in one phase: ignored, or the new phase and actions.
    enum Expect: Sendable, Equatable, CustomStringConvertible {
        case ignored
        case to(TaskPhase, [TaskAction])
        var description: String {
            switch self {
            case .ignored: return "ignored"
            case .to(let p, let a): return "\(p.rawValue) \(a)"
            }
        }
    }

    /// One event across the open phases, from a task with no attempt used,
    /// `retries: 1`, its job not cancelled.
    struct Row: Sendable, CustomTestStringConvertible {
        let event: TaskEvent
        let pending: Expect
        let launching: Expect
        let running: Expect
        let collecting: Expect
        var testDescription: String { event.name }
    }

    static let failed = TaskOutcome.exited(code: 1)
    static let setAsideReason = "the daemon stopped twice while starting or taking over this task, so it is not run again"

    static let table: [Row] = [
        Row(event: .launched, pending: .to(.launching, []), launching: .ignored, running: .ignored, collecting: .ignored),
        Row(event: .running, pending: .to(.running, [.markRunning]), launching: .to(.running, [.markRunning]),
            running: .ignored, collecting: .ignored),
        Row(event: .requeued, pending: .ignored, launching: .ignored, running: .to(.launching, []), collecting: .ignored),
        // Success: outputs first, then the record.
        Row(event: .ended(.exited(code: 0)), pending: .ignored, launching: .to(.collecting, [.collectOutputs]),
            running: .to(.collecting, [.collectOutputs]), collecting: .ignored),
        Row(event: .collected, pending: .ignored, launching: .ignored, running: .ignored,
            collecting: .to(.succeeded, [.record(.exited(code: 0), .succeeded)])),
        // A failure uses a retry (one is left), and the task runs again.
        Row(event: .ended(failed), pending: .ignored, launching: .to(.pending, [.record(failed, .retry), .launch]),
            running: .to(.pending, [.record(failed, .retry), .launch]), collecting: .to(.pending, [.record(failed, .retry), .launch])),
        Row(event: .ended(.signaled(signal: 9)), pending: .ignored,
            launching: .to(.pending, [.record(.signaled(signal: 9), .retry), .launch]),
            running: .to(.pending, [.record(.signaled(signal: 9), .retry), .launch]),
            collecting: .to(.pending, [.record(.signaled(signal: 9), .retry), .launch])),
        Row(event: .ended(.timedOut(seconds: 5)), pending: .ignored,
            launching: .to(.pending, [.record(.timedOut(seconds: 5), .retry), .launch]),
            running: .to(.pending, [.record(.timedOut(seconds: 5), .retry), .launch]),
            collecting: .to(.pending, [.record(.timedOut(seconds: 5), .retry), .launch])),
        Row(event: .ended(.launchFailed(reason: "r")), pending: .ignored,
            launching: .to(.pending, [.record(.launchFailed(reason: "r"), .retry), .launch]),
            running: .to(.pending, [.record(.launchFailed(reason: "r"), .retry), .launch]),
            collecting: .to(.pending, [.record(.launchFailed(reason: "r"), .retry), .launch])),
        Row(event: .ended(.outputsFailed(reason: "r")), pending: .ignored,
            launching: .to(.pending, [.record(.outputsFailed(reason: "r"), .retry), .launch]),
            running: .to(.pending, [.record(.outputsFailed(reason: "r"), .retry), .launch]),
            collecting: .to(.pending, [.record(.outputsFailed(reason: "r"), .retry), .launch])),
        // Vanished or interrupted: free, and it runs again.
        Row(event: .ended(.lost), pending: .ignored, launching: .to(.pending, [.record(.lost, .retry), .launch]),
            running: .to(.pending, [.record(.lost, .retry), .launch]), collecting: .to(.pending, [.record(.lost, .retry), .launch])),
        Row(event: .ended(.interrupted), pending: .ignored, launching: .to(.pending, [.record(.interrupted, .retry), .launch]),
            running: .to(.pending, [.record(.interrupted, .retry), .launch]),
            collecting: .to(.pending, [.record(.interrupted, .retry), .launch])),
        Row(event: .ended(.cancelled), pending: .ignored, launching: .to(.cancelled, [.record(.cancelled, .cancelled)]),
            running: .to(.cancelled, [.record(.cancelled, .cancelled)]), collecting: .to(.cancelled, [.record(.cancelled, .cancelled)])),
        // Cancel: a task never started is recorded at once; a live one is stopped, and recorded by its end.
        Row(event: .cancel, pending: .to(.cancelled, [.recordUnstarted(.cancelled)]), launching: .to(.launching, [.kill]),
            running: .to(.running, [.kill]), collecting: .to(.collecting, [])),
        // The wall clock stops what runs; used-up core-hours let it finish; either way nothing new starts,
        // and an attempt handed to a service that has not started yet is stopped.
        Row(event: .limitReached(stop: true), pending: .to(.pending, []), launching: .to(.launching, [.kill]),
            running: .to(.running, [.kill]), collecting: .ignored),
        Row(event: .limitReached(stop: false), pending: .to(.pending, []), launching: .to(.launching, [.kill]), running: .ignored,
            collecting: .ignored),
        Row(event: .setAside, pending: .ignored, launching: .to(.failed, [.kill, .record(.launchFailed(reason: setAsideReason), .failed)]),
            running: .to(.failed, [.kill, .record(.launchFailed(reason: setAsideReason), .failed)]), collecting: .ignored),
    ]

    static func check(_ event: TaskEvent, from phase: TaskPhase, _ expect: Expect, rules: TaskRules = TaskRules(retries: 1)) {
        let t = TaskMachine.apply(event, to: TaskMachineState(phase: phase), rules: rules)
        switch expect {
        case .ignored:
            #expect(t.ignored != nil, "\(event.name) in \(phase.rawValue) should be ignored")
            #expect(t.state == TaskMachineState(phase: phase))
            #expect(t.actions.isEmpty)
        case .to(let to, let actions):
            #expect(t.ignored == nil, "\(event.name) in \(phase.rawValue): \(t.ignored ?? "")")
            #expect(t.state.phase == to, "\(event.name) in \(phase.rawValue)")
            #expect(t.actions == actions, "\(event.name) in \(phase.rawValue)")
        }
    }

    @Test("each event in each open phase", arguments: table)
    func transition(_ row: Row) {
        Self.check(row.event, from: .pending, row.pending)
        Self.check(row.event, from: .launching, row.launching)
        Self.check(row.event, from: .running, row.running)
        Self.check(row.event, from: .collecting, row.collecting)
    }

    @Test("the table has every event")
    func everyEvent() {
        for event in TaskEvent.all { #expect(Self.table.contains { $0.event == event }, "no row for \(event.name)") }
        #expect(Self.table.count == TaskEvent.all.count)
    }

    @Test("a task that is over takes no event", arguments: [TaskPhase.succeeded, .failed, .cancelled])
    func finished(_ phase: TaskPhase) {
        for event in TaskEvent.all { Self.check(event, from: phase, .ignored) }
    }

    struct FateRow: Sendable, CustomTestStringConvertible {
        let outcome: TaskOutcome
        let from: TaskMachineState
        let rules: TaskRules
        let decision: TaskDecision
        let counted: Int
        let free: Int
        var testDescription: String { "\(outcome.kind) after \(from.counted) counted, \(from.free) free\(from.cancelling ? ", cancelling" : "")\(rules.retriedByService.isEmpty ? "" : ", the service retries \(rules.retriedByService.map(\.rawValue).sorted())")" }
    }

    static let limit = TaskMachine.freeRunLimit

    /// The retry rule, the same on every backend.
    static let fates: [FateRow] = [
        // retries: 1 — the second counted failure is the end.
        FateRow(outcome: failed, from: .init(phase: .running, counted: 1), rules: .init(retries: 1), decision: .failed, counted: 2, free: 0),
        FateRow(outcome: .timedOut(seconds: 5), from: .init(phase: .running, counted: 0), rules: .init(retries: 0),
                decision: .failed, counted: 1, free: 0),
        // Free runs do not use retries, whatever was used.
        FateRow(outcome: .lost, from: .init(phase: .running, counted: 3), rules: .init(retries: 0), decision: .retry, counted: 3, free: 1),
        FateRow(outcome: .interrupted, from: .init(phase: .running, counted: 3), rules: .init(retries: 0), decision: .retry, counted: 3, free: 1),
        // ...but a task lost `freeRunLimit` times fails; a shutdown of ours never fails a task.
        FateRow(outcome: .lost, from: .init(phase: .running, free: limit - 2), rules: .init(retries: 0), decision: .retry, counted: 0, free: limit - 1),
        FateRow(outcome: .lost, from: .init(phase: .running, free: limit - 1), rules: .init(retries: 9), decision: .failed, counted: 0, free: limit),
        FateRow(outcome: .interrupted, from: .init(phase: .running, free: limit + 3), rules: .init(retries: 0), decision: .retry,
                counted: 0, free: limit + 4),
        // A cancelled job runs nothing again, and a failure in it is recorded as a cancel.
        FateRow(outcome: failed, from: .init(phase: .running, cancelling: true), rules: .init(retries: 5), decision: .cancelled, counted: 1, free: 0),
        FateRow(outcome: .lost, from: .init(phase: .running, cancelling: true), rules: .init(retries: 5), decision: .cancelled, counted: 0, free: 1),
        // The service retried it already (Azure): a failure it reports is the end; a vanished task still runs again,
        // and a failure the service does not retry (an upload the node could not make) is retried here.
        FateRow(outcome: failed, from: .init(phase: .running), rules: .init(retries: 3, retriedByService: [.exited, .timedOut]),
                decision: .failed, counted: 1, free: 0),
        FateRow(outcome: .lost, from: .init(phase: .running), rules: .init(retries: 3, retriedByService: [.exited, .timedOut]),
                decision: .retry, counted: 0, free: 1),
        FateRow(outcome: .outputsFailed(reason: "FileUploadMiscError"), from: .init(phase: .running),
                rules: .init(retries: 1, retriedByService: [.exited]), decision: .retry, counted: 1, free: 0),
        FateRow(outcome: .outputsFailed(reason: "FileUploadMiscError"), from: .init(phase: .running, counted: 1),
                rules: .init(retries: 1, retriedByService: [.exited]), decision: .failed, counted: 2, free: 0),
    ]

    @Test("a task's fate after an attempt", arguments: fates)
    func fate(_ row: FateRow) {
        let t = TaskMachine.apply(.ended(row.outcome), to: row.from, rules: row.rules)
        #expect(t.decision == row.decision)
        #expect(t.state.counted == row.counted)
        #expect(t.state.free == row.free)
        #expect(t.actions.contains(.launch) == (row.decision == .retry))
    }

    @Test("a success during a cancel stays a success")
    func successWhileCancelling() {
        let s = TaskMachineState(phase: .running, cancelling: true)
        let collecting = TaskMachine.apply(.ended(.exited(code: 0)), to: s, rules: .init(retries: 0))
        #expect(collecting.state.phase == .collecting)
        let done = TaskMachine.apply(.collected, to: collecting.state, rules: .init(retries: 0))
        #expect(done.decision == .succeeded)
    }

    @Test("a live attempt is stopped once")
    func killOnce() {
        let s = TaskMachineState(phase: .running)
        let first = TaskMachine.apply(.cancel, to: s, rules: .init(retries: 0))
        #expect(first.actions == [.kill])
        #expect(TaskMachine.apply(.cancel, to: first.state, rules: .init(retries: 0)).ignored != nil)
        #expect(TaskMachine.apply(.limitReached(stop: true), to: first.state, rules: .init(retries: 0)).ignored != nil)
    }
}
