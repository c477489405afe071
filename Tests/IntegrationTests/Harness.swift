import BatchStore
import BatchSupport
import Foundation
import Synchronization
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Where the built executables are: $BATCHD_BIN, else .build/debug of this package.
let binDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["BATCHD_BIN"], !dir.isEmpty { return dir }
    return repoRoot + "/.build/debug"
}()

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

struct HarnessError: Error, CustomStringConvertible {
    let description: String
}

/// Lines a process writes, as they arrive; tests wait for lines, never sleep.
final class LineLog: Sendable {
    struct Waiter {
        let from: Int
        let count: Int
        let match: @Sendable (String) -> Bool
        let event: AsyncEvent<Void>
    }
    struct State {
        var lines: [String] = []
        var partial = Data()
        var waiters: [Waiter] = []
    }
    let state = Mutex(State())

    func append(_ data: Data) {
        let fire: [AsyncEvent<Void>] = state.withLock { s in
            s.partial.append(data)
            while let nl = s.partial.firstIndex(of: 0x0A) {
                s.lines.append(String(decoding: s.partial[s.partial.startIndex..<nl], as: UTF8.self))
                s.partial.removeSubrange(s.partial.startIndex...nl)
            }
            var done: [AsyncEvent<Void>] = []
            s.waiters.removeAll { w in
                let n = s.lines[min(w.from, s.lines.count)...].filter(w.match).count
                if n >= w.count { done.append(w.event); return true }
                return false
            }
            return done
        }
        for e in fire { e.fire(()) }
    }

    var lines: [String] { state.withLock { $0.lines } }
    var mark: Int { state.withLock { $0.lines.count } }

    /// Waits until `count` lines from index `from` on satisfy `match`.
    func wait(from: Int = 0, count: Int = 1, timeout: Double = 60, _ what: String,
              match: @escaping @Sendable (String) -> Bool) async throws {
        let event = AsyncEvent<Void>()
        state.withLock { s in
            if s.lines[min(from, s.lines.count)...].filter(match).count >= count { event.fire(()) } else {
                s.waiters.append(Waiter(from: from, count: count, match: match, event: event))
            }
        }
        let ok = await event.wait(timeout: timeout) != nil
        if !ok { throw HarnessError(description: "timed out after \(timeout)s waiting for \(what); log:\n\(lines.suffix(40).joined(separator: "\n"))") }
    }
}

/// The real batchd in a temp directory, and batchctl pointed at it.
final class DaemonHarness: @unchecked Sendable {
    let root: String
    let config: String
    let log = LineLog()
    private var process: Process?
    private var exited = AsyncEvent<Int32>()

    /// The inbox, when the config puts it elsewhere than the state directory.
    let inboxOverride: String?
    /// The user the daemon runs as (through setpriv), nil for this process's.
    var user: TestUser?
    /// Whether that user's daemon gets what the system unit gives it:
    /// CAP_SETUID and CAP_SETGID (ambient, and nothing else in its bounding
    /// set), to run tasks as their submitters.
    var switchesUsers = true
    /// The primary group of a daemon run as this process's user (root),
    /// when not its own.
    var group: UInt32?
    /// The daemon's executable in the build directory (`batchd-testd` has
    /// the fake backend too).
    var executable = "batchd"

    init(slots: Int = 4, shutdownGrace: String = "10s", killGrace: String = "2s", extra: String = "", inbox: String? = nil) throws {
        root = NSTemporaryDirectory() + "batchd-it-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        config = "\(root)/batchd.yaml"
        inboxOverride = inbox
        try """
            stateDirectory: state
            runtimeDirectory: run
            shutdownGrace: \(shutdownGrace)
            \(inbox.map { "inbox: \($0)" } ?? "")
            local:
              slots: \(slots)
              killGrace: \(killGrace)
            \(extra)
            """.write(toFile: config, atomically: true, encoding: .utf8)
    }

    var state: String { "\(root)/state" }
    var inbox: String { inboxOverride ?? "\(root)/state/inbox" }

    /// Starts the daemon and waits for "daemon ready".
    func start(environment: [String: String] = [:], arguments: [String] = [], waitReady: Bool = true) async throws {
        let from = log.mark
        let p = Process()
        let args = ["--config", config, "--log-level", "debug"] + arguments
        if let user {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            let caps = switchesUsers ? "+setuid,+setgid" : ""
            p.arguments = ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--inh-caps=-all\(caps.isEmpty ? "" : ",")\(caps)",
                           "--ambient-caps=-all\(caps.isEmpty ? "" : ",")\(caps)", "--bounding-set=-all\(caps.isEmpty ? "" : ",")\(caps)",
                           "--", "\(binDirectory)/\(executable)"] + args
        } else if let group {
            // Root, whose primary group is the service's: what it makes (the
            // control socket) is that group's, as under the system unit.
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = ["--regid=\(group)", "--clear-groups", "--", "\(binDirectory)/\(executable)"] + args
        } else {
            p.executableURL = URL(fileURLWithPath: "\(binDirectory)/\(executable)")
            p.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"] { env[k] = nil }
        p.environment = env.merging(environment) { $1 }
        let pipe = Pipe()
        p.standardError = pipe
        p.standardOutput = pipe
        let log = self.log
        drainPipe(pipe.fileHandleForReading, onData: { log.append($0) })
        let exited = AsyncEvent<Int32>()
        self.exited = exited
        p.terminationHandler = { proc in exited.fire(proc.terminationStatus) }
        try p.run()
        process = p
        if waitReady { try await log.wait(from: from, timeout: 60, "daemon ready") { $0.contains("daemon ready") } }
    }

    var pid: pid_t { process?.processIdentifier ?? 0 }

    /// Starts the daemon and waits until it is ready or has exited, as
    /// systemd's Restart=on-failure would see it: true when ready, false when
    /// it died first (it is then gone, and may be started again).
    func startOrDie(timeout: Double = 60) async throws -> Bool {
        let from = log.mark
        try await start(waitReady: false)
        let exited = self.exited
        let log = self.log
        let ready: Bool? = await withTaskGroup(of: Bool?.self) { group in
            group.addTask { (try? await log.wait(from: from, timeout: timeout, "daemon ready") { $0.contains("daemon ready") }) != nil ? true : nil }
            group.addTask { await exited.wait(timeout: timeout) != nil ? false : nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let ready else { throw HarnessError(description: "the daemon neither became ready nor exited in \(timeout)s") }
        if !ready { process = nil }
        return ready
    }

    /// Waits (at most `timeout` seconds) for the daemon to exit on its own;
    /// its status, or nil if it is still running.
    func waitForExit(timeout: Double = 60) async -> Int32? {
        let status = await exited.wait(timeout: timeout)
        if status != nil { process = nil }
        return status
    }

    /// Whether the daemon started last is still running.
    var isRunning: Bool { process != nil && exited.value == nil }

    /// The daemon's peak resident memory so far (VmHWM), in bytes.
    var peakRSS: Int? {
        guard let text = read("/proc/\(pid)/status"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kb * 1024
    }

    /// Sends a signal and waits (at most 60 s) for the daemon to exit;
    /// returns its status, or -1 if it did not exit (it is then killed).
    @discardableResult
    func signal(_ sig: Int32) async -> Int32 {
        guard let p = process else { return -1 }
        kill(p.processIdentifier, sig)
        let status = await exited.wait(timeout: 60)
        if status == nil {
            kill(p.processIdentifier, SIGKILL)
            _ = await exited.wait(timeout: 10)
        }
        process = nil
        return status ?? -1
    }

    deinit {
        // Foundation watches its children's exits: wait for it before the Process is freed.
        if let p = process, p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
    }

    /// Runs batchctl --config CONFIG ARGS, as `user` when given.
    func batchctl(_ args: [String], timeout: Double = 120, as user: TestUser? = nil) async throws -> Run {
        if let user {
            return try await runProcess("/usr/bin/setpriv", ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--",
                                                             "\(binDirectory)/batchctl", "--config", config] + args, timeout: timeout)
        }
        return try await runProcess("\(binDirectory)/batchctl", ["--config", config] + args, timeout: timeout)
    }
}

/// The output of a finished command.
struct Run: Sendable {
    let code: Int32
    let out: String
    let err: String
}

/// Runs a program without blocking the caller: output through drain
/// threads, the exit through the termination handler. With `captureOutput`
/// false its output goes to /dev/null (for programs that leave a daemon
/// behind holding their stdout, as tmux does).
func runProcess(_ path: String, _ args: [String], timeout: Double = 120, captureOutput: Bool = true) async throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        guard captureOutput else {
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            let done = AsyncEvent<Int32>()
            p.terminationHandler = { done.fire($0.terminationStatus) }
            try p.run()
            guard let code = await done.wait(timeout: timeout) else {
                kill(p.processIdentifier, SIGKILL)
                _ = await done.wait(timeout: 10)
                throw HarnessError(description: "\(path) \(args.joined(separator: " ")) did not finish in \(timeout)s")
            }
            return Run(code: code, out: "", err: "")
        }
        let out = LineLog(), err = LineLog()
        let o = Pipe(), e = Pipe()
        p.standardOutput = o
        p.standardError = e
        let closedOut = AsyncEvent<Void>(), closedErr = AsyncEvent<Void>()
        for (pipe, sink, closed) in [(o, out, closedOut), (e, err, closedErr)] {
            drainPipe(pipe.fileHandleForReading, onData: { sink.append($0) }, onEnd: { closed.fire(()) })
        }
        let done = AsyncEvent<Int32>()
        p.terminationHandler = { done.fire($0.terminationStatus) }
        try p.run()
        let code = await done.wait(timeout: timeout)
        guard let code else {
            kill(p.processIdentifier, SIGKILL)
            _ = await done.wait(timeout: 10)
            throw HarnessError(description: "\(path) \(args.joined(separator: " ")) did not finish in \(timeout)s")
        }
        _ = await closedOut.wait(timeout: 10)
        _ = await closedErr.wait(timeout: 10)
        out.append(Data("\n".utf8))
        err.append(Data("\n".utf8))
        return Run(code: code, out: out.lines.joined(separator: "\n"), err: err.lines.joined(separator: "\n"))
}

extension DaemonHarness {

    /// batchctl ... --json, parsed.
    func json(_ args: [String]) async throws -> [String: Any] {
        let r = try await batchctl(args + ["--json"])
        guard r.code == 0, let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any] else {
            throw HarnessError(description: "batchctl \(args) failed (\(r.code)): \(r.err)")
        }
        return obj
    }

    func store() throws -> Store { try Store(readOnlyPath: "\(state)/batchd.db") }

}

/// Writes `text` to `dir/name` and returns the path.
@discardableResult
func write(_ text: String, _ dir: String, _ name: String) throws -> String {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = "\(dir)/\(name)"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

func read(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

/// A Unix datagram socket bound where NOTIFY_SOCKET points: every sd_notify
/// message the daemon sends arrives here, one line per `KEY=value`.
final class NotifySocket: @unchecked Sendable {
    let path: String
    let log = LineLog()
    private let fd: Int32

    init(directory: String) throws {
        path = "\(directory)/notify.sock"
        let sock = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        fd = sock
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw HarnessError(description: "cannot bind \(path)") }
        let log = self.log
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(sock, &buffer, buffer.count, 0)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                log.append(Data(buffer[0..<n]) + Data("\n".utf8))
            }
        }
        thread.start()
    }

    deinit { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
}

/// Waits (at most `timeout` seconds) until every path exists, woken by
/// inotify on their directories rather than by polling; false on timeout.
func waitForFiles(_ paths: [String], timeout: Double) async -> Bool {
    let done = AsyncEvent<Void>()
    let fd = inotify_init1(Int32(IN_CLOEXEC))
    guard fd >= 0 else { return false }
    var dirs = Set<String>()
    for p in paths { dirs.insert((p as NSString).deletingLastPathComponent) }
    for d in dirs {
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        _ = inotify_add_watch(fd, d, UInt32(IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE))
    }
    let all: @Sendable () -> Bool = { paths.allSatisfy { FileManager.default.fileExists(atPath: $0) } }
    Thread.detachNewThread {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !all() {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 200) > 0 { _ = read(fd, &buffer, buffer.count) }
            if done.value != nil { break }
        }
        close(fd)
        done.fire(())
    }
    let ok = await done.wait(timeout: timeout) != nil && all()
    done.fire(())
    return ok
}
