import BatchAccess
import BatchControl
import BatchBackend
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The Slurm backend's shared parts: the commands, the shared directory (the
/// input store, the tasks' directories, batchd-exec for the nodes), what the
/// cluster said of itself, and the poller every job shares.
public final class SlurmCluster: Sendable {
    public let settings: SlurmSettings
    /// The tag in every array's comment.
    public let owner: String
    let commands: SlurmCommands
    /// The shared directory's content-addressed input store.
    let contents: ContentStore
    /// batchd-exec, copied where the nodes see it.
    let execPath: String
    /// Variables passed through from the daemon's environment to tasks.
    let baseEnvironment: [String: String]
    /// What a task of another user than the daemon's must not reach.
    let hidden: [String]
    let ledger: BackendLedger
    let logger: Logger
    let user: String
    let facts = Mutex<SlurmOutput.ClusterConfig?>(nil)
    let poller: SlurmPoller

    var shared: String { settings.sharedDirectory }

    init(settings: SlurmSettings, owner: String, commands: SlurmCommands, execPath: String, baseEnvironment: [String: String],
         hidden: [String], ledger: BackendLedger, logger: Logger, user: String) {
        self.settings = settings
        self.owner = owner
        self.commands = commands
        contents = ContentStore(root: "\(settings.sharedDirectory)/store")
        self.execPath = execPath
        self.baseEnvironment = baseEnvironment
        self.hidden = hidden
        self.ledger = ledger
        self.logger = logger
        self.user = user
        poller = SlurmPoller(commands: commands, user: user,
                             schedule: PollSchedule(minInterval: settings.pollMinInterval, maxInterval: settings.pollMaxInterval), logger: logger)
    }

    /// The backend, when `slurm.sharedDirectory` is set, the directory is
    /// there and sbatch is on the PATH; throws the reason (and the fix) when not.
    public static func make(settings: SlurmSettings, variables: [String: String], exec: String, baseEnvironment: [String: String],
                            hidden: [String], hostName: String, ledger: BackendLedger, logger: Logger) throws -> SlurmCluster {
        guard !settings.sharedDirectory.isEmpty else {
            throw DaemonError("slurm.sharedDirectory is not set (a directory every node sees at the same path)")
        }
        var st = stat()
        guard stat(settings.sharedDirectory, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw DaemonError("slurm.sharedDirectory \(Printable.quote(settings.sharedDirectory)) is not a directory")
        }
        let commands = SlurmCommands(environment: variables, timeout: settings.commandTimeout, switcher: exec)
        for command in ["sbatch", "squeue", "scancel", "scontrol"] where commands.find(command) == nil {
            throw DaemonError("\(command) is not on the daemon's PATH (install Slurm's client commands, or set PATH for the service)")
        }
        // Submitters' tasks pass through store/ and jobs/ (to their own
        // directories and the inputs linked there), listing neither, on
        // nodes where they need not be in the daemon's group.
        for (dir, mode) in [("store", 0o711), ("jobs", 0o711), ("bin", 0o755)] as [(String, mode_t)] {
            let path = "\(settings.sharedDirectory)/\(dir)"
            try FileOps.makeDirectory(path)
            var st = stat()
            if stat(path, &st) == 0, st.st_uid == geteuid(), st.st_mode & 0o7777 != mode { chmod(path, mode) }
        }
        let execPath = "\(settings.sharedDirectory)/bin/batchd-exec"
        try install(exec, at: execPath)
        let name = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? String(geteuid())
        let owner = settings.owner.isEmpty ? "batchd@\(hostName)" : settings.owner
        logger.info("slurm backend configured", metadata: ["shared": "\(settings.sharedDirectory)", "owner": "\(owner)", "user": "\(name)"])
        return SlurmCluster(settings: settings, owner: owner, commands: commands, execPath: execPath, baseEnvironment: baseEnvironment,
                            hidden: hidden, ledger: ledger, logger: logger, user: name)
    }

    /// Copies batchd-exec where the nodes see it, unless the same bytes are there.
    static func install(_ source: String, at target: String) throws {
        guard let bytes = FileManager.default.contents(atPath: source) else { throw DaemonError("cannot read \(source)") }
        if FileManager.default.contents(atPath: target) == bytes { return }
        let tmp = "\(target).tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: bytes, attributes: [.posixPermissions: 0o755]) else {
            throw DaemonError("cannot write \(tmp)")
        }
        guard rename(tmp, target) == 0 else { throw DaemonError("cannot rename \(tmp): \(FileOps.plain(errno))") }
    }

    /// What `scontrol show config` says (asked once it answers).
    func clusterFacts() async -> SlurmOutput.ClusterConfig? {
        if let f = facts.withLock({ $0 }) { return f }
        let out = await commands.run("scontrol", ["show", "config"])
        guard out.ok else {
            logger.warning("scontrol show config failed", metadata: ["error": "\(out.why)"])
            return nil
        }
        let f = SlurmOutput.clusterConfig(out.stdout)
        facts.withLock { $0 = f }
        logger.info("slurm cluster", metadata: ["cluster": "\(f.clusterName)", "version": "\(f.version)", "max.array.size": "\(f.maxArraySize)",
                                                "min.job.age": "\(f.minJobAge)", "accounting": "\(f.accounting)"])
        return f
    }

    /// Whether ended jobs are asked of sacct.
    func usesAccounting() async -> Bool {
        switch settings.accounting {
        case "always": return true
        case "never": return false
        default: return await clusterFacts()?.accounting ?? false
        }
    }

    /// A job's directory in the shared directory.
    func jobDirectory(_ job: String) -> String { "\(shared)/jobs/\(job)" }

    /// Arrays tagged with this daemon's owner, each marked orphan when no job
    /// in the database knows it; with the user each runs as. (Every user's:
    /// arrays are submitted as their submitters.)
    func inventory() async throws -> [(name: String, arrayID: String, state: String, job: String?, orphan: Bool, user: String)] {
        let out = await commands.run("squeue", ["--noheader", "--format=\(SlurmOutput.queueFormat)"])
        guard out.ok else { throw DaemonError("squeue failed: \(out.why)") }
        let tag = SlurmRules.comment(owner: owner)
        var seen = Set<String>()
        var items: [(String, String, String, String?, Bool, String)] = []
        for e in SlurmOutput.queue(out.stdout).entries where e.comment == tag && seen.insert(e.arrayID).inserted {
            let job = SlurmRules.jobID(fromArrayName: e.name)
            let known = job == nil ? false : (try await ledger.job(job!)) != nil
            items.append((e.name, e.arrayID, e.state.name, job, !known, e.user))
        }
        return items
    }

    /// Cancels arrays by id, in one scancel call, as `user` (their
    /// submitter, whose arrays they are).
    func cancel(_ ids: [String], as user: Submitter? = nil) async -> SlurmCommands.Output? {
        guard !ids.isEmpty else { return nil }
        return await commands.run("scancel", ids, as: user)
    }

    /// Whom a job's commands and files are run and made as: its submitter,
    /// when the daemon may switch to them; nil for the daemon itself.
    func acting(for submitter: Submitter) -> Submitter? {
        Identity.switches(to: submitter) ? submitter : nil
    }

    /// The name squeue knows `who` by (the daemon's own user for nil).
    func userName(_ who: Submitter?) -> String {
        who.map { $0.name ?? String($0.uid) } ?? user
    }

    /// Looks once for orphans (cancelling them when `slurm.cancelOrphans`
    /// says so), then runs the poller until cancelled.
    func runBackground() async {
        do {
            let orphans = try await inventory().filter(\.orphan)
            for o in orphans {
                logger.warning("orphan on Slurm: an array tagged as this daemon's that its database does not know", metadata: [
                    "array": "\(o.arrayID)", "name": "\(o.name)", "state": "\(o.state)",
                    "action": "\(settings.cancelOrphans ? "cancelling" : "kept (slurm.cancelOrphans is off; see batchctl pools)")",
                ])
            }
            if settings.cancelOrphans {
                for (name, arrays) in Dictionary(grouping: orphans, by: \.user) {
                    let who = getpwnam(name).map { Submitter.lookup(uid: $0.pointee.pw_uid) }
                    if let out = await cancel(arrays.map(\.arrayID), as: who.flatMap(acting(for:))), !out.ok {
                        logger.warning("could not cancel orphans", metadata: ["user": "\(name)", "error": "\(out.why)"])
                    }
                }
            }
        } catch {
            logger.warning("could not list arrays to look for orphans", metadata: ["error": "\(error)"])
        }
        await poller.run()
    }
}
