import ArgumentParser
import BatchAccess
import BatchControl
import BatchCore
import BatchStore
import Foundation

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a manifest and put it in the inbox (works while the daemon is down).")

    @OptionGroup var global: Global
    @Argument(help: "The manifest (YAML or JSON).") var file: String
    @Option(help: "Run on this backend instead of the manifest's (local, azure, slurm).") var backend: String?
    @Flag(help: "Wait until the job ends; exit 0 only if it succeeded.") var wait = false
    @Option(help: "With --wait: give up after this many seconds (exit 5).") var timeout: Double?
    @Flag(help: "Print JSON.") var json = false
    @Option(name: .customLong("set"), help: ArgumentHelp("Set a parameter of the job (or of its type); repeat for more.", valueName: "NAME=VALUE"))
    var set: [String] = []

    func validate() throws { _ = try parameterValues(set) }

    func run() async throws {
        try await guarded {
            let config = try global.load()
            let prepared: Submission.Prepared
            // The daemon's view of the file system (under the system unit:
            // a private /tmp, read-only homes), so the paths are checked as
            // it will see them; without it they are checked as we see them.
            let view: ServiceView?
            do { view = try ControlClient.send(.view, socket: config.socketPath, timeout: 5).view } catch { view = nil }
            if view == nil {
                FileHandle.standardError.write(Data("""
                    note: the daemon could not be asked how it sees the files (is it running?), so the paths were checked as you \
                    see them; under the system unit its /tmp is private and home directories are read-only (docs/operations.md)

                    """.utf8))
            }
            do { prepared = try Submission.prepare(path: file, backend: backend, config: config, set: try parameterValues(set), view: view) } catch {
                throw CLIError(2, "\(error)")
            }
            // A backend the daemon said it has (one it cannot run is refused by
            // its intake with the reason, kept beside the manifest).
            let chosen = prepared.manifest.backend ?? config.defaultBackend
            let catalog = BackendCatalogFile.load(config)
            guard catalog.isOpen || catalog.names.contains(chosen) else {
                throw CLIError(2, "\(file): backend '\(chosen)' is not one of this batchd's (\(catalog.names.joined(separator: ", ")))")
            }
            let name = try Submission.write(prepared, inbox: config.inboxDirectory)
            if !json { say("submitted \(prepared.manifest.name) (\(prepared.taskCount) tasks) as \(config.inboxDirectory)/\(name)") }
            guard wait else {
                // `job`: what show, watch, wait, logs and cancel accept for
                // this submission (the inbox file's name, until and after the
                // daemon gives the job its id).
                if json { say(JobReport.json(["submitted": name, "job": name, "inbox": config.inboxDirectory, "tasks": prepared.taskCount])) }
                else { say("follow it with: batchctl watch \(name)") }
                return
            }
            let waiter = Waiter(config: config, json: json, global: global)
            let job = try await waiter.forSubmission(name, timeout: timeout)
            try await waiter.until(job, timeout: timeout)
        }
    }
}

struct Wait: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Wait until a job ends; exit 0 only if it succeeded.")
    @OptionGroup var global: Global
    @Argument(help: "Job id or name (a name means its latest job).") var job: String
    @Option(help: "Give up after this many seconds (exit 5).") var timeout: Double?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            let config = try global.load()
            try await Waiter(config: config, json: json, global: global).until(job, timeout: timeout)
        }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")
    @OptionGroup var global: Global
    @Option(help: "At most this many jobs.") var limit = 50
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            if let a = try global.read(ReadQuery(what: "list", limit: limit, text: !json)) { say((json ? a.report : a.text) ?? ""); return }
            let report = JobReport(store: try global.store())
            say(json ? JobReport.json(try await report.list(limit: limit)) : try await report.listTable(limit: limit))
        }
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a job: state, task counts, failures, outputs.")
    @OptionGroup var global: Global
    @Argument(help: "Job id or name (a name means its latest job).") var job: String
    @Flag(help: "Print JSON.") var json = false
    @Option(help: ArgumentHelp("Which page of the failed tasks and outputs to list (\(JobReport.pageSize) of each per page).", valueName: "N"))
    var page = 1

    func validate() throws { try checkPage(page) }

    func run() async throws {
        try await guarded {
            if let a = try global.read(ReadQuery(what: "show", job: job, page: page, text: !json)) { say((json ? a.report : a.text) ?? ""); return }
            let store = try global.store()
            let record = try await global.job(store, job)
            let report = JobReport(store: store)
            say(json ? JobReport.json(try await report.show(record, page: page)) : try await report.showText(record, page: page))
        }
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A job's history and failed tasks' stderr, or one task's stdout and stderr.")
    @OptionGroup var global: Global
    @Argument(help: "Job id or name.") var job: String
    @Argument(help: "Task id (or index).") var task: String?
    @Option(help: "Which attempt (default: the latest).") var attempt: Int?
    @Flag(name: .shortAndLong, help: "Keep printing as the task writes (or as the job's history grows) until it ends.") var follow = false
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            if follow, let first = try global.read(ReadQuery(what: "progress", job: job)) {
                try await Follower.throughDaemon(global, job: first.job ?? job, task: task)
                return
            }
            if !follow, let a = try global.read(ReadQuery(what: "logs", job: job, task: task, attempt: attempt)) {
                if json { say(a.report ?? "") } else { print(Global.object(a), task: task) }
                return
            }
            let store = try global.store()
            let record = try await global.job(store, job)
            let report = JobReport(store: store)
            if follow {
                if let task { try await Follower(store: store, job: record).task(task) } else { try await Follower(store: store, job: record).history() }
                return
            }
            if let task {
                do { print(try await report.taskLogs(record, task: task, attempt: attempt), task: task) } catch { throw CLIError(4, "\(error)") }
                return
            }
            print(try await report.jobLogs(record), task: nil)
        }
    }

    /// A task's logs, or a job's history and its failed tasks' stderr.
    func print(_ logs: [String: Any], task: String?) {
        if json { say(JobReport.json(logs)); return }
        if task != nil {
            let how = (logs["exitCode"] as? Int).map { "exit code \($0)" } ?? (logs["signal"] as? Int).map { "signal \($0)" }
                ?? (logs["outcome"] as? String) ?? "running"
            say("== task \(logs["task"] ?? "?") attempt \(logs["attempt"] ?? "?") of \(logs["attempts"] ?? "?"): \(how)")
            say("== stdout")
            FileHandle.standardOutput.write(Data((logs["stdout"] as? String ?? "").utf8))
            say("== stderr")
            FileHandle.standardOutput.write(Data((logs["stderr"] as? String ?? "").utf8))
            return
        }
        for e in logs["events"] as? [[String: Any]] ?? [] { say("\(e["at"] ?? "")  \(e["message"] ?? "")") }
        for f in logs["failedTasks"] as? [[String: Any]] ?? [] {
            let how = (f["exitCode"] as? Int).map { "exit code \($0)" } ?? (f["signal"] as? Int).map { "signal \($0)" } ?? "\(f["outcome"] ?? "?")"
            say("\n== task \(f["task"] ?? "?") failed (\(how)); last lines of stderr:")
            say(f["stderr"] as? String ?? "")
        }
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job: stop its running tasks, start no more.")
    @OptionGroup var global: Global
    @Argument(help: "Job id or name.") var job: String

    func run() async throws {
        try await guarded {
            let answer = try global.control(.cancel(job: job))
            say("cancelling \(answer.job ?? job)")
        }
    }
}

struct Pools: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Azure pools and jobs tagged as this daemon's; orphans are those no job in its database knows.")
    @OptionGroup var global: Global
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            let answer = try global.control(.pools)
            let items = answer.items ?? []
            if json {
                say(JobReport.json(["owner": answer.owner ?? "", "items": items.map {
                    ["kind": $0.kind, "id": $0.id, "state": $0.state, "job": $0.job as Any? ?? NSNull(),
                     "nodes": $0.nodes as Any? ?? NSNull(), "orphan": $0.orphan] as [String: Any]
                }]))
                return
            }
            say("owner \(answer.owner ?? "")")
            if items.isEmpty { say("no pools or jobs of this owner"); return }
            let rows = items.map { i -> [String] in
                [i.kind, i.id, i.state, i.nodes.map(String.init) ?? "-", i.job ?? "-", i.orphan ? "ORPHAN" : ""]
            }
            say(JobReport.table([["KIND", "ID", "STATE", "NODES", "BATCHD JOB", ""]] + rows))
        }
    }
}

/// `--page N` of `show` and `outputs`: 1 to 1,000,000.
func checkPage(_ page: Int) throws {
    guard (1...1_000_000).contains(page) else { throw ValidationError("--page must be between 1 and 1000000") }
}

/// `--set NAME=VALUE` options as a dictionary; the last of a name wins.
func parameterValues(_ options: [String]) throws -> [String: String] {
    var out: [String: String] = [:]
    for option in options {
        guard let eq = option.firstIndex(of: "="), eq != option.startIndex else {
            throw ValidationError("--set \(option): expected NAME=VALUE")
        }
        out[String(option[..<eq])] = String(option[option.index(after: eq)...])
    }
    return out
}

struct Types: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the job types manifests may name (type: NAME), with their parameters and defaults.")
    @OptionGroup var global: Global
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            let config = try global.load()
            let types = config.jobTypes.list()
            if json {
                say(JobReport.json(["directory": config.typesDirectory, "types": types.map { t -> [String: Any] in
                    ["name": t.name, "default": t.isDefault, "parameters": t.parameters, "problem": t.problem as Any? ?? NSNull()]
                }]))
                return
            }
            guard !types.isEmpty else {
                say("no job types in \(config.typesDirectory) (a type is a partial manifest there, NAME.yaml: docs/manifest.md, \"Job types\")")
                return
            }
            for t in types {
                say("\(t.name)\(t.isDefault ? " (default)" : "")")
                if let problem = t.problem { say("  cannot be used: \(problem)") }
                for name in t.parameters.keys.sorted() { say("  {param.\(name)} = \(Printable.quote(t.parameters[name]!))") }
            }
        }
    }
}

struct Outputs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The files collected from each task, in task order (or one task's), where the destination keeps them.")
    @OptionGroup var global: Global
    @Argument(help: "Job id or name.") var job: String
    @Argument(help: "A task id or index (default: every task).") var task: String?
    @Flag(help: "Print JSON.") var json = false
    @Option(help: ArgumentHelp("Which page of files to list (\(JobReport.pageSize) per page).", valueName: "N")) var page = 1

    func validate() throws { try checkPage(page) }

    func run() async throws {
        try await guarded {
            if let a = try global.read(ReadQuery(what: "outputs", job: job, task: task, page: page, text: !json)) {
                say((json ? a.report : a.text) ?? "")
                return
            }
            let store = try global.store()
            let record = try await global.job(store, job)
            let report = JobReport(store: store)
            do {
                say(json ? JobReport.json(try await report.outputs(record, task: task, page: page))
                         : try await report.outputsText(record, task: task, page: page))
            } catch let e as DaemonError {
                throw CLIError(4, "\(e)")
            }
        }
    }
}

struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Pools kept outside jobs (Azure): list, create, resize, delete. Jobs use one with pool.id.",
        subcommands: [PoolList.self, PoolCreate.self, PoolResize.self, PoolDelete.self], defaultSubcommand: PoolList.self)
}

struct PoolList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "The pools and jobs tagged as this daemon's (as `batchctl pools`).")
    @OptionGroup var global: Global
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        var pools = Pools()
        pools.global = global
        pools.json = json
        try await pools.run()
    }
}

struct PoolCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a named pool tagged as this daemon's; a manifest then uses it with pool.id.")
    @OptionGroup var global: Global
    @Argument(help: "The pool's id (1-64 letters, digits, '-', '_').") var id: String
    @Option(help: "VM size (default: the config's azure.vmSize).") var vmSize: String?
    @Option(help: "Dedicated nodes.") var dedicated: Int?
    @Option(help: "Spot (low-priority) nodes.") var spot: Int?
    @Option(help: "Image, publisher:offer:sku[:version].") var image: String?
    @Option(help: "The image's node agent SKU.") var nodeAgentSku: String?
    @Option(help: "A command every node runs when it joins.") var startTask: String?
    @Option(help: "Task slots per node.") var slotsPerNode: Int?
    @Option(help: "Resize to zero nodes when no job has used it this long (e.g. 30m; default: azure.poolIdleTimeout).") var idleTimeout: String?

    func run() async throws {
        try await guarded {
            // Checked by the manifest's own rules, so a pool made here is one a manifest could ask for.
            let config = try global.load()
            var fields: [(String, Any)] = [("id", id)]
            if let vmSize { fields.append(("vmSize", vmSize)) }
            if let dedicated { fields.append(("dedicatedNodes", dedicated)) }
            if let spot { fields.append(("spotNodes", spot)) }
            if let image { fields.append(("image", image)) }
            if let nodeAgentSku { fields.append(("nodeAgentSku", nodeAgentSku)) }
            if let startTask { fields.append(("startTask", startTask)) }
            if let slotsPerNode { fields.append(("slotsPerNode", slotsPerNode)) }
            if let idleTimeout { fields.append(("idleTimeout", idleTimeout)) }
            let pool = fields.map { key, value -> String in
                let json = (try? JSONSerialization.data(withJSONObject: [value], options: [.withoutEscapingSlashes])).map { String(decoding: $0, as: UTF8.self) } ?? "[null]"
                return "\(key): \(json.dropFirst().dropLast())"
            }.joined(separator: ", ")
            let spec: PoolSpec
            do {
                spec = try ManifestParser.parse("name: pool\ntasks: [{command: 'true'}]\npool: {\(pool)}\n", file: "batchctl pool create",
                                                catalog: BackendCatalogFile.load(config)).pool
            } catch {
                throw CLIError(2, "\(error)")
            }
            let answer = try global.control(.poolCreate(pool: spec))
            say(answer.detail ?? "created pool \(id)")
        }
    }
}

struct PoolResize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resize", abstract: "Ask for a number of nodes in a pool this daemon made.")
    @OptionGroup var global: Global
    @Argument(help: "The pool's id.") var id: String
    @Option(help: "Dedicated nodes.") var dedicated: Int
    @Option(help: "Spot (low-priority) nodes.") var spot = 0

    func validate() throws {
        // The upper bound is the backend's, checked by the daemon.
        guard dedicated >= 0, spot >= 0 else {
            throw ValidationError("--dedicated and --spot are 0 or more")
        }
    }

    func run() async throws {
        try await guarded {
            say(try global.control(.poolResize(id: id, dedicated: dedicated, spot: spot)).detail ?? "resizing \(id)")
        }
    }
}

struct PoolDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a pool this daemon made and no unfinished job uses.")
    @OptionGroup var global: Global
    @Argument(help: "The pool's id.") var id: String

    func run() async throws {
        try await guarded {
            say(try global.control(.poolDelete(id: id)).detail ?? "deleting \(id)")
        }
    }
}
