import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The project's Azure emulator (Tests/AzureEmulator/azure-emulator) on a free
/// loopback port, for Swift tests. Batch account `acct`, storage account
/// `store`, both with `key`.
public final class AzureEmulatorProcess: @unchecked Sendable {
    /// The account key (base64), for Batch and storage alike.
    public static let key = "ZW11bGF0b3Ita2V5LTAxMjM0NTY3ODlhYmNkZWY="
    let process = Process()
    /// `http://127.0.0.1:PORT`.
    public let url: String

    /// Starts the emulator (with `extraArguments`, e.g. `--client T:ID:SECRET`)
    /// and returns once it has said it is ready.
    public init(extraArguments: [String] = [], environment extra: [String: String] = [:]) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", root.appendingPathComponent("Tests/AzureEmulator/azure-emulator").path, "--port", "0",
                             "--account", "acct", "--key", Self.key, "--storage-account", "store", "--storage-key", Self.key] + extraArguments
        // Container tasks run through podman, with the engine settings this
        // machine needs (etc/batchd/containers.conf).
        var env = ProcessInfo.processInfo.environment
        env["CONTAINERS_CONF"] = root.appendingPathComponent("etc/batchd/containers.conf").path
        env.merge(extra) { $1 }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The emulator prints one line when it listens: read up to it.
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let r = text.range(of: #"http://127\.0\.0\.1:\d+"#, options: .regularExpression) else {
            throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "the emulator did not start: \(text)"])
        }
        url = String(text[r])
    }

    // Foundation watches its children's exits: wait for it before the Process is freed.
    deinit {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
