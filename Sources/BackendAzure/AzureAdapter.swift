import BatchControl
import BatchAccess
import BatchBackend
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Azure's part of the running phase: the Batch job's tasks, followed
/// through the account's poller (one for every job); a completed task's
/// logs and outputs downloaded as soon as it completes. Batch retries a task
/// itself (`maxTaskRetryCount`), so what it reports is the task's end.
/// After a restart the first poll lists every task past `active`, so what
/// finished meanwhile is recorded too.
final class AzureAdapter: TaskAdapter {
    let az: AzureJob
    /// The bytes moved when the run began.
    let base: TransferProgress
    /// What the poller says of one of the job's Batch jobs, or that it
    /// stopped saying anything of it (unwatched, or found deleted).
    enum Feed: Sendable {
        case update(String, PollUpdate)
        case gone(String)
    }
    struct State {
        /// The job's Azure record: its current Batch job.
        var record: AzureJobRecord
        /// What the poller says of the Batch jobs followed, one stream for
        /// the poll (`follow`), and the tasks that pass it on.
        var feed: AsyncStream<Feed>.Iterator?
        var sink: AsyncStream<Feed>.Continuation?
        var forwarders: [Task<Void, Never>] = []
        /// Since when Azure has refused batchd's credentials polling this job.
        var refusedSince: ContinuousClock.Instant?
        /// Since when the job's pool has been unable to run any task.
        var poolTroubleSince: ContinuousClock.Instant?
        var ticker: Task<Void, Never>?
        /// Tasks ended so far (for the choice of one listing or one per task).
        var ended = 0
        /// The output container's blobs of tasks that just completed, when
        /// their batch made one listing; then what each task's logs step found.
        var listed: [String: [String: BlobProperties]] = [:]
        var blobs: [String: [String: BlobProperties]] = [:]
        /// The open tasks, by Batch task id (the poller reports each change once).
        var open: [String: LiveAttempt] = [:]
        /// Tasks the phase stopped (a limit): their end is a cancel.
        var killed: Set<String> = []
        /// The core quota the job's pool waits for, the wait for its turn
        /// under way, and how long the first in line waits without word.
        var coreQuota: String?
        var coreQuotaTurn: Task<Void, Never>?
        var coreQuotaStop: AsyncEvent<Void>?
        var coreQuotaWait = AzureJob.firstQuotaWait
    }
    let state: Locked<StateBox>
    final class StateBox: @unchecked Sendable {
        var s: State
        init(_ s: State) { self.s = s }
    }

    init(_ az: AzureJob, record: AzureJobRecord, base: TransferProgress, ended: Int) {
        self.az = az
        self.base = base
        let box = StateBox(State(record: record))
        box.s.ended = ended
        state = Locked(box)
    }

    /// The job's Azure record as it is now (a new Batch job changes it).
    var record: AzureJobRecord { state.withLock { $0.s.record } }

    var handle: JobHandle { az.handle }
    var log: Logger { az.log }

    var traits: AdapterTraits {
        AdapterTraits(retriedByService: AzureRules.retriedByService, coresPerTask: az.az.coresPerTask(handle.spec.pool), launchBatch: 100,
                      throttledByPhase: false, polls: true, endWidth: az.az.settings.concurrency)
    }

    /// Every open task is in the Batch job: all live, numbered when they end.
    func resume() async -> Resumed? {
        guard let tasks = await handle.tasks() else { return nil }
        let open = tasks.filter { $0.state.isOpen }
        guard !open.isEmpty else { return Resumed() }
        let (feed, sink) = AsyncStream.makeStream(of: Feed.self)
        state.withLock { box in
            box.s.feed = feed.makeAsyncIterator()
            box.s.sink = sink
        }
        // After an earlier Batch job ended, an open task may have completed
        // in it (its end not recorded before a restart): reported from there.
        var watched = Set(open.map(\.taskId))
        var carried: [TaskSnapshot] = []
        if !(record.retired ?? []).isEmpty {
            guard let found = await carriedOver(watched) else { return nil }
            carried = found
            watched.subtract(found.map(\.id))
        }
        let current = record.batchJobId
        await follow(current, open: watched)
        if !carried.isEmpty { sink.yield(.update(current, .tasks(carried))) }
        log.debug("watching the Batch job's tasks", metadata: ["batch.job": "\(current)", "tasks.open": "\(open.count)"])
        // Download bytes, written for `show` and `watch` once a second while they change.
        let (downloads, handle, base) = (az.downloads, handle, base)
        let ticker = Task {
            var last = base
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let now = downloads.snapshot(base: base)
                if now != last, !Task.isCancelled {
                    await handle.noteTransfer(now)
                    last = now
                }
            }
        }
        let live = open.map { LiveAttempt(idx: $0.idx, taskID: $0.taskId, attempt: LiveAttempt.numberedAtEnd, task: $0) }
        state.withLock { box in
            box.s.ticker = ticker
            box.s.open = Dictionary(live.map { ($0.taskID, $0) }, uniquingKeysWith: { a, _ in a })
        }
        return Resumed(live: live)
    }

    /// Tasks are added to the Batch job when it is submitted, and Batch
    /// retries a nonzero exit itself; what comes here is a task that runs
    /// again: one that vanished from the Batch job (deleted behind batchd's
    /// back: free), or one that failed in a way Batch does not retry (the
    /// node could not upload its outputs). It is deleted from the Batch job
    /// if it is still there, and added again under its own id, with fresh
    /// tokens, the retries it has left, and its output container made again
    /// if it was deleted. When the Batch job has ended because every task
    /// in it completed, the tasks go to the next one (`nextBatchJob`).
    func launch(_ tasks: [Int]) async -> Launched {
        // Only these tasks and their inputs are read, not the whole job's.
        guard let read = await handle.tasks(tasks) else { return .interrupted }
        let records = read.filter { $0.state == .pending }
        guard !records.isEmpty else { return .launched([], waiters: []) }
        let sources = Set(handle.spec.sharedInputs.map(\.source) + records.flatMap { $0.inputs.map(\.source) })
        guard let inputs = await handle.stagedInputs(Array(sources)) else { return .interrupted }
        let lifetime: SASLifetime
        do { lifetime = try az.azurePlan().1 } catch { return .failed(reason: "\(error)") }
        let current = record
        switch await add(records, to: current, lifetime: lifetime, inputs: inputs, ranThere: true) {
        case nil: return .interrupted
        case .failure(let e as BatchServiceError)? where e.code == "JobCompleted":
            return await nextBatchJob(records, after: current, lifetime: lifetime, inputs: inputs)
        case .failure(let e as BatchServiceError)? where e.code == "JobNotActive":
            return .failed(reason: "\(records.count) task(s) must run again (\(Self.why(records))) but Batch job \(current.batchJobId) is disabled; "
                           + "`batchctl retry` runs them in a new Batch job")
        case .failure(let e)?: return .failed(reason: "cannot add tasks again to Batch job \(current.batchJobId): \(e)")
        case .success(let refusal?)?: return .failed(reason: refusal)
        case .success(nil)?: break
        }
        await az.az.poller.expect(current.batchJobId, records.map(\.taskId))
        let live = opened(records)
        log.info("tasks added to the Batch job again", metadata: ["batch.job": "\(current.batchJobId)", "tasks": "\(live.count)"])
        return .launched(live, waiters: [])
    }

    /// Adds these tasks to the Batch job of `rec` (deleting first those that
    /// ran there before, `ranThere`); why the service refused one, if it did.
    func add(_ records: [TaskRecord], to rec: AzureJobRecord, lifetime: SASLifetime, inputs: [InputRecord],
             ranThere: Bool) async -> Result<String?, Error>? {
        let job = az
        return await az.azureStep("add \(records.count) task(s) again") { () -> String? in
            try await job.az.blob.createContainer(rec.outputContainer)
            // One that ran may still be there, completed (after a restart too):
            // deleted first, or adding it would count as done (TaskExists).
            if ranThere {
                for task in records where task.outcome != nil { _ = try await job.az.batch.deleteTask(rec.batchJobId, task.taskId) }
            }
            var maker = try await AzureJob.TaskBodies.make(job, record: rec, lifetime: lifetime, inputs: inputs)
            var bodies: [Data] = []
            for task in records {
                do { bodies.append(try maker.body(task)) } catch let e as AzureJob.TaskBodies.NotStaged { return "\(e)" }
            }
            // TaskExists (added before a crash, or never gone) counts as added.
            let refused = try await job.az.batch.addTasks(rec.batchJobId, encoded: bodies)
            return refused.first.map { "task \($0.taskID) could not be added again to Batch job \(rec.batchJobId): \($0.error ?? "error")" }
        }
    }

    /// These tasks are live again in the current Batch job.
    func opened(_ records: [TaskRecord]) -> [LiveAttempt] {
        let live = records.map { LiveAttempt(idx: $0.idx, taskID: $0.taskId, attempt: LiveAttempt.numberedAtEnd, task: $0) }
        state.withLock { box in for a in live { box.s.open[a.taskID] = a } }
        return live
    }

    /// Why these tasks run again, in a few words.
    static func why(_ tasks: [TaskRecord]) -> String {
        let kinds = Set(tasks.compactMap(\.outcome))
        var words: [String] = []
        if kinds.contains(.lost) { words.append("vanished from the Batch job, deleted outside batchd") }
        if kinds.contains(where: { $0 != .lost }) { words.append("failed in a way Batch does not retry") }
        return words.joined(separator: "; ")
    }

    /// The poller's next batch of changed tasks, for the live ones.
    func poll(_ live: [LiveAttempt]) async -> [TaskReport]? {
        guard var iterator = state.withLock({ $0.s.feed }) else { return nil }
        let control = handle.control
        // The stream's iterator is used by this poll alone (the phase polls from one task).
        let batch: Feed?? = await withTaskGroup(of: Feed??.self) { group in
            nonisolated(unsafe) var it = iterator
            group.addTask { .some(await it.next()) }
            group.addTask { await control.halt.wait(); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            if first != nil { iterator = it }
            return first
        }
        guard let next = batch else { return nil }
        state.withLock { $0.s.feed = iterator }
        let current = record
        let update: PollUpdate
        switch next {
        case nil:
            return nil   // `finish`, or the Batch job was lost
        case .gone(let id)?:
            // An earlier Batch job is no longer followed; the current one is gone.
            guard id == current.batchJobId, !Task.isCancelled else { return [] }
            state.withLock { $0.s.sink?.finish() }
            return [.jobLost(reason: "Batch job \(id) no longer exists (deleted outside batchd?)")]
        case .update(let id, let u)?:
            // An earlier Batch job may still report its tasks' ends, no more.
            if case .tasks = u {} else if id != current.batchJobId { return [] }
            update = u
        }
        let snapshots: [TaskSnapshot]
        switch update {
        case .refused(let refusal?):
            return await refused(refusal)
        case .refused(nil):
            return await over(\.refusedSince, Self.pollStep)
        case .poolTrouble(let why?):
            return await poolTrouble(why)
        case .poolTrouble(nil):
            await leaveCoreQuota()
            return await over(\.poolTroubleSince, Self.runStep)
        case .coreQuota(let pool, let code, let words):
            return await coreQuota(pool, code, words)
        case .nodes(let why?):
            await handle.noteRetrying(Self.nodeStep, why)
            return []
        case .nodes(nil):
            await handle.clearRetrying(Self.nodeStep)
            return []
        case .ended(let why):
            // Its open tasks are recorded with the reason by the job's stop.
            var r = current
            r.lost = why
            guard await handle.saveAzureRecord(r) != nil else { return nil }
            state.withLock { $0.s.record = r }
            return [.jobLost(reason: "\(why); `batchctl retry` runs its open tasks in a new Batch job")]
        case .tasks(let changed):
            snapshots = changed
        }
        let byID = state.withLock { $0.s.open }
        var reports: [TaskReport] = []
        var fresh = Set<String>()
        var done: [(TaskSnapshot, LiveAttempt)] = []
        var vanished: [LiveAttempt] = []
        for s in snapshots {
            guard let a = byID[s.id] else { continue }
            if s.state == "running" || s.state == "preparing" { reports.append(.running(idx: a.idx)) }
            if s.state == "completed", fresh.insert(s.id).inserted { done.append((s, a)) }
            if s.state == "vanished", fresh.insert(s.id).inserted { vanished.append(a) }
        }
        // Gone from the Batch job without an end: lost, and run again free
        // (the phase launches it again: `launch` adds it back).
        for a in vanished {
            state.withLock { _ = $0.s.open.removeValue(forKey: a.taskID) }
            guard let attempts = await handle.attempts(of: a.idx) else { return nil }
            let number = (attempts.map(\.attempt).max() ?? 0) + 1
            reports.append(.ended(idx: a.idx, Ending(attempt: number, directory: handle.attemptDirectory(a.taskID, number), outcome: .lost,
                                                     row: .remote(ranFor: nil))))
        }
        if !done.isEmpty {
            let ended = state.withLock { box in
                box.s.ended += done.count
                for (s, _) in done { box.s.open[s.id] = nil }
                return box.s.ended
            }
            if let listing = await az.outputListing(current.outputContainer, ended: ended, batch: done.count) {
                state.withLock { box in
                    for (s, _) in done { box.s.listed[s.id] = listing.filter { $0.key.hasPrefix("\(s.id)/") } }
                }
            }
        }
        for (s, a) in done {
            // After `batchctl retry` (a new Batch job, `-r<n>`), Batch counts
            // again from zero: the attempts of the earlier Batch jobs come
            // first. So do those of a task added again (its record has an
            // earlier end; after a restart too).
            var earlier = 0
            if current.batchJobId != "batchd-\(az.jobID)" || a.task?.outcome != nil {
                guard let attempts = await handle.attempts(of: a.idx) else { return nil }
                earlier = attempts.map(\.attempt).max() ?? 0
            }
            let number = earlier + s.retryCount + 1
            let killed = state.withLock { $0.s.killed.contains(s.id) }
            let outcome = AzureRules.outcome(s, timeout: handle.spec.timeoutSeconds, cancelled: control.isCancelled || killed)
            reports.append(.ended(idx: a.idx, Ending(attempt: number, directory: handle.attemptDirectory(a.taskID, number), outcome: outcome,
                                                     row: .remote(ranFor: s.runTime), serviceRetries: s.retryCount)))
        }
        return reports
    }

    static let pollStep = "poll the Batch job"
    static let runStep = "run the tasks"
    static let nodeStep = "recover the pool's nodes"

    /// The job's pool cannot run any task: shown as a step being retried;
    /// once that has lasted `azure.poolFailureGrace`, the job fails with the
    /// service's words, and its stop deletes the auto-pool (a named pool is
    /// left to the idle rule).
    func poolTrouble(_ why: String) async -> [TaskReport] {
        let grace = az.az.settings.poolFailureGrace
        return await lasting(\.poolTroubleSince, Self.runStep, shown: why, limit: grace,
                             reason: "\(why), for \(HumanDuration.format(grace)) (azure.poolFailureGrace)")
    }

    /// Azure refused batchd's credentials polling the job: shown as a step
    /// being retried; once that has lasted `azure.authFailureLimit`, the
    /// job fails with the fix (its tasks stop with the job's cancel step).
    func refused(_ refusal: CredentialRefusal) async -> [TaskReport] {
        let limit = az.az.settings.authFailureLimit
        return await lasting(\.refusedSince, Self.pollStep, shown: refusal.words, limit: limit,
                             reason: "\(refusal.words), for \(HumanDuration.format(limit)) (azure.authFailureLimit): \(refusal.fix)")
    }

    /// A trouble the job waits out for `limit` seconds from when it was
    /// first seen (`since`), shown meanwhile as `step` being retried; then
    /// the job fails with `reason`.
    func lasting(_ since: WritableKeyPath<State, ContinuousClock.Instant?>, _ step: String, shown: String, limit: Double,
                 reason: String) async -> [TaskReport] {
        let first = state.withLock { box in
            if box.s[keyPath: since] == nil { box.s[keyPath: since] = .now }
            return box.s[keyPath: since]!
        }
        if ContinuousClock.now - first >= .seconds(limit) {
            await handle.clearRetrying(step)
            return [.jobLost(reason: reason)]
        }
        await handle.noteRetrying(step, shown)
        return []
    }

    /// The trouble `lasting` follows is over.
    func over(_ since: WritableKeyPath<State, ContinuousClock.Instant?>, _ step: String) async -> [TaskReport] {
        state.withLock { $0.s[keyPath: since] = nil }
        await handle.clearRetrying(step)
        return []
    }

    /// The wall clock stops the whole Batch job; used-up core-hours stop the
    /// tasks that have not started (each terminated: one request a task).
    func kill(_ live: [LiveAttempt]) async {
        state.withLock { box in for a in live { box.s.killed.insert(a.taskID) } }
        let record = self.record
        let all = await handle.counts().map { $0.pending + $0.running } ?? 0
        if live.count >= all {
            _ = await az.azureStep("terminate the Batch job") { try await az.az.batch.terminateJob(record.batchJobId, reason: "batchd: the job's limit was reached") }
            return
        }
        for a in live {
            let (job, task) = (record.batchJobId, a.taskID)
            _ = await az.azureStep("terminate task \(task)") { try await az.az.batch.terminateTask(job, task) }
        }
    }

    func finish() async {
        guard let ticker = state.withLock({ box -> Task<Void, Never>? in defer { box.s.ticker = nil }; return box.s.ticker }) else { return }
        ticker.cancel()
        await ticker.value
        let final = az.downloads.snapshot(base: base)
        _ = await handle.setRecord(TransferProgress.key, final.downloads(final.downloaded))
        let record = self.record
        await leaveCoreQuota()
        await az.az.poller.unwatch(record.batchJobId)
        state.withLock { box in
            for f in box.s.forwarders { f.cancel() }
            box.s.forwarders = []
            box.s.sink?.finish()
        }
        log.debug("stopped watching the Batch job's tasks", metadata: ["batch.job": "\(record.batchJobId)", "halted": "\(handle.control.isHalted)"])
    }
}

extension AzureJob {
    /// The Azure adapter for one run of the running phase; nil on shutdown.
    func adapter() async -> AzureAdapter? {
        guard let record = await handle.azureRecord() ?? nil, let tasks = await handle.counts(),
              let base = await handle.transfer() else { return nil }
        return AzureAdapter(self, record: record, base: base.downloads(base.downloaded), ended: tasks.total - tasks.pending - tasks.running)
    }
}
