import BackendLocal
import BatchAccess
import BatchStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("batchctl views", .serialized)
struct CLITests {
    @Test("batchctl watch in a real terminal draws a progress bar that reaches 100%")
    func watchInTmux() async throws {
        let d = try DaemonHarness(slots: 4)
        try await d.start()
        let work = "\(d.root)/w"
        try write("name: bar\ntasks: {forEachInteger: {from: 1, to: 12}}\ncommand: sleep 0.3\n", work, "job.yaml")
        #expect(try await d.batchctl(["submit", "\(work)/job.yaml"]).code == 0)
        // A tmux server of this test's own (-L), so no other tmux is touched.
        // tmux is started with the project's own process code (posix_spawn in
        // a new session, stdio on /dev/null, exit seen through a pidfd).
        let tmux = "tmux -L batchd-test-\(getpid())"
        func shell(_ line: String, output: String = "/dev/null", timeout: Double = 30) async throws -> Bool {
            let pid = try ProcessControl.spawnSession(["/bin/sh", "-c", line + " </dev/null >'\(output)' 2>/dev/null"],
                                                      env: ProcessInfo.processInfo.environment, output: "/dev/null")
            return await ProcessControl.exitEvent(pid).wait(timeout: timeout) != nil
        }
        let watch = "'\(binDirectory)/batchctl' --config '\(d.config)' watch bar; echo WATCH-EXIT=$?; \(tmux) wait-for -S watch-done; sleep 600"
        let quoted = "'" + watch.replacingOccurrences(of: "'", with: "'\\''") + "'"
        #expect(try await shell("\(tmux) new-session -d -s watch -x 150 -y 8 \(quoted)"))
        defer { _ = try? ProcessControl.spawnSession(["/bin/sh", "-c", "\(tmux) kill-server"], env: [:], output: "/dev/null") }
        // Returns when the watch has ended: tmux's own signal, not a sleep.
        #expect(try await shell("\(tmux) wait-for watch-done", timeout: 120))
        let capture = "\(d.root)/screen.txt"
        #expect(try await shell("\(tmux) capture-pane -p -t watch", output: capture))
        let screen = read(capture) ?? ""
        #expect(screen.contains("bar [" + String(repeating: "=", count: 40) + "] 100%  12/12 done"), "\(screen)")
        #expect(screen.contains("succeeded"))
        #expect(screen.contains("WATCH-EXIT=0"))
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("batchctl retry runs only the failed tasks again, and the job can then succeed")
    func retry() async throws {
        let d = try DaemonHarness()
        try await d.start()
        let work = "\(d.root)/w"
        try write("""
            name: flaky
            tasks:
              - {id: steady, command: "echo ok >> \(work)/steady.runs"}
              - {id: flaky, command: "test -e \(work)/fixed"}
            """, work, "job.yaml")
        #expect(try await d.batchctl(["submit", "\(work)/job.yaml", "--wait"]).code == 1)
        try "".write(toFile: "\(work)/fixed", atomically: true, encoding: .utf8)
        let r = try await d.batchctl(["retry", "flaky", "--wait"])
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let store = try d.store()
        let job = try #require(try await store.job("flaky"))
        #expect(job.phase == .succeeded)
        #expect(read("\(work)/steady.runs") == "ok\n")  // the task that had succeeded did not run again
        #expect(try await d.batchctl(["retry", "flaky"]).code == 1)  // nothing failed any more
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("batchctl plan counts tasks and only the bytes the store lacks")
    func plan() async throws {
        let d = try DaemonHarness()
        try await d.start()
        let work = "\(d.root)/w"
        try String(repeating: "x", count: 1000).write(toFile: "\(work)-data.bin", atomically: true, encoding: .utf8)
        try write("name: p\ninputs: [../w-data.bin]\ntasks: {forEachInteger: {from: 1, to: 50}}\ncommand: wc -c w-data.bin\ntimeout: 6m\n", work, "job.yaml")
        let before = try await d.json(["plan", "\(work)/job.yaml"])
        #expect(before["tasks"] as? Int == 50)
        let inputs = try #require(before["inputs"] as? [String: Any])
        #expect(inputs["bytes"] as? Int == 1000)
        #expect(inputs["bytesToStage"] as? Int == 1000)
        #expect(before["estimatedCoreHoursAtMost"] as? Double == 5)
        let run = try await d.batchctl(["submit", "\(work)/job.yaml", "--wait"])
        #expect(run.code == 0, "\(run.out)\n\(run.err)")
        let after = try await d.json(["plan", "\(work)/job.yaml"])
        #expect((after["inputs"] as? [String: Any])?["bytesToStage"] as? Int == 0)
        #expect(await d.signal(SIGTERM) == 0)
    }
}
