import BatchBackend
import BatchControl
import CLinux
import Foundation
import Logging
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

/// What `batchd` does once its arguments are read: logging, the config,
/// the environment, then `Daemon.run`. A test daemon calls it as well, with
/// its own backends added.
public enum DaemonLauncher {
    /// Where logs go.
    public enum LogTarget: String, Sendable, CaseIterable {
        /// The journal when stderr is the journal stream, else stderr.
        case auto
        /// Structured, through sd_journal_sendv.
        case journal
        /// Plain lines on stderr.
        case stderr
    }

    /// Why the daemon did not run: the exit status to leave with.
    public struct Failure: Error, Sendable {
        /// 78 (EX_CONFIG: systemd does not restart on it) for a bad config, 1 otherwise.
        public let status: Int32
    }

    /// Runs the daemon until SIGTERM or SIGINT.
    public static func run(configPath: String, logLevel: Logger.Level, logTarget: LogTarget,
                           extraBackends: [any BackendPlugin.Type] = []) async throws(Failure) {
        // Other processes of this user (the tasks run as it) may not read
        // this process's memory, environment or descriptors through /proc.
        _ = batchd_set_dumpable(0)
        // Two malloc arenas, not glibc's eight per core: the control
        // socket's reader threads each took one of their own, 2.3 MiB more
        // at the peak of a 100,000-task job, and the daemon's CPU per local
        // task is no higher with two (bench/limits.md, "Peak RSS").
        _ = batchd_limit_malloc_arenas(2)
        // The one place the environment is read.
        let env = ProcessInfo.processInfo.environment
        let streamIsJournal = stderrIsJournal(journalStream: env["JOURNAL_STREAM"])
        let target: JournalLogHandler.Target = switch logTarget {
        case .journal: .journal
        case .stderr: .stderr(priorityPrefix: streamIsJournal)
        case .auto: streamIsJournal ? .journal : .stderr(priorityPrefix: false)
        }
        LoggingSystem.bootstrap { _ in
            var handler = JournalLogHandler(identifier: "batchd", target: target)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "batchd")
        let settings: DaemonConfig
        do {
            settings = try DaemonConfig.load(path: configPath)
        } catch {
            logger.critical("cannot start: bad config", metadata: ["error": "\(error)"])
            throw Failure(status: 78)
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
            configPath: configPath,
            notifier: Notifier(enabled: env["NOTIFY_SOCKET"] != nil),
            watchdogInterval: watchdog)
        do {
            try await Daemon.run(config: settings, environment: environment, logger: logger, extraBackends: extraBackends)
        } catch let error as DirectoryError {
            logger.critical("cannot start: its directories", metadata: ["error": "\(error)"])
            throw Failure(status: 78)
        } catch let error as ConfigError {
            logger.critical("cannot start: bad config", metadata: ["error": "\(error)"])
            throw Failure(status: 78)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw Failure(status: 1)
        }
    }
}
