import BatchDaemon
import Foundation
import Logging

/// `batchd-testd --config FILE`: batchd with the test-only fake backend
/// registered (its one line below). Used by the crash-point walk and the
/// fake backend's lifecycle test; never installed.
var configPath = "/etc/batchd/batchd.yaml"
var level = Logger.Level.debug
var arguments = CommandLine.arguments.dropFirst()
while let arg = arguments.popFirst() {
    switch arg {
    case "--config": configPath = arguments.popFirst() ?? configPath
    case "--log-level": level = arguments.popFirst().flatMap { Logger.Level(rawValue: $0) } ?? level
    case "--log-target": _ = arguments.popFirst()
    default: break
    }
}
do {
    try await DaemonLauncher.run(configPath: configPath, logLevel: level, logTarget: .stderr,
                                 extraBackends: [FakePlugin.self])
} catch {
    exit(error.status)
}
