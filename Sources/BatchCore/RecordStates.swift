/// Where a job's tasks run: a backend's name in manifests and in the store.
/// The set is open: a backend is added by its own module and one
/// registration (docs/architecture.md), and names itself.
public struct BackendKind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The name.
    public let rawValue: String
    /// The backend called `rawValue`.
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
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
