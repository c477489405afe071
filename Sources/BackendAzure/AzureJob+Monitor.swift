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

extension AzureJob {
    /// Follows the job's tasks through the account's poller until none is
    /// open. Each completed task's logs and outputs are downloaded as soon as
    /// it completes. After a restart the first poll lists every task past
    /// `active`, so what finished meanwhile is recorded too.
    func monitor() async -> StepResult {
        guard let record = await retrying("read the azure record", { try await store.azureJob(jobID) }) ?? nil,
              let tasks = await retrying("read tasks", { try await store.tasks(jobID) }),
              let sink = await handle.outputSink() else { return .interrupted }
        let open = Dictionary(tasks.filter { $0.state.isOpen }.map { ($0.taskId, $0) },
                              uniquingKeysWith: { a, _ in a })
        control.reconciled.fire(())
        // Download bytes, written for `show` and `watch` once a second while they change.
        let base = (await retrying("read download progress", { try await store.azureDownloads(jobID) }))?.downloaded ?? 0
        let downloads = self.downloads
        let ticker = Task {
            var last = DownloadProgress(downloaded: base)
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let now = downloads.snapshot(base: base)
                if now != last, !Task.isCancelled {
                    try? await store.azureDownloads(jobID, now)
                    last = now
                }
            }
        }
        defer { ticker.cancel() }
        if !open.isEmpty {
            let updates = await az.poller.watch(record.batchJobId)
            log.debug("watching the Batch job's tasks", metadata: ["batch.job": "\(record.batchJobId)", "tasks.open": "\(open.count)"])
            let gone = await withTaskGroup(of: Bool?.self) { group in
                group.addTask {
                    var remaining = open
                    var ended = tasks.count - open.count
                    for await batch in updates {
                        let running = batch.filter { $0.state == "running" || $0.state == "preparing" }.map(\.id).filter { remaining[$0] != nil }
                        _ = await retrying("mark tasks running", { try await store.markRunning(jobID, taskIDs: running) })
                        var fresh = Set<String>()
                        let done = batch.filter { $0.state == "completed" && fresh.insert($0.id).inserted }
                            .compactMap { s in remaining[s.id].map { (s, $0) } }
                        ended += done.count
                        let listing = await outputListing(record.outputContainer, ended: ended, batch: done.count)
                        await forEachConcurrently(done, width: az.settings.concurrency) { snapshot, task in
                            await finish(task, snapshot, record, sink, listing: listing)
                        }
                        for (s, _) in done { remaining[s.id] = nil }
                        if remaining.isEmpty || control.isHalted { return false }
                    }
                    return !Task.isCancelled   // the stream ended: the Batch job is gone
                }
                group.addTask { await control.halt.wait(); return nil }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first == true
            }
            ticker.cancel()
            await ticker.value
            let final = downloads.snapshot(base: base)
            _ = await retrying("record download progress", { try await store.azureDownloads(jobID, DownloadProgress(downloaded: final.downloaded)) })
            await az.poller.unwatch(record.batchJobId)
            log.debug("stopped watching the Batch job's tasks", metadata: ["batch.job": "\(record.batchJobId)", "gone": "\(gone)",
                                                                       "halted": "\(control.isHalted)"])
            if gone, !control.isHalted {
                return .failed(reason: "Batch job \(record.batchJobId) no longer exists (deleted outside batchd?)")
            }
        }
        return control.isHalted ? .interrupted : .done
    }

    /// Runs `body` over `items`, at most `width` at once.
    func forEachConcurrently<T: Sendable>(_ items: [T], width: Int, _ body: @escaping @Sendable (T) async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            var next = 0
            while next < items.count && next < width { let item = items[next]; group.addTask { await body(item) }; next += 1 }
            while await group.next() != nil {
                if next < items.count { let item = items[next]; group.addTask { await body(item) }; next += 1 }
            }
        }
    }

    /// What the output container holds, for a batch of `batch` completed
    /// tasks with `ended` ended so far: one listing of the whole container
    /// when that takes fewer requests than a listing per task (about two
    /// blobs per ended task, 5,000 a page), else nil and each task lists its
    /// own prefix. Either way no blob costs a HEAD, and an empty log no GET.
    func outputListing(_ container: String, ended: Int, batch: Int) async -> [String: BlobProperties]? {
        let pages = (2 * ended + 4999) / 5000
        guard batch > 1, pages < batch else { return nil }
        switch await azureStep("list the output container", { try await az.blob.listProperties(container) }) {
        case .success(let all)?: return all
        default: return nil
        }
    }

    /// Downloads a completed task's logs and (on success) its outputs, then
    /// records the attempt, the task's final state and the outputs at once.
    /// `listing` is the output container's listing when the batch made one.
    func finish(_ task: TaskRecord, _ s: TaskSnapshot, _ record: AzureJobRecord, _ sink: OutputSink,
                listing: [String: BlobProperties]?) async {
        // After `batchctl retry` (a new Batch job, `-r<n>`), Batch counts
        // again from zero: the attempts of the earlier Batch jobs come first.
        var earlier = 0
        if record.batchJobId != "batchd-\(jobID)" {
            guard let attempts = await retrying("read the task's attempts", { try await store.attempts(jobID, idx: task.idx) }) else { return }
            earlier = attempts.map(\.attempt).max() ?? 0
        }
        let number = earlier + s.retryCount + 1
        let dir = handle.attemptDirectory(task.taskId, number)
        var outcome = AzureRules.outcome(s, timeout: handle.spec.timeoutSeconds, cancelled: control.isCancelled)
        let container = record.outputContainer
        let prefix = "\(task.taskId)/"
        let blobs: [String: BlobProperties]
        if let listing {
            blobs = listing.filter { $0.key.hasPrefix(prefix) }
        } else {
            switch await azureStep("list the blobs of \(task.taskId)", { try await az.blob.listProperties(container, prefix: prefix) }) {
            case nil: return   // shutdown: recorded at the next start
            case .failure(let e)?:
                log.warning("cannot list a task's blobs; its logs are not kept", metadata: ["task.id": "\(task.taskId)", "error": "\(e)"])
                blobs = [:]
                if outcome.isSuccess, !sink.patterns.isEmpty { outcome = .outputsFailed(reason: "cannot list outputs: \(e)") }
            case .success(let found)?: blobs = found
            }
        }
        for name in ["stdout", "stderr"] {
            // A task that never started has no log; an empty one costs no request and no file.
            let blob = BatchBodies.logPrefix(task.taskId) + "\(name).txt"
            guard let props = blobs[blob], props.size > 0 else { continue }
            let result = await azureStep("download the \(name) of \(task.taskId)") { () -> Bool in
                let token = downloads.begin(props.size)
                do {
                    try await az.blob.download(container, blob, to: "\(dir)/\(name)", known: props, received: { downloads.add(token, $0) })
                    downloads.end(token, completed: true)
                    return true
                } catch let e as BlobError where e.status == 404 {
                    downloads.end(token, completed: false)
                    return false
                } catch {
                    downloads.end(token, completed: false)
                    throw error
                }
            }
            if result == nil { return }   // shutdown: recorded at the next start
        }
        // Batch retried the task already (maxTaskRetryCount): this is its end.
        let ended = EndedAttempt(task: task, attempt: number, directory: dir, outcome: outcome, row: .remote(ranFor: s.runTime))
        _ = await handle.endAttempt(ended, rules: handle.taskRules(retriedByService: true)) {
            await downloadOutputs(task, blobs: blobs, prefix: prefix, container: container, dir: dir, sink)
        }
    }

    /// Downloads a successful task's output blobs into the attempt's
    /// directory and writes each into the destination as the submitter may;
    /// the outputs, why they could not be collected, or nil on shutdown.
    func downloadOutputs(_ task: TaskRecord, blobs: [String: BlobProperties], prefix: String, container: String, dir: String,
                         _ sink: OutputSink) async -> Result<[OutputRecord], any Error>? {
        var collected: [OutputRecord] = []
        guard !sink.patterns.isEmpty else { return .success([]) }
        for name in blobs.keys.sorted() where !name.hasPrefix(BatchBodies.logPrefix(task.taskId)) {
            let props = blobs[name]
            let rel = String(name.dropFirst(prefix.count))
            if let other = sink.claim(rel, for: task.idx) {
                return .failure(DaemonError("output \(rel) is also produced by task \(other); make output names unique, e.g. with {task}"))
            }
            guard OutputCollector.isSafeRelative(rel) else {
                return .failure(DaemonError("an output blob is named \(Printable.quote(rel)), which would land outside the destination"))
            }
            // Downloaded into the attempt's directory first, then
            // written into the destination as the submitter may.
            let staged = "\(dir)/outputs/\(rel)"
            let got = await azureStep("download output \(Printable.escape(rel))") { () -> OutputRecord in
                let token = downloads.begin(props?.size ?? 0)
                do {
                    try await az.blob.download(container, name, to: staged, known: props, received: { downloads.add(token, $0) })
                    downloads.end(token, completed: true)
                } catch {
                    downloads.end(token, completed: false)
                    throw error
                }
                let fd = open(staged, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { throw DaemonError("cannot read \(Printable.escape(staged)): \(FileOps.plain(errno))") }
                defer { close(fd); unlink(staged) }
                let (sha, size) = try sink.destination().write(rel, from: fd)
                return OutputRecord(jobId: jobID, path: rel, idx: task.idx, size: Int(size), sha256: sha)
            }
            switch got {
            case nil: return nil
            case .failure(let e)?: return .failure(DaemonError("cannot download \(rel): \(e)"))
            case .success(let o)?: collected.append(o)
            }
        }
        rmdir("\(dir)/outputs")
        return .success(collected)
    }

    // MARK: cancel and cleanup

    /// Ends the Batch job (its running tasks stop) and deletes its auto-pool,
    /// so nothing keeps costing money. Safe to repeat. False when the daemon
    /// stopped before it was done (the next start repeats it).
    func azureStop(_ record: AzureJobRecord, reason: String) async -> Bool {
        let terminated = await azureStep("terminate the Batch job", persistent: true) {
            try await az.batch.terminateJob(record.batchJobId, reason: reason)
        }
        if case .failure(let e)? = terminated { log.warning("cannot terminate the Batch job", metadata: ["batch.job": "\(record.batchJobId)", "error": "\(e)"]) }
        guard terminated != nil else { return false }
        guard record.autoPool else { return true }
        var poolID = record.poolId
        if poolID == nil {
            switch await azureStep("read the job", persistent: true, { try await az.autoPoolID(record.batchJobId) }) {
            case nil: return false
            case .success(let p)?: poolID = p
            case .failure?: break   // the job is gone, and its auto-pool with it
            }
        }
        if let poolID {
            switch await azureStep("delete the auto-pool", persistent: true, { try await az.batch.deletePool(poolID) }) {
            case nil: return false
            case .failure(let e)?: log.warning("cannot delete the auto-pool", metadata: ["pool.id": "\(poolID)", "error": "\(e)"])
            case .success?: break
            }
        }
        return true
    }

    /// Cancel: stop everything on Azure, then record the open tasks cancelled
    /// (not before they are stopped: a shutdown first leaves them open, and
    /// the next start stops them again).
    func cancel() async {
        if let record = await retrying("read the azure record", { try await store.azureJob(jobID) }) ?? nil {
            let stopped = await azureStop(record, reason: "cancelled with batchctl cancel")
            if !stopped, control.isShuttingDown { return }
        }
        _ = await retrying("cancel open tasks", { try await store.cancelOpenTasks(jobID) })
    }

    /// Whatever the verdict, the Batch job ends and its auto-pool goes; the
    /// cleanup policy then decides whether the Batch job and the scratch
    /// output container are deleted. The shared input container stays: it is
    /// what later jobs reuse.
    func cleanup(_ verdict: Verdict) async {
        guard var record = await retrying("read the azure record", { try await store.azureJob(jobID) }) ?? nil,
              !record.cleaned else { return }
        guard await azureStop(record, reason: "batchd job \(verdict.phase.rawValue)") else { return }
        let policy = job.cleanup
        if policy == .always || (policy == .onSuccess && verdict == .success) {
            let r = record
            guard await azureStep("delete the Batch job", persistent: true, { try await az.batch.deleteJob(r.batchJobId) }) != nil,
                  await azureStep("delete the output container", persistent: true, { try await az.blob.deleteContainer(r.outputContainer) }) != nil
            else { return }
            log.info("azure scratch deleted", metadata: ["batch.job": "\(record.batchJobId)", "container": "\(record.outputContainer)"])
        }
        handle.crashPoint("cleanup.deleted")
        record.cleaned = true
        let r = record
        _ = await retrying("record the cleanup", { try await store.saveAzureJob(r) })
    }
}
