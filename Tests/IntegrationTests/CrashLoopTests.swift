import BatchStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// No single file can keep the daemon down: what it died on twice is set
/// aside with its reason, and it comes up. The deaths are real (SIGKILL from
/// the daemon's own `debug.crashMarker` hook, docs/testing.md); the restarts
/// are what systemd's Restart=on-failure does.
@Suite("Crash loops are broken", .serialized)
struct CrashLoopTests {
    static let marker = "debug:\n  crashMarker: CRASHME\n"

    /// Starts the daemon again each time it dies, as systemd's
    /// Restart=on-failure would, until a log line matches `until`; returns
    /// how many times it died on the way.
    func supervise(_ d: DaemonHarness, until what: String, _ match: @escaping @Sendable (String) -> Bool) async throws -> Int {
        var deaths = 0
        while true {
            let from = d.log.mark
            if !d.isRunning { try await d.start(waitReady: false) }
            let log = d.log
            let done: Bool? = await withTaskGroup(of: Bool?.self) { group in
                group.addTask { (try? await log.wait(from: from, timeout: 60, what, match: match)) != nil ? true : nil }
                group.addTask { await d.waitForExit(timeout: 60) != nil ? false : nil }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            guard let done else { throw HarnessError(description: "neither \(what) nor a death in 60 s") }
            if done { return deaths }
            deaths += 1
            if deaths > 5 { throw HarnessError(description: "still dying after 5 restarts:\n\(d.log.lines.suffix(30).joined(separator: "\n"))") }
        }
    }

    @Test("the two poison pills are refused, and a manifest the daemon dies reading is set aside after two restarts")
    func manifestCrashLoop() async throws {
        let d = try DaemonHarness(extra: Self.marker)
        try FileManager.default.createDirectory(atPath: d.inbox, withIntermediateDirectories: true)
        try write("name: pill1\ncommand: echo {i}\ntasks:\n  forEachInteger: {from: -9223372036854775808, to: 9223372036854775807}\n", d.inbox, "pill1.yaml")
        try write("name: pill2\ntimeout: 1e308\ntasks: [{command: 'true'}]\n", d.inbox, "pill2.yaml")
        try write("# CRASHME\nname: crash\ntasks: [{command: 'true'}]\n", d.inbox, "crash.yaml")
        let deaths = try await supervise(d, until: "crash.yaml set aside") { $0.contains("manifest rejected") && $0.contains("file=crash.yaml") }
        #expect(deaths == 2)
        #expect(d.isRunning)
        let crash = try #require(read("\(d.inbox)/rejected/crash.yaml.error"))
        #expect(crash.contains("the daemon stopped while reading this manifest, twice"))
        #expect(read("\(d.inbox)/rejected/crash.yaml")?.contains("CRASHME") == true)
        try await d.log.wait("the pills' rejections", match: { $0.contains("manifest rejected") && $0.contains("file=pill2.yaml") })
        #expect(read("\(d.inbox)/rejected/pill1.yaml.error")?.contains("tasks.forEachInteger.from: must be between") == true)
        #expect(read("\(d.inbox)/rejected/pill2.yaml.error")?.contains("timeout: expected a duration") == true)
        // batchctl reads the pills too, and says why instead of dying.
        for pill in ["pill1", "pill2"] {
            let path = "\(d.inbox)/rejected/\(pill).yaml"
            for verb in ["submit", "plan"] {
                let r = try await d.batchctl([verb, path])
                #expect(r.code == 2, "batchctl \(verb) \(pill): \(r.code) \(r.err)")
                #expect(r.err.contains("\(pill).yaml:"))
            }
        }
        try write("name: after\ntasks: [{command: 'true'}]\n", d.root, "after.yaml")
        #expect(try await d.batchctl(["submit", "\(d.root)/after.yaml", "--wait", "--timeout", "60"]).code == 0)
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }

    @Test("a task the daemon dies starting fails with the reason after two restarts; the daemon comes up")
    func taskCrashLoop() async throws {
        let d = try DaemonHarness(extra: Self.marker)
        try await d.start()
        // The marker is in the command only once its row value is filled in,
        // so the manifest itself is read fine.
        try write("x\nME\n", d.root, "rows.csv")
        try write("name: crashtask\ncommand: echo CRASH{row.x}\ntasks:\n  forEachRow: rows.csv\n", d.root, "job.yaml")
        let r = try await d.batchctl(["submit", "\(d.root)/job.yaml"])
        #expect(r.code == 0, "\(r.err)")
        #expect(await d.waitForExit(timeout: 60) != nil, "the daemon did not die starting the task")
        let deaths = try await supervise(d, until: "the task set aside") { $0.contains("task set aside") }
        #expect(deaths == 1)  // once more, at the relaunch after the first restart; the second restart sets it aside
        #expect(d.isRunning)
        let w = try await d.batchctl(["wait", "crashtask", "--timeout", "60"])
        #expect(w.code == 1, "\(w.out) \(w.err)")
        let job = try #require(try await d.store().job("crashtask"))
        let task = try #require(try await d.store().tasks(job.id).first)
        #expect(task.state == .failed)
        #expect(task.detail?.contains("the daemon stopped twice while starting or taking over this task") == true)
        try write("name: after\ntasks: [{command: 'true'}]\n", d.root, "after.yaml")
        #expect(try await d.batchctl(["submit", "\(d.root)/after.yaml", "--wait", "--timeout", "60"]).code == 0)
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }

    @Test("kill -9 while an output is being copied: after the restart no temp file is left in the destination")
    func killDuringCollection() async throws {
        let d = try DaemonHarness(extra: Self.marker)
        try await d.start()
        try write("""
            name: collect
            command: head -c 1000000 /dev/zero > CRASH$(echo ME).bin
            tasks: [{}]
            outputs: {patterns: ["*.bin"], destination: out}
            """, d.root, "job.yaml")
        #expect(try await d.batchctl(["submit", "\(d.root)/job.yaml"]).code == 0)
        #expect(await d.waitForExit(timeout: 60) != nil, "the daemon did not die collecting the output")
        // The kill landed mid-copy: the temp file is there, the output is not.
        let before = try FileManager.default.contentsOfDirectory(atPath: "\(d.root)/out")
        #expect(before.contains { $0.hasPrefix(".batchd-tmp-") } && !before.contains("CRASHME.bin"), "\(before)")
        // Restart without the hook: the output is collected again, the temp file gone.
        let config = try #require(read(d.config))
        try config.replacingOccurrences(of: Self.marker, with: "").write(toFile: d.config, atomically: true, encoding: .utf8)
        try await d.start()
        let w = try await d.batchctl(["wait", "collect", "--timeout", "60"])
        #expect(w.code == 0, "\(w.out) \(w.err)")
        let after = try FileManager.default.contentsOfDirectory(atPath: "\(d.root)/out")
        #expect(after == ["CRASHME.bin"])
        #expect((try FileManager.default.attributesOfItem(atPath: "\(d.root)/out/CRASHME.bin")[.size] as? Int) == 1_000_000)
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }
}
