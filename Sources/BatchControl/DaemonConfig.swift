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
    /// The group whose members are operators, as root and the service user
    /// are: they may cancel and retry any job and run pool commands and
    /// `files prune`. None by default.
    public var operators: String?
    /// Local backend settings.
    public var local = Local()
    /// The container engine and the registries images may come from.
    public var containers = ContainersConfig()
    /// The backends' own sections (`azure:`, `slurm:`), as written: each
    /// backend decodes its own, with its defaults (`ConfigSection`).
    public var sections: [String: ConfigSection] = [:]
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

    /// The daemon's own keys (a backend's section is any other mapping).
    public static let keys = ["stateDirectory", "inbox", "runtimeDirectory", "defaultBackend", "shutdownGrace", "operators", "local", "containers", "debug", "types"]
    static let localKeys = ["slots", "killGrace", "exec", "passEnvironment"]

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
        do { root = try ManifestParser.compose(text) } catch {
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
                // A name; whether a backend goes by it, the daemon says when it starts.
                c.defaultBackend = try str(value, name)
                guard Template.isIdentifier(c.defaultBackend, max: 64) else {
                    throw fail(value, name, "'\(c.defaultBackend)' is not a backend name", "e.g. local")
                }
            case "shutdownGrace": c.shutdownGrace = try seconds(value, name)
            case "operators":
                let group = try str(value, name)
                guard group.range(of: "^[a-z_][a-z0-9_-]{0,31}$", options: .regularExpression) != nil else {
                    throw fail(value, name, "'\(group)' is not a group name", "a system group, e.g. batchd-operators")
                }
                c.operators = group
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
            case "containers":
                c.containers = try ContainersConfig.parse(value, file: file)
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
                // A mapping is a backend's section, checked by the daemon
                // against the backends it has (batchctl reads none).
                guard value.mapping != nil else {
                    throw fail(key, name, "unknown key '\(name)'", Suggest.nearest(to: name, in: keys).map { "did you mean '\($0)'?" }
                               ?? "valid keys: \(keys.joined(separator: ", "))")
                }
                c.sections[name] = try ConfigSection(name: name, file: file, directory: directory, node: value)
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

    public init(file: String, line: Int? = nil, field: String? = nil, message: String, hint: String?) {
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
        .init("local.passEnvironment", \.local.passEnvironment), .init("containers", \.containers),
    ]

    /// The settings that take effect only at the next start and differ in
    /// `self` from `old`, by their names in the config file (a backend's
    /// section is read when the daemon starts: a change in it needs a restart).
    public func restartOnlyChanges(from old: DaemonConfig) -> [String] {
        let changed = Set(sections.keys).union(old.sections.keys).filter { sections[$0] != old.sections[$0] }.sorted()
        return Self.restartOnly.filter { $0.differs(self, old) }.map(\.name) + changed
    }

    /// `self` with the settings that need a restart kept as they are in `old`.
    public func keepingRestartOnlySettings(of old: DaemonConfig) -> DaemonConfig {
        var kept = self
        for setting in Self.restartOnly { setting.keep(&kept, old) }
        kept.sections = old.sections
        return kept
    }
}
