import BatchBackend
import BatchControl
import BatchAccess
import BatchCore
import BatchStore
import BatchSupport
import CLinux
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

extension JobIntake {
    /// Moves a claimed manifest to `inbox/rejected/NAME` with `NAME.error`,
    /// both readable by the submitter alone (docs/security.md).
    func reject(_ claimed: String, original: String, owner: UInt32, reason: String, logger: Logger) async {
        let dir = config.rejectedDirectory
        try? FileOps.makeDirectory(dir)
        var name = Self.shortened(original, max: 255 - ".error".utf8.count)
        if FileManager.default.fileExists(atPath: "\(dir)/\(name)") || FileManager.default.fileExists(atPath: "\(dir)/\(name).error") {
            let id = (claimed as NSString).lastPathComponent.components(separatedBy: "--")[0]
            let ext = (name as NSString).pathExtension
            name = Self.shortened("\((name as NSString).deletingPathExtension).\(id)\(ext.isEmpty ? "" : ".\(ext)")", max: 255 - ".error".utf8.count)
        }
        let text = errorText(original, reason)
        let wrote = writePrivate(Data(text.utf8), to: "\(dir)/\(name).error", owner: owner, logger: logger)
        // The manifest goes beside it as a private copy; one the daemon
        // cannot read, or too big to be a manifest, is moved as it is (its
        // own mode keeps it as private as its owner made it).
        var kept = "\(dir)/\(name)"
        var st = stat()
        let small = lstat(claimed, &st) == 0 && st.st_mode & S_IFMT == S_IFREG && st.st_size <= Bounds.manifestBytes
        if small, let data = FileManager.default.contents(atPath: claimed),
           writePrivate(data, to: kept, owner: owner, logger: logger) {
            unlink(claimed)
        } else if rename(claimed, kept) != 0 {
            kept = claimed
            logger.error("cannot move a rejected manifest", metadata: ["path": "\(Printable.escape(claimed))", "error": "\(FileOps.plain(errno))"])
        }
        FileOps.syncDirectory(dir)
        try? await store.endIntake((claimed as NSString).lastPathComponent)
        if !wrote {
            try? await store.recordInboxProblem(original, reason: "rejected; its .error could not be written or made readable by its owner: see the daemon's journal")
        }
        logger.warning("manifest rejected", metadata: ["reason": "\(Printable.escape(reason))", "rejected": "\(Printable.escape(kept))",
                                                       "message.id": "\(MessageID.jobRejected)"])
    }

    /// Forgets inbox problems whose entry has gone from the inbox and from
    /// `rejected/` (someone dealt with it).
    func forgetSolvedProblems() async {
        for p in (try? await store.inboxProblems()) ?? [] {
            var st = stat()
            let inInbox = lstat("\(config.inboxDirectory)/\(p.name)", &st) == 0
            let inRejected = lstat("\(config.rejectedDirectory)/\(p.name)", &st) == 0
            if !inInbox && !inRejected { try? await store.clearInboxProblem(p.name) }
        }
    }

    func errorText(_ original: String, _ reason: String) -> String {
        let stamp = UTCTime.iso(clock().timeIntervalSince1970)
        return """
            batchd rejected \(Printable.escape(original)) at \(stamp):

            \(Printable.escape(reason, keepNewlines: true))

            Nothing was run. Fix the manifest and drop it into the inbox again,
            or check it first with: batchctl submit FILE
            (docs/manifest.md describes every field.)

            """
    }

    /// An inbox entry that is not a manifest batchd can read (a FIFO, a
    /// symlink, a directory, a hard link, one it cannot move): it gets a
    /// `.error`, and moves to `rejected/` when it can; where no `.error` can
    /// be written, the journal and `batchctl list` say so. Reported once.
    func refuseEntry(_ name: String, _ st: stat, reason: String, hint: String, from source: String? = nil) async {
        let dir = config.rejectedDirectory
        try? FileOps.makeDirectory(dir)
        let errorName = Self.shortened(name, max: 255 - ".error".utf8.count) + ".error"
        if FileManager.default.fileExists(atPath: "\(dir)/\(errorName)") { return }
        var log = logger
        log[metadataKey: "file"] = "\(Printable.escape(name))"
        let text = errorText(name, "\(Printable.escape(name)): \(reason) (\(hint))")
        let wrote = writePrivate(Data(text.utf8), to: "\(dir)/\(errorName)", owner: st.st_uid, logger: log)
        let moved = rename(source ?? "\(config.inboxDirectory)/\(name)", "\(dir)/\(name)") == 0
        FileOps.syncDirectory(dir)
        if !wrote { try? await store.recordInboxProblem(name, reason: "\(reason) (\(hint))") }
        log.warning("inbox entry refused", metadata: ["reason": "\(reason)", "moved": "\(moved)", "message.id": "\(MessageID.jobRejected)"])
    }

    /// Writes `data` to `path` (temp, fsync, rename) readable by `owner`
    /// alone: owned by them when the daemon runs as root, else owned by the
    /// daemon, mode 0600, with a POSIX ACL entry that lets `owner` read it.
    /// False (and a warning) when that cannot be done.
    @discardableResult
    func writePrivate(_ data: Data, to path: String, owner: UInt32, logger: Logger) -> Bool {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = "\(dir)/.batchd-\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            logger.warning("cannot write into the rejected directory", metadata: ["path": "\(Printable.escape(dir))", "error": "\(FileOps.plain(errno))"])
            return false
        }
        var ok = data.withUnsafeBytes { raw -> Bool in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; return false }
                off += n
            }
            return true
        }
        ok = ok && fsync(fd) == 0
        // Without a way to hand it to its owner the file stays the daemon's
        // alone: private still, but the submitter must ask the operator.
        let handed = ok && Self.makePrivate(fd, for: owner, logger: logger)
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            logger.warning("cannot write a rejection file", metadata: ["path": "\(Printable.escape(path))", "error": "\(FileOps.plain(errno))"])
            return false
        }
        return handed
    }

    /// Lets `owner`, and no one else but the daemon, read the open file `fd` (mode 0600).
    static func makePrivate(_ fd: Int32, for owner: UInt32, logger: Logger) -> Bool {
        if owner == geteuid() { return true }
        if geteuid() == 0 { return fchown(fd, owner, UInt32.max) == 0 }
        // user::rw- user:OWNER:r-- group::--- mask::r-- other::---
        let acl = Permission.aclBytes(mode: 0o100600, user: owner, rights: Permission.read)
        if batchd_fsetxattr(fd, "system.posix_acl_access", acl, UInt(acl.count)) == 0 { return true }
        logger.warning("cannot let the submitter read a rejection file: the file system has no POSIX ACLs",
                       metadata: ["uid": "\(owner)", "error": "\(FileOps.plain(errno))"])
        return false
    }
}
