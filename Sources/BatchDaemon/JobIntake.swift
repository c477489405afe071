import BackendAzure
import BackendLocal
import BatchCore
import BatchStore
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Takes manifests from the inbox: claims each by an atomic rename into the
/// state directory (so it is processed once, even across restarts), then
/// either records the job or moves the file to `inbox/rejected/` with a
/// `.error` beside it. Nothing dropped is lost silently.
struct JobIntake: Sendable {
    let config: DaemonConfig
    let store: Store
    let logger: Logger
    let clock: @Sendable () -> Date
    /// Why the Azure backend is off, if it is.
    var azureProblem: String? = nil
    let issued = IssuedIDs()

    /// A new job id, sortable by time: `20261121-190023-3fa94c1e`. Unique
    /// within this daemon (ids of one second are remembered) and, through 32
    /// random bits, across daemons sharing nothing.
    func newJobID() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        let second = f.string(from: clock())
        return issued.state.withLock { state in
            if state.second != second { state = (second, []) }
            while true {
                let id = "\(second)-\(String(format: "%08x", UInt32.random(in: 0...UInt32.max)))"
                if state.ids.insert(id).inserted { return id }
            }
        }
    }

    /// Claims `name` from the inbox; nil if it is gone (already claimed) or not a file.
    func claim(_ name: String) -> String? {
        let source = "\(config.inboxDirectory)/\(name)"
        var st = stat()
        guard lstat(source, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let claimed = "\(config.claimedDirectory)/\(newJobID())--\(name)"
        guard rename(source, claimed) == 0 else { return nil }
        FileOps.syncDirectory(config.claimedDirectory)
        return claimed
    }

    /// Claimed manifests left by a crash: finish moving those already
    /// accepted, and return the others to be processed again.
    func leftovers() async -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: config.claimedDirectory)) ?? []
        var out: [String] = []
        for name in names.sorted() where name.contains("--") && !name.hasPrefix(".") {
            let path = "\(config.claimedDirectory)/\(name)"
            let id = String(name[..<name.range(of: "--")!.lowerBound])
            if let job = try? await store.job(id), job.id == id {
                rename(path, job.manifestPath)
            } else {
                out.append(path)
            }
        }
        return out
    }

    /// Validates a claimed manifest and records its job (returning the id), or
    /// rejects it (returning nil).
    func process(_ claimed: String) async -> String? {
        let fileName = (claimed as NSString).lastPathComponent
        let split = fileName.range(of: "--")!
        let jobID = String(fileName[..<split.lowerBound])
        let original = String(fileName[split.upperBound...])
        var log = logger
        log[metadataKey: "job.id"] = "\(jobID)"
        log[metadataKey: "file"] = "\(original)"
        do {
            guard let data = FileManager.default.contents(atPath: claimed) else {
                throw ManifestError(file: original, issues: [ManifestIssue(line: nil, column: nil, field: "", message: "cannot read the file")])
            }
            let manifest = try ManifestParser.parse(String(decoding: data, as: UTF8.self), file: original)
            let backend = manifest.backend ?? config.defaultBackend
            guard DaemonConfig.availableBackends.contains(backend) else {
                throw ManifestError(file: original, issues: [ManifestIssue(
                    line: nil, column: nil, field: "backend", message: "backend '\(backend)' is not available in this daemon",
                    hint: "available: \(DaemonConfig.availableBackends.joined(separator: ", "))")])
            }
            if backend == "azure" {
                if let problem = azureProblem {
                    throw ManifestError(file: original, issues: [ManifestIssue(
                        line: nil, column: nil, field: "backend", message: "backend 'azure' is not configured in this daemon: \(problem)",
                        hint: "see docs/azure.md, or submit with --backend local")])
                }
                do {
                    _ = try SASLifetime.forJob(wallClock: manifest.limits.wallClockSeconds, margin: config.azure.tokenMargin,
                                               maximum: config.azure.maxTokenLifetime)
                } catch {
                    throw ManifestError(file: original, issues: [ManifestIssue(line: nil, column: nil, field: "limits.wallClock", message: "\(error)", hint: nil)])
                }
            }
            let base = manifest.baseDirectory ?? config.inboxDirectory
            let expanded = try TaskExpander(fs: LocalFileSystem()).expand(manifest, base: base, jobID: jobID, file: original)
            let jobDir = "\(config.jobsDirectory)/\(jobID)"
            try FileOps.makeDirectory(jobDir)
            let ext = (original as NSString).pathExtension.lowercased() == "json" ? "json" : "yaml"
            let manifestPath = "\(jobDir)/manifest.\(ext)"
            let destination = manifest.outputs.destination.hasPrefix("/")
                ? manifest.outputs.destination
                : URL(fileURLWithPath: "\(base)/\(manifest.outputs.destination)").standardizedFileURL.path
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let now = clock().timeIntervalSince1970
            let record = JobRecord(
                id: jobID, name: manifest.name, backend: backend, phase: JobPhase.accepted.rawValue, verdict: nil, reason: nil,
                sourceFile: original, manifestPath: manifestPath, baseDirectory: base, destination: destination,
                retries: manifest.retries, timeoutSeconds: manifest.timeoutSeconds, cleanup: manifest.cleanup.rawValue,
                maxParallel: manifest.pool.slotsPerNode,
                outputPatterns: String(decoding: try encoder.encode(manifest.outputs.patterns), as: UTF8.self),
                sharedInputs: String(decoding: try encoder.encode(expanded.sharedInputs), as: UTF8.self),
                taskCount: expanded.tasks.count, cancelRequested: false, createdAt: now, updatedAt: now, finishedAt: nil)
            try await store.insertJob(record, tasks: expanded.tasks)
            rename(claimed, manifestPath)
            FileOps.syncDirectory(jobDir)
            log.notice("job accepted", metadata: ["job.name": "\(manifest.name)", "tasks": "\(expanded.tasks.count)", "backend": "\(backend)",
                                                  "message.id": "\(MessageID.jobAccepted)"])
            return jobID
        } catch let error as ManifestError {
            reject(claimed, original: original, reason: error.description, logger: log)
        } catch {
            reject(claimed, original: original, reason: "\(original): \(error)", logger: log)
        }
        return nil
    }

    /// Moves a claimed manifest to `inbox/rejected/NAME` with `NAME.error`.
    func reject(_ claimed: String, original: String, reason: String, logger: Logger) {
        let dir = config.rejectedDirectory
        try? FileOps.makeDirectory(dir)
        var name = original
        if FileManager.default.fileExists(atPath: "\(dir)/\(name)") {
            let id = (claimed as NSString).lastPathComponent.components(separatedBy: "--")[0]
            name = "\((original as NSString).deletingPathExtension).\(id).\((original as NSString).pathExtension)"
        }
        let stamp = ISO8601DateFormatter().string(from: clock())
        let text = """
            batchd rejected \(original) at \(stamp):

            \(reason)

            Nothing was run. Fix the manifest and drop it into the inbox again,
            or check it first with: batchctl submit FILE
            (docs/manifest.md describes every field.)

            """
        let errorPath = "\(dir)/\(name).error"
        let tmp = "\(dir)/.\(name).error.tmp"
        if FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8)) {
            rename(tmp, errorPath)
        }
        if rename(claimed, "\(dir)/\(name)") != 0 {
            logger.error("cannot move a rejected manifest", metadata: ["path": "\(claimed)", "errno": "\(errno)"])
        }
        FileOps.syncDirectory(dir)
        logger.warning("manifest rejected", metadata: ["reason": "\(reason)", "rejected": "\(dir)/\(name)",
                                                       "message.id": "\(MessageID.jobRejected)"])
    }
}

/// Job ids handed out in the current second.
final class IssuedIDs: Sendable {
    let state = Mutex<(second: String, ids: Set<String>)>(("", []))
}
