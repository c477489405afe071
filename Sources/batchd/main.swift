import ArgumentParser
import BatchDaemon
import Logging

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
    var logTarget: DaemonLauncher.LogTarget = .auto

    func run() async throws {
        do {
            try await DaemonLauncher.run(configPath: config, logLevel: logLevel, logTarget: logTarget)
        } catch {
            throw ExitCode(error.status)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension DaemonLauncher.LogTarget: ExpressibleByArgument {}
