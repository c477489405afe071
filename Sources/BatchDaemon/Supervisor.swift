import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Runs every unfinished job, each in its own child task: first those left
/// from before a restart (each reconciles what a crash left behind), then
/// each job the inbox accepts. On graceful shutdown it starts nothing new,
/// gives running tasks `shutdownGrace` to finish, then stops the rest and
/// records them as interrupted (they run again at the next start, without
/// using up a retry).
public actor Supervisor: Service {
    let ctx: JobContext
    private var controls: [String: JobControl] = [:]
    /// Jobs whose `batchctl retry` is under way (its backend step awaits).
    private var retriesUnderWay = Set<String>()
    private var draining = false
    private let idle = AsyncEvent<Void>()
    /// The settings that may change on reload.
    private var config: DaemonConfig
    /// Who may do what over the control socket, under the current config.
    var authority: ControlAuthority { ControlAuthority(operators: config.operators) }
    private let queue: AsyncStream<String>
    private let queueInput: AsyncStream<String>.Continuation
    /// Fired once every unfinished job has been reconciled.
    let reconciled = AsyncEvent<Void>()

    init(ctx: JobContext) {
        self.ctx = ctx
        self.config = ctx.config
        (queue, queueInput) = AsyncStream.makeStream(of: String.self)
    }

    /// Hands an accepted job to the supervisor.
    nonisolated func enqueue(_ jobID: String) { queueInput.yield(jobID) }

    /// Jobs with a runner now.
    var activeJobs: [String] { controls.keys.sorted() }

    /// Runs until graceful shutdown, then drains.
    public func run() async throws {
        let unfinished = try await ctx.store.unfinishedJobs()
        await withDiscardingTaskGroup { group in
            for job in unfinished { launch(job.id, in: &group) }
            for control in controls.values { _ = await control.reconciled.wait() }
            ctx.logger.info("unfinished jobs reconciled", metadata: ["jobs": "\(unfinished.count)"])
            reconciled.fire(())
            for await id in queue.cancelOnGracefulShutdown() { launch(id, in: &group) }
            await drain()
        }
        ctx.logger.info("supervisor stopped")
    }

    private func launch(_ id: String, in group: inout DiscardingTaskGroup) {
        guard controls[id] == nil else { return }
        let control = JobControl()
        controls[id] = control
        let runner = JobRunner(ctx: ctx, jobID: id, control: control)
        group.addTask {
            await runner.run()
            await self.finished(id)
        }
    }

    private func finished(_ id: String) {
        controls[id] = nil
        if draining && controls.isEmpty { idle.fire(()) }
    }

    private func drain() async {
        draining = true
        for control in controls.values { control.shutDown() }
        guard !controls.isEmpty else { return }
        ctx.logger.info("shutting down: waiting for running tasks", metadata: ["jobs": "\(controls.count)", "grace": "\(HumanDuration.format(config.shutdownGrace))"])
        let allDone = await idle.wait(timeout: config.shutdownGrace) != nil
        if !allDone {
            ctx.logger.warning("grace period over: stopping running tasks", metadata: ["jobs": "\(controls.count)"])
            for control in controls.values { control.stop.fire(.shutdown) }
        }
    }

    /// A job by id, or by name among the requester's own (an operator's
    /// names mean anyone's): another's job of the same name is not theirs.
    func find(_ idOrName: String, for requester: Requester?, authority: ControlAuthority?) async throws -> JobRecord? {
        if let authority, let scope = authority.visible(to: requester) { return try await ctx.store.job(idOrName, submitter: scope) }
        return try await ctx.store.job(idOrName)
    }

    /// Runs a failed job's failed tasks again (each with its retries back),
    /// asked by `requester` (named in the job's journal story).
    func retry(_ idOrName: String, by requester: Requester? = nil, authority: ControlAuthority? = nil) async throws -> (JobRecord, Int) {
        guard let job = try await find(idOrName, for: requester, authority: authority) else { throw DaemonError("no job '\(idOrName)'") }
        if let refusal = authority?.refusal(requester, "retry", job) { throw DaemonError(refusal) }
        guard controls[job.id] == nil else { throw DaemonError("job \(job.id) is still \(job.phase.rawValue)") }
        let backend = ctx.backends.forJob(job.backend)
        guard backend.canRetry else {
            throw DaemonError("retry is not supported for jobs on \(job.backend.rawValue) yet: submit the manifest again (inputs already uploaded are not sent twice)")
        }
        let t = JobMachine.apply(.retryRequested, to: job.state)
        guard t.ignored == nil else {
            throw DaemonError("job \(job.id) has \(job.phase); only a failed job can be retried")
        }
        let pruned = try await ctx.store.prunedInputs(job.id)
        guard pruned == 0 else {
            throw DaemonError("\(pruned) of job \(job.id)'s inputs were removed from the input store by `batchctl files prune`: submit the manifest again")
        }
        // The backend may take a while (Azure deletes the ended Batch job): one retry of a job at a time.
        guard retriesUnderWay.insert(job.id).inserted else { throw DaemonError("job \(job.id) is being retried already") }
        defer { retriesUnderWay.remove(job.id) }
        try await backend.prepareRetry(job)
        if job.spec.merge != nil { try await OutputMerger.reset(ctx.store, job.id) }
        let n = try await ctx.store.reopenFailedTasks(job.id, t.state)
        var log = ctx.logger
        log[metadataKey: "job.id"] = "\(job.id)"
        log.notice("job retried", metadata: requesterMetadata(requester).merging(["tasks": "\(n)"]) { $1 })
        enqueue(job.id)
        return (job, n)
    }

    /// Cancels a job by id or name, asked by `requester` (named in the
    /// job's journal story: `journalctl BATCHD_JOB=<id>` tells who ended it).
    func cancel(_ idOrName: String, by requester: Requester? = nil, authority: ControlAuthority? = nil) async throws -> JobRecord {
        guard let job = try await find(idOrName, for: requester, authority: authority) else { throw DaemonError("no job '\(idOrName)'") }
        if let refusal = authority?.refusal(requester, "cancel", job) { throw DaemonError(refusal) }
        if job.phase.isTerminal { throw DaemonError("job \(job.id) has already \(job.phase)") }
        try await ctx.store.requestCancel(job.id)
        let control = controls[job.id]
        control?.cancel()
        var log = ctx.logger
        log[metadataKey: "job.id"] = "\(job.id)"
        // With no runner (the job is queued), the runner sees the request when it starts.
        log.notice("cancel requested", metadata: requesterMetadata(requester).merging(["runner": "\(control == nil ? "none" : "signalled")"]) { $1 })
        return job
    }

    /// Who asked, as journal fields: BATCHD_REQUESTER_UID and
    /// BATCHD_REQUESTER_USER (the uid's name, or its number when it has none).
    func requesterMetadata(_ requester: Requester?) -> Logger.Metadata {
        guard let requester else { return ["requester.uid": "unknown"] }
        return ["requester.uid": "\(requester.uid)", "requester.user": "\(requester.name ?? "uid \(requester.uid)")"]
    }

    /// The line systemd shows: `2 jobs active · 120/400 tasks done · 4/8 slots busy`.
    func statusLine() async -> String {
        let (used, limit) = ctx.slots.usage
        guard !controls.isEmpty else { return "Idle · \(limit) slots · waiting for manifests in \(config.inboxDirectory)" }
        var done = 0, total = 0
        for id in controls.keys {
            if let c = try? await ctx.store.counts(id) {
                done += c.succeeded + c.failed + c.cancelled
                total += c.total
            }
        }
        let jobs = controls.count == 1 ? "1 job active" : "\(controls.count) jobs active"
        return "\(jobs) · \(done)/\(total) tasks done · \(used)/\(limit) slots busy"
    }

    /// Answers if the supervisor's actor runs and the database can be read.
    func heartbeat() async -> Bool {
        (try? await ctx.store.jobs(limit: 1)) != nil
    }

    /// Test hook (config `debug.allowStall`): blocks the supervisor's actor,
    /// as a hang would.
    func stall(seconds: Double) {
        ctx.logger.warning("supervisor stalled on request", metadata: ["seconds": "\(seconds)"])
        Thread.sleep(forTimeInterval: seconds)
    }

    /// Whether the stall hook is on.
    var allowsStall: Bool { config.debug.allowStall }

    /// Applies a reloaded config: what can change live changes now; the rest
    /// is named as needing a restart.
    func apply(_ next: DaemonConfig, cores: Int) -> (applied: [String], needRestart: [String]) {
        var applied: [String] = []
        if next.slotCount(cores: cores) != config.slotCount(cores: cores) {
            ctx.slots.resize(next.slotCount(cores: cores))
            applied.append("local.slots=\(next.slotCount(cores: cores))")
        }
        if next.shutdownGrace != config.shutdownGrace { applied.append("shutdownGrace") }
        if next.debug != config.debug { applied.append("debug") }
        let restart = next.restartOnlyChanges(from: config)
        config = next.keepingRestartOnlySettings(of: config)
        return (applied, restart)
    }
}
