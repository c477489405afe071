import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The workstation's own cores: inputs in the content store, tasks under
/// batchd-exec in the slots every local job shares, outputs copied as each
/// task ends. Tasks were recorded at acceptance with deterministic ids, so
/// there is nothing to provision or submit.
public struct LocalJobBackend: JobBackend {
    /// Starts and waits for attempts under batchd-exec.
    public let runner: LocalRunner
    /// The slots shared by every local job.
    public let slots: SlotPool
    /// Variables passed through from the daemon's environment to tasks.
    public let baseEnvironment: [String: String]
    /// Paths a task of another user than the daemon's must not reach
    /// (canonical; batchd-exec hides them with Landlock).
    public let hidden: [String]

    /// The local backend.
    public init(runner: LocalRunner, slots: SlotPool, baseEnvironment: [String: String], hidden: [String]) {
        self.runner = runner
        self.slots = slots
        self.baseEnvironment = baseEnvironment
        self.hidden = hidden
    }

    /// What a job's tasks must not reach: nothing more for the daemon's own
    /// user (they could read it all anyway), everything in `hidden` for
    /// anyone else's.
    func hidden(for spec: JobSpec) -> [String] {
        spec.submitterUID == geteuid() ? [] : hidden
    }

    /// Hashes every input (using the cache keyed by device, inode, size and
    /// mtime) and copies into the content store what it lacks.
    public func stage(_ job: JobHandle) async -> StepResult {
        guard let sources = await job.inputSources() else { return .interrupted }
        var records: [InputRecord] = []
        var copied = 0
        var bytes: Int64 = 0
        let store = runner.store
        for source in sources {
            do {
                // Opened as the submitter would: what they could not read is never staged.
                let file = try job.policy.openForReading(source)
                defer { close(file.fd) }
                let id = FileOps.identity(file.st)
                if let cached = try await job.store.cachedHash(path: source),
                   cached.describes(device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs), store.contains(cached.sha256) {
                    records.append(InputRecord(jobId: job.id, source: source, sha256: cached.sha256, size: Int(cached.size)))
                    continue
                }
                let put = try store.put(fd: file.fd, name: source)
                if put.copied { copied += 1; bytes += put.size }
                job.crashPoint("stage.stored")
                try await job.store.saveHash(FileHashRecord(path: source, device: id.device, inode: id.inode, size: id.size,
                                                            mtimeNs: id.mtimeNs, sha256: put.sha256))
                records.append(InputRecord(jobId: job.id, source: source, sha256: put.sha256, size: Int(put.size)))
            } catch {
                return .failed(reason: "input \(Printable.escape(source)) could not be staged: \(error)")
            }
        }
        let staged = records
        guard await job.retrying("record inputs", { try await job.store.recordInputs(job.id, staged) }) != nil else { return .interrupted }
        job.log.info("inputs staged", metadata: ["inputs": "\(records.count)", "copied": "\(copied)", "bytes": "\(bytes)"])
        return .done
    }

    /// Local slots need no pool.
    public func provision(_ job: JobHandle) async -> StepResult { .done }

    /// The tasks were recorded at acceptance, with deterministic ids.
    public func submit(_ job: JobHandle) async -> StepResult { .done }

    /// Stops attempts still running, then records the pending tasks cancelled.
    public func cancel(_ job: JobHandle) async {
        await stopLiveAttempts(job)
        _ = await job.retrying("cancel pending tasks", { try await job.store.cancelPendingTasks(job.id) })
    }

    /// Nothing beyond the work directories, which the runner deletes for every backend.
    public func cleanup(_ job: JobHandle, _ verdict: Verdict) async {}
}
