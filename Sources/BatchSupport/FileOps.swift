import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file-system failure with the path it concerns.
public struct FileOpError: Error, Sendable, CustomStringConvertible {
    /// The path.
    public var path: String
    /// What went wrong.
    public var message: String
    /// Creates an error.
    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    /// `PATH: MESSAGE`.
    public var description: String { "\(path): \(message)" }
}

/// Small, careful file operations: streaming hashes and durable atomic copies.
public enum FileOps {
    static func posix(_ path: String, _ what: String) -> FileOpError {
        FileOpError(path, "\(what): \(plain(errno))")
    }

    /// An errno in plain words: "permission denied", "no such file or directory".
    public static func plain(_ code: Int32) -> String {
        String(cString: strerror(code)).lowercased()
    }

    /// The identity of a file for hash caching: device, inode, size, mtime (ns).
    public static func identity(_ path: String) throws -> (device: Int64, inode: Int64, size: Int64, mtimeNs: Int64) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw posix(path, "cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileOpError(path, "not a regular file") }
        return (Int64(st.st_dev), Int64(st.st_ino), Int64(st.st_size),
                Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    /// The identity of an open file's status.
    public static func identity(_ st: stat) -> (device: Int64, inode: Int64, size: Int64, mtimeNs: Int64) {
        (Int64(st.st_dev), Int64(st.st_ino), Int64(st.st_size), Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    /// SHA-256 (lower-case hex) and size of a file, read in 1 MiB chunks.
    public static func sha256(_ path: String) throws -> (hex: String, size: Int64) {
        try copy(from: path, to: nil)
    }

    /// Streams `source` into `destination` (when given) through a temp file in
    /// the same directory, fsyncs it and renames it into place, so a reader
    /// never sees half a file. Returns the SHA-256 and size of what was copied.
    @discardableResult
    public static func copy(from source: String, to destination: String?, mode: mode_t = 0o644) throws -> (hex: String, size: Int64) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw posix(source, "cannot open") }
        defer { close(input) }
        return try copy(from: input, sourceName: source, to: destination, mode: mode)
    }

    /// `copy(from:to:mode:)` from an open descriptor.
    @discardableResult
    public static func copy(from input: Int32, sourceName: String, to destination: String?, mode: mode_t = 0o644) throws -> (hex: String, size: Int64) {
        guard let destination else { return try stream(from: input, to: -1, sourceName: sourceName, targetName: "") }
        let dir = (destination as NSString).deletingLastPathComponent
        let tmp = "\(dir)/.batchd-copy-\(UInt64.random(in: 0...UInt64.max))"
        let output = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard output >= 0 else { throw posix(tmp, "cannot create") }
        var open = true
        do {
            let result = try stream(from: input, to: output, sourceName: sourceName, targetName: tmp)
            guard fsync(output) == 0 else { throw posix(tmp, "cannot fsync") }
            close(output)
            open = false
            guard rename(tmp, destination) == 0 else { throw posix(destination, "cannot rename into place") }
            syncDirectory(dir)
            return result
        } catch {
            if open { close(output) }
            unlink(tmp)
            throw error
        }
    }

    /// Reads `input` to its end, hashing it, and writes it to `output` unless
    /// that is -1. Returns the SHA-256 (lower-case hex) and the size.
    public static func stream(from input: Int32, to output: Int32, sourceName: String, targetName: String) throws -> (hex: String, size: Int64) {
        var hasher = SHA256()
        var size: Int64 = 0
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer, 1 << 20)
            if n < 0 { if errno == EINTR { continue }; throw posix(sourceName, "cannot read") }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: n))
            size += Int64(n)
            var off = 0
            while output >= 0 && off < n {
                let w = write(output, buffer + off, n - off)
                if w < 0 { if errno == EINTR { continue }; throw posix(targetName, "cannot write") }
                off += w
            }
        }
        let hex = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        return (hex, size)
    }

    /// fsyncs a directory, so a rename in it survives a power cut.
    /// Writes `text` to `path` through a temp file beside it, fsynced and
    /// renamed: a reader sees the old file or the new one, never half.
    public static func writeAtomically(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        let tmp = "\(path).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw FileOpError(tmp, "cannot write: \(plain(errno))") }
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; let e = errno; close(fd); unlink(tmp); throw FileOpError(tmp, "cannot write: \(plain(e))") }
            off += n
        }
        fsync(fd)
        close(fd)
        guard rename(tmp, path) == 0 else { let e = errno; unlink(tmp); throw FileOpError(tmp, "cannot rename to \(path): \(plain(e))") }
    }

    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    /// Creates a directory and its parents.
    public static func makeDirectory(_ path: String) throws {
        var built = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            built += "/\(part)"
            if mkdir(built, 0o777) != 0 && errno != EEXIST { throw posix(built, "cannot create the directory") }
        }
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw FileOpError(path, "exists, and is not a directory") }
    }

    /// The canonical absolute path (symlinks resolved), or nil if it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Whether `path` is `root` or below it (both canonical).
    public static func isInside(_ path: String, _ root: String) -> Bool {
        path == root || path.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }
}
