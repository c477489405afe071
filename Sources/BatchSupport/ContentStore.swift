import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A content-addressed directory of input files: each file is stored once,
/// read-only, under its SHA-256, and hard-linked into every task that needs
/// it, so a file shared by many tasks (or jobs) is copied once.
public struct ContentStore: Sendable {
    /// The store's root directory.
    public let root: String

    /// A store at `root` (created on first use).
    public init(root: String) { self.root = root }

    /// Where the blob with this hash lives.
    public func path(for sha256: String) -> String {
        "\(root)/sha256/\(sha256.prefix(2))/\(sha256)"
    }

    /// Whether the store holds this blob.
    public func contains(_ sha256: String) -> Bool {
        FileManager.default.fileExists(atPath: path(for: sha256))
    }

    /// Copies a file into the store (hashing it on the way) unless a blob with
    /// that hash is already there. Returns its hash and size, and whether it
    /// was copied.
    public func put(_ source: String) throws -> (sha256: String, size: Int64, copied: Bool) {
        let fd = open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileOpError(source, "cannot open: \(FileOps.plain(errno))") }
        defer { close(fd) }
        return try put(fd: fd, name: source)
    }

    /// `put` from an open descriptor (a file opened through an `AccessPolicy`).
    public func put(fd: Int32, name: String) throws -> (sha256: String, size: Int64, copied: Bool) {
        let incoming = "\(root)/incoming"
        try FileOps.makeDirectory(incoming)
        let tmp = "\(incoming)/\(UInt64.random(in: 0...UInt64.max))"
        let (hex, size) = try FileOps.copy(from: fd, sourceName: name, to: tmp, mode: 0o444)
        let final = path(for: hex)
        if FileManager.default.fileExists(atPath: final) {
            unlink(tmp)
            return (hex, size, false)
        }
        try FileOps.makeDirectory((final as NSString).deletingLastPathComponent)
        guard rename(tmp, final) == 0 else {
            unlink(tmp)
            throw FileOpError(final, "cannot move into the store: \(String(cString: strerror(errno)))")
        }
        FileOps.syncDirectory((final as NSString).deletingLastPathComponent)
        return (hex, size, true)
    }

    /// Places a stored blob at `target` (a hard link; a copy across devices).
    public func place(_ sha256: String, at target: String) throws {
        let blob = path(for: sha256)
        guard FileManager.default.fileExists(atPath: blob) else {
            throw FileOpError(blob, "missing from the input store")
        }
        try FileOps.makeDirectory((target as NSString).deletingLastPathComponent)
        unlink(target)
        if link(blob, target) == 0 { return }
        try FileOps.copy(from: blob, to: target, mode: 0o444)
    }
}
