import BatchCore
import Testing

@Suite("Job state machine")
struct JobMachineTests {
    struct Row: Sendable, CustomTestStringConvertible {
        let from: JobState
        let event: JobEvent
        let to: JobState
        let actions: [JobAction]
        var testDescription: String { "\(from.phase) + \(event)" }
    }

    static let failure = Verdict.failure(reason: "1 of 3 tasks failed")

    static let table: [Row] = [
        Row(from: .init(phase: .accepted), event: .start, to: .init(phase: .staging), actions: [.stageInputs]),
        Row(from: .init(phase: .staging), event: .staged, to: .init(phase: .provisioning), actions: [.provisionPool]),
        Row(from: .init(phase: .provisioning), event: .provisioned, to: .init(phase: .submitting), actions: [.submitTasks]),
        Row(from: .init(phase: .submitting), event: .submitted, to: .init(phase: .running), actions: [.monitorTasks]),
        // Restarting in each phase resumes that phase's action.
        Row(from: .init(phase: .staging), event: .start, to: .init(phase: .staging), actions: [.stageInputs]),
        Row(from: .init(phase: .provisioning), event: .start, to: .init(phase: .provisioning), actions: [.provisionPool]),
        Row(from: .init(phase: .submitting), event: .start, to: .init(phase: .submitting), actions: [.submitTasks]),
        Row(from: .init(phase: .running), event: .start, to: .init(phase: .running), actions: [.monitorTasks]),
        Row(from: .init(phase: .collecting, verdict: .success), event: .start, to: .init(phase: .collecting, verdict: .success), actions: [.verifyOutputs]),
        Row(from: .init(phase: .finalizing, verdict: .cancelled), event: .start, to: .init(phase: .finalizing, verdict: .cancelled),
            actions: [.cancelTasks, .cleanup(.cancelled), .writeSummary(.cancelled)]),
        Row(from: .init(phase: .finalizing, verdict: failure), event: .start, to: .init(phase: .finalizing, verdict: failure),
            actions: [.cancelTasks, .cleanup(failure), .writeSummary(failure)]),
        Row(from: .init(phase: .finalizing, verdict: .success), event: .start, to: .init(phase: .finalizing, verdict: .success),
            actions: [.cleanup(.success), .writeSummary(.success)]),
        // Progress: not done yet changes nothing; all done decides the verdict.
        Row(from: .init(phase: .running), event: .progress(TaskCounts(pending: 1, succeeded: 2)), to: .init(phase: .running), actions: [.monitorTasks]),
        Row(from: .init(phase: .running), event: .progress(TaskCounts(succeeded: 3)), to: .init(phase: .collecting, verdict: .success), actions: [.verifyOutputs]),
        Row(from: .init(phase: .running), event: .progress(TaskCounts(succeeded: 2, failed: 1)), to: .init(phase: .collecting, verdict: failure), actions: [.verifyOutputs]),
        Row(from: .init(phase: .collecting, verdict: .success), event: .collected, to: .init(phase: .finalizing, verdict: .success),
            actions: [.cleanup(.success), .writeSummary(.success)]),
        Row(from: .init(phase: .collecting, verdict: failure), event: .collected, to: .init(phase: .finalizing, verdict: failure),
            actions: [.cleanup(failure), .writeSummary(failure)]),
        Row(from: .init(phase: .finalizing, verdict: .success), event: .finalized, to: .init(phase: .succeeded, verdict: .success), actions: []),
        Row(from: .init(phase: .finalizing, verdict: failure), event: .finalized, to: .init(phase: .failed, verdict: failure), actions: []),
        Row(from: .init(phase: .finalizing, verdict: .cancelled), event: .finalized, to: .init(phase: .cancelled, verdict: .cancelled), actions: []),
        // Cancel: tasks are stopped only once some may exist.
        Row(from: .init(phase: .staging), event: .cancelRequested, to: .init(phase: .finalizing, verdict: .cancelled),
            actions: [.cleanup(.cancelled), .writeSummary(.cancelled)]),
        Row(from: .init(phase: .running), event: .cancelRequested, to: .init(phase: .finalizing, verdict: .cancelled),
            actions: [.cancelTasks, .cleanup(.cancelled), .writeSummary(.cancelled)]),
        Row(from: .init(phase: .staging), event: .failed(reason: "input x missing"),
            to: .init(phase: .finalizing, verdict: .failure(reason: "input x missing")),
            actions: [.cleanup(.failure(reason: "input x missing")), .writeSummary(.failure(reason: "input x missing"))]),
    ]

    @Test("each event leads to the expected state and actions", arguments: table)
    func transition(_ row: Row) {
        let t = JobMachine.apply(row.event, to: row.from)
        #expect(t.ignored == nil)
        #expect(t.state == row.to)
        #expect(t.actions == row.actions)
    }

    @Test("terminal states ignore every event", arguments: [JobPhase.succeeded, .failed, .cancelled])
    func terminal(_ phase: JobPhase) {
        let retry: [JobEvent] = phase == .failed ? [] : [.retryRequested]
        for event in [JobEvent.start, .cancelRequested, .failed(reason: "x"), .finalized, .progress(TaskCounts())] + retry {
            let t = JobMachine.apply(event, to: JobState(phase: phase))
            #expect(t.ignored != nil)
            #expect(t.state.phase == phase)
            #expect(t.actions.isEmpty)
        }
    }

    @Test("a failed job reopens for a retry through provisioning and submission (a cloud backend needs a new job for it); nothing else does")
    func retry() {
        let t = JobMachine.apply(.retryRequested, to: JobState(phase: .failed, verdict: .failure(reason: "1 of 2 tasks failed")))
        #expect(t.ignored == nil)
        #expect(t.state == JobState(phase: .provisioning))
        #expect(t.actions == [.provisionPool])
        #expect(JobMachine.apply(.retryRequested, to: JobState(phase: .running)).ignored != nil)
    }

    @Test("events out of order are refused, not applied")
    func outOfOrder() {
        let t = JobMachine.apply(.collected, to: JobState(phase: .staging))
        #expect(t.ignored != nil)
        #expect(t.state.phase == .staging)
        let f = JobMachine.apply(.cancelRequested, to: JobState(phase: .finalizing, verdict: .success))
        #expect(f.ignored != nil)
    }

    @Test("a job runs from accepted to succeeded by the happy path")
    func happyPath() {
        var state = JobState(phase: .accepted)
        let events: [JobEvent] = [.start, .staged, .provisioned, .submitted, .progress(TaskCounts(succeeded: 5)), .collected, .finalized]
        var phases: [JobPhase] = []
        for e in events {
            state = JobMachine.apply(e, to: state).state
            phases.append(state.phase)
        }
        #expect(phases == [.staging, .provisioning, .submitting, .running, .collecting, .finalizing, .succeeded])
    }
}

@Suite("Backoff")
struct BackoffTests {
    @Test func backoffGrowsAndCaps() {
        let b = Backoff(base: 0.5, factor: 2, cap: 30)
        #expect(b.delay(attempt: 0, jitter: 1) == 0.5)
        #expect(b.delay(attempt: 3, jitter: 1) == 4)
        #expect(b.delay(attempt: 50, jitter: 1) == 30)
        #expect(b.delay(attempt: 3, jitter: 0) == 2)
    }
}

@Suite("Poll schedule")
struct PollScheduleTests {
    @Test("quiet polls back off to the cap; a change snaps back to the minimum")
    func backoff() {
        var s = PollSchedule(minInterval: 1, maxInterval: 30, growth: 1.5)
        let quiet = (0..<12).map { _ in s.next(after: .quiet, jitter: 0.5) }
        #expect(quiet.prefix(4) == [1.5, 2.25, 3.375, 5.0625])
        #expect(quiet.last == 30)
        #expect(s.next(after: .changed, jitter: 0.5) == 1)
    }

    @Test("throttling slows down and never cuts a Retry-After short; failures count as quiet, not as news")
    func throttledAndFailed() {
        var s = PollSchedule(minInterval: 1, maxInterval: 30, growth: 1.5)
        #expect(s.next(after: .throttled(retryAfter: 10), jitter: 0) == 10)
        #expect(s.next(after: .throttled(retryAfter: 0), jitter: 0.5) == 20)
        var f = PollSchedule()
        #expect(f.next(after: .failed, jitter: 0.5) == 1.5)
    }

    @Test("a stream of many tasks is polled so that each poll sees about a batch of them end, and its tail half of what is left")
    func batched() {
        var s = PollSchedule(minInterval: 1, maxInterval: 60, growth: 1.5)
        // 10 tasks end per second, 1,900 live: the interval doubles each step until a poll sees about 100 end.
        var waits: [Double] = []
        for _ in 0..<6 { waits.append(s.next(ended: Int(s.interval * 10), live: 1900, batch: 100, jitter: 0.5)) }
        #expect(waits == [2, 4, 8, 10, 10, 10])
        // Nothing ends: it grows as a quiet poll would.
        #expect(s.next(ended: 0, live: 1900, batch: 100, jitter: 0.5) == 15)
        // A burst: it shortens, by at most half a step.
        #expect(s.next(ended: 3000, live: 1900, batch: 100, jitter: 0.5) == 7.5)
        // Near the end, a poll should see half of those still live end (20 of 40).
        #expect(s.next(ended: 5, live: 40, batch: 100, jitter: 0.5) == 15)
        #expect(s.next(ended: 10, live: 4, batch: 100, jitter: 0.5) == 7.5, "two of 4, at most half a step quicker")
        var small = PollSchedule(minInterval: 0.2, maxInterval: 60, growth: 1.5)
        #expect(small.next(ended: 1, live: 2, batch: 100, jitter: 0.5) == 0.2, "a job of three is followed at the minimum")
    }

    @Test func jitterSpreadsByTenPercent() {
        var a = PollSchedule(), b = PollSchedule()
        #expect(a.next(after: .changed, jitter: 0) == 0.9)
        #expect(b.next(after: .changed, jitter: 1) == 1.1)
    }
}
