import BatchAccess
import BatchCore

/// A request on the control socket. On the wire: one JSON object per line,
/// `{"op": "cancel", "job": "ID-OR-NAME"}`; one request per connection.
public enum ControlRequest: Sendable, Equatable, Codable {
    /// Is the daemon there? Answers its pid.
    case ping
    /// Jobs with a runner, and the slots in use.
    case status
    /// Cancel a job by id or name.
    case cancel(job: String)
    /// Run a failed job's failed tasks again.
    case retry(job: String)
    /// Azure pools and jobs of this daemon's owner, orphans marked.
    case pools
    /// Creates a named pool tagged as this daemon's (`pool.id` names it).
    case poolCreate(pool: PoolSpec)
    /// Asks for this many dedicated and spot nodes in a pool this daemon owns.
    case poolResize(id: String, dedicated: Int, spot: Int)
    /// Deletes a pool this daemon owns and no unfinished job uses.
    case poolDelete(id: String)
    /// Puts files (directories walked, as a job's `**/*` would) into a
    /// backend's input store, read as the sender (`batchctl files put`).
    case filesPut(paths: [String], backend: String?)
    /// Removes from the input stores what no unfinished job uses and nothing
    /// used for `unusedFor` seconds; with `apply` false, only says what.
    case filesPrune(unusedFor: Double, apply: Bool, backend: String?)
    /// The file system as the daemon sees it (its mounts and its user), so
    /// `batchctl submit` checks a manifest's paths as the daemon will.
    case view
    /// Test hook (config `debug.allowStall`): block the supervisor.
    case stall(seconds: Double)
    /// Reads what batchctl shows (`ReadQuery`): the sender's own jobs, or
    /// any for an operator (docs/security.md, "Private by default").
    case read(ReadQuery)

    enum Key: String, CodingKey { case op, job, seconds, pool, id, dedicated, spot, paths, backend, unusedFor, apply, query }

    /// The request's name on the wire.
    public var op: String {
        switch self {
        case .ping: "ping"
        case .status: "status"
        case .cancel: "cancel"
        case .retry: "retry"
        case .pools: "pools"
        case .poolCreate: "pool.create"
        case .poolResize: "pool.resize"
        case .poolDelete: "pool.delete"
        case .filesPut: "files.put"
        case .filesPrune: "files.prune"
        case .view: "view"
        case .stall: "stall"
        case .read: "read"
        }
    }

    /// Decodes `{"op": …}`; an unknown op or a missing field is an error naming it.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        let op = try c.decode(String.self, forKey: .op)
        switch op {
        case "ping": self = .ping
        case "read": self = .read(try c.decode(ReadQuery.self, forKey: .query))
        case "status": self = .status
        case "cancel": self = .cancel(job: try c.decode(String.self, forKey: .job))
        case "retry": self = .retry(job: try c.decode(String.self, forKey: .job))
        case "pools": self = .pools
        case "view": self = .view
        case "pool.create": self = .poolCreate(pool: try c.decode(PoolSpec.self, forKey: .pool))
        case "pool.resize":
            self = .poolResize(id: try c.decode(String.self, forKey: .id), dedicated: try c.decode(Int.self, forKey: .dedicated),
                               spot: (try? c.decode(Int.self, forKey: .spot)) ?? 0)
        case "pool.delete": self = .poolDelete(id: try c.decode(String.self, forKey: .id))
        case "files.put":
            self = .filesPut(paths: try c.decode([String].self, forKey: .paths), backend: try c.decodeIfPresent(String.self, forKey: .backend))
        case "files.prune":
            self = .filesPrune(unusedFor: try c.decode(Double.self, forKey: .unusedFor), apply: try c.decode(Bool.self, forKey: .apply),
                               backend: try c.decodeIfPresent(String.self, forKey: .backend))
        case "stall":
            // Older clients sent the seconds as text.
            let seconds = (try? c.decode(Double.self, forKey: .seconds)) ?? (try? c.decode(String.self, forKey: .seconds)).flatMap(Double.init)
            self = .stall(seconds: min(max(seconds ?? 1, 0), 60))
        default:
            throw DecodingError.dataCorruptedError(forKey: .op, in: c, debugDescription: "unknown request '\(op.prefix(40))'")
        }
    }

    /// Encodes `{"op": …}` and the request's fields.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(op, forKey: .op)
        switch self {
        case .cancel(let job), .retry(let job): try c.encode(job, forKey: .job)
        case .stall(let seconds): try c.encode(seconds, forKey: .seconds)
        case .poolCreate(let pool): try c.encode(pool, forKey: .pool)
        case .poolResize(let id, let dedicated, let spot):
            try c.encode(id, forKey: .id)
            try c.encode(dedicated, forKey: .dedicated)
            try c.encode(spot, forKey: .spot)
        case .poolDelete(let id): try c.encode(id, forKey: .id)
        case .filesPut(let paths, let backend):
            try c.encode(paths, forKey: .paths)
            try c.encodeIfPresent(backend, forKey: .backend)
        case .filesPrune(let unusedFor, let apply, let backend):
            try c.encode(unusedFor, forKey: .unusedFor)
            try c.encode(apply, forKey: .apply)
            try c.encodeIfPresent(backend, forKey: .backend)
        case .read(let query): try c.encode(query, forKey: .query)
        case .ping, .status, .pools, .view: break
        }
    }
}

/// What a `read` asks for.
public struct ReadQuery: Sendable, Equatable, Codable {
    /// `list`, `show`, `outputs`, `logs` (a task's, with `task`, or the
    /// job's history), `progress` (a `JobSnapshot`), `end` (the snapshot
    /// once the job is over), `submission` (the job
    /// an inbox file became), `tail` (what a task's logs gained past
    /// `offsets`).
    public var what: String
    /// A job's id or name; an inbox file's name for `submission`.
    public var job: String?
    public var task: String?
    public var attempt: Int?
    public var page: Int?
    public var limit: Int?
    /// The answer as text too (list, show, outputs).
    public var text: Bool?
    /// progress: the version the sender has; the answer waits (up to
    /// `wait` seconds) until there is another. submission: waits until the
    /// file is a job.
    public var after: String?
    public var wait: Double?
    /// tail: bytes of stdout and stderr already had, and of which attempt.
    public var offsets: [Int]?

    public init(what: String, job: String? = nil, task: String? = nil, attempt: Int? = nil, page: Int? = nil, limit: Int? = nil,
                text: Bool? = nil, after: String? = nil, wait: Double? = nil, offsets: [Int]? = nil) {
        self.what = what
        self.job = job
        self.task = task
        self.attempt = attempt
        self.page = page
        self.limit = limit
        self.text = text
        self.after = after
        self.wait = wait
        self.offsets = offsets
    }
}

/// The daemon's answer: `ok`, and either the fields of the request's answer
/// or `error`.
public struct ControlReply: Sendable, Equatable, Codable {
    /// Whether the request was done.
    public var ok: Bool
    /// Why not, when it was not.
    public var error: String?
    /// ping: the daemon's pid.
    public var pid: Int?
    /// cancel, retry: the job's id.
    public var job: String?
    /// retry: how many tasks run again.
    public var tasks: Int?
    /// status: jobs with a runner.
    public var jobs: [String]?
    /// status: slots in use and in all.
    public var slots: Slots?
    /// pools: the owner tag of this daemon.
    public var owner: String?
    /// pool.create, pool.resize, pool.delete: what was done.
    public var detail: String?
    /// pools: what is there.
    public var items: [PoolItem]?
    /// files.put, files.prune: the files (at most `FileItem.listed`).
    public var files: [FileItem]?
    /// files.put, files.prune: how many files and bytes in all, and the
    /// bytes sent (put) or freed (prune).
    public var fileTotals: FileTotals?
    /// view: the file system as the daemon sees it.
    public var view: ServiceView?
    /// read: the answer as a JSON object (as `--json` prints it), and as
    /// text when asked; `code` is batchctl's exit code for a refusal (4:
    /// no such job or task).
    public var report: String?
    public var text: String?
    public var code: Int?

    /// A file put or pruned.
    public struct FileItem: Sendable, Equatable, Codable {
        /// Most files listed in one answer (the totals count them all).
        public static let listed = 1000
        public var backend: String
        public var sha256: String
        public var size: Int
        public var names: [String]
        /// put: bytes sent (0: the store had it).
        public var sent: Int?
        /// prune: its last use, seconds since 1970.
        public var lastUsed: Double?
        public init(backend: String, sha256: String, size: Int, names: [String], sent: Int? = nil, lastUsed: Double? = nil) {
            self.backend = backend
            self.sha256 = sha256
            self.size = size
            self.names = names
            self.sent = sent
            self.lastUsed = lastUsed
        }
    }

    /// Counts of a put or prune.
    public struct FileTotals: Sendable, Equatable, Codable {
        public var files: Int
        public var bytes: Int
        /// put: bytes sent; prune: bytes removed (0 on a dry run).
        public var moved: Int
        public init(files: Int, bytes: Int, moved: Int) {
            self.files = files
            self.bytes = bytes
            self.moved = moved
        }
    }

    /// Slots in use and the limit.
    public struct Slots: Sendable, Equatable, Codable {
        public var used: Int
        public var limit: Int
        public init(used: Int, limit: Int) { self.used = used; self.limit = limit }
    }

    /// A pool or job on the cloud backend tagged as this daemon's.
    public struct PoolItem: Sendable, Equatable, Codable {
        public var kind: String
        public var id: String
        public var state: String
        public var job: String?
        public var nodes: Int?
        public var orphan: Bool
        public init(kind: String, id: String, state: String, job: String?, nodes: Int?, orphan: Bool) {
            self.kind = kind
            self.id = id
            self.state = state
            self.job = job
            self.nodes = nodes
            self.orphan = orphan
        }
    }

    /// A success, with nothing more to say.
    public static let done = ControlReply(ok: true)

    /// A refusal with its reason.
    public static func refused(_ error: String) -> ControlReply { ControlReply(ok: false, error: error) }

    /// An answer.
    public init(ok: Bool, error: String? = nil, pid: Int? = nil, job: String? = nil, tasks: Int? = nil, jobs: [String]? = nil,
                slots: Slots? = nil, owner: String? = nil, items: [PoolItem]? = nil, detail: String? = nil) {
        self.detail = detail
        self.ok = ok
        self.error = error
        self.pid = pid
        self.job = job
        self.tasks = tasks
        self.jobs = jobs
        self.slots = slots
        self.owner = owner
        self.items = items
    }
}
