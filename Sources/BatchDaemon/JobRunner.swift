import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging

/// Drives one job through the state machine: applies an event, saves the new
/// state, has the job's backend perform the actions, and feeds the result
/// back. The machine decides (`JobMachine.next`) what a step's result means
/// under a cancel or a shutdown; the runner only carries it out. Returns when
/// the job is over, or when the daemon shuts down (the job then resumes from
/// its saved phase at the next start).
struct JobRunner: Sendable {
    let ctx: JobContext
    let jobID: String
    let control: JobControl

    var log: Logger {
        var l = ctx.logger
        l[metadataKey: "job.id"] = "\(jobID)"
        return l
    }

    func run() async {
        defer { control.reconciled.fire(()) }
        guard let job = await retrying("load the job", { try await ctx.store.job(jobID) }) ?? nil else { return }
        let spec = job.spec
        let handle = JobHandle(job: job, spec: spec, store: ctx.store, control: control, logger: ctx.logger,
                               jobsDirectory: ctx.config.jobsDirectory, policy: ctx.policy(spec), clock: ctx.clock)
        await drive(handle)
    }

    func drive(_ job: JobHandle) async {
        if job.job.cancelRequested { control.cancel() }
        var state = job.job.state
        if state.phase != .running || control.isCancelled { control.reconciled.fire(()) }
        guard case .apply(var event) = JobMachine.next(.start, signal: control.signal, phase: state.phase) else { return }
        while !state.phase.isTerminal {
            let t = JobMachine.apply(event, to: state)
            if let why = t.ignored {
                log.error("state machine refused an event", metadata: ["reason": "\(why)"])
                return
            }
            if t.state != state {
                let message = t.state.phase.isTerminal ? terminalMessage(t.state) : nil
                guard await retrying("save the job's phase", { try await ctx.store.setPhase(jobID, t.state, message: message) }) != nil else { return }
                state = t.state
                logPhase(t.state)
            }
            if state.phase.isTerminal { return }
            var result: JobEvent? = nil
            for action in t.actions {
                result = await perform(action, job)
                if control.isShuttingDown { break }
            }
            switch JobMachine.next(result, signal: control.signal, phase: state.phase) {
            case .suspend: return
            case .apply(let e): event = e
            }
        }
    }

    /// Performs one action through the job's backend (or the steps every
    /// backend shares); the event its result means, nil if none. Each step
    /// passes the crash points `<step>.begin` (its phase is saved) and
    /// `<step>.done` (its side effect made, its result not yet saved).
    func perform(_ action: JobAction, _ job: JobHandle) async -> JobEvent? {
        let backend = ctx.backends.forJob(job.job.backend)
        let step = action.stepName
        job.crashPoint("\(step).begin")
        var result: StepResult = .done
        var counts: TaskCounts?
        switch action {
        case .stageInputs:
            await ctx.gate.enter()
            result = await backend.stage(job)
            await ctx.gate.leave()
        case .provisionPool: result = await backend.provision(job)
        case .submitTasks: result = await backend.submit(job)
        case .monitorTasks:
            let merging = mergeWhileRunning(job)
            result = await backend.monitor(job)
            merging?.cancel()
            await merging?.value
            if result == .done {
                counts = await job.counts()
                if counts == nil { result = .interrupted }
            }
        case .cancelTasks: await backend.cancel(job)
        case .verifyOutputs: result = await verifyOutputs(job)
        case .cleanup(let verdict):
            await backend.cleanup(job, verdict)
            cleanup(job, backend, verdict)
        case .writeSummary(let verdict): await writeSummary(job.job, verdict)
        }
        if result != .interrupted { job.crashPoint("\(step).done") }
        return JobMachine.event(for: action, result, counts: counts)
    }

    func logPhase(_ state: JobState) {
        var metadata: Logger.Metadata = ["job.phase": "\(state.phase.rawValue)"]
        if let reason = state.verdict?.reason { metadata["reason"] = "\(reason)" }
        switch state.phase {
        case .succeeded: metadata["message.id"] = "\(MessageID.jobSucceeded)"
        case .failed: metadata["message.id"] = "\(MessageID.jobFailed)"
        case .cancelled: metadata["message.id"] = "\(MessageID.jobCancelled)"
        default: break
        }
        log.log(level: state.phase.isTerminal ? .notice : .info,
                state.phase.isTerminal ? "job \(state.phase.rawValue)" : "job phase changed", metadata: metadata)
    }

    func terminalMessage(_ state: JobState) -> String {
        switch state.verdict {
        case .failure(let reason)?: return "job failed: \(reason)"
        case .cancelled?: return "job cancelled"
        default: return "job succeeded"
        }
    }

    /// Retries a database step with backoff until it works or the daemon stops.
    func retrying<T: Sendable>(_ what: String, _ body: @Sendable () async throws -> T) async -> T? {
        await DatabaseRetry.run(what, log: log, control: control, body)
    }
}
