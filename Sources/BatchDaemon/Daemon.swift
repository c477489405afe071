import BatchAccess
import BackendAzure
import BackendLocal
import BackendSlurm
import BatchBackend
import BatchControl
import BatchCore
import BatchSupport
import CLinux
import BatchStore
import Foundation
import Logging
import ServiceLifecycle
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

/// What the daemon needs from its process, gathered once by the executable
/// (libraries read no environment of their own).
public struct DaemonEnvironment: Sendable {
    /// The process environment.
    public var variables: [String: String]
    /// Cores on this machine.
    public var cores: Int
    /// The directory holding the batchd binary (batchd-exec is looked for there).
    public var executableDirectory: String
    /// The config file, read again on SIGHUP.
    public var configPath: String
    /// sd_notify, enabled when NOTIFY_SOCKET is set.
    public var notifier: Notifier
    /// WATCHDOG_USEC in seconds, when systemd asked for watchdog pings.
    public var watchdogInterval: Double?

    /// Creates an environment.
    public init(variables: [String: String], cores: Int, executableDirectory: String, configPath: String,
                notifier: Notifier, watchdogInterval: Double?) {
        self.variables = variables
        self.cores = cores
        self.executableDirectory = executableDirectory
        self.configPath = configPath
        self.notifier = notifier
        self.watchdogInterval = watchdogInterval
    }
}

/// The daemon: the supervisor, inbox and control socket as one ServiceGroup.
/// SIGTERM or SIGINT shut it down gracefully.
public enum Daemon {
    /// Version of batchd.
    public static let version = BatchdVersion.current

    /// The backends batchd ships beside the local one: one line each.
    static var plugins: [any BackendPlugin.Type] {
        [
            AzurePlugin.self,
            SlurmPlugin.self,
        ]
    }

    /// Runs until SIGTERM/SIGINT; throws on start-up failures.
    /// `extraBackends` are registered after the shipped ones (a test
    /// daemon's fake backend).
    public static func run(config: DaemonConfig, environment: DaemonEnvironment, logger: Logger,
                           extraBackends: [any BackendPlugin.Type] = []) async throws {
        try prepareDirectories(config)
        let store = try Store(path: config.databasePath, clock: { Date().timeIntervalSince1970 })
        let candidates = config.local.exec.isEmpty
            ? ["\(environment.executableDirectory)/batchd-exec", "\(environment.executableDirectory)/../lib/batchd/batchd-exec"]
            : [config.local.exec]
        guard let exec = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw DaemonError("the task helper batchd-exec is missing or not executable (looked at \(candidates.joined(separator: ", ")); build it with `swift build`, or set local.exec in the config)")
        }
        var base: [String: String] = [:]
        for name in config.local.passEnvironment { if let v = environment.variables[name] { base[name] = v } }
        if base["PATH"] == nil { base["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        let slots = config.slotCount(cores: environment.cores)

        Debug.setCrashMarker(config.debug.crashMarker)
        if !config.debug.crashMarker.isEmpty { logger.warning("debug.crashMarker is set: the daemon kills itself on purpose (a test hook)") }
        CrashPoints.arm(config.debug.crashAt)
        CrashPoints.traceTo(config.debug.crashTrace)
        if !config.debug.crashAt.isEmpty { logger.warning("debug.crashAt is set: the daemon kills itself on purpose (a test hook)", metadata: ["point": "\(config.debug.crashAt)"]) }
        let credentials = environment.variables["CREDENTIALS_DIRECTORY"]
        let protected = config.protectedDirectories(credentials: credentials)
        var hidden: [String] = []
        let landlock = batchd_landlock_abi()
        if landlock >= 1 {
            // What no submitter's path may reach, plus the inbox when it is
            // elsewhere (it holds others' private rejections).
            var paths = protected.map(\.path) + ["/run/credentials"]
            if !config.inboxDirectory.hasPrefix(config.stateDirectory + "/") { paths.append(config.inboxDirectory) }
            hidden = Array(Set(paths.compactMap { FileOps.realPath($0) })).sorted()
            logger.info("tasks of other users are confined", metadata: ["landlock.abi": "\(landlock)", "hidden": "\(hidden.joined(separator: " "))"])
        } else {
            logger.warning("this kernel has no Landlock: tasks of other users than the daemon's can read its state directory (docs/security.md)")
        }

        let slotPool = SlotPool(limit: slots)
        var ctx = JobContext(config: config, store: store, slots: slotPool, logger: logger, clock: { Date().timeIntervalSince1970 })
        ctx.protected = protected
        // The backends: the embedded local one, then each plugin of
        // `plugins` (`extraBackends` lets a test daemon add its own). A
        // plugin that cannot run here (Azure without credentials) is off,
        // and manifests naming it are refused with the reason.
        ctx.backends.register(LocalJobBackend.name, LocalJobBackend(
            runner: LocalRunner(execPath: exec, contents: ContentStore(root: config.storeDirectory), killGrace: config.local.killGrace),
            slots: slotPool, baseEnvironment: base, hidden: hidden,
            containers: config.containers, engine: ContainerEngine(config.containers, environment: environment.variables)))
        let setup = BackendSetup(config: config, store: store, logger: logger, variables: environment.variables, hostName: hostName(),
                                 exec: exec, baseEnvironment: base, hidden: hidden)
        for plugin in plugins + extraBackends {
            let name = plugin.name
            do {
                ctx.backends.register(name, try plugin.make(setup, section: config.sections[name.rawValue]), poolOptions: plugin.poolOptions)
            } catch let error as ConfigError {
                throw error
            } catch {
                ctx.backends.unavailable(name, message: "backend '\(name.rawValue)' is not configured in this daemon: \(error)",
                                         hint: "\(plugin.setupHint), or submit with --backend local", poolOptions: plugin.poolOptions)
                logger.info("\(name.rawValue) backend off", metadata: ["reason": "\(error)"])
            }
        }
        // A section no backend claims is a mistake (a misspelt name).
        let names = ctx.backends.catalog.names
        for section in config.sections.values.sorted(by: { $0.name < $1.name }) where !names.contains(section.name) {
            throw ConfigError(file: section.file, line: section.line, field: section.name, message: "unknown key '\(section.name)'",
                              hint: Suggest.nearest(to: section.name, in: DaemonConfig.keys + names).map { "did you mean '\($0)'?" }
                                  ?? "valid keys: \((DaemonConfig.keys + names).joined(separator: ", "))")
        }
        let known = ctx.backends.catalog.names
        guard known.contains(config.defaultBackend) else {
            throw ConfigError(file: environment.configPath, field: "defaultBackend",
                              message: "'\(config.defaultBackend)' is not a backend of this batchd", hint: "one of \(known.joined(separator: ", "))")
        }
        // What batchctl checks manifests against (names and pool options),
        // published for it: it reads the database and this file, never the daemon's modules.
        do { try BackendCatalogFile.publish(ctx.backends.catalog, config: config) } catch {
            logger.warning("could not publish the backends for batchctl; it checks pool options less", metadata: ["error": "\(error)"])
        }
        let supervisor = Supervisor(ctx: ctx)
        // How the daemon sees the file system (its sandbox's mounts), read
        // once: intake checks jobs against it, batchctl asks for it.
        let view = ServiceView.current()
        let intake = JobIntake(config: config, store: store, logger: logger, clock: { Date() }, backends: ctx.backends,
                               protected: protected, view: view)
        let inbox = InboxService(intake: intake, supervisor: supervisor)
        let control = ControlServer(path: config.socketPath, supervisor: supervisor, logger: logger, view: view)
        let notifier = environment.notifier
        let ready = ReadinessService(supervisor: supervisor, inbox: inbox, control: control, notifier: notifier, logger: logger,
                                     details: ["slots": "\(slots)", "inbox": "\(config.inboxDirectory)",
                                               "state": "\(config.stateDirectory)", "version": "\(version)"])
        let status = StatusReporter(supervisor: supervisor, notifier: notifier)
        let reloader = Reloader(supervisor: supervisor, notifier: notifier, configPath: environment.configPath,
                                cores: environment.cores, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: control, serviceName: "control")]
        for name in ctx.backends.names {
            // Before the supervisor: it stops after the jobs have drained.
            guard case .success(let backend) = ctx.backends.lookup(name), let work = backend.background else { continue }
            services.append(.init(service: BackendService(work: work), serviceName: name.rawValue))
        }
        services += [
            .init(service: supervisor, serviceName: "supervisor"),
            .init(service: inbox, serviceName: "inbox"),
            .init(service: status, serviceName: "status"),
            .init(service: reloader, serviceName: "reload"),
        ]
        if let interval = environment.watchdogInterval {
            services.append(.init(service: Watchdog(supervisor: supervisor, notifier: notifier, interval: interval, logger: logger),
                                  serviceName: "watchdog"))
        }
        services.append(.init(service: ready, serviceName: "readiness"))
        // Shut down in reverse order: say STOPPING, stop the watchdog and the
        // reporters, stop claiming, drain the jobs, close the control socket.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        for backend in ctx.backends.all { backend.shutdown() }
        logger.info("daemon stopped")
    }
}

/// One of the daemon's own directories cannot be made or given its mode:
/// restarting will not fix it (batchd exits 78, EX_CONFIG, which the units
/// do not restart).
public struct DirectoryError: Error, Sendable, CustomStringConvertible {
    /// What is wrong, with the directory and the fix.
    public var description: String
}

extension Daemon {
    /// The daemon's own directories, made when missing. The inbox and
    /// `rejected/` are sticky and group-writable (1770): a submitter can drop
    /// a manifest but cannot move, replace or delete another's. No
    /// set-group-id bit: the system unit's `RestrictSUIDSGID=yes` refuses it
    /// (batchctl gives what it writes the inbox's group instead). An inbox
    /// that exists without the sticky bit gets it. A chmod that fails stops
    /// the start with the reason: a shared inbox that is not sticky is not
    /// safe to serve. Private by default (docs/security.md): the state
    /// directory may be passed through by the group (to the inbox), not
    /// listed; the jobs and the input store may be passed through (a task
    /// reaches its own directory), not listed; claimed manifests are the
    /// daemon's alone. These modes are set at every start.
    static func prepareDirectories(_ config: DaemonConfig) throws {
        let sticky = [config.inboxDirectory, config.rejectedDirectory]
        let enforced: Set<String> = [config.stateDirectory, config.claimedDirectory, config.jobsDirectory, config.storeDirectory]
        for (dir, mode) in [(config.stateDirectory, 0o710), (config.inboxDirectory, 0o1770), (config.rejectedDirectory, 0o1770),
                            (config.claimedDirectory, 0o700), (config.jobsDirectory, 0o711), (config.storeDirectory, 0o711),
                            (config.runtimeDirectory, 0o755)] as [(String, mode_t)] {
            var st = stat()
            if stat(dir, &st) == 0, enforced.contains(dir), st.st_mode & 0o7777 != mode, st.st_uid == geteuid(), chmod(dir, mode) != 0 {
                throw DirectoryError(description: "cannot set mode \(String(mode, radix: 8)) on \(dir): \(FileOps.plain(errno))")
            }
            if stat(dir, &st) != 0 {
                do { try FileOps.makeDirectory(dir) } catch { throw DirectoryError(description: "\(error)") }
                guard chmod(dir, mode) == 0 else {
                    throw DirectoryError(description: "cannot set mode \(String(mode, radix: 8)) on \(dir): \(FileOps.plain(errno))")
                }
            } else if sticky.contains(dir), st.st_mode & mode_t(S_ISVTX) == 0 {
                let wanted = (st.st_mode & 0o7777 & ~mode_t(S_ISGID)) | mode_t(S_ISVTX)
                guard chmod(dir, wanted) == 0 else {
                    throw DirectoryError(description: """
                        \(dir) is not sticky and cannot be made so (\(FileOps.plain(errno))): one submitter could move or delete \
                        another's manifests; make it the daemon's (chown batchd:batchd), or chmod 1770 it
                        """)
                }
            }
        }
    }
}

/// This machine's host name.
func hostName() -> String {
    var buffer = [UInt8](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
    return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
}

/// A backend's background work (Azure's poller) as one of the daemon's
/// services, ended at graceful shutdown.
struct BackendService: Service {
    let work: @Sendable () async -> Void
    func run() async throws { await cancelWhenGracefulShutdown { await work() } }
}

/// Says "daemon ready" once the database is migrated, unfinished jobs are
/// reconciled, the inbox is watched and the control socket listens; says
/// "daemon stopping" when shutdown begins.
struct ReadinessService: Service {
    let supervisor: Supervisor
    let inbox: InboxService
    let control: ControlServer
    let notifier: Notifier
    let logger: Logger
    let details: Logger.Metadata

    func run() async throws {
        let ready: Bool? = await cancelWhenGracefulShutdown {
            let a: Void? = await supervisor.reconciled.wait()
            let b: Void? = await inbox.watching.wait()
            let c: Void? = await control.listening.wait()
            return a != nil && b != nil && c != nil
        }
        if ready == true {
            logger.notice("daemon ready", metadata: details.merging(["message.id": "\(MessageID.daemonReady)"]) { $1 })
            notifier.ready(status: await supervisor.statusLine())
        }
        try? await gracefulShutdown()
        notifier.stopping()
        logger.notice("daemon stopping", metadata: ["message.id": "\(MessageID.daemonStopping)"])
    }
}
