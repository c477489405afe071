import BatchCore
import BatchSupport
import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why the daemon will not read or write a path for a submitter, in plain words.
public struct AccessError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The message, naming the path.
    public var description: String
    /// Creates an error.
    public init(_ description: String) { self.description = description }
}

/// The daemon's rule for every file it touches for a job (docs/security.md):
/// it reads for a submitter only what that submitter could read, writes only
/// where they could write, and never touches the kernel's interfaces, device
/// nodes, special files, or its own state, runtime and credentials
/// directories.
///
/// Paths are resolved one name at a time from `/`, as the kernel does
/// (symlinks followed, at most 40), through `O_PATH` descriptors: each
/// directory on the way must be searchable by the submitter, the file at the
/// end readable, and what is checked is exactly what is then opened (the
/// final descriptor is reopened through /proc/self/fd, never by name), so a
/// path swapped for a symlink after the check changes nothing.
public struct AccessPolicy: Sendable {
    /// Whom the daemon acts for.
    public let submitter: Submitter
    /// Directories refused outright, with the words that say why.
    let forbidden: [(path: String, why: String)]
    /// Device and inode of each forbidden directory that exists, so another
    /// path to it (a bind mount) is refused too.
    let forbiddenIDs: [(dev: UInt64, ino: UInt64, why: String)]

    /// Hierarchies no submitter's path may lead into.
    public static let system: [(String, String)] = [
        ("/proc", "the kernel's process interface"), ("/sys", "the kernel's device interface"),
        ("/dev", "device nodes"), ("/run/credentials", "systemd's credentials"),
    ]

    /// A policy for `submitter`; `protected` adds the daemon's own
    /// directories (state, runtime, credentials) with a name for each.
    public init(submitter: Submitter, protected: [(path: String, why: String)]) {
        self.submitter = submitter
        var all = Self.system.map { (path: $0.0, why: $0.1) }
        var ids: [(UInt64, UInt64, String)] = []
        for (path, why) in protected where !path.isEmpty {
            all.append((path, why))
            if let real = FileOps.realPath(path), real != path { all.append((real, why)) }
            var st = stat()
            if stat(path, &st) == 0 { ids.append((UInt64(st.st_dev), UInt64(st.st_ino), why)) }
        }
        forbidden = all
        forbiddenIDs = ids
    }

    /// What a path resolved to: an O_PATH descriptor (the caller closes it),
    /// the physical path, and its status.
    struct Resolved {
        var fd: Int32
        var path: String
        var st: stat
    }

    static let magic: Set<Int> = [0x9fa0, 0x62656572, 0x1cd1, 0x64626720, 0x73636673, 0x27e0eb, 0x63677270,
                                  0x74726163, 0xcafe4a11, 0x62656570, 0xde5e81e4, 0x6165676C, 0x65735543]

    func refusal(_ physical: String, _ st: stat, fd: Int32) -> String? {
        for f in forbidden where physical == f.path || physical.hasPrefix(f.path == "/" ? "/" : f.path + "/") {
            return "is inside \(f.path) (\(f.why)), which batchd never reads or writes for a submitter"
        }
        for f in forbiddenIDs where UInt64(st.st_dev) == f.dev && UInt64(st.st_ino) == f.ino {
            return "is \(f.why), which batchd never reads or writes for a submitter"
        }
        if Self.magic.contains(batchd_fs_type(fd)) {
            return "is on a kernel file system (/proc, /sys and the like), which batchd never reads for a submitter"
        }
        return nil
    }

    public static func shown(_ path: String) -> String { Printable.escape(path) }

    /// Resolves `path` (absolute) for the submitter; with `followLast` false
    /// a symlink at the end is returned as itself.
    func resolve(_ path: String, followLast: Bool = true) throws(AccessError) -> Resolved {
        let (r, missing) = try resolve(path, followLast: followLast, stopAtMissing: false)
        precondition(missing.isEmpty)
        return r
    }

    /// Resolves as much of `path` as exists: the deepest existing directory
    /// and the names below it that do not exist yet (with `stopAtMissing`).
    func resolve(_ path: String, followLast: Bool, stopAtMissing: Bool) throws(AccessError) -> (Resolved, missing: [String]) {
        guard path.hasPrefix("/") else { throw AccessError("\(Self.shown(path)): not an absolute path") }
        if path.utf8.contains(0) { throw AccessError("a path contains a NUL byte") }
        var queue = ArraySlice(path.split(separator: "/", omittingEmptySubsequences: true).map(String.init))
        var dir = open("/", batchd_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw AccessError("cannot open /: \(String(cString: strerror(errno)))") }
        var dirStat = stat()
        fstat(dir, &dirStat)
        var names: [String] = []
        var links = 0
        func here() -> String { "/" + names.joined(separator: "/") }
        func fail(_ message: String) -> AccessError { close(dir); return AccessError(message) }
        while let name = queue.first {
            queue = queue.dropFirst()
            if name == "." { continue }
            guard Permission.allows(submitter, Permission.execute, fd: dir, dirStat) else {
                throw fail("permission denied: \(submitter) may not enter \(Self.shown(here()))")
            }
            if name == ".." {
                let up = openat(dir, "..", batchd_O_PATH | O_DIRECTORY | O_CLOEXEC)
                guard up >= 0 else { throw fail("cannot leave \(Self.shown(here())): \(String(cString: strerror(errno)))") }
                close(dir)
                dir = up
                fstat(dir, &dirStat)
                _ = names.popLast()
                continue
            }
            let fd = openat(dir, name, batchd_O_PATH | O_NOFOLLOW | O_CLOEXEC)
            let next = here() == "/" ? "/\(name)" : "\(here())/\(name)"
            guard fd >= 0 else {
                let e = errno
                if e == ENOENT, stopAtMissing, !queue.contains("..") {
                    let root = Resolved(fd: dir, path: here(), st: dirStat)
                    return (root, [name] + queue)
                }
                throw fail(e == ENOENT ? "\(Self.shown(next)) does not exist"
                           : e == EACCES ? "permission denied: batchd itself may not look at \(Self.shown(next))"
                           : "\(Self.shown(next)): \(String(cString: strerror(e)))")
            }
            var st = stat()
            fstat(fd, &st)
            let type = st.st_mode & S_IFMT
            if type == S_IFLNK && (followLast || !queue.isEmpty) {
                links += 1
                var buffer = [CChar](repeating: 0, count: 4097)
                let n = readlinkat(fd, "", &buffer, 4096)
                close(fd)
                guard links <= 40, n > 0 else { throw fail("\(Self.shown(next)): too many symbolic links, or one that cannot be read") }
                let target = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if target.hasPrefix("/") {
                    close(dir)
                    dir = open("/", batchd_O_PATH | O_DIRECTORY | O_CLOEXEC)
                    fstat(dir, &dirStat)
                    names = []
                }
                queue = ArraySlice(target.split(separator: "/").map(String.init)) + queue
                continue
            }
            names.append(name)
            if let why = refusal(here(), st, fd: fd) {
                close(fd)
                throw fail("\(Self.shown(path)) \(why)")
            }
            if queue.isEmpty {
                close(dir)
                return (Resolved(fd: fd, path: here(), st: st), [])
            }
            guard type == S_IFDIR else {
                close(fd)
                throw fail("\(Self.shown(here())) is not a directory")
            }
            close(dir)
            dir = fd
            dirStat = st
        }
        // The path named `/` itself (or only `.` and `..`).
        let root = Resolved(fd: dir, path: here(), st: dirStat)
        if let why = refusal(root.path, root.st, fd: root.fd) { close(dir); throw AccessError("\(Self.shown(path)) \(why)") }
        return (root, [])
    }

    /// The words for a file type that is not a regular file.
    public static func typeName(_ mode: UInt32) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory, not a file"
        case S_IFIFO: return "a FIFO (named pipe), not a regular file"
        case S_IFSOCK: return "a socket, not a regular file"
        case S_IFCHR, S_IFBLK: return "a device, not a regular file"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    /// Opens a regular file the submitter may read; returns a read-only
    /// descriptor (the caller closes it), its physical path and status.
    public func openForReading(_ path: String) throws(AccessError) -> (fd: Int32, path: String, st: stat) {
        try acting { () throws(AccessError) -> (fd: Int32, path: String, st: stat) in try openForReadingHere(path) }
    }

    func openForReadingHere(_ path: String) throws(AccessError) -> (fd: Int32, path: String, st: stat) {
        let r = try resolve(path)
        defer { close(r.fd) }
        guard r.st.st_mode & S_IFMT == S_IFREG else { throw AccessError("\(Self.shown(path)) is \(Self.typeName(r.st.st_mode))") }
        guard Permission.allows(submitter, Permission.read, fd: r.fd, r.st) else {
            throw AccessError("permission denied: \(submitter) may not read \(Self.shown(path))")
        }
        let fd = open("/proc/self/fd/\(r.fd)", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw AccessError("cannot open \(Self.shown(path)): \(String(cString: strerror(errno)))") }
        var st = stat()
        fstat(fd, &st)
        guard st.st_ino == r.st.st_ino, st.st_dev == r.st.st_dev, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw AccessError("\(Self.shown(path)) changed while it was opened")
        }
        return (fd, r.path, st)
    }

    /// Checks that `path` is a regular file the submitter may read.
    public func checkReadable(_ path: String) throws(AccessError) {
        let f = try openForReading(path)
        close(f.fd)
    }

    /// Reads a whole file the submitter may read, refusing one over `maxBytes`.
    public func readFile(_ path: String, maxBytes: Int) throws(AccessError) -> [UInt8] {
        let f = try openForReading(path)
        defer { close(f.fd) }
        if f.st.st_size > maxBytes { throw AccessError("\(Self.shown(path)) is \(f.st.st_size) bytes; at most \(maxBytes) are read") }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(f.fd, &chunk, chunk.count)
            if n < 0 { if errno == EINTR { continue }; throw AccessError("cannot read \(Self.shown(path)): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            out += chunk.prefix(n)
            if out.count > maxBytes { throw AccessError("\(Self.shown(path)) is longer than \(maxBytes) bytes") }
        }
        return out
    }

    /// What a path is, for a glob walk: nil when it cannot be reached or
    /// is refused (a walk skips what the submitter could not see).
    public enum Kind: Sendable { case file, directory }

    /// The kind of `path` as the submitter would see it; symlinks are followed
    /// unless `followLast` is false (then a symlink is nil).
    public func kind(of path: String, followLast: Bool = true) -> Kind? {
        guard let r = try? acting({ () throws(AccessError) -> Resolved in try resolve(path, followLast: followLast) }) else { return nil }
        defer { close(r.fd) }
        switch r.st.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .directory
        default: return nil
        }
    }

    /// Resolves a directory the submitter may list (read and search).
    func resolveListable(_ path: String) throws(AccessError) -> Resolved {
        let r = try acting { () throws(AccessError) -> Resolved in try resolve(path) }
        guard r.st.st_mode & S_IFMT == S_IFDIR else { close(r.fd); throw AccessError("\(Self.shown(path)) is not a directory") }
        guard Permission.allows(submitter, Permission.read | Permission.execute, fd: r.fd, r.st) else {
            close(r.fd)
            throw AccessError("permission denied: \(submitter) may not list \(Self.shown(path))")
        }
        return r
    }

    /// Checks that `path` is a directory the submitter may list.
    public func checkListable(_ path: String) throws(AccessError) {
        close(try resolveListable(path).fd)
    }

    /// The names in a directory the submitter may list (read and search).
    public func list(_ path: String) throws(AccessError) -> [String] {
        try acting { () throws(AccessError) -> [String] in try listHere(path) }
    }

    func listHere(_ path: String) throws(AccessError) -> [String] {
        let r = try resolveListable(path)
        defer { close(r.fd) }
        let fd = open("/proc/self/fd/\(r.fd)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw AccessError("cannot list \(Self.shown(path)): \(String(cString: strerror(errno)))") }
        guard let d = fdopendir(fd) else {
            close(fd)
            throw AccessError("cannot list \(Self.shown(path)): \(String(cString: strerror(errno)))")
        }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
