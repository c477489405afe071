import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation

extension JobRunner {
    /// Hashes every input (using the cache keyed by device, inode, size and
    /// mtime) and copies into the content store what it lacks.
    func stage(_ job: JobRecord) async -> JobEvent {
        guard let sources = await inputSources(job) else { return .failed(reason: "shutdown") }
        var records: [InputRecord] = []
        var copied = 0
        var bytes: Int64 = 0
        let store = ctx.runner.store
        let policy = ctx.policy(job)
        for source in sources {
            do {
                // Opened as the submitter would: what they could not read is never staged.
                let file = try policy.openForReading(source)
                defer { close(file.fd) }
                let id = FileOps.identity(file.st)
                if let cached = try await ctx.store.cachedHash(path: source),
                   cached.describes(device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs), store.contains(cached.sha256) {
                    records.append(InputRecord(jobId: jobID, source: source, sha256: cached.sha256, size: Int(cached.size)))
                    continue
                }
                let put = try store.put(fd: file.fd, name: source)
                if put.copied { copied += 1; bytes += put.size }
                try await ctx.store.saveHash(FileHashRecord(path: source, device: id.device, inode: id.inode, size: id.size,
                                                            mtimeNs: id.mtimeNs, sha256: put.sha256))
                records.append(InputRecord(jobId: jobID, source: source, sha256: put.sha256, size: Int(put.size)))
            } catch {
                return .failed(reason: "input \(Printable.escape(source)) could not be staged: \(error)")
            }
        }
        let staged = records
        guard await retrying("record inputs", { try await ctx.store.recordInputs(jobID, staged) }) != nil else { return .failed(reason: "shutdown") }
        log.info("inputs staged", metadata: ["inputs": "\(records.count)", "copied": "\(copied)", "bytes": "\(bytes)"])
        return .staged
    }

    /// Every distinct input file of the job (shared and per task), sorted;
    /// nil on shutdown.
    func inputSources(_ job: JobRecord) async -> [String]? {
        var sources = Set((job.spec?.sharedInputs ?? decodeInputs(job.sharedInputs)).map(\.source))
        guard let tasks = await retrying("read tasks", { try await ctx.store.tasks(jobID) }) else { return nil }
        for task in tasks { for input in decodeInputs(task.inputs) { sources.insert(input.source) } }
        return sources.sorted()
    }

    func decodeInputs(_ json: String) -> [InputFile] {
        (try? JSONDecoder().decode([InputFile].self, from: Data(json.utf8))) ?? []
    }

    /// Checks that every collected output is still at its destination.
    func verifyOutputs(_ job: JobRecord) async -> JobEvent {
        guard let outputs = await retrying("read outputs", { try await ctx.store.outputs(jobID) }) else { return .failed(reason: "shutdown") }
        for output in outputs {
            let path = "\(job.destination)/\(output.path)"
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: path),
                  (attrs[.size] as? NSNumber)?.intValue == output.size else {
                return .failed(reason: "output \(path) is missing or changed since it was collected")
            }
        }
        return .collected
    }

    /// Deletes the attempts' work directories when the policy says so; the
    /// logs (stdout, stderr, status) stay for `batchctl logs`.
    func cleanup(_ job: JobRecord, _ verdict: Verdict) {
        let policy = job.cleanup
        guard policy == .always || (policy == .onSuccess && verdict == .success) else { return }
        let tasksDir = "\(ctx.config.jobsDirectory)/\(jobID)/tasks"
        let fm = FileManager.default
        for task in (try? fm.contentsOfDirectory(atPath: tasksDir)) ?? [] {
            for attempt in (try? fm.contentsOfDirectory(atPath: "\(tasksDir)/\(task)")) ?? [] {
                try? fm.removeItem(atPath: "\(tasksDir)/\(task)/\(attempt)/work")
            }
        }
    }

    /// Writes `jobs/<id>/summary.json`.
    func writeSummary(_ job: JobRecord, _ verdict: Verdict) async {
        let counts = (try? await ctx.store.counts(jobID)) ?? TaskCounts()
        let outputs = (try? await ctx.store.outputs(jobID)) ?? []
        let summary: [String: Any] = [
            "id": jobID, "name": job.name, "state": verdict.phase.rawValue, "reason": verdict.reason ?? NSNull(),
            "tasks": ["total": counts.total, "succeeded": counts.succeeded, "failed": counts.failed, "cancelled": counts.cancelled],
            "destination": job.destination, "outputs": outputs.map(\.path),
        ]
        if let data = try? JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys]) {
            let path = "\(ctx.config.jobsDirectory)/\(jobID)/summary.json"
            try? data.write(to: URL(fileURLWithPath: path), options: .atomic)
        }
    }
}
