/// A job manifest, version 1: what the user asks for. Parsed and validated by
/// `ManifestParser`; documented field by field in docs/manifest.md and described
/// for editors by docs/manifest.schema.json.
public struct Manifest: Sendable, Equatable {
    /// Manifest format version; only 1 exists.
    public var version: Int = 1
    /// A short name; `batchctl show NAME` finds the latest job of this name.
    public var name: String
    /// Where the tasks run; nil means the daemon's default backend.
    public var backend: String?
    /// Absolute directory that relative paths are resolved against. Set by
    /// `batchctl submit`; a manifest dropped straight into the inbox without it
    /// resolves against the directory it was dropped in.
    public var baseDirectory: String?
    /// The compute pool.
    public var pool: PoolSpec = PoolSpec()
    /// Files staged into every task.
    public var sharedInputs: [String] = []
    /// How tasks are made.
    public var tasks: TaskSource
    /// Default command for every task; `/bin/sh -c` runs it. Templates such as
    /// `{file}` are filled per task.
    public var command: String?
    /// Environment added to every task.
    public var env: [String: String] = [:]
    /// Environment variables whose values are read, at each launch, from
    /// files the submitter may read: name → path (relative to the base
    /// directory). Only the names and paths are kept; never the values.
    public var secrets: [String: String] = [:]
    /// The image every task runs in (`container:`), if any.
    public var container: ContainerSpec?
    /// The job type it was made from (`type:`), if any.
    public var type: String?
    /// The parameters, for `{param.NAME}`: the type's defaults, then the
    /// manifest's, then `batchctl submit --set`.
    public var parameters: [String: String] = [:]
    /// How many times a failed task is tried again.
    public var retries: Int = 0
    /// Per-attempt time limit in seconds; nil means none.
    public var timeoutSeconds: Double?
    /// What to collect from each task and where to put it.
    public var outputs: OutputSpec = OutputSpec()
    /// What to delete when the job ends.
    public var cleanup: CleanupPolicy = .onSuccess
    /// Limits on the whole job.
    public var limits: Limits = Limits()

    /// Creates a manifest with the required fields.
    public init(name: String, tasks: TaskSource) {
        self.name = name
        self.tasks = tasks
    }
}

/// The compute pool a job runs on: the keys every backend shares, and the
/// backend's own options (declared by the backend: `PoolOption`).
public struct PoolSpec: Sendable, Equatable, Codable {
    /// A named pool is created if absent and reused if present; nil asks for an
    /// auto-pool that lives and dies with the job.
    public var id: String?
    /// Task slots per node; locally, the most tasks of this job that run at
    /// once (never more than the daemon's slots).
    public var slotsPerNode: Int?
    /// The backend's own options, by key, as parsed (durations in seconds,
    /// memory in MiB).
    public var options: [String: PoolValue] = [:]

    /// An empty pool spec: every field takes the backend's default.
    public init() {}

    /// A whole-number option.
    public func int(_ key: String) -> Int? { options[key]?.int }
    /// A text option.
    public func text(_ key: String) -> String? { options[key]?.text }
    /// A number option (a duration's seconds).
    public func number(_ key: String) -> Double? { options[key]?.number }

    enum CodingKeys: String, CodingKey { case id, slotsPerNode, options }
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Specs stored before the options were the backends' own kept every
    /// option as a field of its own (`memoryMiB`, `idleTimeoutSeconds` for
    /// `memory` and `idleTimeout`): they read as options.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id)
        slotsPerNode = try c.decodeIfPresent(Int.self, forKey: .slotsPerNode)
        options = try c.decodeIfPresent([String: PoolValue].self, forKey: .options) ?? [:]
        let all = try decoder.container(keyedBy: AnyKey.self)
        let renamed = ["memoryMiB": "memory", "idleTimeoutSeconds": "idleTimeout"]
        for key in all.allKeys where CodingKeys(rawValue: key.stringValue) == nil {
            guard let value = try? all.decodeNil(forKey: key) == false ? all.decode(PoolValue.self, forKey: key) : nil else { continue }
            options[renamed[key.stringValue] ?? key.stringValue] = value
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(id, forKey: .id)
        try c.encodeIfPresent(slotsPerNode, forKey: .slotsPerNode)
        if !options.isEmpty { try c.encode(options, forKey: .options) }
    }
}

/// Where a job's tasks come from.
public enum TaskSource: Sendable, Equatable {
    /// An explicit list.
    case list([TaskEntry])
    /// One task per file matching a glob; the file is staged into the task.
    case forEachFile(pattern: String, id: String?)
    /// One task per integer in `from...to` stepping by `step`.
    case forEachInteger(from: Int, to: Int, step: Int, id: String?)
    /// One task per row of a CSV (with a header row) or JSON-lines file.
    case forEachRow(file: String, format: RowFormat, id: String?)
}

/// The format of a row factory's file.
public enum RowFormat: String, Sendable, Equatable, CaseIterable {
    case csv
    case jsonl
}

/// One task of an explicit list.
public struct TaskEntry: Sendable, Equatable {
    /// The task id: letters, digits, `-` and `_`, at most 64 characters.
    public var id: String?
    /// Overrides the manifest's command.
    public var command: String?
    /// Added to the manifest's environment.
    public var env: [String: String] = [:]
    /// Files staged into this task only.
    public var inputs: [String] = []

    /// A task entry with every field optional.
    public init(id: String? = nil, command: String? = nil, env: [String: String] = [:], inputs: [String] = []) {
        self.id = id
        self.command = command
        self.env = env
        self.inputs = inputs
    }
}

/// What to collect from each task.
public struct OutputSpec: Sendable, Equatable {
    /// Globs relative to the task's working directory.
    public var patterns: [String] = []
    /// The directory outputs are copied into; relative to the base directory.
    public var destination: String = "output"
    /// One file gathered from each task's outputs, in task order.
    public var merge: MergeSpec?

    /// No outputs, destination `output`.
    public init() {}
}

/// Which of a job's scratch data is deleted when it ends.
public enum CleanupPolicy: String, Sendable, Equatable, CaseIterable, Codable {
    case always
    case onSuccess
    case never
}

/// Limits on a whole job.
public struct Limits: Sendable, Equatable, Codable {
    /// The whole job's wall-clock limit in seconds.
    public var wallClockSeconds: Double?
    /// The most core-hours the job may use.
    public var coreHours: Double?

    /// No limits.
    public init() {}
}

/// `outputs.merge`: each task's collected output matching `from` (a glob
/// relative to the destination), appended in task order to `into`.
public struct MergeSpec: Sendable, Equatable, Codable {
    /// How the files are joined.
    public enum Format: String, Sendable, Equatable, Codable, CaseIterable {
        /// The first file's header line once, then every file's rows.
        case csv
        /// JSON lines: every file's lines, each ended by a newline.
        case jsonl
        /// The bytes, one file after another.
        case concat
    }

    /// Which of a task's collected outputs (their paths under the destination).
    public var from: String
    /// The merged file, relative to the destination.
    public var into: String
    /// How they are joined.
    public var format: Format

    /// A merge.
    public init(from: String, into: String, format: Format) {
        self.from = from
        self.into = into
        self.format = format
    }

    /// The format a file name implies (`.csv`, `.jsonl`/`.ndjson`), if any.
    public static func format(forName name: String) -> Format? {
        let lower = name.lowercased()
        if lower.hasSuffix(".csv") { return .csv }
        if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") { return .jsonl }
        return nil
    }
}

/// Where a job's `outputs.merge` stands, kept as its backend record
/// `batchd.merge`: the tasks before `next` are in the merged file, which is
/// `bytes` long; `header` is the CSV header it starts with (base64).
public struct MergeState: Sendable, Equatable, Codable {
    /// The backend-record key it is kept under.
    public static let key = "batchd.merge"
    public var next = 0
    public var bytes: Int64 = 0
    public var header: String?
    /// Task files left out (gone, or a CSV header unlike the first).
    public var skipped = 0
    public init() {}
}
