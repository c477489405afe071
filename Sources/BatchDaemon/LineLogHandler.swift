import Foundation
import Logging
import Synchronization

/// Logs one line per message to stderr: `LEVEL message key=value ...`, with
/// metadata sorted by key. (issue 3 adds the journald handler.)
public struct LineLogHandler: LogHandler {
    /// Metadata on every line.
    public var metadata: Logger.Metadata = [:]
    /// The lowest level logged.
    public var logLevel: Logger.Level = .info
    let label: String
    static let lock = Mutex(())

    /// A handler for `label`.
    public init(label: String) { self.label = label }

    /// Metadata by key.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Writes the line.
    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        var line = "\(event.level.rawValue.uppercased()) \(event.message)"
        for (k, v) in all.sorted(by: { $0.key < $1.key }) {
            let s = "\(v)"
            line += s.contains(" ") || s.isEmpty ? " \(k)=\"\(s.replacingOccurrences(of: "\"", with: "\\\""))\"" : " \(k)=\(s)"
        }
        line += "\n"
        Self.lock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }
}
