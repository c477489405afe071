/// A secret value (account key, client secret, token) that never prints:
/// its description and debug description are redacted, so it cannot reach a
/// log line, an error message or the database by interpolation.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The value; read it only where it is used.
    public let reveal: String

    /// Wraps a secret.
    public init(_ value: String) { reveal = value }

    /// `<redacted>`.
    public var description: String { "<redacted>" }
    /// `<redacted>`.
    public var debugDescription: String { "<redacted>" }
}
