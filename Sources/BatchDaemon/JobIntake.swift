import BatchBackend
import BatchControl
import BatchAccess
import BatchBackend
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Takes manifests from the inbox: claims each by an atomic rename into the
/// state directory (so it is processed once, even across restarts), then
/// either records the job or moves it to `inbox/rejected/` with a private
/// `.error` beside it. Nothing dropped is lost silently: an entry that cannot
/// be read as a manifest (a FIFO, a symlink, a directory, a hard link) gets a
/// `.error` too, or where even that fails, a warning in the journal and a
/// line in `batchctl list`.
struct JobIntake: Sendable {
    let config: DaemonConfig
    let store: Store
    let logger: Logger
    let clock: @Sendable () -> Date
    /// The backends this daemon runs, and why the others are missing.
    var backends = BackendRegistry()
    /// The directories no submitter's path may reach, with their names.
    var protected: [(path: String, why: String)] = []
    /// The file system as the daemon sees it: a job whose inputs it cannot
    /// see or whose destination it cannot write is refused at intake.
    var view: ServiceView
    let issued = IssuedIDs()

    /// A new job id, sortable by time: `20261121-190023-3fa94c1e`. Unique
    /// within this daemon (ids of one second are remembered) and, through 32
    /// random bits, across daemons sharing nothing.
    func newJobID() -> String {
        let second = UTCTime.compact(clock().timeIntervalSince1970)
        return issued.state.withLock { state in
            if state.second != second { state = (second, []) }
            while true {
                let id = "\(second)-\(String(format: "%08x", UInt32.random(in: 0...UInt32.max)))"
                if state.ids.insert(id).inserted { return id }
            }
        }
    }

    /// Room for a name in `claimed/<id>--NAME` and `inbox/.claiming-<id>--NAME`.
    static let claimedNameRoom = 255 - ".claiming-".utf8.count - "20261121-190023-3fa94c1e--".utf8.count

    /// `name` cut to at most `max` bytes (on a character boundary), keeping
    /// its extension, with `~` where it was cut.
    static func shortened(_ name: String, max: Int) -> String {
        guard name.utf8.count > max else { return name }
        let ext = (name as NSString).pathExtension
        let keep = max - ext.utf8.count - 2
        var stem = ""
        for ch in name where stem.utf8.count + String(ch).utf8.count <= keep { stem.append(ch) }
        return ext.isEmpty ? "\(stem)~" : "\(stem)~.\(ext)"
    }

    /// Claims `name` from the inbox; nil if it is gone (already claimed) or
    /// was refused (it then has its `.error`).
    func claim(_ name: String) async -> String? {
        let source = "\(config.inboxDirectory)/\(name)"
        var st = stat()
        guard lstat(source, &st) == 0 else { return nil }
        if st.st_mode & S_IFMT != S_IFREG {
            await refuseEntry(name, st, reason: "it is \(AccessPolicy.typeName(st.st_mode)); batchd reads only regular files dropped into the inbox",
                              hint: "copy the manifest itself into the inbox, or use batchctl submit FILE")
            return nil
        }
        if st.st_nlink > 1 {
            await refuseEntry(name, st, reason: "it has other hard links, so whose it is cannot be told",
                              hint: "copy the file into the inbox instead of linking it, or use batchctl submit FILE")
            return nil
        }
        let claimedName = "\(newJobID())--\(Self.shortened(name, max: Self.claimedNameRoom))"
        let claimed = "\(config.claimedDirectory)/\(claimedName)"
        if rename(source, claimed) == 0 {
            FileOps.syncDirectory(config.claimedDirectory)
            var now = stat()
            lstat(claimed, &now)
            _ = try? await store.claimIntake(claimed: claimedName, original: name, owner: Int(now.st_uid))
            return claimed
        }
        switch errno {
        case ENOENT:
            return nil  // taken meanwhile
        case EXDEV:
            return await claimAcross(name, claimedName)
        default:
            let why = FileOps.plain(errno)
            await refuseEntry(name, st, reason: "it cannot be moved out of the inbox (\(why))", hint: "check the inbox's permissions")
            return nil
        }
    }

    /// Claims across file systems (the inbox elsewhere than the state
    /// directory): rename to a dot-name in the inbox (atomic, and the watcher
    /// ignores dot-files), record the claim, copy into `claimed/`, then remove
    /// the dot-file. A crash in between is finished by `leftovers()`.
    func claimAcross(_ name: String, _ claimedName: String) async -> String? {
        let holding = "\(config.inboxDirectory)/.claiming-\(claimedName)"
        guard rename("\(config.inboxDirectory)/\(name)", holding) == 0 else { return nil }
        FileOps.syncDirectory(config.inboxDirectory)
        var st = stat()
        lstat(holding, &st)
        _ = try? await store.claimIntake(claimed: claimedName, original: name, owner: Int(st.st_uid))
        return await finishAcross(holding, claimedName, original: name)
    }

    func finishAcross(_ holding: String, _ claimedName: String, original: String) async -> String? {
        let claimed = "\(config.claimedDirectory)/\(claimedName)"
        do {
            try FileOps.copy(from: holding, to: claimed, mode: 0o600)
        } catch {
            // It cannot be taken: say so beside it, keep it, never retry silently.
            var st = stat()
            lstat(holding, &st)
            try? await store.endIntake(claimedName)
            let reason = "it could not be copied into the daemon's state directory (\(error))"
            await refuseEntry(original, st, reason: reason, hint: "free space in the state directory, then drop it again", from: holding)
            return nil
        }
        unlink(holding)
        FileOps.syncDirectory(config.inboxDirectory)
        return claimed
    }

    /// Claims left by a crash: finish cross-file-system claims, finish moving
    /// manifests already accepted, and return the others to be processed again.
    func leftovers() async -> [String] {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: config.inboxDirectory)) ?? [] where name.hasPrefix(".claiming-") {
            let claimedName = String(name.dropFirst(".claiming-".count))
            let holding = "\(config.inboxDirectory)/\(name)"
            if FileManager.default.fileExists(atPath: "\(config.claimedDirectory)/\(claimedName)") {
                unlink(holding)
                continue
            }
            var st = stat()
            lstat(holding, &st)
            let original = claimedName.range(of: "--").map { String(claimedName[$0.upperBound...]) } ?? claimedName
            _ = try? await store.claimIntake(claimed: claimedName, original: original, owner: Int(st.st_uid))
            _ = await finishAcross(holding, claimedName, original: original)
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: config.claimedDirectory)) ?? []
        var out: [String] = []
        for name in names.sorted() where name.contains("--") && !name.hasPrefix(".") {
            let path = "\(config.claimedDirectory)/\(name)"
            let id = String(name[..<name.range(of: "--")!.lowerBound])
            if let job = try? await store.job(id), job.id == id {
                rename(path, job.manifestPath)
                try? await store.endIntake(name)
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
        guard let split = fileName.range(of: "--") else { return nil }
        let jobID = String(fileName[..<split.lowerBound])
        var st = stat()
        guard lstat(claimed, &st) == 0 else { return nil }
        // The claim recorded it; a crash between the rename and that record did not.
        var row = try? await store.intake(fileName)
        if row == nil { row = try? await store.claimIntake(claimed: fileName, original: String(fileName[split.upperBound...]), owner: Int(st.st_uid)) }
        let original = row?.original ?? String(fileName[split.upperBound...])
        let owner = UInt32(row?.owner ?? Int(st.st_uid))
        var log = logger
        log[metadataKey: "job.id"] = "\(jobID)"
        log[metadataKey: "file"] = "\(Printable.escape(original))"
        // The crash-loop breaker: a manifest the daemon began reading twice
        // without finishing is set aside instead of read a third time.
        if (row?.starts ?? 0) >= 2 {
            await reject(claimed, original: original, owner: owner, reason: """
                \(Printable.escape(original)): the daemon stopped while reading this manifest, twice, so it is set aside \
                to keep the service up. Nothing was run. It is kept beside this file; check it with `batchctl plan FILE`, \
                and please report it if it looks valid.
                """, logger: log)
            return nil
        }
        _ = try? await store.intakeStarting(fileName)
        do {
            let bytes = try readManifest(claimed, original: original)
            Debug.crashPoint("parse", String(decoding: bytes, as: UTF8.self))
            let policy = AccessPolicy(submitter: Submitter.lookup(uid: owner), protected: protected)
            let plan = try IntakePlan.make(text: try ManifestParser.text(of: bytes, file: original), file: original, catalog: backends.catalog,
                                           types: config.jobTypes, defaultBackend: config.defaultBackend, base: config.inboxDirectory,
                                           policy: policy, view: view, jobID: jobID, reveal: false)
            let (manifest, backend) = (plan.manifest, plan.backend)
            let runner: any JobBackend
            switch backends.lookup(backend) {
            case .success(let b): runner = b
            case .failure(let missing): throw ManifestError(file: original, issues: [missing.issue])
            }
            let spec = plan.spec(submitterUID: owner)
            if let issue = await runner.refusal(spec) { throw ManifestError(file: original, issues: [issue]) }
            let jobDir = "\(config.jobsDirectory)/\(jobID)"
            try FileOps.makeDirectory(jobDir)
            // Private by default: the daemon's; its submitter may pass
            // through (to their tasks' directories), no one else.
            chmod(jobDir, 0o700)
            if owner != geteuid() { try Permission.sharePassage(jobDir, with: owner) }
            let ext = (original as NSString).pathExtension.lowercased() == "json" ? "json" : "yaml"
            let manifestPath = "\(jobDir)/manifest.\(ext)"
            let now = clock().timeIntervalSince1970
            let record = JobRecord(id: jobID, phase: .accepted, sourceFile: original, manifestPath: manifestPath, taskCount: plan.taskCount,
                                   createdAt: now, updatedAt: now, spec: spec)
            // The tasks are made as they are recorded: a task that cannot be
            // made (a repeated id, a command too long) rejects the job, and
            // the transaction leaves nothing behind.
            try await store.insertJob(record, claimed: fileName) { emit in try plan.tasks.forEach(emit) }
            rename(claimed, manifestPath)
            FileOps.syncDirectory(jobDir)
            log.notice("job accepted", metadata: ["job.name": "\(manifest.name)", "tasks": "\(plan.taskCount)", "backend": "\(backend.rawValue)",
                                                  "submitter": "\(policy.submitter)", "message.id": "\(MessageID.jobAccepted)"])
            return jobID
        } catch let error as ManifestError {
            await reject(claimed, original: original, owner: owner, reason: error.description, logger: log)
        } catch {
            await reject(claimed, original: original, owner: owner, reason: "\(Printable.escape(original)): \(error)", logger: log)
        }
        return nil
    }

    /// The claimed file's bytes: a regular file, at most `Bounds.manifestBytes`.
    func readManifest(_ path: String, original: String) throws -> [UInt8] {
        func refuse(_ message: String, _ hint: String? = nil) -> ManifestError {
            ManifestError(file: original, issues: [ManifestIssue(line: nil, column: nil, field: "", message: message, hint: hint)])
        }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw errno == EACCES
                ? refuse("permission denied: batchd cannot read the file", "make it readable by the daemon (chmod g+r, or submit with batchctl)")
                : refuse("cannot read the file: \(FileOps.plain(errno))")
        }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        guard st.st_mode & S_IFMT == S_IFREG else { throw refuse("it is \(AccessPolicy.typeName(st.st_mode))") }
        if st.st_size > Bounds.manifestBytes {
            throw refuse("the file is \(st.st_size) bytes; a manifest may have at most \(Bounds.manifestBytes) (4 MiB)",
                         "list many tasks in a row file (tasks.forEachRow) instead of in the manifest")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
        var total = 0
        while total < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 { if errno == EINTR { continue }; throw refuse("cannot read the file: \(FileOps.plain(errno))") }
            if n == 0 { break }
            total += n
        }
        if total > Bounds.manifestBytes { throw refuse("the file grew past \(Bounds.manifestBytes) bytes while it was read") }
        return Array(bytes.prefix(total))
    }
}

/// Job ids handed out in the current second.
final class IssuedIDs: Sendable {
    let state = Mutex<(second: String, ids: Set<String>)>(("", []))
}
