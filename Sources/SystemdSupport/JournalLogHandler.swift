import CSystemd
import Foundation
import Logging
import Synchronization

/// A swift-log handler for journald. To the journal it sends structured
/// entries through sd_journal_sendv: MESSAGE, PRIORITY, CODE_FILE/LINE/FUNC,
/// SYSLOG_IDENTIFIER, MESSAGE_ID (from metadata `message.id`), and every
/// metadata key as a field (`job.id` → BATCHD_JOB, `task.id` → BATCHD_TASK,
/// `pool.id` → BATCHD_POOL, `backend` → BATCHD_BACKEND, `attempt` →
/// BATCHD_ATTEMPT, any other `a.b` → BATCHD_A_B). When the journal cannot be
/// reached, or the target is stderr, it writes one line per message to
/// stderr, with a `<N>` priority prefix when stderr is the journal stream.
public struct JournalLogHandler: LogHandler {
    /// Where lines go.
    public enum Target: Sendable, Equatable {
        /// Structured entries to journald (stderr if it is unreachable).
        case journal
        /// Plain lines to stderr; `priorityPrefix` adds `<N>` (stderr is the journal stream).
        case stderr(priorityPrefix: Bool)
    }

    /// Metadata on every entry.
    public var metadata: Logger.Metadata = [:]
    /// Lowest level logged.
    public var logLevel: Logger.Level = .info
    let identifier: String
    let target: Target
    static let stderrLock = Mutex(())

    /// A handler sending to `target`, with SYSLOG_IDENTIFIER `identifier`.
    public init(identifier: String, target: Target) {
        self.identifier = identifier
        self.target = target
    }

    /// Metadata by key.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The syslog priority of a level.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// The journal field name for a metadata key; nil for `message.id`, which
    /// becomes MESSAGE_ID.
    public static func field(for key: String) -> String? {
        switch key {
        case "message.id": return nil
        case "job.id": return "BATCHD_JOB"
        case "task.id": return "BATCHD_TASK"
        case "pool.id": return "BATCHD_POOL"
        case "backend": return "BATCHD_BACKEND"
        case "attempt": return "BATCHD_ATTEMPT"
        default:
            let cleaned = key.uppercased().unicodeScalars.map { ("A"..."Z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "_" }
            return "BATCHD_" + String(cleaned)
        }
    }

    /// `message key=value ...` with keys sorted, values with spaces quoted,
    /// and control characters written as escapes: one event is one line, and
    /// no byte from a manifest or a file name reaches a terminal raw.
    public static func line(_ message: String, _ metadata: Logger.Metadata) -> String {
        var line = escaped(message)
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) where k != "message.id" {
            let s = escaped("\(v)")
            line += s.contains(" ") || s.isEmpty ? " \(k)=\"\(s.replacingOccurrences(of: "\"", with: "\\\""))\"" : " \(k)=\(s)"
        }
        return line
    }

    static func escaped(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || (0x80...0x9F).contains($0.value) }) else { return s }
        var out = ""
        for u in s.unicodeScalars {
            switch u.value {
            case 0x0A: out += "\\n"
            case 0x09: out += "\\t"
            case 0..<0x20, 0x7F, 0x80...0x9F: out += "\\u{\(String(u.value, radix: 16))}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// Logs one event.
    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let text = Self.line("\(event.message)", all)
        if target == .journal {
            var fields = [
                "MESSAGE=\(text)", "PRIORITY=\(Self.priority(event.level))", "SYSLOG_IDENTIFIER=\(identifier)",
                "CODE_FILE=\(event.file)", "CODE_LINE=\(event.line)", "CODE_FUNC=\(event.function)",
            ]
            if let id = all["message.id"] { fields.append("MESSAGE_ID=\(id)") }
            for (k, v) in all { if let f = Self.field(for: k) { fields.append("\(f)=\(v)") } }
            if Self.send(fields) { return }
        }
        let prefix: String
        if case .stderr(true) = target { prefix = "<\(Self.priority(event.level))>" } else { prefix = "\(event.level.rawValue.uppercased()) " }
        let out = prefix + text + "\n"
        Self.stderrLock.withLock { _ in FileHandle.standardError.write(Data(out.utf8)) }
    }

    /// sd_journal_sendv over the fields; false if journald did not take them.
    static func send(_ fields: [String]) -> Bool {
        // Each field in memory of its own that stays valid for the call.
        let copies = fields.map { field -> (UnsafeMutableRawPointer, Int) in
            let bytes = Array(field.utf8)
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, bytes.count), alignment: 1)
            bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            return (p, bytes.count)
        }
        defer { copies.forEach { $0.0.deallocate() } }
        var iovs = copies.map { iovec(iov_base: $0.0, iov_len: $0.1) }
        return sd_journal_sendv(&iovs, Int32(iovs.count)) >= 0
    }
}

/// Whether stderr is the journal stream systemd set up (JOURNAL_STREAM names
/// the device and inode of the stream; compare them with fd 2's).
public func stderrIsJournal(journalStream: String?) -> Bool {
    guard let value = journalStream else { return false }
    let parts = value.split(separator: ":")
    guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
    var st = stat()
    guard fstat(2, &st) == 0 else { return false }
    return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
}
