import ArgumentParser
import BatchDaemon
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `batchd --config FILE`: the daemon, in the foreground.
@main
struct BatchdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batchd",
        abstract: "Run batch jobs dropped into an inbox, crash-safely.",
        discussion: "Runs in the foreground until SIGTERM or SIGINT. See README.md and docs/.",
        version: Daemon.version)

    @Option(name: .long, help: "The config file.")
    var config = "/etc/batchd/batchd.yaml"

    @Option(name: .long, help: "Lowest level logged: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "batchd")
        let settings: DaemonConfig
        do {
            settings = try DaemonConfig.load(path: config)
        } catch {
            logger.critical("cannot start: bad config", metadata: ["error": "\(error)"])
            throw ExitCode(78)  // EX_CONFIG
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let environment = DaemonEnvironment(
            variables: ProcessInfo.processInfo.environment,
            cores: ProcessInfo.processInfo.activeProcessorCount,
            executableDirectory: (exe as NSString).deletingLastPathComponent)
        do {
            try await Daemon.run(config: settings, environment: environment, logger: logger)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
