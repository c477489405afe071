import BatchCore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finds a task's outputs: regular files inside its working directory,
/// reached without following any symlink, so a task cannot have a file from
/// elsewhere collected by linking to it or by swapping a directory (even
/// its working directory) for a link.
public enum OutputCollector {
    /// What a task's working directory holds that matches its patterns.
    public struct Found: Sendable, Equatable {
        /// Regular files, as paths relative to the working directory, sorted.
        public var files: [String]
        /// Matches that are symlinks: never collected.
        public var symlinks: [String]
    }

    /// Opens `base/relative` as a directory, refusing a symlink at every
    /// step below `base` (which the daemon made and trusts).
    public static func openDirectory(_ base: String, _ relative: String) throws -> Int32 {
        var fd = Glibc.open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileOpError(base, "cannot open: \(FileOps.plain(errno))") }
        var path = base
        for name in relative.split(separator: "/") {
            path += "/\(name)"
            let next = openat(fd, String(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            close(fd)
            guard next >= 0 else {
                throw FileOpError(path, errno == ELOOP || errno == ENOTDIR
                    ? "is not a directory (a symlink?); nothing is collected through one" : "cannot open: \(FileOps.plain(errno))")
            }
            fd = next
        }
        return fd
    }

    /// Files under the directory `work` (a descriptor) matching any pattern.
    public static func find(in work: Int32, patterns: [String]) throws -> Found {
        let globs = patterns.map(Glob.init)
        var found = Found(files: [], symlinks: [])
        var seen = 0
        func walk(_ fd: Int32, _ rel: [String]) throws {
            let dup = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard dup >= 0, let d = fdopendir(dup) else { return }
            defer { closedir(d) }
            var names: [String] = []
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if name != "." && name != ".." { names.append(name) }
            }
            seen += names.count
            if seen > 1_000_000 { throw FileOpError("work", "the task's directory holds more than 1,000,000 entries") }
            for name in names.sorted() {
                let path = rel + [name]
                var st = stat()
                guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    guard path.count < 64 else { continue }
                    let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    if sub >= 0 { defer { close(sub) }; try walk(sub, path) }
                case S_IFREG:
                    if globs.contains(where: { $0.matches(path) }) { found.files.append(path.joined(separator: "/")) }
                case S_IFLNK:
                    if globs.contains(where: { $0.matches(path) }) { found.symlinks.append(path.joined(separator: "/")) }
                default:
                    continue  // FIFOs, sockets, devices are never outputs
                }
            }
        }
        try walk(work, [])
        return found
    }

    /// Whether a relative output path stays inside the directory it is
    /// relative to: names that are not empty, `.` or `..`, no NUL, no
    /// control characters, within the path limits.
    public static func isSafeRelative(_ rel: String) -> Bool {
        let parts = rel.split(separator: "/", omittingEmptySubsequences: false)
        return !rel.isEmpty && !rel.hasPrefix("/") && rel.utf8.count <= Bounds.pathBytes
            && parts.allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." && $0.utf8.count <= Bounds.nameBytes }
            && !rel.unicodeScalars.contains(where: Printable.isUnsafe)
    }

    /// Opens the regular file `relative` under `work` for reading, through no
    /// symlink. The caller closes it.
    public static func open(_ relative: String, in work: Int32) throws -> Int32 {
        let parts = relative.split(separator: "/").map(String.init)
        guard let last = parts.last, !parts.contains(".."), !relative.hasPrefix("/") else {
            throw FileOpError(relative, "output path reaches outside the task's directory")
        }
        var dir = openat(work, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        for name in parts.dropLast() {
            let next = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            close(dir)
            guard next >= 0 else { throw FileOpError(relative, "is no longer inside the task's directory") }
            dir = next
        }
        let fd = openat(dir, last, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        close(dir)
        guard fd >= 0 else { throw FileOpError(relative, "cannot open: \(FileOps.plain(errno))") }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw FileOpError(relative, "is no longer a regular file")
        }
        return fd
    }
}
