import ArgumentParser
import BatchControl
import BatchCore
import BatchStore
import Foundation

struct Files: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The files jobs staged into the input stores (local, Slurm, Azure's batchd-inputs), by content.",
        subcommands: [FilesList.self, FilesFind.self, FilesPut.self, FilesPrune.self], defaultSubcommand: FilesList.self)
}

/// What `files list` and `files find` print.
struct FilesView {
    static func show(_ files: [StoredFile], json: Bool) {
        if json {
            say(JobReport.json(["files": files.map { f -> [String: Any] in
                ["sha256": f.sha256, "size": f.size, "names": f.names, "jobs": f.jobs, "backends": f.backends,
                 "blob": f.blob as Any? ?? NSNull(), "lastUsed": JobReport.iso(f.lastUsed)]
            }]))
            return
        }
        if files.isEmpty { say("no stored files"); return }
        let rows = files.map { f -> [String] in
            [String(f.sha256.prefix(12)), Progress.bytes(f.size), "\(JobReport.iso(f.lastUsed))", f.jobs.joined(separator: ","),
             f.names.map { Printable.escape($0) }.joined(separator: ", ")]
        }
        say(JobReport.table([["SHA256", "SIZE", "LAST USED", "JOBS", "STAGED FROM"]] + rows))
    }
}

struct FilesList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Every stored file: size, names, the jobs that used it, when last.")
    @OptionGroup var global: Global
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded { FilesView.show(try await global.store().storedFiles(), json: json) }
    }
}

struct FilesFind: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "find", abstract: "Stored files whose name (or path) matches a glob.")
    @OptionGroup var global: Global
    @Argument(help: "A name or glob, e.g. 'scene*.blend' (a pattern with / matches the whole path).") var pattern: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            let glob = Glob(pattern)
            let whole = pattern.contains("/")
            let found = try await global.store().storedFiles().filter { f in
                f.names.contains { name in
                    let parts = name.split(separator: "/").map(String.init)
                    return whole ? glob.matches(parts) : glob.matches([parts.last ?? name])
                }
            }
            FilesView.show(found, json: json)
        }
    }
}

/// What `files put` and `files prune` print.
extension FilesView {
    static func show(_ reply: ControlReply, verb: String, json: Bool) {
        let totals = reply.fileTotals ?? .init(files: 0, bytes: 0, moved: 0)
        let items = reply.files ?? []
        if json {
            say(JobReport.json(["files": items.map { f -> [String: Any] in
                var o: [String: Any] = ["backend": f.backend, "sha256": f.sha256, "size": f.size, "names": f.names]
                if let sent = f.sent { o["sent"] = sent }
                if let last = f.lastUsed { o["lastUsed"] = JobReport.iso(last) }
                return o
            }, "count": totals.files, "bytes": totals.bytes, verb == "put" ? "sent" : "freed": totals.moved]))
            return
        }
        let rows = items.map { f -> [String] in
            [f.backend, String(f.sha256.prefix(12)), Progress.bytes(f.size),
             f.sent.map { $0 > 0 ? "sent" : "stored already" } ?? f.lastUsed.map { "\(JobReport.iso($0))" } ?? "",
             f.names.prefix(3).map { Printable.escape($0) }.joined(separator: ", ") + (f.names.count > 3 ? ", …" : "")]
        }
        if !rows.isEmpty {
            say(JobReport.table([["BACKEND", "SHA256", "SIZE", verb == "put" ? "PUT" : "LAST USED", "NAMES"]] + rows))
        }
        if totals.files > items.count { say("(\(totals.files - items.count) more not listed)") }
        switch verb {
        case "put": say("\(totals.files) files, \(Progress.bytes(totals.bytes)); \(Progress.bytes(totals.moved)) sent, the rest stored already")
        case "would prune": say("\(totals.files) files, \(Progress.bytes(totals.bytes)) would be removed (a dry run: give --unused-for to remove them)")
        case "dry-run": say("\(totals.files) files, \(Progress.bytes(totals.bytes)) would be removed (--dry-run: nothing was)")
        default: say("\(totals.files) files removed, \(Progress.bytes(totals.moved)) freed")
        }
    }
}

struct FilesPut: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "put",
        abstract: "Stage files ahead of a job: a job that uses them later sends nothing.",
        discussion: """
            Each PATH is a file, or a directory whose files are all put (as a job's DIR/**/* would take them: \
            hidden names and symlinked directories skipped). The daemon reads them as you: what you cannot \
            read is refused. The files go into the backend's content-addressed input store (local, Slurm's \
            shared directory, or Azure's batchd-inputs container) exactly as a job's staging would put them.
            """)
    @OptionGroup var global: Global
    @Argument(help: "Files or directories to put.") var paths: [String]
    @Option(help: "The backend whose store gets them (default: the daemon's defaultBackend).") var backend: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            let cwd = FileManager.default.currentDirectoryPath
            let absolute = paths.map { p in URL(fileURLWithPath: p.hasPrefix("/") ? p : "\(cwd)/\(p)").standardizedFileURL.path }
            let reply = try global.control(.filesPut(paths: absolute, backend: backend), timeout: 86400)
            FilesView.show(reply, verb: "put", json: json)
        }
    }
}

struct FilesPrune: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove stored inputs no unfinished job uses and no job used for a while (a dry run unless --unused-for is given).",
        discussion: """
            Without --unused-for, lists what --unused-for 30d would remove and removes nothing. With it, removes \
            from the input stores every file that no unfinished job uses and that no job used (and nobody put) \
            within that time; --dry-run lists them instead. A failed job whose inputs were pruned can no longer \
            be retried; submit it again.
            """)
    @OptionGroup var global: Global
    @Option(help: "Age of the last use, e.g. 30d, 12h, 0s.") var unusedFor: String?
    @Flag(help: "List what would be removed; remove nothing.") var dryRun = false
    @Option(help: "Only this backend's store (default: every backend's).") var backend: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            let text = unusedFor ?? "30d"
            guard let seconds = HumanDuration.seconds(from: text), seconds <= Bounds.durationSeconds else {
                throw CLIError(2, "--unused-for '\(text)' is not a duration of at most 365d (e.g. 30d, 12h, 0s)")
            }
            let apply = unusedFor != nil && !dryRun
            let reply = try global.control(.filesPrune(unusedFor: seconds, apply: apply, backend: backend), timeout: 86400)
            FilesView.show(reply, verb: apply ? "pruned" : (dryRun ? "dry-run" : "would prune"), json: json)
        }
    }
}
