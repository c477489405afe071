import BatchCore
import BatchSupport
import CLinux
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A job's output destination, written for the submitter: only where they
/// may write, never through a symlink inside it, each file complete or
/// absent (temp file, fsync, rename), and the submitter's own. A daemon
/// that may switch users (the system unit's) does every step here as the
/// submitter (`Identity.acting`): the kernel checks each, and what is made is
/// theirs. One that may not (a user unit, for its own user) checks the same
/// rules itself and hands over what it made (`Permission.grant`).
public final class Destination: @unchecked Sendable {
    /// The destination as given (absolute).
    public let path: String
    let policy: AccessPolicy
    let jobID: String
    /// An O_PATH descriptor of the destination directory.
    let root: Int32

    /// Checks, creating nothing, that the submitter may write at `path`: the
    /// deepest part of it that exists is a directory they may write into,
    /// reached through directories they may enter, and none of it is refused.
    public static func check(_ path: String, policy: AccessPolicy) throws(AccessError) {
        try policy.acting { () throws(AccessError) in close(try writable(path, policy: policy).existing.fd) }
    }

    /// The deepest existing part of `path` (open; the caller closes it), once
    /// it is known to be a directory the submitter may write into, and the
    /// names below it still to be made.
    static func writable(_ path: String, policy: AccessPolicy) throws(AccessError) -> (existing: AccessPolicy.Resolved, missing: [String]) {
        let (r, missing) = try policy.resolve(path, followLast: true, stopAtMissing: true)
        guard r.st.st_mode & S_IFMT == S_IFDIR else {
            close(r.fd)
            throw AccessError("\(AccessPolicy.shown(r.path)) is \(AccessPolicy.typeName(r.st.st_mode)); the destination must be a directory")
        }
        guard Permission.allows(policy.submitter, Permission.write | Permission.execute, fd: r.fd, r.st) else {
            close(r.fd)
            let what = missing.isEmpty ? "write into" : "create \(AccessPolicy.shown(missing[0])) in"
            throw AccessError("permission denied: \(policy.submitter) may not \(what) \(AccessPolicy.shown(r.path))")
        }
        return (r, missing)
    }

    /// Opens the destination, creating the directories it lacks.
    public init(path: String, policy: AccessPolicy, jobID: String) throws(AccessError) {
        self.path = path
        self.policy = policy
        self.jobID = jobID
        root = try policy.acting { () throws(AccessError) -> Int32 in
            var (r, missing) = try Self.writable(path, policy: policy)
            for name in missing {
                do throws(AccessError) {
                    let next = try Self.directory(name, in: r.fd, at: r.path, policy: policy, checkWrite: false)
                    close(r.fd)
                    r = next
                } catch {
                    close(r.fd)
                    throw error
                }
            }
            return r.fd
        }
    }

    deinit { close(root) }

    /// Opens (creating if needed) directory `name` in `dir`, never through a symlink.
    static func directory(_ name: String, in dir: Int32, at dirPath: String, policy: AccessPolicy, checkWrite: Bool) throws(AccessError) -> AccessPolicy.Resolved {
        let path = dirPath == "/" ? "/\(name)" : "\(dirPath)/\(name)"
        var fd = openat(dir, name, batchd_O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 && errno == ENOENT {
            var st = stat()
            fstat(dir, &st)
            if checkWrite, !Permission.allows(policy.submitter, Permission.write | Permission.execute, fd: dir, st) {
                throw AccessError("permission denied: \(policy.submitter) may not create \(AccessPolicy.shown(name)) in \(AccessPolicy.shown(dirPath))")
            }
            if mkdirat(dir, name, 0o775) != 0 && errno != EEXIST {
                throw AccessError("cannot create the directory \(AccessPolicy.shown(path)): \(String(cString: strerror(errno)))")
            }
            fd = openat(dir, name, batchd_O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC)
            if fd >= 0 { Permission.grant(fd, to: policy.submitter) }
        }
        guard fd >= 0 else {
            throw AccessError(errno == ENOTDIR || errno == ELOOP
                ? "\(AccessPolicy.shown(path)) is not a directory (a symlink?); outputs are never written through one"
                : "cannot open \(AccessPolicy.shown(path)): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        fstat(fd, &st)
        return AccessPolicy.Resolved(fd: fd, path: path, st: st)
    }

    /// The temp name of an output while it is written: fixed for this job and
    /// path, so a rewrite after a crash replaces it, and `sweep` finds it.
    public static func tempName(jobID: String, relative: String) -> String {
        let digest = SHA256.hash(data: Data(relative.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        return "\(tempPrefix(jobID))\(digest)"
    }

    static func tempPrefix(_ jobID: String) -> String { ".batchd-tmp-\(jobID)-" }

    /// Copies what `source` (a readable descriptor) holds to `relative`
    /// under the destination: temp file, fsync, rename. Returns the SHA-256
    /// and size written.
    public func write(_ relative: String, from source: Int32) throws -> (sha256: String, size: Int64) {
        try write(relative) { out, target in
            let (hex, size) = try FileOps.stream(from: source, to: out, sourceName: relative, targetName: target)
            return (hex, size)
        }
    }

    /// A path under the destination as its directories and last name;
    /// refused when it could reach outside (`/` first, `.` or `..`).
    static func split(_ relative: String) throws(AccessError) -> (directories: ArraySlice<String>, last: String) {
        let parts = relative.split(separator: "/").map(String.init)
        guard let last = parts.last, !parts.contains(".."), !parts.contains("."), !relative.hasPrefix("/") else {
            throw AccessError("output path \(AccessPolicy.shown(relative)) reaches outside the destination")
        }
        return (parts.dropLast(), last)
    }

    /// Opens `relative` under the destination for reading, through no
    /// symlink, if it is a regular file the submitter may read; nil when
    /// there is none. The caller closes the descriptor.
    public func openExisting(_ relative: String) throws -> (fd: Int32, size: Int64)? {
        try Identity.acting(as: policy.submitter) { try openExistingHere(relative) }
    }

    func openExistingHere(_ relative: String) throws -> (fd: Int32, size: Int64)? {
        let (parts, last) = try Self.split(relative)
        var dir = dup(root)
        defer { close(dir) }
        for name in parts {
            let next = openat(dir, name, batchd_O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC)
            guard next >= 0 else {
                if errno == ENOENT { return nil }
                throw AccessError("cannot open \(AccessPolicy.shown(relative)): \(String(cString: strerror(errno))) (outputs are never read through a symlink)")
            }
            close(dir)
            dir = next
        }
        let fd = openat(dir, last, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw AccessError("cannot open \(AccessPolicy.shown(relative)): \(String(cString: strerror(errno))) (outputs are never read through a symlink)")
        }
        var st = stat()
        fstat(fd, &st)
        guard st.st_mode & S_IFMT == S_IFREG, Permission.allows(policy.submitter, Permission.read, fd: fd, st) else {
            close(fd)
            throw AccessError("\(AccessPolicy.shown(relative)) is not a regular file \(policy.submitter) may read")
        }
        return (fd, Int64(st.st_size))
    }

    /// Writes `relative` under the destination with what `fill` writes to
    /// the temp file's descriptor (it gets the target's path for messages):
    /// temp file, fsync, rename, so a reader sees the old file or the new.
    public func write<T>(_ relative: String, fill: (Int32, String) throws -> T) throws -> T {
        let file = try begin(relative)
        do {
            let result = try fill(file.fd, file.target)
            try commit(file)
            return result
        } catch {
            abort(file)
            throw error
        }
    }

    /// A file being written: its temp file, open, in its directory.
    public final class PendingFile: @unchecked Sendable {
        /// The temp file, open for writing.
        public let fd: Int32
        /// The path it will have (for messages).
        public let target: String
        let dir: Int32
        let tmp: String
        let relative: String
        let last: String
        var open = true

        init(fd: Int32, target: String, dir: Int32, tmp: String, relative: String, last: String) {
            self.fd = fd
            self.target = target
            self.dir = dir
            self.tmp = tmp
            self.relative = relative
            self.last = last
        }

        deinit {
            if open { close(fd) }
            close(dir)
        }
    }

    /// Starts writing `relative` under the destination: its directories
    /// made as the submitter may, its temp file created. Finish it with
    /// `commit`, or drop it with `abort`.
    public func begin(_ relative: String) throws -> PendingFile {
        try Identity.acting(as: policy.submitter) { try beginHere(relative) }
    }

    func beginHere(_ relative: String) throws -> PendingFile {
        let (parts, last) = try Self.split(relative)
        var dir = AccessPolicy.Resolved(fd: dup(root), path: path, st: stat())
        for name in parts {
            do {
                let next = try Self.directory(name, in: dir.fd, at: dir.path, policy: policy, checkWrite: true)
                close(dir.fd)
                dir = next
            } catch {
                close(dir.fd)
                throw error
            }
        }
        var st = stat()
        fstat(dir.fd, &st)
        guard Permission.allows(policy.submitter, Permission.write | Permission.execute, fd: dir.fd, st) else {
            close(dir.fd)
            throw AccessError("permission denied: \(policy.submitter) may not write into \(AccessPolicy.shown(dir.path))")
        }
        let tmp = Self.tempName(jobID: jobID, relative: relative)
        unlinkat(dir.fd, tmp, 0)
        let out = openat(dir.fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard out >= 0 else {
            let why = String(cString: strerror(errno))
            close(dir.fd)
            throw AccessError("cannot create a file in \(AccessPolicy.shown(dir.path)): \(why)")
        }
        return PendingFile(fd: out, target: "\(dir.path)/\(last)", dir: dir.fd, tmp: tmp, relative: relative, last: last)
    }

    /// Puts a written file in place: given to the submitter, fsynced, renamed
    /// over its name, the directory fsynced.
    public func commit(_ file: PendingFile) throws {
        try Identity.acting(as: policy.submitter) { try commitHere(file) }
    }

    func commitHere(_ file: PendingFile) throws {
        Permission.grant(file.fd, to: policy.submitter)
        guard fsync(file.fd) == 0 else { throw AccessError("cannot write \(AccessPolicy.shown(file.target)): \(String(cString: strerror(errno)))") }
        close(file.fd)
        file.open = false
        Debug.crashPoint("collect", file.relative)
        guard renameat(file.dir, file.tmp, file.dir, file.last) == 0 else {
            throw AccessError("cannot put \(AccessPolicy.shown(file.relative)) in place: \(String(cString: strerror(errno)))")
        }
        let d = Glibc.open("/proc/self/fd/\(file.dir)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 { fsync(d); close(d) }
    }

    /// Drops a file being written (its temp file goes).
    public func abort(_ file: PendingFile) {
        if file.open { close(file.fd); file.open = false }
        _ = try? Identity.acting(as: policy.submitter) { unlinkat(file.dir, file.tmp, 0) }
    }

    /// Removes the temp files a killed daemon left under `path` for `jobID`
    /// (never following a symlink; at most `limit` entries looked at).
    /// Returns how many were removed. Done as `submitter`, as they were made.
    @discardableResult
    public static func sweep(_ path: String, jobID: String, as submitter: Submitter, limit: Int = 100_000) -> Int {
        (try? Identity.acting(as: submitter) { sweepHere(path, jobID: jobID, limit: limit) }) ?? 0
    }

    static func sweepHere(_ path: String, jobID: String, limit: Int) -> Int {
        let prefix = tempPrefix(jobID)
        let top = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard top >= 0 else { return 0 }
        var removed = 0
        var seen = 0
        var stack: [(Int32, Int)] = [(top, 0)]
        while let (fd, depth) = stack.popLast() {
            guard let d = fdopendir(fd) else { close(fd); continue }
            while let entry = readdir(d), seen < limit {
                seen += 1
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if name == "." || name == ".." { continue }
                if name.hasPrefix(prefix) {
                    if unlinkat(dirfd(d), name, 0) == 0 { removed += 1 }
                } else if entry.pointee.d_type == UInt8(DT_DIR), depth < 32 {
                    let sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    if sub >= 0 { stack.append((sub, depth + 1)) }
                }
            }
            closedir(d)
        }
        return removed
    }
}
