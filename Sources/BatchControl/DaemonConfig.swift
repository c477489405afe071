import BatchCore
import BatchSupport
import Foundation
import Yams

/// The daemon's configuration: one file (etc/batchd/batchd.yaml), every key
/// with a default. Secrets are never in it.
public struct DaemonConfig: Sendable, Equatable {
    /// Where the database, claimed manifests, task directories and the input store live.
    public var stateDirectory = "/var/lib/batchd"
    /// The watched directory; default `<stateDirectory>/inbox`.
    public var inbox: String?
    /// Where the control socket lives.
    public var runtimeDirectory = "/run/batchd"
    /// Backend for manifests that name none.
    public var defaultBackend = "local"
    /// Job types (`NAME.yaml`); default `types/` beside the config file.
    public var typesDirectory = "/etc/batchd/types"
    /// How long running tasks may go on finishing after SIGTERM before they are stopped.
    public var shutdownGrace: Double = 30
    /// Local backend settings.
    public var local = Local()
    /// Azure backend settings (accounts and keys come from the environment or
    /// systemd credentials, never from here).
    public var azure = Azure()
    /// Test hooks, all off by default.
    public var debug = Debug()

    /// Test hooks.
    public struct Debug: Sendable, Equatable {
        /// Lets the control socket's `stall` request block the supervisor, to
        /// prove the watchdog stops pinging. Never turn on in production.
        public var allowStall = false
        /// When not empty, the daemon kills itself (SIGKILL) on reading a
        /// manifest, starting or adopting a task, or collecting an output
        /// whose text or path holds this string: tests prove with it what a
        /// crash at that point leaves. Never set in production.
        public var crashMarker = ""
        /// When not empty, a crash point of the backend port (`POINT`, or
        /// `POINT#N` for its Nth passing) kills the daemon with SIGKILL: the
        /// crash-point walk (docs/testing.md). Never set in production.
        public var crashAt = ""
        /// When not empty, the daemon appends each crash point's name to
        /// this file the first time it passes it (the walk's list).
        public var crashTrace = ""
    }

    /// Local backend settings.
    public struct Local: Sendable, Equatable {
        /// Tasks run at once on this machine; 0 means one per core.
        public var slots = 0
        /// Time between SIGTERM and SIGKILL when a task is stopped.
        public var killGrace: Double = 10
        /// Path of batchd-exec; empty means next to the batchd binary.
        public var exec = ""
        /// Variables passed from the daemon's environment to tasks.
        public var passEnvironment = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME"]
    }

    /// Azure backend settings.
    public struct Azure: Sendable, Equatable {
        /// The name written into the metadata of every pool and job batchd
        /// makes; empty means `batchd@<host name>`. Orphans are looked for
        /// among objects with this owner only.
        public var owner = ""
        /// Pool fields a manifest leaves out.
        public var vmSize = "STANDARD_D2S_V3"
        /// See `vmSize`.
        public var image = "canonical:0001-com-ubuntu-server-jammy:22_04-lts:latest"
        /// See `vmSize`.
        public var nodeAgentSku = "batch.node.ubuntu 22.04"
        /// See `vmSize`.
        public var dedicatedNodes = 1
        /// The shared, content-addressed input container.
        public var inputContainer = "batchd-inputs"
        /// Bytes per upload block and download range.
        public var blockSize = 4 << 20
        /// Blocks, ranges, files or task collections in flight at once.
        public var concurrency = 4
        /// Extra life of SAS tokens after the job's wall-clock limit.
        public var tokenMargin: Double = 3600
        /// The longest a SAS token may live; a job whose limit plus the
        /// margin is longer is refused.
        public var maxTokenLifetime: Double = 7 * 86400
        /// Shortest and longest time between polls of task state.
        public var pollMinInterval: Double = 1
        /// See `pollMinInterval`.
        public var pollMaxInterval: Double = 30
        /// Delete, at start, pools and jobs of this owner that no job in the
        /// database knows (otherwise they are only reported).
        public var deleteOrphans = false
        /// A named pool of this daemon that no job has used for this long is
        /// resized to zero nodes (its own `pool.idleTimeout` wins); 0: never.
        public var poolIdleTimeout: Double = 3600
        /// How often idle pools are looked for.
        public var poolIdleCheck: Double = 300
    }

    /// Slurm backend settings (docs/slurm.md).
    public var slurm = Slurm()

    /// Slurm backend settings: the backend is on when `sharedDirectory` is set.
    public struct Slurm: Sendable, Equatable {
        /// A directory the daemon and every node see at the same path: the
        /// input store, the tasks' working directories, batchd-exec.
        public var sharedDirectory = ""
        /// Defaults for what a manifest's pool leaves out.
        public var partition: String?
        /// See `partition`.
        public var account: String?
        /// See `partition`.
        public var qos: String?
        /// The tag in each array's comment (`batchd owner=...`); empty means
        /// `batchd@<host name>`. Orphans are looked for among arrays with it.
        public var owner = ""
        /// Shortest and longest time between squeue calls.
        public var pollMinInterval: Double = 1
        /// See `pollMinInterval`.
        public var pollMaxInterval: Double = 60
        /// How long an element that no source knows (not in squeue, no status
        /// file, not in sacct) is given before it counts as vanished: lost,
        /// and run again without using a retry.
        public var missingGrace: Double = 120
        /// Use sacct for ended jobs: `auto` (when the cluster has an
        /// accounting database), `always` or `never`.
        public var accounting = "auto"
        /// Cancel, at start, arrays of this owner that no job in the
        /// database knows (otherwise they are only reported).
        public var cancelOrphans = false
        /// Longest a Slurm command may take before it counts as failed.
        public var commandTimeout: Double = 60
    }

    /// Every default.
    public init() {}

    /// The inbox directory.
    public var inboxDirectory: String { inbox ?? "\(stateDirectory)/inbox" }

    /// The job types manifests may name.
    public var jobTypes: JobTypes { JobTypes(directory: typesDirectory) }
    /// Rejected manifests and their `.error` files.
    public var rejectedDirectory: String { "\(inboxDirectory)/rejected" }
    /// The SQLite database.
    public var databasePath: String { "\(stateDirectory)/batchd.db" }
    /// Manifests claimed from the inbox, not yet accepted or rejected.
    public var claimedDirectory: String { "\(stateDirectory)/claimed" }
    /// Per-job directories.
    public var jobsDirectory: String { "\(stateDirectory)/jobs" }
    /// The content-addressed input store.
    public var storeDirectory: String { "\(stateDirectory)/store" }
    /// The control socket.
    public var socketPath: String { "\(runtimeDirectory)/batchd.sock" }

    /// The directories no submitter's path may reach: the daemon's state
    /// and runtime directories and, when given, its credentials directory.
    public func protectedDirectories(credentials: String?) -> [(path: String, why: String)] {
        var out = [(stateDirectory, "the daemon's state directory"), (runtimeDirectory, "the daemon's runtime directory")]
        if let credentials, !credentials.isEmpty { out.append((credentials, "the daemon's credentials")) }
        return out
    }

    /// Local task slots: `local.slots`, or one per core when 0.
    public func slotCount(cores: Int) -> Int { local.slots > 0 ? local.slots : max(1, cores) }

    /// Backends this build can run.
    public static let availableBackends = ["local", "azure", "slurm"]

    static let keys = ["stateDirectory", "inbox", "runtimeDirectory", "defaultBackend", "shutdownGrace", "local", "azure", "slurm", "debug", "types"]
    static let slurmKeys = ["sharedDirectory", "partition", "account", "qos", "owner", "pollMinInterval", "pollMaxInterval",
                            "missingGrace", "accounting", "cancelOrphans", "commandTimeout"]
    static let localKeys = ["slots", "killGrace", "exec", "passEnvironment"]
    static let azureKeys = ["owner", "vmSize", "image", "nodeAgentSku", "dedicatedNodes", "inputContainer", "blockSize", "concurrency",
                            "tokenMargin", "maxTokenLifetime", "pollMinInterval", "pollMaxInterval", "deleteOrphans",
                            "poolIdleTimeout", "poolIdleCheck"]

    /// Reads a config file. Relative paths in it are relative to the file's directory.
    public static func load(path: String) throws -> DaemonConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, message: "cannot read the config file", hint: "pass --config with an existing file, e.g. etc/batchd/batchd.yaml")
        }
        let dir = (URL(fileURLWithPath: path).standardizedFileURL.path as NSString).deletingLastPathComponent
        return try parse(String(decoding: data, as: UTF8.self), file: path, directory: dir)
    }

    /// Parses config text.
    public static func parse(_ text: String, file: String, directory: String) throws -> DaemonConfig {
        var c = DaemonConfig()
        c.typesDirectory = "\(directory)/types"
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw ConfigError(file: file, message: "not valid YAML: \(error)", hint: nil)
        }
        guard let root else { return c }
        guard let map = root.mapping else { throw ConfigError(file: file, message: "expected a mapping at the top", hint: nil) }
        func fail(_ node: Node, _ field: String, _ message: String, _ hint: String? = nil) -> ConfigError {
            ConfigError(file: file, line: node.mark?.line, field: field, message: message, hint: hint)
        }
        func str(_ node: Node, _ field: String) throws -> String {
            guard let s = node.scalar?.string else { throw fail(node, field, "expected text") }
            return s
        }
        func path(_ node: Node, _ field: String) throws -> String {
            let s = try str(node, field)
            return s.hasPrefix("/") ? s : URL(fileURLWithPath: "\(directory)/\(s)").standardizedFileURL.path
        }
        func seconds(_ node: Node, _ field: String) throws -> Double {
            guard let v = HumanDuration.seconds(from: try str(node, field)), v <= Bounds.durationSeconds else {
                throw fail(node, field, "expected a duration of at most 365d", "e.g. 30s or 2m")
            }
            return v
        }
        for (key, value) in map {
            let name = key.string ?? ""
            switch name {
            case "stateDirectory": c.stateDirectory = try path(value, name)
            case "inbox": c.inbox = try path(value, name)
            case "types": c.typesDirectory = try path(value, name)
            case "runtimeDirectory": c.runtimeDirectory = try path(value, name)
            case "defaultBackend":
                c.defaultBackend = try str(value, name)
                guard ManifestKeys.backends.contains(c.defaultBackend) else {
                    throw fail(value, name, "unknown backend '\(c.defaultBackend)'", "one of \(ManifestKeys.backends.joined(separator: ", "))")
                }
            case "shutdownGrace": c.shutdownGrace = try seconds(value, name)
            case "local":
                guard let local = value.mapping else { throw fail(value, name, "expected a mapping") }
                for (k, v) in local {
                    let field = "local.\(k.string ?? "")"
                    switch k.string ?? "" {
                    case "slots":
                        guard let n = Int(try str(v, field)), (0...4096).contains(n) else { throw fail(v, field, "expected a whole number from 0 to 4096", "0 means one per core") }
                        c.local.slots = n
                    case "killGrace": c.local.killGrace = try seconds(v, field)
                    case "exec": c.local.exec = try str(v, field).isEmpty ? "" : try path(v, field)
                    case "passEnvironment":
                        guard let seq = v.sequence else { throw fail(v, field, "expected a list of variable names") }
                        c.local.passEnvironment = try seq.map { try str($0, field) }
                    default:
                        throw fail(k, field, "unknown key '\(k.string ?? "")'",
                                   Suggest.nearest(to: k.string ?? "", in: localKeys).map { "did you mean '\($0)'?" })
                    }
                }
            case "azure":
                guard let azure = value.mapping else { throw fail(value, name, "expected a mapping") }
                for (k, v) in azure {
                    let field = "azure.\(k.string ?? "")"
                    func count(_ least: Int) throws -> Int {
                        guard let n = Int(try str(v, field)), n >= least, n <= 1_000_000 else { throw fail(v, field, "expected a whole number from \(least) to 1000000") }
                        return n
                    }
                    switch k.string ?? "" {
                    case "owner": c.azure.owner = try str(v, field)
                    case "vmSize": c.azure.vmSize = try str(v, field)
                    case "image":
                        c.azure.image = try str(v, field)
                        guard c.azure.image.split(separator: ":").count >= 3 else {
                            throw fail(v, field, "expected publisher:offer:sku[:version]", "e.g. canonical:0001-com-ubuntu-server-jammy:22_04-lts")
                        }
                    case "nodeAgentSku": c.azure.nodeAgentSku = try str(v, field)
                    case "dedicatedNodes": c.azure.dedicatedNodes = try count(0)
                    case "inputContainer":
                        c.azure.inputContainer = try str(v, field)
                        guard c.azure.inputContainer.range(of: "^[a-z0-9](-?[a-z0-9])+$", options: .regularExpression) != nil,
                              (3...63).contains(c.azure.inputContainer.count) else {
                            throw fail(v, field, "not a valid container name", "3 to 63 lowercase letters, digits and single hyphens")
                        }
                    case "blockSize":
                        guard let n = ByteSize.parse(try str(v, field)), n >= 64 << 10, n <= 4000 << 20 else {
                            throw fail(v, field, "expected a size between 64KiB and 4000MiB", "e.g. 4MiB or 8388608")
                        }
                        c.azure.blockSize = n
                    case "concurrency": c.azure.concurrency = try count(1)
                    case "tokenMargin": c.azure.tokenMargin = try seconds(v, field)
                    case "maxTokenLifetime": c.azure.maxTokenLifetime = try seconds(v, field)
                    case "pollMinInterval": c.azure.pollMinInterval = try seconds(v, field)
                    case "pollMaxInterval": c.azure.pollMaxInterval = try seconds(v, field)
                    case "deleteOrphans":
                        guard let b = v.bool else { throw fail(v, field, "expected true or false") }
                        c.azure.deleteOrphans = b
                    case "poolIdleTimeout": c.azure.poolIdleTimeout = try seconds(v, field)
                    case "poolIdleCheck":
                        c.azure.poolIdleCheck = try seconds(v, field)
                        guard c.azure.poolIdleCheck >= 0.1 else { throw fail(v, field, "must be at least 100ms") }
                    default:
                        throw fail(k, field, "unknown key '\(k.string ?? "")'",
                                   Suggest.nearest(to: k.string ?? "", in: azureKeys).map { "did you mean '\($0)'?" })
                    }
                }
                guard c.azure.pollMinInterval > 0, c.azure.pollMinInterval <= c.azure.pollMaxInterval else {
                    throw fail(value, "azure.pollMinInterval", "must be above 0 and at most azure.pollMaxInterval")
                }
            case "slurm":
                guard let slurm = value.mapping else { throw fail(value, name, "expected a mapping") }
                for (k, v) in slurm {
                    let field = "slurm.\(k.string ?? "")"
                    func slurmName() throws -> String {
                        let text = try str(v, field)
                        guard text.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", options: .regularExpression) != nil else {
                            throw fail(v, field, "not a Slurm name", "1-64 letters, digits, '-', '_' and '.', starting with a letter or digit")
                        }
                        return text
                    }
                    switch k.string ?? "" {
                    case "sharedDirectory":
                        // Empty (the shipped default) leaves the backend off.
                        c.slurm.sharedDirectory = try str(v, field)
                        guard c.slurm.sharedDirectory.isEmpty || c.slurm.sharedDirectory.hasPrefix("/") else {
                            throw fail(v, field, "expected an absolute path", "a directory every node sees at the same path")
                        }
                    case "partition": c.slurm.partition = try slurmName()
                    case "account": c.slurm.account = try slurmName()
                    case "qos": c.slurm.qos = try slurmName()
                    case "owner": c.slurm.owner = try str(v, field)
                    case "pollMinInterval": c.slurm.pollMinInterval = try seconds(v, field)
                    case "pollMaxInterval": c.slurm.pollMaxInterval = try seconds(v, field)
                    case "missingGrace": c.slurm.missingGrace = try seconds(v, field)
                    case "commandTimeout": c.slurm.commandTimeout = try seconds(v, field)
                    case "accounting":
                        c.slurm.accounting = try str(v, field)
                        guard ["auto", "always", "never"].contains(c.slurm.accounting) else {
                            throw fail(v, field, "expected auto, always or never")
                        }
                    case "cancelOrphans":
                        guard let b = v.bool else { throw fail(v, field, "expected true or false") }
                        c.slurm.cancelOrphans = b
                    default:
                        throw fail(k, field, "unknown key '\(k.string ?? "")'",
                                   Suggest.nearest(to: k.string ?? "", in: slurmKeys).map { "did you mean '\($0)'?" })
                    }
                }
                guard c.slurm.pollMinInterval > 0, c.slurm.pollMinInterval <= c.slurm.pollMaxInterval else {
                    throw fail(value, "slurm.pollMinInterval", "must be above 0 and at most slurm.pollMaxInterval")
                }
                guard c.slurm.commandTimeout >= 1 else { throw fail(value, "slurm.commandTimeout", "must be at least 1s") }
            case "debug":
                guard let debug = value.mapping else { throw fail(value, name, "expected a mapping") }
                for (k, v) in debug {
                    switch k.string ?? "" {
                    case "allowStall":
                        guard let b = v.bool else { throw fail(v, "debug.allowStall", "expected true or false") }
                        c.debug.allowStall = b
                    case "crashMarker":
                        c.debug.crashMarker = try str(v, "debug.crashMarker")
                    case "crashAt":
                        c.debug.crashAt = try str(v, "debug.crashAt")
                        guard CrashPoints.parse(c.debug.crashAt) != nil else {
                            throw fail(v, "debug.crashAt", "expected POINT or POINT#N (N from 1)", "e.g. submit.after or task.recorded#3")
                        }
                    case "crashTrace":
                        c.debug.crashTrace = try str(v, "debug.crashTrace")
                    default:
                        throw fail(k, "debug.\(k.string ?? "")", "unknown key", "debug takes allowStall, crashMarker, crashAt and crashTrace")
                    }
                }
            default:
                throw fail(key, name, "unknown key '\(name)'", Suggest.nearest(to: name, in: keys).map { "did you mean '\($0)'?" }
                           ?? "valid keys: \(keys.joined(separator: ", "))")
            }
        }
        return c
    }
}

/// Sizes in config files: `4194304`, `4MiB`, `512KiB`, `1GiB` (also `4M`, `4MB`).
enum ByteSize {
    static func parse(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let digits = t.prefix(while: \.isNumber)
        guard digits.count <= 12, let n = Int(digits) else { return nil }
        switch t.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased() {
        case "", "b": return n
        case "k", "kb", "kib": return n << 10
        case "m", "mb", "mib": return n << 20
        case "g", "gb", "gib": return n << 30
        default: return nil
        }
    }
}

/// A config file that cannot be used.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// The config file.
    public var file: String
    /// 1-based line, when known.
    public var line: Int?
    /// The key.
    public var field: String?
    /// What is wrong.
    public var message: String
    /// How to fix it.
    public var hint: String?

    init(file: String, line: Int? = nil, field: String? = nil, message: String, hint: String?) {
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        self.hint = hint
    }

    /// `FILE:LINE: FIELD: MESSAGE (HINT)`.
    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let field { s += "\(field): " }
        s += message
        if let hint { s += " (\(hint))" }
        return s
    }
}

extension DaemonConfig {
    /// A setting that takes effect only at the next start: its name in the
    /// config file, whether two configs differ in it, and how to keep the old.
    struct RestartOnly: Sendable {
        let name: String
        let differs: @Sendable (DaemonConfig, DaemonConfig) -> Bool
        let keep: @Sendable (inout DaemonConfig, DaemonConfig) -> Void

        init<T: Equatable & Sendable>(_ name: String, _ path: WritableKeyPath<DaemonConfig, T> & Sendable) {
            self.name = name
            differs = { $0[keyPath: path] != $1[keyPath: path] }
            keep = { $0[keyPath: path] = $1[keyPath: path] }
        }
    }

    static let restartOnly: [RestartOnly] = [
        .init("stateDirectory", \.stateDirectory), .init("inbox", \.inbox), .init("runtimeDirectory", \.runtimeDirectory),
        .init("defaultBackend", \.defaultBackend), .init("local.killGrace", \.local.killGrace), .init("local.exec", \.local.exec),
        .init("local.passEnvironment", \.local.passEnvironment), .init("azure", \.azure), .init("slurm", \.slurm),
    ]

    /// The settings that take effect only at the next start and differ in
    /// `self` from `old`, by their names in the config file.
    public func restartOnlyChanges(from old: DaemonConfig) -> [String] {
        Self.restartOnly.filter { $0.differs(self, old) }.map(\.name)
    }

    /// `self` with the settings that need a restart kept as they are in `old`.
    public func keepingRestartOnlySettings(of old: DaemonConfig) -> DaemonConfig {
        var kept = self
        for setting in Self.restartOnly { setting.keep(&kept, old) }
        return kept
    }
}
