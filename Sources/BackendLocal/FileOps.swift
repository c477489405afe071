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
        FileOpError(path, "\(what): \(String(cString: strerror(errno)))")
    }

    /// The identity of a file for hash caching: device, inode, size, mtime (ns).
    public static func identity(_ path: String) throws -> (device: Int64, inode: Int64, size: Int64, mtimeNs: Int64) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw posix(path, "cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileOpError(path, "not a regular file") }
        return (Int64(st.st_dev), Int64(st.st_ino), Int64(st.st_size),
                Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
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
        var output: Int32 = -1
        var tmp = ""
        if let destination {
            let dir = (destination as NSString).deletingLastPathComponent
            tmp = "\(dir)/.\((destination as NSString).lastPathComponent).batchd-\(UInt32.random(in: 0...UInt32.max))"
            output = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
            guard output >= 0 else { throw posix(tmp, "cannot create") }
        }
        var hasher = SHA256()
        var size: Int64 = 0
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        do {
            while true {
                let n = read(input, buffer, 1 << 20)
                if n < 0 { if errno == EINTR { continue }; throw posix(source, "cannot read") }
                if n == 0 { break }
                hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: n))
                size += Int64(n)
                var off = 0
                while output >= 0 && off < n {
                    let w = write(output, buffer + off, n - off)
                    if w < 0 { if errno == EINTR { continue }; throw posix(tmp, "cannot write") }
                    off += w
                }
            }
            if output >= 0, let destination {
                guard fsync(output) == 0 else { throw posix(tmp, "cannot fsync") }
                close(output)
                output = -1
                guard rename(tmp, destination) == 0 else { throw posix(destination, "cannot rename into place") }
                syncDirectory((destination as NSString).deletingLastPathComponent)
            }
        } catch {
            if output >= 0 { close(output) }
            if !tmp.isEmpty { unlink(tmp) }
            throw error
        }
        let hex = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        return (hex, size)
    }

    /// fsyncs a directory, so a rename in it survives a power cut.
    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    /// Creates a directory and its parents.
    public static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw FileOpError(path, "cannot create directory: \(error.localizedDescription)")
        }
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
