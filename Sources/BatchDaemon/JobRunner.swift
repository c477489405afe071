import BatchControl
import BatchCore
import BatchStore
import Foundation
import Logging

/// Drives one job through the state machine: applies an event, saves the new
/// state, performs the actions, and feeds their result back as the next event.
/// Returns when the job is over, or when the daemon shuts down (the job then
/// resumes from its saved phase at the next start).
struct JobRunner: Sendable {
    let ctx: JobContext
    let jobID: String
    let control: JobControl
    /// The job's backend, once its row is read.
    var backend = ""

    init(ctx: JobContext, jobID: String, control: JobControl) {
        self.ctx = ctx
        self.jobID = jobID
        self.control = control
    }

    var log: Logger {
        var l = ctx.logger
        l[metadataKey: "job.id"] = "\(jobID)"
        l[metadataKey: "backend"] = "\(backend)"
        return l
    }

    func run() async {
        guard let job = await retrying("load the job", { try await ctx.store.job(jobID) }) ?? nil else {
            control.reconciled.fire(())
            return
        }
        var runner = self
        runner.backend = job.backend.rawValue
        await runner.drive(job)
    }

    func drive(_ job: JobRecord) async {
        defer { control.reconciled.fire(()) }
        if job.cancelRequested { control.cancel() }
        var state = job.state
        var event: JobEvent = .start
        var cancelHandled = false
        if state.phase != .running || control.isCancelled { control.reconciled.fire(()) }
        while !state.phase.isTerminal {
            if control.isCancelled, !cancelHandled, state.phase != .finalizing {
                cancelHandled = true
                event = .cancelRequested
            }
            let t = JobMachine.apply(event, to: state)
            if let why = t.ignored {
                log.error("state machine refused an event", metadata: ["reason": "\(why)"])
                return
            }
            if t.state != state {
                let message = t.state.phase.isTerminal ? terminalMessage(t.state) : nil
                guard await retrying("save the job's phase", { try await ctx.store.setPhase(jobID, t.state, message: message) }) != nil else { return }
                state = t.state
                var metadata: Logger.Metadata = ["job.phase": "\(t.state.phase.rawValue)"]
                if let reason = t.state.verdict?.reason { metadata["reason"] = "\(reason)" }
                switch t.state.phase {
                case .succeeded: metadata["message.id"] = "\(MessageID.jobSucceeded)"
                case .failed: metadata["message.id"] = "\(MessageID.jobFailed)"
                case .cancelled: metadata["message.id"] = "\(MessageID.jobCancelled)"
                default: break
                }
                log.log(level: t.state.phase.isTerminal ? .notice : .info,
                        t.state.phase.isTerminal ? "job \(t.state.phase.rawValue)" : "job phase changed", metadata: metadata)
            }
            if state.phase.isTerminal { return }
            guard let next = await perform(t.actions, job: job) else { return }
            event = next
        }
    }

    func terminalMessage(_ state: JobState) -> String {
        switch state.verdict {
        case .failure(let reason)?: return "job failed: \(reason)"
        case .cancelled?: return "job cancelled"
        default: return "job succeeded"
        }
    }

    /// Performs actions in order; the last one's event is the next event. Nil
    /// when the daemon is shutting down. (Every non-terminal state has actions.)
    func perform(_ actions: [JobAction], job: JobRecord) async -> JobEvent? {
        var next: JobEvent = .start
        let backend = ctx.backends.forJob(job.backend)
        for action in actions {
            switch action {
            case .stageInputs:
                next = await backend.stage(job, self)
            case .provisionPool:
                next = await backend.provision(job, self)
            case .submitTasks:
                next = await backend.submit(job, self)
            case .monitorTasks:
                guard let e = await backend.monitor(job, self) else { return nil }
                next = e
            case .cancelTasks:
                await backend.cancel(job, self)
            case .verifyOutputs:
                next = await verifyOutputs(job)
            case .cleanup(let verdict):
                await backend.cleanup(job, verdict, self)
                cleanup(job, verdict)
            case .writeSummary(let verdict):
                await writeSummary(job, verdict)
                next = .finalized
            }
            if control.isShuttingDown { return nil }
        }
        return next
    }

    /// Retries a database step with backoff until it works or the daemon
    /// stops: a full disk or a locked file is transient, and giving up would
    /// lose the record of work that happened.
    func retrying<T: Sendable>(_ what: String, _ body: @Sendable () async throws -> T) async -> T? {
        var attempt = 0
        while true {
            do { return try await body() } catch {
                // A cancelled Swift task (a runner's child, when the job is
                // halted) makes every database call throw: stop, don't spin.
                if Task.isCancelled { return nil }
                log.error("database step failed; will retry", metadata: ["step": "\(what)", "error": "\(error)"])
                let delay = Backoff(base: 0.2, factor: 2, cap: 10).delay(attempt: attempt, jitter: Double.random(in: 0...1))
                attempt += 1
                if control.isShuttingDown { return nil }
                try? await Task.sleep(for: .seconds(delay))
            }
        }
    }
}
