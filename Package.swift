// swift-tools-version:6.0
import PackageDescription

// Dependency direction (see docs/architecture.md): BatchCore is pure and
// depends on nothing of ours; BatchStore, BatchAccess and BatchControl sit on
// it; BatchBackend is the port every backend implements; each backend
// (BackendLocal, BackendAzure) is one module behind it; only BatchDaemon and
// the executables put them together.
let package = Package(
    name: "batchd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "batchd", targets: ["batchd"]),
        .executable(name: "batchctl", targets: ["batchctl"]),
        .executable(name: "batchd-exec", targets: ["batchd-exec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .target(
            name: "BatchCore",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        // Small shared utilities of the adapters and the daemon: one-shot
        // async events, careful file operations, the crash-point test hook.
        .target(
            name: "BatchSupport",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "BatchStore",
            dependencies: [
                "BatchCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's C API, for binding a million tasks' values without boxing each.
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ]
        ),
        // libcurl, directly: the HTTP transport of the cloud backends.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .target(
            name: "BatchHTTP",
            dependencies: ["CCurl", "BatchCore", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "BackendAzure",
            dependencies: [
                "BatchCore", "BatchHTTP", "BatchBackend", "BatchStore", "BatchSupport", "BatchAccess", "BatchControl",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Slurm through its own commands (sbatch, squeue, sacct, scancel,
        // scontrol), staging through a shared directory (docs/slurm.md).
        .target(
            name: "BackendSlurm",
            dependencies: [
                "BatchCore", "BatchBackend", "BatchStore", "BatchSupport", "BatchAccess", "BatchControl",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // libsystemd, directly: sd_notify and sd_journal_sendv.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .target(
            name: "SystemdSupport",
            dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")]
        ),
        // Linux system calls Swift cannot reach directly (variadic syscall(2)).
        .target(name: "CLinux"),
        // A submitter's rights over files: whose request it is, what they may
        // read and write, destinations written as they may, outputs found
        // without following links. Shared by every backend and by batchctl.
        .target(
            name: "BatchAccess",
            dependencies: ["BatchCore", "BatchSupport", "CLinux", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // The backend port: the steps every backend performs, the job handle
        // they act through, the signals, the registry and the crash points.
        .target(
            name: "BatchBackend",
            dependencies: [
                "BatchCore", "BatchStore", "BatchSupport", "BatchAccess", "BatchControl", "CLinux",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "BackendLocal",
            dependencies: [
                "BatchCore", "BatchSupport", "BatchAccess", "BatchBackend", "BatchStore", "BatchControl", "CLinux",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What batchctl needs, and the daemon shares with it: the config, the
        // control protocol's client, submission, plans and reports. It links
        // neither libcurl nor libsystemd.
        .target(
            name: "BatchControl",
            dependencies: [
                "BatchCore", "BatchStore", "BatchSupport", "BatchAccess",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "BatchDaemon",
            dependencies: [
                "BatchCore", "BatchControl", "BatchStore", "BatchSupport", "BatchAccess", "BatchBackend", "BackendLocal", "BackendAzure", "BackendSlurm", "CLinux", "SystemdSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "batchd",
            dependencies: [
                "BatchControl", "BatchDaemon", "SystemdSupport", "CLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "batchctl",
            dependencies: [
                "BatchControl", "BatchStore", "BatchCore", "BatchSupport", "BatchAccess",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The tiny supervisor every local task attempt runs under: it records the
        // command's exit status in the attempt directory, so a daemon that was
        // killed can learn how a task ended after it restarts. C, linked
        // statically: it starts once per task (with `sh -c true`, 1.1 ms of
        // CPU against 3.5 ms as a Swift program), and runs on cluster nodes
        // without Swift.
        .executableTarget(name: "batchd-exec", dependencies: ["CLinux"],
                          linkerSettings: [.unsafeFlags(["-static-executable"])]),
        // The fuzz target for manifest intake (scripts/fuzz.sh): built plainly
        // it replays a corpus; with -sanitize=fuzzer -D FUZZING it is libFuzzer's.
        .executableTarget(name: "batchd-fuzz", dependencies: ["BatchCore"], path: "Tests/Fuzz/Sources"),
        // batchd with a fake backend registered, for the crash-point walk
        // and the port's lifecycle test (Tests/TestDaemon); never installed.
        .executableTarget(
            name: "batchd-testd",
            dependencies: ["BatchDaemon", "BatchBackend", "BatchAccess", "BatchControl", "BatchCore", "BatchStore", "BatchSupport",
                           .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestDaemon"
        ),
        .testTarget(name: "BatchCoreTests", dependencies: ["BatchCore", "BackendAzure", "BackendSlurm"]),
        // Starts the Azure emulator for Swift tests.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "BatchHTTPTests", dependencies: ["BatchHTTP", "TestSupport"]),
        .testTarget(name: "BackendAzureTests", dependencies: ["BackendAzure", "BatchHTTP", "BatchCore", "TestSupport"]),
        .testTarget(name: "SystemdSupportTests", dependencies: ["SystemdSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "BatchDaemonTests", dependencies: ["BatchDaemon", "BatchBackend", "BatchControl", "BatchCore", "BatchStore", "BatchSupport", "BackendLocal", "BackendAzure", "BackendSlurm"]),
        .testTarget(name: "BatchStoreTests", dependencies: ["BatchStore", "BatchCore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "BackendSlurmTests", dependencies: ["BackendSlurm", "BatchCore"]),
        .testTarget(name: "BackendLocalTests", dependencies: ["BackendLocal", "BatchAccess", "BatchBackend", "BatchCore", "BatchSupport"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["BatchStore", "BatchCore", "BatchSupport", "BatchAccess", "BackendLocal", "BatchControl", "BatchDaemon", "BackendAzure", "BatchHTTP", "TestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
