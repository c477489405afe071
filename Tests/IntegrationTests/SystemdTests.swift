import BatchControl
import BackendLocal
import BatchAccess
import BatchBackend
import BatchDaemon
import BatchStore
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("batchd under systemd: sd_notify, watchdog, reload, journald", .serialized)
struct SystemdTests {
    @Test("READY=1 only after reconcile; STATUS follows the job; WATCHDOG=1 stops while the supervisor stalls; STOPPING=1 on SIGTERM")
    func notify() async throws {
        let d = try DaemonHarness(slots: 2, extra: "debug: {allowStall: true}")
        let work = "\(d.root)/w"
        // Leave an unfinished job behind: two tasks whose processes die with the daemon.
        try await d.start()
        try write("""
            name: crashed
            tasks: {forEachInteger: {from: 1, to: 2}}
            command: if [ -e \(work)/again-{i} ]; then exit 0; fi; touch \(work)/again-{i}; sleep 300
            """, work, "crashed.yaml")
        var from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(work)/crashed.yaml"]).code == 0)
        try await d.log.wait(from: from, count: 2, "two tasks started") { $0.contains("task started") }
        await d.signal(SIGKILL)
        let crashed = try #require(try await d.store().job("crashed"))
        for a in try await d.store().attempts(crashed.id) { if let pid = a.pid { kill(-pid_t(pid), SIGKILL) } }

        let notify = try NotifySocket(directory: d.root)
        try await d.start(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        try await notify.log.wait(timeout: 30, "READY=1") { $0 == "READY=1" }
        // By the time READY=1 was sent, the crash had been reconciled: both
        // lost attempts are on record.
        let lost = try await d.store().attempts(crashed.id).filter { $0.outcome == .lost }
        #expect(lost.count == 2)

        // STATUS changes as a job progresses.
        try write("name: steps\ntasks: {forEachInteger: {from: 1, to: 8}}\ncommand: sleep 1\n", work, "steps.yaml")
        from = notify.log.mark
        #expect(try await d.batchctl(["submit", "\(work)/steps.yaml", "--wait"], timeout: 60).code == 0)
        let statuses = Set(notify.log.lines[from...].filter { $0.hasPrefix("STATUS=") && $0.contains("tasks done") })
        #expect(statuses.count >= 3, "\(statuses)")

        // Watchdog: pings flow, stop while the supervisor is stalled, and resume.
        try await notify.log.wait(from: notify.log.mark, count: 3, "watchdog pings") { $0 == "WATCHDOG=1" }
        let stallStart = d.log.mark
        let socket = "\(d.root)/run/batchd.sock"
        async let stalled = Task.detached { try ControlClient.send(.stall(seconds: 2), socket: socket, timeout: 20).ok }.value
        try await d.log.wait(from: stallStart, "the stall") { $0.contains("supervisor stalled") }
        let duringFrom = notify.log.mark
        #expect(try await stalled == true)
        let during = notify.log.lines[duringFrom...].filter { $0 == "WATCHDOG=1" }.count
        #expect(during <= 1, "\(during) pings during a 2 s stall at a 0.2 s ping period")
        try await notify.log.wait(from: notify.log.mark, count: 2, "pings after the stall") { $0 == "WATCHDOG=1" }

        #expect(await d.signal(SIGTERM) == 0)
        #expect(notify.log.lines.contains("STOPPING=1"))
    }

    @Test("SIGHUP with more slots starts more tasks at once without touching the running ones")
    func reload() async throws {
        let d = try DaemonHarness(slots: 1)
        let notify = try NotifySocket(directory: d.root)
        try await d.start(environment: ["NOTIFY_SOCKET": notify.path])
        let work = "\(d.root)/w"
        try write("name: wide\ntasks: {forEachInteger: {from: 1, to: 3}}\ncommand: sleep 300\n", work, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(work)/job.yaml"]).code == 0)
        try await d.log.wait(from: from, "the first task") { $0.contains("task started") }
        let store = try d.store()
        let job = try #require(try await store.job("wide"))
        let first = try #require(try await store.attempts(job.id).first)

        let config = try #require(read(d.config)).replacingOccurrences(of: "slots: 1", with: "slots: 3")
        try config.write(toFile: d.config, atomically: true, encoding: .utf8)
        let notifyFrom = notify.log.mark
        kill(d.pid, SIGHUP)
        try await d.log.wait(from: from, "the reload") { $0.contains("configuration reloaded") && $0.contains("local.slots=3") }
        try await d.log.wait(from: from, count: 3, "three tasks running") { $0.contains("task started") }
        let attempts = try await store.attempts(job.id)
        #expect(attempts.count == 3)
        #expect(attempts.allSatisfy { $0.state == .running && $0.attempt == 1 })
        #expect(attempts.first { $0.idx == first.idx }?.pid == first.pid)
        // READY=1 ends the reload on the notify socket; the log line can come first.
        try await notify.log.wait(from: notifyFrom, "READY=1 after the reload") { $0 == "READY=1" }
        let sent = Array(notify.log.lines[notifyFrom...])
        let reloading = try #require(sent.firstIndex(of: "RELOADING=1"))
        #expect(sent[reloading + 1].hasPrefix("MONOTONIC_USEC="))
        #expect(sent[reloading...].contains("READY=1"))
        #expect(try await d.batchctl(["cancel", "wide"]).code == 0)
        #expect(try await d.batchctl(["wait", "wide", "--timeout", "60"]).code == 1)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("journald gets structured entries: MESSAGE_IDs of key events and the job and task fields")
    func journal() async throws {
        let journald = try await Journald.start()
        defer { journald.stop() }   // also when the test fails: it must not outlive the run
        let d = try DaemonHarness()
        // Its log lines go to the journal, so readiness comes from sd_notify.
        let notify = try NotifySocket(directory: d.root)
        try await d.start(environment: ["NOTIFY_SOCKET": notify.path], arguments: ["--log-target", "journal"], waitReady: false)
        try await notify.log.wait(timeout: 60, "READY=1") { $0 == "READY=1" }
        let work = "\(d.root)/w"
        try write("name: logged\ntasks: [{id: alpha, command: 'echo hi'}]\n", work, "job.yaml")
        let submitted = try await d.batchctl(["submit", "\(work)/job.yaml", "--wait"], timeout: 60)
        #expect(submitted.code == 0, "\(submitted.out)\n\(submitted.err)")
        let job = try #require(try await d.store().job("logged"))

        let entries = try await Journald.follow(match: "BATCHD_JOB=\(job.id)", until: MessageID.jobSucceeded)
        let ids = entries.compactMap { $0["MESSAGE_ID"] as? String }
        #expect(ids.contains(MessageID.jobAccepted))
        #expect(ids.contains(MessageID.jobSucceeded))
        let task = try #require(entries.first { ($0["MESSAGE"] as? String)?.hasPrefix("task finished") == true })
        #expect(task["BATCHD_TASK"] as? String == "alpha")
        #expect(task["BATCHD_ATTEMPT"] as? String == "1")
        #expect(task["BATCHD_BACKEND"] as? String == "local")
        // A task that ends as expected is a debug line (a million-task job
        // must not flood the journal); failures are warnings.
        #expect(task["PRIORITY"] as? String == "7")
        #expect((task["CODE_FILE"] as? String)?.hasSuffix(".swift") == true)
        #expect(task["CODE_LINE"] != nil && task["CODE_FUNC"] != nil)
        #expect(await d.signal(SIGTERM) == 0)
    }
}

/// A real systemd-journald started by hand (or the one already running).
/// Started with the project's own spawn (a clean signal mask, a new session);
/// Foundation's Process would hand it the test thread's blocked signals.
struct Journald {
    let pid: pid_t?

    static var socketPath: String { "/run/systemd/journal/socket" }

    static func start() async throws -> Journald {
        if FileManager.default.fileExists(atPath: socketPath), let pid = pidOfJournald(), ProcessControl.isAlive(pid) {
            return Journald(pid: nil)
        }
        try FileManager.default.createDirectory(atPath: "/run/systemd/journal", withIntermediateDirectories: true)
        let notifyDir = NSTemporaryDirectory() + "journald-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: notifyDir, withIntermediateDirectories: true)
        let notify = try NotifySocket(directory: notifyDir)
        let pid = try ProcessControl.spawnSession(["/lib/systemd/systemd-journald"], env: ["NOTIFY_SOCKET": notify.path],
                                                  output: "/dev/null")
        // journald says READY=1 itself.
        try await notify.log.wait(timeout: 30, "journald READY=1") { $0 == "READY=1" }
        return Journald(pid: pid)
    }

    /// A journald of this machine's own: one in a container (the
    /// real-systemd test's guest) shows in /proc too, but serves another
    /// /run/systemd/journal, so it must share our mount namespace.
    static func pidOfJournald() -> pid_t? {
        let ours = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt")
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let comm = read("/proc/\(entry)/comm") else { continue }
            guard comm.hasPrefix("systemd-journal"), ProcessControl.isAlive(pid) else { continue }
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/ns/mnt")) == ours { return pid }
        }
        return nil
    }

    /// Stops a journald this test started, at once (it is our child: reaped here).
    func stop() {
        guard let pid else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }

    /// Follows `journalctl -f -o json MATCH` until an entry has MESSAGE_ID
    /// `until`; returns every entry seen.
    static func follow(match: String, until: String, timeout: Double = 30) async throws -> [[String: Any]] {
        let p = Process()
        // journalctl block-buffers into a pipe: without stdbuf an entry can
        // wait in its 4 KiB buffer until later ones fill it.
        p.executableURL = URL(fileURLWithPath: "/usr/bin/stdbuf")
        p.arguments = ["-oL", "/usr/bin/journalctl", "-f", "-o", "json", "--no-tail", match]
        let pipe = Pipe()
        p.standardOutput = pipe
        let log = LineLog()
        drainPipe(pipe.fileHandleForReading, onData: { log.append($0) })
        try p.run()
        // SIGKILL: a child of Foundation.Process may have SIGTERM blocked. Then
        // wait: Foundation watches the exit and must not outlive the Process.
        defer {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        try await log.wait(timeout: timeout, "journal entry \(until)") { $0.contains(until) }
        return log.lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
}
