import BatchBackend
import BatchCore
import BatchStore
import Foundation

/// The Batch jobs of one run: when the current one has ended because every
/// task in it completed (Batch ends it, `terminatejob`) while some must run
/// again (an upload failed, outputs were taken away, a task was deleted),
/// they go to the next Batch job (`-r<n>`), and the tasks the ended one
/// still owes are reported from it.
extension AzureAdapter {
    /// Follows Batch job `id`, whose open tasks are `open`: what the poller
    /// says of it comes on the feed the poll reads.
    func follow(_ id: String, open: Set<String>) async {
        let updates = await az.az.poller.watch(id, open: open)
        guard let sink = state.withLock({ $0.s.sink }) else { return }
        let forwarder = Task {
            for await u in updates { sink.yield(.update(id, u)) }
            sink.yield(.gone(id))
        }
        state.withLock { $0.s.forwarders.append(forwarder) }
    }

    /// Starts the next Batch job with these tasks, when the current one
    /// ended because all its tasks completed (else the job fails: it was
    /// ended outside batchd). In an order a crash cannot spoil: the next
    /// Batch job is made (an existing one of this job counts as made), then
    /// recorded, then given the tasks; the open tasks of the ended one, all
    /// completed there, are reported from it.
    func nextBatchJob(_ records: [TaskRecord], after old: AzureJobRecord, lifetime: SASLifetime, inputs: [InputRecord]) async -> Launched {
        let ended = old.batchJobId
        let reason: String??
        switch await az.azureStep("read Batch job \(ended)", { try await az.az.batch.job(ended).map { Self.terminateReason($0) } }) {
        case nil: return .interrupted
        case .failure(let e)?: return .failed(reason: "cannot read Batch job \(ended): \(e)")
        case .success(let r)?: reason = r
        }
        guard case .some(.some("AllTasksComplete")) = reason else {
            let words = reason.flatMap { $0 }.map { "terminateReason: \(AzureRules.serviceWords($0))" } ?? "it no longer exists"
            return .failed(reason: "\(records.count) task(s) must run again (\(Self.why(records))) but Batch job \(ended) was ended outside batchd "
                           + "(\(words)); `batchctl retry` runs them in a new Batch job")
        }
        // What the ended job owes: its open tasks not yet reported. Every
        // task in it completed; one not there was deleted (vanished).
        let owed = state.withLock { Set($0.s.open.keys) }
        var carried: [TaskSnapshot] = []
        if !owed.isEmpty {
            guard let found = await completed(in: ended, owed) else { return .interrupted }
            carried = found
            for id in owed.subtracting(found.map(\.id)).sorted() {
                carried.append(TaskSnapshot(id: id, state: "vanished", transitionTime: ""))
            }
        }
        var next = old
        next.batchJobId = old.nextBatchJobId
        next.retired = old.batchJobs
        if next.autoPool { next.poolId = nil }
        let made = await make(next)
        switch made {
        case nil: return .interrupted
        case .failure(let e)?: return .failed(reason: "cannot start Batch job \(next.batchJobId) for the tasks that must run again: \(e)")
        case .success(let refusal?)?: return .failed(reason: refusal)
        case .success(nil)?: break
        }
        guard await handle.saveAzureRecord(next) != nil else { return .interrupted }
        state.withLock { $0.s.record = next }
        log.notice("next Batch job started: the last one ended with tasks to run again",
                   metadata: ["batch.job": "\(next.batchJobId)", "batch.job.ended": "\(ended)", "tasks": "\(records.count)"])
        switch await add(records, to: next, lifetime: lifetime, inputs: inputs, ranThere: false) {
        case nil: return .interrupted
        case .failure(let e)?: return .failed(reason: "cannot add tasks to Batch job \(next.batchJobId): \(e)")
        case .success(let refusal?)?: return .failed(reason: refusal)
        case .success(nil)?: break
        }
        let id = next.batchJobId
        let done = await az.azureStep("let Batch job \(id) end when its tasks do") {
            try await az.az.batch.updateJob(id, BatchBodies.terminateWhenDone)
        }
        if done == nil { return .interrupted }
        if next.autoPool, case .success(let pool?)? = await az.azureStep("read the job", { try await az.az.autoPoolID(id) }) {
            next.poolId = pool
            guard await handle.saveAzureRecord(next) != nil else { return .interrupted }
            state.withLock { $0.s.record = next }
        }
        let live = opened(records)
        await follow(next.batchJobId, open: Set(records.map(\.taskId)))
        await az.az.poller.unwatch(ended)
        if !carried.isEmpty { _ = state.withLock { $0.s.sink?.yield(.update(next.batchJobId, .tasks(carried))) } }
        return .launched(live, waiters: [])
    }

    /// Makes the Batch job `rec` names (as `submit` does, waiting for the
    /// account's quota); why not, when one of that name is not this job's.
    func make(_ rec: AzureJobRecord) async -> Result<String?, Error>? {
        let (job, spec, defaults) = (az, handle.spec, az.az.poolDefaults)
        return await az.underQuota("start Batch job \(rec.batchJobId)", quotas: AzureJob.submitQuotas) { () -> String? in
            let body = BatchBodies.job(id: rec.batchJobId, batchdJob: job.jobID, owner: job.az.owner, poolID: rec.autoPool ? nil : rec.poolId,
                                       spec: spec.pool, defaults: defaults, wallClockSeconds: rec.wallClockSeconds, retries: job.job.retries)
            if !(try await job.az.batch.createJob(body)) {
                guard let existing = try await job.az.batch.job(rec.batchJobId),
                      BatchBodies.metadata(existing)[BatchBodies.jobKey] == job.jobID else {
                    return "a Batch job named \(rec.batchJobId) exists and is not this job's; delete it, then `batchctl retry`"
                }
            }
            // An auto-pool Batch cannot make completes the job at once.
            if rec.autoPool, let refusal = try await job.autoPoolRefusal(rec.batchJobId) { throw refusal }
            return nil
        }
    }

    static func terminateReason(_ job: [String: Any]) -> String? {
        guard let state = job["state"] as? String, state == "completed" || state == "terminating" else { return nil }
        return (job["executionInfo"] as? [String: Any])?["terminateReason"] as? String ?? ""
    }

    /// After a restart with earlier Batch jobs: the open tasks that are not
    /// in the current Batch job but completed in an earlier one (their ends
    /// not recorded yet), as the poller would report them; nil on shutdown.
    func carriedOver(_ open: Set<String>) async -> [TaskSnapshot]? {
        let rec = record
        let listed = await az.azureStep("list the tasks of Batch job \(rec.batchJobId)") {
            Set(try await az.az.batch.tasks(rec.batchJobId, select: ["id"]).compactMap { $0["id"] as? String })
        }
        switch listed {
        case nil: return nil
        case .failure(let e)?:
            log.warning("cannot list the Batch job's tasks", metadata: ["batch.job": "\(rec.batchJobId)", "error": "\(e)"])
            return []
        case .success(let present)?:
            var missing = open.subtracting(present)
            var found: [TaskSnapshot] = []
            for earlier in (rec.retired ?? []).reversed() where !missing.isEmpty {
                guard let got = await completed(in: earlier, missing) else { return nil }
                found += got
                missing.subtract(got.map(\.id))
            }
            // What is nowhere, the poller finds vanished from the current one.
            return found
        }
    }

    /// The completed tasks among `ids` in Batch job `jobID` (none when it
    /// is gone); nil on shutdown.
    func completed(in jobID: String, _ ids: Set<String>) async -> [TaskSnapshot]? {
        let listed = await az.azureStep("list the completed tasks of Batch job \(jobID)") {
            try await az.az.batch.tasks(jobID, filter: "state eq 'completed'", select: TaskPoller.fields).compactMap(TaskPoller.snapshot)
        }
        switch listed {
        case nil: return nil
        case .failure(let e)?:
            log.warning("cannot list the tasks of an ended Batch job", metadata: ["batch.job": "\(jobID)", "error": "\(e)"])
            return []
        case .success(let all)?: return all.filter { ids.contains($0.id) }
        }
    }
}
