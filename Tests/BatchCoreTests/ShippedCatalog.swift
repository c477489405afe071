import BackendAzure
import BackendSlurm
import BatchCore

/// The backends batchd ships, as the manifest parser sees them in a daemon
/// (BatchCore names none: each declares its own pool options).
let shipped = BackendCatalog([
    .init(name: "local", available: true, poolOptions: []),
    .init(name: "azure", available: true, poolOptions: AzurePoolOptions.declared),
    .init(name: "slurm", available: true, poolOptions: SlurmPoolOptions.declared),
])

extension ManifestParser {
    /// Parses with the shipped backends.
    static func parse(_ text: String, file: String, types: JobTypes? = nil, set: [String: String] = [:]) throws(ManifestError) -> Manifest {
        try parse(text, file: file, catalog: shipped, types: types, set: set)
    }

    /// Parses with the shipped backends.
    static func parse(bytes: [UInt8], file: String, types: JobTypes? = nil, set: [String: String] = [:]) throws(ManifestError) -> Manifest {
        try parse(bytes: bytes, file: file, catalog: shipped, types: types, set: set)
    }
}
