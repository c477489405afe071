/// A backend's own option in a manifest's `pool:` (a VM size, a partition,
/// CPUs per task...). Each backend declares its options, as data: the
/// manifest parser checks every value against its declaration, with the
/// same bounds wherever it is parsed (the daemon's intake, and batchctl,
/// which reads the declarations the daemon published). BatchCore knows the
/// kinds of value, never a backend.
public struct PoolOption: Sendable, Equatable, Codable {
    /// The key under `pool:`.
    public var key: String
    /// What its value may be.
    public var kind: Kind
    /// What the value is, for an error: "\"x\" is not `what`".
    public var what: String
    /// How to fix a bad value.
    public var hint: String
    /// One line for `batchd backends` and the docs.
    public var help: String

    /// The kinds of value an option takes.
    public enum Kind: Sendable, Equatable, Codable {
        /// A whole number in `min...max`.
        case integer(min: Int, max: Int)
        /// A name: a letter or digit, then letters, digits and `extra`, at most `max` characters.
        case name(max: Int, extra: String)
        /// Text of at most `maxBytes` (with newlines and tabs when
        /// `multiline`), made of `parts` parts split at `separator` when given.
        case text(maxBytes: Int, multiline: Bool, separator: String?, parts: ClosedRange<Int>?)
        /// A duration (`30s`, `2h`), stored in seconds.
        case duration
        /// A memory size (`512M`, `4G`, `1T`), stored in MiB, at most `maxMiB`.
        case memory(maxMiB: Int)
    }

    /// An option.
    public init(_ key: String, _ kind: Kind, what: String, hint: String, help: String) {
        self.key = key
        self.kind = kind
        self.what = what
        self.hint = hint
        self.help = help
    }
}

/// A value of a pool option, as parsed: durations in seconds, memory in MiB.
public enum PoolValue: Sendable, Equatable, Codable {
    case int(Int)
    case number(Double)
    case text(String)

    /// A whole number (a duration or size stored as one counts).
    public var int: Int? {
        switch self {
        case .int(let n): n
        case .number(let d): d.rounded() == d && abs(d) < 1e15 ? Int(d) : nil
        case .text: nil
        }
    }

    /// A number (seconds, for a duration).
    public var number: Double? {
        switch self {
        case .int(let n): Double(n)
        case .number(let d): d
        case .text: nil
        }
    }

    /// Text.
    public var text: String? {
        if case .text(let s) = self { return s }
        return nil
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .int(n) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else { self = .text(try c.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let n): try c.encode(n)
        case .number(let d): try c.encode(d)
        case .text(let s): try c.encode(s)
        }
    }
}

/// What the manifest parser knows of the backends: the names a manifest
/// may give, and the pool options each declares. The daemon builds it from
/// its registered backends; batchctl reads the one the daemon published
/// (`<stateDirectory>/backends.json`), or, before any daemon ran, takes
/// every backend name and pool option on trust (`open`) and leaves the
/// checks to the daemon's intake, which rejects a bad one with its reason.
public struct BackendCatalog: Sendable, Equatable, Codable {
    /// One backend's part.
    public struct Entry: Sendable, Equatable, Codable {
        public var name: String
        /// Whether this daemon can run it (configured and working).
        public var available: Bool
        public var poolOptions: [PoolOption]
        public init(name: String, available: Bool, poolOptions: [PoolOption]) {
            self.name = name
            self.available = available
            self.poolOptions = poolOptions
        }
    }

    /// The backends, in registration order.
    public var entries: [Entry]
    /// Whether names and options are taken on trust (no declarations known).
    public var isOpen: Bool

    /// A catalog of these backends.
    public init(_ entries: [Entry]) {
        self.entries = entries
        isOpen = false
    }

    /// No declarations: any backend name and pool option passes here, to be
    /// checked where they are known.
    public static let open: BackendCatalog = {
        var c = BackendCatalog([])
        c.isOpen = true
        return c
    }()

    /// Backend names a manifest may give.
    public var names: [String] { entries.map(\.name) }

    /// Every declared pool option by key (the first backend's, when two declare one).
    public var poolOptions: [String: PoolOption] {
        var out: [String: PoolOption] = [:]
        for e in entries { for o in e.poolOptions where out[o.key] == nil { out[o.key] = o } }
        return out
    }

    /// The keys of `pool:`: the shared ones and every backend's own.
    public var poolKeys: [String] {
        var keys = ManifestKeys.pool
        for e in entries { for o in e.poolOptions where !keys.contains(o.key) { keys.append(o.key) } }
        return keys
    }
}
