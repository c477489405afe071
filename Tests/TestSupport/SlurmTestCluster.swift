import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A one-host Slurm cluster on loopback (scripts/slurm-cluster.sh) in a
/// directory of its own, on ports of its own; stopped (every job cancelled)
/// when the value goes away.
public final class SlurmTestCluster: @unchecked Sendable {
    /// The cluster's directory: slurm.conf, state, logs.
    public let directory: String
    /// `SLURM_CONF` for every Slurm command.
    public var environment: [String: String] { ["SLURM_CONF": "\(directory)/slurm.conf"] }
    let script: String
    private(set) var port = 0

    /// Starts the cluster: munged, slurmctld, slurmd, until the node is idle
    /// (about a second). `minJobAge` is how long squeue shows a finished job.
    public init(minJobAge: Int = 300, maxArraySize: Int = 1001) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        script = root.appendingPathComponent("scripts/slurm-cluster.sh").path
        directory = NSTemporaryDirectory() + "batchd-slurm-\(UUID().uuidString.prefix(8))"
        // Two free ports below the ephemeral range (another cluster, or a
        // connection's local port, may hold one); a start that still meets
        // a port in use fails fast and is tried on others.
        var last = ""
        for _ in 0..<5 {
            let p = Self.freePortPair()
            let r = try Self.run(script, ["up", directory, String(p)],
                                 ["MIN_JOB_AGE": String(minJobAge), "MAX_ARRAY_SIZE": String(maxArraySize)])
            if r.status == 0 { port = p; return }
            last = r.output
        }
        throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "the Slurm test cluster did not start: \(last)"])
    }

    deinit { _ = try? Self.run(script, ["down", directory], [:]) }

    /// An even port P with P and P+1 free on loopback, from 10000-32000.
    public static func freePortPair() -> Int {
        for _ in 0..<50 {
            let p = 2 * Int.random(in: 5_000...16_000)
            if canBind(p) && canBind(p + 1) { return p }
        }
        return 2 * Int.random(in: 5_000...16_000)
    }

    static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = in_addr_t(0)   // INADDR_ANY, as slurmctld binds
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// Runs a Slurm command against the cluster; its status and output.
    public func command(_ name: String, _ args: [String]) throws -> (status: Int32, output: String) {
        try Self.run("/usr/bin/\(name)", args, environment)
    }

    /// Runs a program to its end (posix_spawn and waitpid, so no run loop
    /// or reaper thread is involved), its output in a temp file.
    static func run(_ path: String, _ args: [String], _ env: [String: String]) throws -> (status: Int32, output: String) {
        let out = NSTemporaryDirectory() + "batchd-slurm-out-\(UUID().uuidString.prefix(8))"
        defer { unlink(out) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let environment = ProcessInfo.processInfo.environment.merging(env) { $1 }.map { "\($0)=\($1)" }
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        // The daemons the script starts must take SIGTERM: undo the signal
        // mask and dispositions of the test runner's thread.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "cannot run \(path): \(rc)"]) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), text)
    }
}
