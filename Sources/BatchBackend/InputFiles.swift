import BatchAccess
import BatchStore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What putting one file into an input store did.
public struct PutFile: Sendable, Equatable {
    /// SHA-256 (hex) of its content.
    public var sha256: String
    /// Size in bytes.
    public var size: Int64
    /// Its blob, on a backend that keeps inputs on Blob.
    public var blob: String?
    /// Bytes copied or sent (0: the store had it).
    public var sent: Int64
    /// A hash computed now, for the cache (nil: the cache had it).
    public var hashed: FileHashRecord?

    /// A result.
    public init(sha256: String, size: Int64, blob: String?, sent: Int64, hashed: FileHashRecord?) {
        self.sha256 = sha256
        self.size = size
        self.blob = blob
        self.sent = sent
        self.hashed = hashed
    }
}

/// A backend's content-addressed input store, reached outside any job
/// (`batchctl files put` and `prune`). Staging a job's inputs goes through
/// the same store, so a file put beforehand is not sent again.
public protocol InputFiles: Sendable {
    /// How many files are put at once.
    var width: Int { get }
    /// Stores `source`, read as `policy`'s submitter, unless the store has
    /// its content already. `cached`: the hash cache's entry for the path.
    func put(_ source: String, policy: AccessPolicy, cached: FileHashRecord?) async throws -> PutFile
    /// Removes content from the store; false when it was not there.
    func remove(sha256: String, blob: String?) async throws -> Bool
}

/// A `ContentStore` directory (the local backend's, Slurm's shared one).
public struct ContentStoreFiles: InputFiles {
    /// The store.
    public let contents: ContentStore

    /// The files of `contents`.
    public init(_ contents: ContentStore) { self.contents = contents }

    /// One at a time: a copy is bound by the disk, not by waiting.
    public var width: Int { 1 }

    public func put(_ source: String, policy: AccessPolicy, cached: FileHashRecord?) async throws -> PutFile {
        let file = try policy.openForReading(source)
        defer { close(file.fd) }
        let id = FileOps.identity(file.st)
        if let cached, cached.describes(device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs), contents.contains(cached.sha256) {
            return PutFile(sha256: cached.sha256, size: id.size, blob: nil, sent: 0, hashed: nil)
        }
        let put = try contents.put(fd: file.fd, name: source)
        return PutFile(sha256: put.sha256, size: put.size, blob: nil, sent: put.copied ? put.size : 0,
                       hashed: FileHashRecord(path: source, device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs,
                                              sha256: put.sha256, md5: cached?.sha256 == put.sha256 ? cached?.md5 : nil))
    }

    public func remove(sha256: String, blob: String?) async throws -> Bool {
        let path = contents.path(for: sha256)
        if unlink(path) == 0 { return true }
        if errno == ENOENT { return false }
        throw FileOpError(path, "cannot remove from the input store: \(String(cString: strerror(errno)))")
    }
}
