import BatchCore
import BatchSupport
import Foundation
import Yams

/// A backend's section of the daemon's config file (`azure:`, `slurm:`),
/// kept as it was written: the backend decodes it with its own defaults
/// and checks (errors name the file, the line and the key). The config
/// knows no backend's keys; the daemon refuses a section no backend claims.
public struct ConfigSection: Sendable, Equatable {
    /// The section's name (its top-level key).
    public let name: String
    /// The config file.
    public let file: String
    /// Its directory (relative paths in the section are relative to it).
    public let directory: String
    /// Line of the section's key.
    public let line: Int?
    /// The section's keys and values, in the file's order.
    public let entries: [Entry]

    /// One key of the section and its value.
    public struct Entry: Sendable {
        public let key: String
        public let line: Int?
        public let value: Value
    }

    /// A value: text (a YAML scalar) or a list of text.
    public enum Value: Sendable, Equatable {
        case text(String)
        case list([String])
        /// Anything else (a mapping): refused by whoever reads it.
        case other
    }

    init(name: String, file: String, directory: String, node: Node) throws {
        self.name = name
        self.file = file
        self.directory = directory
        line = node.mark?.line
        guard let map = node.mapping else { throw ConfigError(file: file, line: line, field: name, message: "expected a mapping", hint: nil) }
        entries = map.map { k, v in
            let value: Value = if let s = v.scalar?.string { .text(s) }
                else if let seq = v.sequence, seq.allSatisfy({ $0.scalar != nil }) { .list(seq.compactMap { $0.scalar?.string }) }
                else { .other }
            return Entry(key: k.string ?? "", line: k.mark?.line ?? v.mark?.line, value: value)
        }
    }

    /// Two sections are the same when their keys and values are (lines aside).
    public static func == (a: ConfigSection, b: ConfigSection) -> Bool {
        a.name == b.name && a.entries.map(\.key) == b.entries.map(\.key) && a.entries.map(\.value) == b.entries.map(\.value)
    }

    /// Reads each entry with `read`, which sets what the key means; a key
    /// it does not know (`read` returns false) is refused with the nearest
    /// of `keys`. Errors thrown by the entry's getters name its line.
    public func decode(keys: [String], _ read: (Reader) throws -> Bool) throws {
        for entry in entries {
            let reader = Reader(section: self, entry: entry)
            guard try read(reader) else {
                throw reader.fail("unknown key '\(entry.key)'", Suggest.nearest(to: entry.key, in: keys).map { "did you mean '\($0)'?" })
            }
        }
    }

    /// An error about the section as a whole (a rule between two keys).
    public func fail(_ key: String, _ message: String, _ hint: String? = nil) -> ConfigError {
        ConfigError(file: file, line: line, field: "\(name).\(key)", message: message, hint: hint)
    }

    /// One entry's value, typed; each getter throws the config's error for a bad one.
    public struct Reader {
        let section: ConfigSection
        let entry: Entry
        /// The key.
        public var key: String { entry.key }
        var field: String { "\(section.name).\(entry.key)" }

        public func fail(_ message: String, _ hint: String? = nil) -> ConfigError {
            ConfigError(file: section.file, line: entry.line, field: field, message: message, hint: hint)
        }

        /// Text.
        public func text() throws -> String {
            guard case .text(let s) = entry.value else { throw fail("expected text") }
            return s
        }

        /// A list of text.
        public func list(_ what: String) throws -> [String] {
            guard case .list(let l) = entry.value else { throw fail("expected a list of \(what)") }
            return l
        }

        /// A path (relative ones are relative to the config file).
        public func path() throws -> String {
            let s = try text()
            return s.hasPrefix("/") ? s : URL(fileURLWithPath: "\(section.directory)/\(s)").standardizedFileURL.path
        }

        /// A duration of at most 365 days, in seconds.
        public func seconds() throws -> Double {
            guard let v = HumanDuration.seconds(from: try text()), v <= Bounds.durationSeconds else {
                throw fail("expected a duration of at most 365d", "e.g. 30s or 2m")
            }
            return v
        }

        /// A whole number in `range`.
        public func count(_ range: ClosedRange<Int>) throws -> Int {
            guard let n = Int(try text()), range.contains(n) else {
                throw fail("expected a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }

        /// true or false.
        public func bool() throws -> Bool {
            switch try text().lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: throw fail("expected true or false")
            }
        }

        /// A size in bytes (`4194304`, `4MiB`, `512KiB`, `1GiB`) in `range`.
        public func bytes(_ range: ClosedRange<Int>, _ hint: String) throws -> Int {
            guard let n = ByteSize.parse(try text()), range.contains(n) else { throw fail("expected a size between \(hint)", "e.g. 4MiB or 8388608") }
            return n
        }
    }
}
