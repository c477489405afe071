import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchHTTP
import BatchStore
import BatchSupport
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One job's actions on Azure Batch. Every step can be repeated after a
/// crash: inputs are content-addressed, the Batch job and task ids are
/// deterministic (an existing one counts as made), and outcomes are read
/// back from the service.
struct AzureJob: Sendable {
    /// The job, as the runner hands it over.
    let handle: JobHandle
    /// The account's clients, poller and settings.
    let az: AzureBackend
    /// Bytes of the monitor's downloads, block by block.
    let downloads = DownloadBytes()

    var job: JobRecord { handle.job }
    var jobID: String { handle.id }
    var log: Logger { handle.log }
    var control: JobControl { handle.control }

    func retrying<T: Sendable>(_ what: String, _ body: @Sendable () async throws -> T) async -> T? {
        await handle.retrying(what, body)
    }

    /// The job's spec and its SAS lifetime under the current config (the
    /// intake checked the limit already; a changed config is checked again).
    func azurePlan() throws -> (JobSpec, SASLifetime) {
        let spec = handle.spec
        let lifetime = try SASLifetime.forJob(wallClock: spec.limits.wallClockSeconds, margin: az.settings.tokenMargin,
                                              maximum: az.maxTokenLifetime)
        return (spec, lifetime)
    }
}

extension AzureJob {
    /// Runs a step against Azure until it works, fails for good, or the job
    /// is halted (nil). Transient failures (network, 408, 429, 5xx, a corrupt
    /// download) are retried with backoff for as long as it takes: a flaky
    /// network must not fail a job. A `persistent` step (stopping and
    /// deleting what costs money) keeps trying after a cancel and gives up
    /// only when the daemon stops; the job then resumes its clean-up at the
    /// next start.
    ///
    /// Credentials Azure refuses (`AzureRules.isAuthFailure`) are retried the
    /// same way, and shown, but a step that is not `persistent` gives up once
    /// they have been refused for `azure.authFailureLimit`, with the fix.
    func azureStep<T: Sendable>(_ what: String, persistent: Bool = false, _ body: @Sendable () async throws -> T) async -> Result<T, Error>? {
        let until = persistent ? control.shutdown : control.halt
        var attempt = 0
        var refusedSince: ContinuousClock.Instant?
        while true {
            do {
                let value = try await body()
                if attempt > 0 { await handle.clearRetrying(what) }
                return .success(value)
            } catch {
                let refused = AzureRules.isAuthFailure(error)
                refusedSince = refused ? (refusedSince ?? .now) : nil
                if let since = refusedSince, !persistent, ContinuousClock.now - since >= .seconds(az.settings.authFailureLimit) {
                    if attempt > 0 { await handle.clearRetrying(what) }
                    return .failure(CredentialsRefused(error: error, limit: az.settings.authFailureLimit))
                }
                guard AzureRules.isTransient(error) || refused else {
                    if attempt > 0 { await handle.clearRetrying(what) }
                    return .failure(error)
                }
                log.warning("azure step failed; will retry", metadata: ["step": "\(what)", "error": "\(error)", "attempt": "\(attempt + 1)"])
                await handle.noteRetrying(what, AzureRules.plainWords(error))
                guard await handle.pauseBeforeRetry(attempt, until: until) else {
                    await handle.clearRetrying(what)
                    return nil
                }
                attempt += 1
            }
        }
    }

    /// Credentials Azure refused for as long as batchd waits: the words a
    /// job fails with.
    struct CredentialsRefused: Error, CustomStringConvertible {
        let error: Error
        let limit: Double
        var description: String {
            let refusal = CredentialRefusal(error)
            return "\(refusal.words), for \(HumanDuration.format(limit)) (azure.authFailureLimit): \(refusal.fix)"
        }
    }

    // MARK: stage

    /// One input as staging sees it: its size and identity when first
    /// opened, and its hashes when the cache still describes it.
    struct InputFile: Sendable {
        var source: String
        var identity: (device: Int64, inode: Int64, size: Int64, mtimeNs: Int64)
        var cached: (sha256: String, md5: String)?
    }

    /// The monitor's downloads (logs and outputs) so far: bytes in all, and
    /// the size and received bytes of those under way, by a token each.
    final class DownloadBytes: Sendable {
        struct Counts { var done: Int64 = 0; var next = 0; var active: [Int: (size: Int64, got: Int64)] = [:] }
        let counts = Mutex(Counts())

        /// A download of `size` bytes begins; its token.
        func begin(_ size: Int64) -> Int {
            counts.withLock { c in
                c.next += 1
                c.active[c.next] = (size, 0)
                return c.next
            }
        }
        func add(_ token: Int, _ n: Int64) { counts.withLock { $0.active[token]?.got += n } }
        /// It ended: what came counts in all only if it completed.
        func end(_ token: Int, completed: Bool) {
            counts.withLock { c in
                if let a = c.active.removeValue(forKey: token), completed { c.done += a.size }
            }
        }
        /// Progress, counting from what `base` had downloaded before.
        func snapshot(base: TransferProgress) -> TransferProgress {
            counts.withLock { c in
                let size = c.active.values.reduce(Int64(0)) { $0 + $1.size }, got = c.active.values.reduce(Int64(0)) { $0 + $1.got }
                return base.downloads(base.downloaded + Int(c.done + got), underWay: Int(size), received: Int(got))
            }
        }
    }

    /// Staging's bytes so far: files done (sent, or found stored) and the
    /// blocks stored of files still being sent.
    final class StagingBytes: Sendable {
        struct Counts { var uploaded: Int64 = 0; var skipped: Int64 = 0; var partial: [Int: Int64] = [:] }
        let counts = Mutex(Counts())

        /// File `i` is (again) being sent: what an earlier try of it counted goes.
        func begin(_ i: Int) { counts.withLock { _ = $0.partial.removeValue(forKey: i) } }
        func add(_ i: Int, _ n: Int64) { counts.withLock { $0.partial[i, default: 0] += n } }
        func finish(_ i: Int, uploaded: Int64, skipped: Int64) {
            counts.withLock { c in
                c.partial[i] = nil
                c.uploaded += uploaded
                c.skipped += skipped
            }
        }
        /// Uploaded (partial blocks included) and skipped bytes.
        func snapshot() -> (uploaded: Int64, skipped: Int64) {
            counts.withLock { c in (c.uploaded + c.partial.values.reduce(0, +), c.skipped) }
        }
    }

    /// What staging one input did.
    struct StagedInput: Sendable {
        var blob: String
        var sha256: String
        var uploaded: Int64
        /// A hash computed now, for the cache.
        var hashed: FileHashRecord?
    }

    /// Hashes every input (MD5 for Blob, SHA-256 for the record; cached by
    /// device, inode, size and mtime) and uploads what the input container
    /// lacks, `2 × azure.concurrency` files at a time, each hashed just
    /// before it is sent. Progress in bytes goes to the database for
    /// `batchctl show`, at most once a second.
    func stage() async -> StepResult {
        let spec: JobSpec
        let lifetime: SASLifetime
        do { (spec, lifetime) = try azurePlan() } catch { return .failed(reason: "\(error)") }
        guard let record = await handle.azureRecord() else { return .interrupted }
        if record == nil {
            let fresh = AzureJobRecord(jobId: jobID, batchJobId: "batchd-\(jobID)", poolId: spec.pool.id, autoPool: spec.pool.id == nil,
                                       outputContainer: "batchd-\(jobID)", wallClockSeconds: lifetime.jobWallClockSeconds)
            guard await handle.saveAzureRecord(fresh) != nil else { return .interrupted }
        }
        guard let sources = await handle.inputSources(), let cache = await handle.cachedHashes(paths: sources),
              let before = await handle.transfer() else { return .interrupted }

        // Every input opened first, as the submitter would (what they could
        // not read is never uploaded), so the total is known before sending.
        let policy = handle.policy
        var files: [InputFile] = []
        for source in sources {
            do {
                let file = try policy.openForReading(source)
                defer { close(file.fd) }
                let id = FileOps.identity(file.st)
                var input = InputFile(source: source, identity: id)
                if let c = cache[source], c.describes(device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs), let md5 = c.md5 {
                    input.cached = (c.sha256, md5)
                }
                files.append(input)
            } catch {
                return .failed(reason: "input \(Printable.escape(source)) could not be read: \(error)")
            }
        }
        let total = Int(files.reduce(Int64(0)) { $0 + $1.identity.size })
        let container = az.inputs.container
        switch await azureStep("create the input container", { try await az.blob.createContainer(container) }) {
        case nil: return .interrupted
        case .failure(let e)?: return .failed(reason: "cannot create the input container \(container): \(e)")
        case .success?: break
        }

        var records = [InputRecord?](repeating: nil, count: files.count)
        var hashes: [FileHashRecord] = []
        var lastSave = ContinuousClock.now
        let width = max(1, 2 * az.settings.concurrency)
        // Bytes so far, block by block for large files, written for `show`
        // and `watch` once a second while anything changes.
        let bytes = StagingBytes()
        let ticker = Task {
            var last: (Int64, Int64) = (-1, -1)
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let now = bytes.snapshot()
                if now != last, !Task.isCancelled {
                    await handle.noteTransfer(before.staged(total: total, uploaded: Int(now.uploaded), alreadyStored: Int(now.skipped)))
                    last = now
                }
            }
        }
        let failure = await withTaskGroup(of: (Int, Result<StagedInput, Error>?).self, returning: StepResult?.self) { g in
            var next = 0
            func add() {
                let i = next, input = files[i], az = az
                next += 1
                g.addTask {
                    (i, await azureStep("upload \(Printable.escape(input.source))") {
                        bytes.begin(i)
                        return try await Self.stageOne(input, policy: policy, az: az, progress: { bytes.add(i, $0) })
                    })
                }
            }
            while next < files.count && next < width { add() }
            while let (i, result) = await g.next() {
                let input = files[i]
                switch result {
                case nil:
                    g.cancelAll()
                    return .interrupted
                case .failure(let e)?:
                    g.cancelAll()
                    return .failed(reason: "input \(Printable.escape(input.source)) could not be uploaded: \(e)")
                case .success(let put)?:
                    bytes.finish(i, uploaded: put.uploaded, skipped: put.uploaded > 0 ? 0 : input.identity.size)
                    records[i] = InputRecord(jobId: jobID, source: input.source, sha256: put.sha256, size: Int(input.identity.size), blob: put.blob)
                    if let h = put.hashed { hashes.append(h) }
                }
                if next < files.count { add() }
                // New hashes go to the cache at most once a second, and at the end.
                if !hashes.isEmpty, ContinuousClock.now - lastSave >= .seconds(1) || next == files.count && g.isEmpty {
                    lastSave = ContinuousClock.now
                    let fresh = hashes
                    hashes = []
                    guard await handle.saveHashes(fresh) != nil else {
                        g.cancelAll()
                        return .interrupted
                    }
                }
            }
            return nil
        }
        ticker.cancel()
        await ticker.value   // no late progress write after the last one below
        if let failure { return failure }
        let done = bytes.snapshot()
        let (uploaded, skipped) = (Int(done.uploaded), Int(done.skipped))
        let staged = before.staged(total: total, uploaded: uploaded, alreadyStored: skipped)
        guard await handle.setRecord(TransferProgress.key, staged) != nil else { return .interrupted }
        handle.crashPoint("stage.uploaded")
        let inputs = records.compactMap { $0 }
        guard await handle.recordInputs(inputs) != nil else { return .interrupted }
        log.info("inputs staged", metadata: ["inputs": "\(inputs.count)", "bytes.uploaded": "\(uploaded)", "bytes.already.stored": "\(skipped)",
                                             "container": "\(container)"])
        return .done
    }

    /// Stages one input: opened again as the submitter, refused if it changed
    /// since it was first opened, hashed unless the cache had it, and put
    /// into the content-addressed store.
    static func stageOne(_ input: InputFile, policy: AccessPolicy, az: AzureBackend,
                         progress: @escaping @Sendable (Int64) -> Void) async throws -> StagedInput {
        let file = try policy.openForReading(input.source)
        defer { close(file.fd) }
        let id = FileOps.identity(file.st)
        guard id == input.identity else { throw DaemonError("\(Printable.escape(input.source)) changed while the job was staged") }
        var hashed: FileHashRecord?
        let sha256: String, md5: String
        if let c = input.cached {
            (sha256, md5) = c
        } else {
            (md5, sha256) = try await BlobClient.digests(fd: file.fd, size: id.size)
            hashed = FileHashRecord(path: input.source, device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs,
                                    sha256: sha256, md5: md5)
        }
        let put = try await az.inputs.put("/proc/self/fd/\(file.fd)", size: id.size, md5: md5, likelyStored: input.cached != nil, progress: progress)
        return StagedInput(blob: put.name, sha256: sha256, uploaded: put.uploaded, hashed: hashed)
    }

    // MARK: provision

    /// A named pool is created if absent and reused if present (when its
    /// metadata says this daemon made it); an auto-pool comes with the job.
    func provision() async -> StepResult {
        guard let record = await handle.azureRecord() ?? nil else {
            return .failed(reason: "no azure record for this job")
        }
        guard let poolID = record.poolId, !record.autoPool else { return .done }
        let spec = handle.spec
        let defaults = az.poolDefaults
        let result = await underQuota("provision pool \(poolID)", quotas: Self.poolQuotas) { () -> String? in
            if let existing = try await az.batch.pool(poolID) {
                let owner = BatchBodies.metadata(existing)[BatchBodies.ownerKey]
                guard owner == az.owner else {
                    return "pool \(poolID) exists and is not this batchd's (its \(BatchBodies.ownerKey) metadata is \(owner.map { "'\($0)'" } ?? "missing"), "
                        + "this daemon's is '\(az.owner)'): pick another pool.id, or leave pool.id out for an auto-pool"
                }
                if let mismatch = AzureContainers.poolMismatch(poolID, existing, spec.container) { return mismatch }
                if existing["state"] as? String == "deleting" {
                    // Waited out (a transient refusal), then made again.
                    throw BatchServiceError(status: 409, code: "PoolBeingDeleted", message: "", operation: "provision pool \(poolID)")
                }
                // Resized to zero while idle (or by hand): grown back to what this job asks for.
                let want = BatchBodies.nodeCounts(spec.pool, defaults: defaults)
                let target = (existing["targetDedicatedNodes"] as? Int ?? 0) + (existing["targetLowPriorityNodes"] as? Int ?? 0)
                if target == 0, want.dedicated + want.spot > 0 {
                    try await az.batch.resizePool(poolID, dedicated: want.dedicated, spot: want.spot)
                    log.notice("pool resized", metadata: ["pool.id": "\(poolID)", "pool.dedicated": "\(want.dedicated)", "pool.spot": "\(want.spot)",
                                                          "reason": "it had no nodes and job \(jobID) needs it", "message.id": "\(MessageID.poolResized)"])
                }
                return nil
            }
            try await az.batch.createPool(BatchBodies.pool(id: poolID, spec.pool, defaults: defaults, owner: az.owner, container: spec.container,
                                                           registry: try AzureContainers.login(spec.container, az)))
            return nil
        }
        switch result {
        case nil: return .interrupted
        case .failure(let e)?: return .failed(reason: "cannot provision pool \(poolID): \(e)")
        case .success(let refusal?)?: return .failed(reason: refusal)
        case .success(nil)?:
            log.info("pool ready", metadata: ["pool.id": "\(poolID)"])
            return .done
        }
    }


    // MARK: submit

    /// Batch task bodies for a job's tasks: inputs read by SAS from the
    /// input container, outputs and logs written by SAS to the job's
    /// output container, tokens signed once for all the bodies it makes.
    struct TaskBodies {
        let job: AzureJob
        let sas: ServiceSAS
        let lifetime: SASLifetime
        let now: Date
        let outputURL: String
        /// Each input's blob, by source.
        let blobs: [String: String]
        /// The job's secrets, read as the submitter for these bodies: they
        /// travel in each task's environment settings, over TLS.
        let secrets: [String: String]
        /// Read URLs made so far, by blob.
        var urls: [String: String] = [:]

        /// An input with no blob: staging did not put it in the input container.
        struct NotStaged: Error, CustomStringConvertible {
            let source: String
            var description: String { "input \(source) was not staged" }
        }

        static func make(_ job: AzureJob, record: AzureJobRecord, lifetime: SASLifetime, inputs: [InputRecord]) async throws -> TaskBodies {
            let now = Date()
            let sas = try await job.az.sasKeys.signer(until: now.addingTimeInterval(lifetime.tokenSeconds), now: now)
            let out = try job.az.writeURL(container: record.outputContainer, seconds: lifetime.tokenSeconds, sas: sas, now: now)
            let secrets = try job.handle.spec.secrets.map { try Secrets.values($0, policy: job.handle.policy) } ?? [:]
            return TaskBodies(job: job, sas: sas, lifetime: lifetime, now: now, outputURL: out,
                              blobs: Dictionary(inputs.compactMap { i in i.blob.map { (i.source, $0) } }, uniquingKeysWith: { a, _ in a }),
                              secrets: secrets)
        }

        /// The body that adds `task`.
        mutating func body(_ task: TaskRecord) throws -> Data {
            let spec = job.handle.spec
            var placed: [(url: String, target: String)] = []
            for input in spec.sharedInputs + task.inputs {
                guard let name = blobs[input.source] else { throw NotStaged(source: input.source) }
                if urls[name] == nil {
                    urls[name] = try job.az.inputs.readURL(name, sas: sas, lifetime: lifetime, now: now, httpsOnly: job.az.httpsOnly)
                }
                placed.append((urls[name]!, input.target))
            }
            let record = job.job
            let env = TaskEnvironment.variables(task: task.env,
                                                job: record.id, name: record.name, taskID: task.taskId, index: task.idx, attempt: nil)
                .merging(secrets) { $1 }
            return BatchBodies.taskJSON(BatchBodies.TaskParts(
                id: task.taskId, command: task.command, env: env, inputs: placed, patterns: spec.outputPatterns, outputContainerURL: outputURL,
                timeoutSeconds: record.timeoutSeconds, retries: max(0, record.retries - task.countedAttempts), container: spec.container))
        }
    }

    /// Tasks read and added per page in `submit`.
    static let submitPage = 1000

    /// Creates the output container and the Batch job (noaction), adds every
    /// task with its deterministic id, then switches the job to terminatejob.
    /// Repeating it after a crash adds nothing twice: TaskExists is success.
    func submit() async -> StepResult {
        guard var record = await handle.azureRecord() ?? nil else {
            return .failed(reason: "no azure record for this job")
        }
        if record.submitted { return .done }
        let spec: JobSpec
        let lifetime: SASLifetime
        do { (spec, lifetime) = try azurePlan() } catch { return .failed(reason: "\(error)") }
        guard let inputs = await handle.stagedInputs() else { return .interrupted }
        let rec = record
        let defaults = az.poolDefaults
        let outcome = await underQuota("submit", quotas: Self.submitQuotas) { () -> (String?, Int, Bool) in
            try await az.blob.createContainer(rec.outputContainer)
            let jobBody = BatchBodies.job(id: rec.batchJobId, batchdJob: jobID, owner: az.owner, poolID: rec.autoPool ? nil : rec.poolId,
                                          spec: spec.pool, defaults: defaults, wallClockSeconds: rec.wallClockSeconds, retries: job.retries,
                                          container: spec.container, registry: try AzureContainers.login(spec.container, az))
            if !(try await az.batch.createJob(jobBody)) {
                guard let existing = try await az.batch.job(rec.batchJobId) else { throw BatchServiceError(status: 503, code: "JobVanished", message: "", operation: "get job") }
                guard BatchBodies.metadata(existing)[BatchBodies.jobKey] == jobID else {
                    return ("a Batch job named \(rec.batchJobId) exists and is not this job's; delete it or submit again", 0, false)
                }
                // Switched to terminatejob only after every task was in.
                if (existing["onAllTasksComplete"] as? String)?.lowercased() == "terminatejob" { return (nil, 0, true) }
            }
            var maker = try await TaskBodies.make(self, record: rec, lifetime: lifetime, inputs: inputs)
            var added = 0
            // A page of tasks at a time (ten collections per page, sent
            // `azure.concurrency` at once), so memory does not grow with the job.
            var after = -1
            while true {
                let page = try await handle.taskPage(after: after, limit: Self.submitPage)
                guard let last = page.last else { break }
                after = last.idx
                var bodies: [Data] = []
                for task in page where task.state.isOpen {
                    do { bodies.append(try maker.body(task)) } catch let e as TaskBodies.NotStaged { return ("\(e)", 0, false) }
                }
                let refused: [TaskAddResult]
                do {
                    refused = try await az.batch.addTasks(rec.batchJobId, encoded: bodies, added: { handle.crashPoint("submit.collection") })
                } catch let e as BatchServiceError where e.code == "JobCompleted" {
                    // Completed before its tasks were in: its auto-pool could not be made.
                    throw try await autoPoolRefusal(rec.batchJobId) ?? e
                }
                if let bad = refused.first {
                    let n = refused.count
                    return ("\(n) task(s) could not be added to Batch job \(rec.batchJobId); the first, \(bad.taskID): \(bad.error ?? "error")", 0, false)
                }
                added += bodies.count
            }
            try await az.batch.updateJob(rec.batchJobId, BatchBodies.terminateWhenDone)
            return (nil, added, false)
        }
        switch outcome {
        case nil: return .interrupted
        case .failure(let e)?: return .failed(reason: "cannot submit to Azure Batch: \(e)")
        case .success(let r)?:
            if let refusal = r.0 { return .failed(reason: refusal) }
            handle.crashPoint("submit.added")
            let (count, wasDone) = (r.1, r.2)
            record.submitted = true
            record.tokenExpiry = Date().timeIntervalSince1970 + lifetime.tokenSeconds
            if record.autoPool, case .success(let pool?)? = await azureStep("read the job", { try await az.autoPoolID(rec.batchJobId) }) {
                record.poolId = pool
            }
            let r = record
            guard await handle.saveAzureRecord(r) != nil else { return .interrupted }
            log.info("tasks submitted", metadata: ["batch.job": "\(record.batchJobId)", "tasks": "\(wasDone ? job.taskCount : count)",
                                                   "pool.id": "\(record.poolId ?? "auto")", "collections.max": "\(BatchClient.maxTasksPerCollection)"])
            return .done
        }
    }
}
