/// The version of batchd and batchctl.
public enum BatchdVersion {
    /// The version both executables print.
    public static let current = "0.1.0"
}

/// A daemon failure with a message for people.
public struct DaemonError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var description: String
    /// Creates an error.
    public init(_ description: String) { self.description = description }
}
