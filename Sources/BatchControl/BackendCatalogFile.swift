import BatchCore
import BatchSupport
import Foundation

/// The backends a daemon runs, as it published them for batchctl
/// (`<stateDirectory>/backends.json`): their names, whether each can run,
/// and their pool options. batchctl checks manifests against it; before
/// any daemon wrote it, names and options are taken on trust and the
/// daemon's intake checks them.
public enum BackendCatalogFile {
    /// Where it is.
    public static func path(_ config: DaemonConfig) -> String { "\(config.stateDirectory)/backends.json" }

    /// Writes it (atomically; readable by whoever may read the state directory).
    public static func publish(_ catalog: BackendCatalog, config: DaemonConfig) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileOps.writeAtomically(String(decoding: try encoder.encode(catalog), as: UTF8.self) + "\n", to: path(config), mode: 0o644)
    }

    /// What the daemon published, or `.open` when it published nothing readable.
    public static func load(_ config: DaemonConfig) -> BackendCatalog {
        guard let data = FileManager.default.contents(atPath: path(config)),
              let catalog = try? JSONDecoder().decode(BackendCatalog.self, from: data) else { return .open }
        return catalog
    }
}
