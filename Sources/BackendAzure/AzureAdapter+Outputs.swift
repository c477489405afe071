import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A completed task's logs and outputs: downloaded, and checked against
/// what the node says it had, so that no output is silently lost.
extension AzureAdapter {
    /// Downloads a completed task's logs (an empty one costs no request and
    /// no file); finds its output blobs for `collect`.
    func fetchLogs(_ task: TaskRecord, _ ending: Ending) async -> Ending? {
        let container = record.outputContainer
        let prefix = "\(task.taskId)/"
        var outcome = ending.outcome
        let blobs: [String: BlobProperties]
        if let listed = state.withLock({ $0.s.listed.removeValue(forKey: task.taskId) }) {
            blobs = listed
        } else {
            switch await az.azureStep("list the blobs of \(task.taskId)", { try await az.az.blob.listProperties(container, prefix: prefix) }) {
            case nil: return nil   // shutdown: recorded at the next start
            case .failure(let e)?:
                log.warning("cannot list a task's blobs; its logs are not kept", metadata: ["task.id": "\(task.taskId)", "error": "\(e)"])
                blobs = [:]
                if outcome.isSuccess, !handle.spec.outputPatterns.isEmpty { outcome = .outputsFailed(reason: "cannot list outputs: \(e)") }
            case .success(let found)?: blobs = found
            }
        }
        let dir = ending.directory
        let downloads = az.downloads
        for name in ["stdout", "stderr"] {
            let blob = BatchBodies.logPrefix(task.taskId) + "\(name).txt"
            guard let props = blobs[blob], props.size > 0 else { continue }
            let result = await az.azureStep("download the \(name) of \(task.taskId)") { () -> Bool in
                let token = downloads.begin(props.size)
                do {
                    try await az.az.blob.download(container, blob, to: "\(dir)/\(name)", known: props, received: { downloads.add(token, $0) })
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
            if result == nil { return nil }   // shutdown: recorded at the next start
        }
        // The node uploads a task's stdout and stderr whatever they hold, after
        // its outputs: a success whose logs are not in the container had its
        // uploads taken away (the container deleted, or emptied, after the
        // task ended). Its outputs are lost, so it runs again, and says why.
        if outcome.isSuccess, !handle.spec.outputPatterns.isEmpty, blobs[BatchBodies.logPrefix(task.taskId) + "stdout.txt"] == nil {
            outcome = .outputsFailed(reason: "what the node uploaded for this task is not in the output container \(container) "
                                     + "(deleted or emptied after the task ended)")
        }
        // Every output the node has that a pattern matches must be in the
        // container, with its size: one deleted alone is found here.
        if outcome.isSuccess, !handle.spec.outputPatterns.isEmpty {
            let (batchJob, id) = (record.batchJobId, task.taskId)
            switch await az.azureStep("list the files of \(id) on its node", { try await az.az.batch.taskFiles(batchJob, id) }) {
            case nil: return nil
            case .failure(let e)?:
                log.warning("cannot list a task's files on its node; its outputs are not checked against them",
                            metadata: ["task.id": "\(id)", "error": "\(e)"])
            case .success(nil)?:
                log.debug("the task's node, or its files, are gone; its outputs are not checked against them", metadata: ["task.id": "\(id)"])
            case .success(let files?)?:
                if let missing = Self.notUploaded(files, patterns: handle.spec.outputPatterns, blobs: blobs, taskID: id) {
                    outcome = .outputsFailed(reason: "\(missing) is on the node but not in the output container \(container)")
                }
            }
        }
        state.withLock { $0.s.blobs[task.taskId] = blobs }
        var fetched = ending
        fetched.outcome = outcome
        return fetched
    }

    /// The first file of the task's working directory (`wd/…` in `files`,
    /// as the node lists it) that an output pattern matches and that is
    /// not in the container under the name the node uploads it to (a
    /// wildcard pattern's match under `<task>/<path>`, a plain one under
    /// `<task>/<pattern>`, as BatchBodies asks), or not with its size; in
    /// words, or nil when every one is there.
    static func notUploaded(_ files: [String: Int64], patterns: [String], blobs: [String: BlobProperties], taskID: String) -> String? {
        let globs = patterns.map { ($0, Glob($0), Glob.hasWildcard($0)) }
        for (name, size) in files.sorted(by: { $0.key < $1.key }) where name.hasPrefix("wd/") {
            let rel = String(name.dropFirst(3))
            let parts = rel.split(separator: "/").map(String.init)
            for (pattern, glob, wildcard) in globs where glob.matches(parts) {
                let blob = wildcard ? "\(taskID)/\(rel)" : "\(taskID)/\(pattern)"
                guard let found = blobs[blob] else { return "output \(Printable.quote(rel)) (pattern \(Printable.quote(pattern)))" }
                if size >= 0, found.size != size {
                    return "output \(Printable.quote(rel)) (\(size) bytes; \(found.size) in the container)"
                }
            }
        }
        return nil
    }

    /// Downloads a successful task's outputs (found by `fetchLogs`).
    func collect(_ task: TaskRecord, _ ending: Ending, sink: OutputSink) async -> Result<[OutputRecord], any Error>? {
        let blobs = state.withLock { $0.s.blobs.removeValue(forKey: task.taskId) } ?? [:]
        return await az.downloadOutputs(task, blobs: blobs, prefix: "\(task.taskId)/", container: record.outputContainer,
                                        dir: ending.directory, sink)
    }
}

extension AzureJob {
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
}
