import BackendLocal
import BatchCore
import BatchStore
import Foundation
import Logging
import ServiceLifecycle

/// Runs every unfinished job, each in its own child task: first those left
/// from before a restart (each reconciles what a crash left behind), then
/// each job the inbox accepts. On graceful shutdown it starts nothing new,
/// gives running tasks `shutdownGrace` to finish, then stops the rest and
/// records them as interrupted (they run again at the next start, without
/// using up a retry).
public actor Supervisor: Service {
    let ctx: JobContext
    private var controls: [String: JobControl] = [:]
    private var draining = false
    private let idle = AsyncEvent<Void>()
    private let queue: AsyncStream<String>
    private let queueInput: AsyncStream<String>.Continuation
    /// Fired once every unfinished job has been reconciled.
    let reconciled = AsyncEvent<Void>()

    init(ctx: JobContext) {
        self.ctx = ctx
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
        for control in controls.values { control.halt.fire(()) }
        guard !controls.isEmpty else { return }
        ctx.logger.info("shutting down: waiting for running tasks", metadata: ["jobs": "\(controls.count)", "grace": "\(HumanDuration.format(ctx.config.shutdownGrace))"])
        let allDone = await idle.wait(timeout: ctx.config.shutdownGrace) != nil
        if !allDone {
            ctx.logger.warning("grace period over: stopping running tasks", metadata: ["jobs": "\(controls.count)"])
            for control in controls.values { control.stop.fire(.shutdown) }
        }
    }

    /// Cancels a job by id or name.
    func cancel(_ idOrName: String) async throws -> JobRecord {
        guard let job = try await ctx.store.job(idOrName) else { throw DaemonError("no job '\(idOrName)'") }
        if job.jobPhase.isTerminal { throw DaemonError("job \(job.id) has already \(job.phase)") }
        try await ctx.store.requestCancel(job.id)
        controls[job.id]?.cancel()
        var log = ctx.logger
        log[metadataKey: "job.id"] = "\(job.id)"
        log.info("cancel requested")
        return job
    }
}
