/// Where a job's tasks run: a backend's name in manifests and in the store.
/// The set is open, so a backend is added by its own module and one
/// registration (docs/architecture.md); these are the ones batchd ships.
public struct BackendKind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The name.
    public let rawValue: String
    /// The backend called `rawValue`.
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// This machine's cores.
    public static let local = BackendKind(rawValue: "local")
    /// Azure Batch with Blob Storage.
    public static let azure = BackendKind(rawValue: "azure")
    /// A Slurm cluster.
    public static let slurm = BackendKind(rawValue: "slurm")
    /// The backends batchd ships, the names a manifest may give.
    public static let standard: [BackendKind] = [.local, .azure, .slurm]
}

/// A task's state in the store.
public enum TaskState: String, Sendable, Equatable, CaseIterable, Codable {
    case pending, running, succeeded, failed, cancelled

    /// Whether the task is over.
    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
    /// Whether it has yet to finish.
    public var isOpen: Bool { !isFinished }
}

/// An attempt's state in the store.
public enum AttemptState: String, Sendable, Equatable, CaseIterable, Codable {
    /// Recorded before its process exists.
    case starting
    /// Its process runs (its pid is recorded).
    case running
    /// Its outcome is recorded.
    case finished
}

/// The kind of a task outcome, as the store keeps it (`TaskOutcome` with
/// its data is the core's value).
public enum OutcomeKind: String, Sendable, Equatable, CaseIterable, Codable {
    case exited, signaled, timedOut, launchFailed, outputsFailed, lost, interrupted, cancelled
}

/// How a finished job ended, as the store keeps it.
public enum VerdictKind: String, Sendable, Equatable, CaseIterable, Codable {
    case success, failure, cancelled
}
