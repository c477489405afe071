import ArgumentParser
import BatchControl
import BatchDaemon
import CLinux
import Foundation
import Logging
import SystemdSupport

/// `batchd --config FILE`: the daemon, in the foreground.
@main
struct BatchdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batchd",
        abstract: "Run batch jobs dropped into an inbox, crash-safely.",
        discussion: """
            Runs in the foreground until SIGTERM or SIGINT; SIGHUP reloads the config. \
            Under systemd (Type=notify) it reports readiness, status and watchdog pings. \
            See README.md and docs/operations.md.
            """,
        version: Daemon.version)

    @Option(name: .long, help: "The config file.")
    var config = "/etc/batchd/batchd.yaml"

    @Option(name: .long, help: "Lowest level logged: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Where logs go: journal (structured, via sd_journal_sendv), stderr, or auto (journal when stderr is the journal stream).")
    var logTarget: LogTarget = .auto

    enum LogTarget: String, ExpressibleByArgument { case auto, journal, stderr }

    func run() async throws {
        // Other processes of this user (the tasks run as it) may not read
        // this process's memory, environment or descriptors through /proc.
        _ = batchd_set_dumpable(0)
        // The one place the environment is read.
        let env = ProcessInfo.processInfo.environment
        let streamIsJournal = stderrIsJournal(journalStream: env["JOURNAL_STREAM"])
        let target: JournalLogHandler.Target = switch logTarget {
        case .journal: .journal
        case .stderr: .stderr(priorityPrefix: streamIsJournal)
        case .auto: streamIsJournal ? .journal : .stderr(priorityPrefix: false)
        }
        let level = logLevel
        LoggingSystem.bootstrap { _ in
            var handler = JournalLogHandler(identifier: "batchd", target: target)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "batchd")
        let settings: DaemonConfig
        do {
            settings = try DaemonConfig.load(path: config)
        } catch {
            logger.critical("cannot start: bad config", metadata: ["error": "\(error)"])
            throw ExitCode(78)  // EX_CONFIG: systemd does not restart on it
        }
        // WATCHDOG_USEC applies to us only if WATCHDOG_PID is unset or ours.
        var watchdog: Double?
        if let usec = env["WATCHDOG_USEC"].flatMap(Double.init), usec > 0,
           env["WATCHDOG_PID"].map({ $0 == String(getpid()) }) ?? true {
            watchdog = usec / 1_000_000
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let environment = DaemonEnvironment(
            variables: env,
            cores: ProcessInfo.processInfo.activeProcessorCount,
            executableDirectory: (exe as NSString).deletingLastPathComponent,
            configPath: config,
            notifier: Notifier(enabled: env["NOTIFY_SOCKET"] != nil),
            watchdogInterval: watchdog)
        do {
            try await Daemon.run(config: settings, environment: environment, logger: logger)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
