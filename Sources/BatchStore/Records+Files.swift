/// Records of the input stores outside any job (`batchctl files`).

/// A file in the input stores, by content (`batchctl files`).
public struct StoredFile: Sendable, Equatable {
    /// SHA-256 (hex) of its content.
    public var sha256: String
    /// Size in bytes.
    public var size: Int
    /// The paths it was staged from.
    public var names: [String]
    /// The jobs that used it.
    public var jobs: [String]
    /// The backends of those jobs.
    public var backends: [String]
    /// Its blob in the Azure input container, when a job on Azure used it.
    public var blob: String?
    /// When a job last used it (its acceptance), seconds since 1970.
    public var lastUsed: Double

    /// A record.
    public init(sha256: String, size: Int, names: [String], jobs: [String], backends: [String], blob: String?, lastUsed: Double) {
        self.sha256 = sha256
        self.size = size
        self.names = names
        self.jobs = jobs
        self.backends = backends
        self.blob = blob
        self.lastUsed = lastUsed
    }
}

/// A file put into a backend's input store without a job (`batchctl files put`).
public struct PutFileRecord: Sendable, Equatable {
    /// The backend whose store holds it.
    public var backend: String
    /// The path it was read from.
    public var source: String
    /// SHA-256 (hex) of its content.
    public var sha256: String
    /// Size in bytes.
    public var size: Int
    /// Its blob, on a backend that keeps inputs on Blob.
    public var blob: String?
    /// The uid it was put for.
    public var uid: UInt32

    /// A record.
    public init(backend: String, source: String, sha256: String, size: Int, blob: String?, uid: UInt32) {
        self.backend = backend
        self.source = source
        self.sha256 = sha256
        self.size = size
        self.blob = blob
        self.uid = uid
    }
}

/// Content of one backend's input store that `batchctl files prune` may
/// remove: no unfinished job uses it, and its last use is old enough.
public struct PruneCandidate: Sendable, Equatable {
    /// SHA-256 (hex) of its content.
    public var sha256: String
    /// Size in bytes.
    public var size: Int
    /// Its blob, on a backend that keeps inputs on Blob.
    public var blob: String?
    /// The paths it was staged or put from.
    public var names: [String]
    /// Its last use: the end of the last job that used it, or when it was put.
    public var lastUsed: Double
}
