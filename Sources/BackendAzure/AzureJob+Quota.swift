import BatchCore
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
