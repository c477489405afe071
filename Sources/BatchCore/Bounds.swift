/// Every limit a manifest is held to. Each is documented in docs/manifest.md
/// ("Limits"); the hostile corpus (Tests/Fixtures/hostile) has a case at and
/// past each. They keep intake linear in the manifest's size and keep every
/// number far from where arithmetic could overflow.
public enum Bounds {
    /// Largest manifest file, in bytes (4 MiB). Bigger explicit task lists
    /// belong in a row file (`forEachRow`).
    public static let manifestBytes = 4 << 20
    /// Longest line of a manifest, in bytes (1 MiB).
    public static let lineBytes = 1 << 20
    /// Deepest nesting of mappings and lists.
    public static let depth = 32
    /// Longest mapping key, in bytes (keys include environment variable names).
    public static let keyBytes = 256
    /// Most problems listed for one manifest; the rest are counted.
    public static let reportedIssues = 50

    /// Most tasks one job may have.
    public static let tasks = 1_000_000
    /// Largest magnitude of `forEachInteger.from`, `to` and `step`: 2^53 − 1,
    /// the largest integer every JSON tool reads exactly.
    public static let integer = 9_007_199_254_740_991
    /// Most retries.
    public static let retries = 100
    /// Longest duration (timeout, limits.wallClock, pool.idleTimeout): 365 days.
    public static let durationSeconds: Double = 365 * 86400
    /// Shortest duration: 1 ms.
    public static let minDurationSeconds: Double = 0.001
    /// Largest `limits.coreHours`.
    public static let coreHours: Double = 1_000_000_000
    /// Most parameters a job (with its type) may have.
    public static let parameters = 64
    /// Longest parameter value in bytes.
    public static let parameterBytes = 4096
    /// Most job type files read from the types directory.
    public static let jobTypes = 256
    /// Largest job type file.
    public static let jobTypeBytes = 1 << 20
    /// Most task slots per node (`pool.slotsPerNode`; the largest any
    /// batch service takes). A backend's own pool options carry their
    /// bounds in their declarations (`PoolOption`).
    public static let slotsPerNode = 256

    /// Longest command after its placeholders are filled: Linux refuses a
    /// single argument of 128 KiB or more (MAX_ARG_STRLEN), and the command
    /// is one argument of `/bin/sh -c`.
    public static let commandBytes = 131_071
    /// Longest `NAME=value` environment entry (the same kernel limit).
    public static let envEntryBytes = 131_071
    /// Most bytes of one task's command and environment together, as the
    /// manifest makes them (1 MiB, half of Linux's usual 2 MiB for argv and
    /// the environment; the daemon's own variables must fit in the rest).
    public static let execBytes = 1 << 20
    /// Most bytes of commands, environments and input paths of a whole job
    /// after expansion (256 MiB): what the database holds for it.
    public static let expandedBytes = 256 << 20
    /// Longest path (inputs, row file, destination, base directory).
    public static let pathBytes = 4095
    /// Longest name within a path.
    public static let nameBytes = 255
    /// Longest glob pattern.
    public static let patternBytes = 1024
    /// Most `**` in one glob.
    public static let globStars = 3
    /// Most shared input patterns, and per listed task.
    public static let inputPatterns = 1000
    /// Most files one `batchctl files put` stores, and most paths it names.
    public static let putFiles = 100_000
    public static let putPaths = 1000
    /// Most output patterns.
    public static let outputPatterns = 100
    /// Most directory entries one job's globs may look at, all together.
    public static let globEntries = 1_000_000
    /// Largest row file (`forEachRow`), in bytes (64 MiB).
    public static let rowFileBytes = 64 << 20
    /// Most columns of a row file.
    public static let rowColumns = 1000
    /// Most `secrets:` a job may name.
    public static let secrets = 32
    /// Largest secret file, in bytes (64 KiB): a token, a key, a
    /// certificate chain; the value is one environment variable.
    public static let secretBytes = 65536
    /// Most bytes of a job's secrets together (256 KiB: with the 1 MiB of
    /// command and environment, still within what a process starts with).
    public static let secretsTotalBytes = 256 << 10
    /// Longest image reference (`container.image`), in bytes: Docker's own
    /// limit on a name is 255, with a tag and a digest on top.
    public static let imageBytes = 512
    /// Most `container.options`.
    public static let containerOptions = 16
    /// Longest `container.options` entry, in bytes.
    public static let containerOptionBytes = 128
    /// Longest short text field (a pool option's name or reference).
    public static let shortText = 256
}

/// User text made safe to print: control characters escaped, long text cut.
public enum Printable {
    /// Whether a Unicode scalar may mislead when printed raw: C0 and C1
    /// controls, DEL, line and paragraph separators, and the bidirectional
    /// overrides that reorder what a reader sees ("Trojan Source").
    public static func isUnsafe(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        return v < 0x20 || v == 0x7F || (0x80...0x9F).contains(v) || v == 0x2028 || v == 0x2029
            || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v) || v == 0x200E || v == 0x200F || v == 0x061C
    }

    /// `s` with unsafe characters written as escapes (`\n`, `\t`, `\u{1b}`).
    public static func escape(_ s: String, keepNewlines: Bool = false) -> String {
        guard s.unicodeScalars.contains(where: isUnsafe) else { return s }
        var out = ""
        out.unicodeScalars.reserveCapacity(s.unicodeScalars.count)
        for u in s.unicodeScalars {
            if !isUnsafe(u) || (keepNewlines && u == "\n") { out.unicodeScalars.append(u); continue }
            switch u {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default: out += "\\u{\(String(u.value, radix: 16))}"
            }
        }
        return out
    }

    /// `'s'` escaped and cut to `max` characters, for quoting user text in a message.
    public static func quote(_ s: String, max: Int = 80) -> String {
        let cut = s.count > max ? String(s.prefix(max)) + "…" : s
        return "'\(escape(cut))'"
    }
}
