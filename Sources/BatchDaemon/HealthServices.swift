import BatchBackend
import BatchControl
import BatchCore
import Foundation
import Logging
import ServiceLifecycle
import SystemdSupport
import UnixSignals

/// Keeps systemd's STATUS= line current: checked every second, sent when it changes.
struct StatusReporter: Service {
    let supervisor: Supervisor
    let notifier: Notifier

    func run() async throws {
        guard notifier.enabled else { return try await gracefulShutdown() }
        var last = ""
        while !Task.isShuttingDownGracefully {
            let line = await supervisor.statusLine()
            if line != last {
                notifier.status(line)
                last = line
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }
}

/// Sends WATCHDOG=1 every half interval, but only after the supervisor has
/// answered a heartbeat (its actor is not stuck and the database reads): a
/// stalled supervisor stops the pings, and systemd restarts the daemon.
struct Watchdog: Service {
    let supervisor: Supervisor
    let notifier: Notifier
    let interval: Double
    let logger: Logger

    func run() async throws {
        logger.info("watchdog enabled", metadata: ["interval": "\(HumanDuration.format(interval))"])
        while !Task.isShuttingDownGracefully {
            if await supervisor.heartbeat() { notifier.watchdog() }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(interval / 2)) }
        }
    }
}

/// On SIGHUP: RELOADING=1, read the config again, apply what can change while
/// jobs run (local slots), name what needs a restart, READY=1. A bad new
/// config is refused and the old one kept.
struct Reloader: Service {
    let supervisor: Supervisor
    let notifier: Notifier
    let configPath: String
    let cores: Int
    let logger: Logger

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            notifier.reloading()
            do {
                let next = try DaemonConfig.load(path: configPath)
                let (applied, needRestart) = await supervisor.apply(next, cores: cores)
                logger.notice("configuration reloaded", metadata: [
                    "message.id": "\(MessageID.daemonReloaded)", "applied": "\(applied.joined(separator: ","))",
                    "needs.restart": "\(needRestart.joined(separator: ","))",
                ])
            } catch {
                logger.error("reload refused: the new config is not valid; keeping the old one", metadata: ["error": "\(error)"])
            }
            notifier.ready(status: await supervisor.statusLine())
        }
    }
}
