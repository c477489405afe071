import BatchAccess
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Steps more than one backend takes the same way.
extension JobHandle {
    /// Hashes every input (using the cache keyed by device, inode, size and
    /// mtime) and copies into `contents` what it lacks, reading each as the
    /// submitter would: what they could not read is never staged. Local
    /// staging goes to the state directory's store, Slurm's to the shared one.
    public func stage(into contents: ContentStore) async -> StepResult {
        guard let sources = await inputSources() else { return .interrupted }
        guard let cache = await retrying("read the hash cache", { try await store.cachedHashes(paths: sources) }) else { return .interrupted }
        var records: [InputRecord] = []
        var copied = 0
        var bytes: Int64 = 0
        for source in sources {
            do {
                let file = try policy.openForReading(source)
                defer { close(file.fd) }
                let id = FileOps.identity(file.st)
                if let cached = cache[source],
                   cached.describes(device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs), contents.contains(cached.sha256) {
                    records.append(InputRecord(jobId: job.id, source: source, sha256: cached.sha256, size: Int(cached.size)))
                    continue
                }
                let put = try contents.put(fd: file.fd, name: source)
                if put.copied { copied += 1; bytes += put.size }
                crashPoint("stage.stored")
                try await store.saveHash(FileHashRecord(path: source, device: id.device, inode: id.inode, size: id.size,
                                                        mtimeNs: id.mtimeNs, sha256: put.sha256))
                records.append(InputRecord(jobId: job.id, source: source, sha256: put.sha256, size: Int(put.size)))
            } catch {
                return .failed(reason: "input \(Printable.escape(source)) could not be staged: \(error)")
            }
        }
        let staged = records
        guard await retrying("record inputs", { try await store.recordInputs(job.id, staged) }) != nil else { return .interrupted }
        log.info("inputs staged", metadata: ["inputs": "\(records.count)", "copied": "\(copied)", "bytes": "\(bytes)"])
        return .done
    }

    /// Copies the outputs a finished attempt left in `root/relative` (its
    /// work directory) into the destination, following no link; the outputs,
    /// or why they could not be collected.
    public func collectOutputs(root: String, relative: String, task: TaskRecord, sink: OutputSink) -> Result<[OutputRecord], DaemonError> {
        guard !sink.patterns.isEmpty else { return .success([]) }
        do {
            let work = try OutputCollector.openDirectory(root, relative)
            defer { close(work) }
            let found = try OutputCollector.find(in: work, patterns: sink.patterns)
            if !found.symlinks.isEmpty {
                log.warning("symlinks among the outputs are not collected", metadata: [
                    "task.id": "\(task.taskId)", "paths": "\(found.symlinks.prefix(5).map { Printable.escape($0) }.joined(separator: ", "))"])
            }
            var outputs: [OutputRecord] = []
            for rel in found.files {
                let fd = try OutputCollector.open(rel, in: work)
                defer { close(fd) }
                outputs.append(try sink.write(rel, from: fd, task: task.idx))
            }
            return .success(outputs)
        } catch {
            return .failure(DaemonError("\(error)"))
        }
    }
}

/// The cleanup policy, for the attempt directories a job leaves.
extension AttemptFiles {
    /// Deletes the `work/` directory of every attempt under `tasksDirectory`
    /// (`<task>/attempt-<n>/work`) when `policy` says so for `verdict`, and
    /// the attempt's and task's directories if that leaves them empty; the
    /// logs stay for `batchctl logs`.
    public static func removeWorkDirectories(under tasksDirectory: String, policy: CleanupPolicy, verdict: Verdict) {
        guard policy == .always || (policy == .onSuccess && verdict == .success) else { return }
        let fm = FileManager.default
        for task in (try? fm.contentsOfDirectory(atPath: tasksDirectory)) ?? [] {
            for attempt in (try? fm.contentsOfDirectory(atPath: "\(tasksDirectory)/\(task)")) ?? [] {
                try? fm.removeItem(atPath: "\(tasksDirectory)/\(task)/\(attempt)/work")
                rmdir("\(tasksDirectory)/\(task)/\(attempt)")
            }
            rmdir("\(tasksDirectory)/\(task)")
        }
    }
}

/// What batchd-exec leaves in an attempt directory: `status` ("pid N" while
/// the command runs, then "exit N MS" or "signal N MS" with its run time in
/// milliseconds, one fixed-width record rewritten in place), `stdout` and `stderr` only if the command wrote to
/// them, and `work/`. (An older batchd-exec wrote the pid to a `pid` file;
/// attempts it started are still read after an upgrade.)
public enum AttemptFiles {
    static func record(_ directory: String) -> (word: Substring, n: Int32, ms: Int64?)? {
        guard let data = FileManager.default.contents(atPath: "\(directory)/status") else { return nil }
        let parts = String(decoding: data, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard parts.count == 2 || parts.count == 3, let n = Int32(parts[1]) else { return nil }
        return (parts[0], n, parts.count == 3 ? Int64(parts[2]) : nil)
    }

    /// How the command ended, from the `status` file; nil while it runs or
    /// when there is no status (yet).
    public static func recordedOutcome(_ directory: String) -> TaskOutcome? {
        switch record(directory) {
        case ("exit", let n, _)?: return .exited(code: n)
        case ("signal", let n, _)?: return .signaled(signal: n)
        default: return nil
        }
    }

    /// How long the command ran, in seconds, once it has ended (nil while
    /// it runs, or from a batchd-exec that did not record it).
    public static func recordedRunTime(_ directory: String) -> Double? {
        guard let r = record(directory), r.word != "pid", let ms = r.ms else { return nil }
        return Double(ms) / 1000
    }

    /// The pid batchd-exec recorded when it started (nil once the command
    /// has ended, or if it never started).
    public static func recordedPid(_ directory: String) -> pid_t? {
        if case ("pid", let n, _)? = record(directory) { return n }
        guard let data = FileManager.default.contents(atPath: "\(directory)/pid") else { return nil }
        return pid_t(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Whether batchd-exec started in the directory (it wrote its status).
    public static func started(_ directory: String) -> Bool {
        access("\(directory)/status", F_OK) == 0 || access("\(directory)/pid", F_OK) == 0
    }

    /// Once an attempt's end is in the database, its status file says
    /// nothing more: it is deleted, and so are the attempt's directory and
    /// its task's directory if that leaves them empty (a task with no
    /// output, no log and nothing left in `work/` then costs no file). What
    /// is left follows the job's cleanup policy.
    public static func discardFinished(_ directory: String) {
        unlink("\(directory)/status")
        unlink("\(directory)/pid")
        rmdir("\(directory)/work")
        if rmdir(directory) == 0 { rmdir((directory as NSString).deletingLastPathComponent) }
    }
}
