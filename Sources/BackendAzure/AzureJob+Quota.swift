import BatchBackend
import BatchControl
import BatchCore
import BatchSupport
import Foundation

extension AzureJob {
    /// Quotas a job's submission may meet (an auto-pool counts as a pool).
    static let submitQuotas = ["ActiveJobAndScheduleQuotaReached", "PoolQuotaReached"]
    /// Quotas making a named pool may meet.
    static let poolQuotas = ["PoolQuotaReached"]

    /// An `azureStep` that one of the account's `quotas` may refuse (409):
    /// the job then waits its turn in the account's `QuotaQueue`, in the
    /// order jobs were accepted, shown on the job as "waiting for Azure
    /// quota: ActiveJobAndScheduleQuotaReached, 2 jobs ahead", and tries
    /// again when capacity may have freed. A job behind one that waits does
    /// not try before it. The wait counts against `limits.wallClock`, from
    /// acceptance: past it, the job fails with the limit's words.
    func underQuota<T: Sendable>(_ what: String, quotas: [String], _ body: @Sendable () async throws -> T) async -> Result<T, Error>? {
        let queue = az.quota, order = job.createdAt, id = jobID
        let limits = JobLimits(handle.spec.limits, acceptedAt: job.createdAt, used: 0)
        var refusedBy: String?
        var wait = Self.firstQuotaWait
        func leaveAll() async { for q in quotas { await queue.leave(q, id) } }
        while true {
            for q in quotas {
                let ahead = await queue.ahead(q, id, order: order)
                if refusedBy == q || ahead > 0 {
                    log.info("waiting for Azure quota", metadata: ["quota": "\(q)", "jobs.ahead": "\(ahead)", "step": "\(what)"])
                    await handle.noteRetrying(what, Self.quotaWords(q, ahead: ahead))
                }
                let left = limits.deadline.map { $0 - handle.clock() } ?? .infinity
                guard await queue.turn(q, id, order: order, refused: q == refusedBy, wait: max(0.01, min(wait, left)), stop: control.halt) else {
                    await leaveAll()
                    await handle.clearRetrying(what)
                    return nil
                }
            }
            if let refusal = limits.refusal(at: handle.clock()) {
                await leaveAll()
                await handle.clearRetrying(what)
                return .failure(QuotaWaitEnded(reason: refusal, quota: refusedBy ?? quotas[0]))
            }
            switch await azureStep(what, body) {
            case .failure(let e as BatchServiceError)? where e.status == 409 && quotas.contains(e.code):
                if refusedBy != nil { wait = min(wait * 2, Self.longestQuotaWait) }
                refusedBy = e.code
            case let result:
                await leaveAll()
                if refusedBy != nil { await handle.clearRetrying(what) }
                return result
            }
        }
    }

    /// The first wait, without word, before the first in a quota's queue tries again; doubled each time.
    static let firstQuotaWait: Double = 30
    static let longestQuotaWait: Double = 300

    static func quotaWords(_ quota: String, ahead: Int) -> String {
        "waiting for Azure quota: \(quota), \(ahead) job\(ahead == 1 ? "" : "s") ahead"
    }

    /// The job's wall clock ran out while it waited for a quota.
    struct QuotaWaitEnded: Error, CustomStringConvertible {
        let reason: String
        let quota: String
        var description: String { "\(reason) while waiting for Azure quota (\(quota))" }
    }
}

extension AzureJob {
    /// Why Batch completed a Batch job with an auto-pool before its tasks
    /// were in: the pool could not be made (the job's `schedulingError`, as
    /// the spec says). The pool quota is waited for: the Batch job is deleted
    /// so that its id can be made again at the job's turn, and the refusal is
    /// the 409 `underQuota` waits on. Anything else fails the job with the
    /// service's words. nil when the Batch job says no such thing.
    func autoPoolRefusal(_ batchJobId: String) async throws -> Error? {
        guard let j = try await az.batch.job(batchJobId),
              let e = (j["executionInfo"] as? [String: Any])?["schedulingError"] as? [String: Any] else { return nil }
        let code = e["code"] as? String ?? "", message = e["message"] as? String ?? ""
        if Self.submitQuotas.contains(code) {
            _ = try await az.batch.deleteJob(batchJobId)
            return BatchServiceError(status: 409, code: code, message: message, operation: "make the auto-pool")
        }
        return DaemonError("Batch could not make the job's auto-pool: \(AzureRules.serviceWords("\(code): \(message)"))")
    }
}

extension AzureAdapter {
    /// The job's pool has no node because the account's core quota is full:
    /// it waits its turn for cores in the account's `QuotaQueue` (in the
    /// order jobs were accepted, shown on the job), instead of failing after
    /// `azure.poolFailureGrace`; `limits.wallClock` still counts. At its turn
    /// (when one of this daemon's pools or Batch jobs goes, or after 30 s
    /// doubling to 5 min without word) the pool is resized to its target
    /// again: the service does not retry a resize by itself. The job keeps
    /// its place until the pool has nodes (`leaveCoreQuota`), or the next
    /// quiet poll finds it still short and it waits again.
    func coreQuota(_ pool: String, _ code: String, _ words: String) async -> [TaskReport] {
        let (queue, order, id, job) = (az.az.quota, az.job.createdAt, az.jobID, az)
        let ahead = await queue.ahead(code, id, order: order)
        await handle.noteRetrying(Self.runStep, "\(AzureJob.quotaWords(code, ahead: ahead)); \(words)")
        let wait: Double? = state.withLock { box in
            box.s.poolTroubleSince = nil   // the grace is for a pool that cannot recover
            guard box.s.coreQuotaTurn == nil else { return nil }
            box.s.coreQuota = code
            defer { box.s.coreQuotaWait = min(box.s.coreQuotaWait * 2, AzureJob.longestQuotaWait) }
            return box.s.coreQuotaWait
        }
        guard let wait else { return [] }
        log.info("waiting for Azure quota", metadata: ["quota": "\(code)", "jobs.ahead": "\(ahead)", "pool.id": "\(pool)"])
        // The wait ends at its turn, or when the job halts or leaves the queue.
        let stop = AsyncEvent<Void>()
        let halted = job.control.halt.observe { _ in stop.fire(()) }
        let turn = Task {
            defer {
                job.control.halt.unobserve(halted)
                state.withLock { $0.s.coreQuotaTurn = nil }
            }
            guard await queue.turn(code, id, order: order, refused: true, wait: wait, stop: stop), stop.value == nil else { return }
            let grown = await job.azureStep("grow pool \(pool) again") { () -> Int in
                guard let p = try await job.az.batch.pool(pool) else { return 0 }
                let (dedicated, spot) = (p["targetDedicatedNodes"] as? Int ?? 0, p["targetLowPriorityNodes"] as? Int ?? 0)
                try await job.az.batch.resizePool(pool, dedicated: dedicated, spot: spot)
                return dedicated + spot
            }
            if case .success(let n)? = grown, n > 0 {
                log.info("pool resized again after waiting for Azure quota", metadata: ["pool.id": "\(pool)", "quota": "\(code)", "pool.nodes": "\(n)"])
            }
        }
        state.withLock { box in
            box.s.coreQuotaTurn = turn
            box.s.coreQuotaStop = stop
        }
        return []
    }

    /// The pool has nodes again (or the run is over): the job leaves the
    /// core quota's queue, and the next in line may try.
    func leaveCoreQuota() async {
        guard let (code, stop) = state.withLock({ box -> (String, AsyncEvent<Void>?)? in
            guard let code = box.s.coreQuota else { return nil }
            defer { box.s.coreQuota = nil; box.s.coreQuotaStop = nil; box.s.coreQuotaWait = AzureJob.firstQuotaWait }
            return (code, box.s.coreQuotaStop)
        }) else { return }
        stop?.fire(())
        await az.az.quota.leave(code, az.jobID)
    }
}
