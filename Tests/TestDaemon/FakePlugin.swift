import BatchBackend
import BatchControl
import BatchCore

/// The fake backend as a plugin, registered by `batchd-testd`'s one line:
/// its own config section (`fake:`) and pool option (`pool.batchSize`),
/// touching no other module.
enum FakePlugin: BackendPlugin {
    static let name = BackendKind(rawValue: "fake")
    static let poolOptions = [
        PoolOption("batchSize", .integer(min: 1, max: 100), what: "a batch size", hint: "1 to 100", help: "tasks per submitted batch"),
    ]
    static let setupHint = "it lives in Tests/TestDaemon"

    /// `fake:`: `owner` (the tag of its pools) and `batchSize` (tasks per batch).
    struct Settings {
        var owner = "batchd-testd"
        var batchSize = 2
        init(_ section: ConfigSection?) throws {
            try section?.decode(keys: ["owner", "batchSize"]) { v in
                switch v.key {
                case "owner": owner = try v.text()
                case "batchSize": batchSize = try v.count(1...100)
                default: return false
                }
                return true
            }
        }
    }

    static func make(_ setup: BackendSetup, section: ConfigSection?) throws -> any JobBackend {
        let settings = try Settings(section)
        return FakeBackend(remote: try FakeRemote(directory: "\(setup.config.stateDirectory)/fake-remote"), owner: settings.owner,
                           ledger: setup.ledger, batchSize: settings.batchSize)
    }
}
