import BackendAzure
import BatchCore
import Foundation
import Testing
import TestSupport

extension AzureTests {
    @Test("tasks the service answers servererror for inside an add-collection are sent again, not failed")
    func serverErrorTasksAreResent() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/resend"
        let manifest = try write("""
            name: resend
            tasks: {forEachInteger: {from: 1, to: 5}}
            command: "echo {i} > out-{i}.txt"
            outputs: {patterns: ['out-*.txt'], destination: output}
            """, dir, "job.yaml")
        _ = try await rig.admin("faults", ["addcollection_servererror": 3])
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", manifest], timeout: 140)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        #expect((1...5).allSatisfy { read("\(dir)/output/out-\($0).txt") == "\($0)\n" })
        let statuses = (try await rig.admin("stats"))["requests"] as? [String: Int] ?? [:]
        #expect((statuses["batch.add_task_collection"] ?? 0) >= 2, "the three were sent again: \(statuses)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a named pool still being deleted is waited out, then made again, instead of failing the job")
    func poolBeingDeletedIsWaitedOut() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        #expect(try await d.batchctl(["pool", "create", "reused", "--dedicated", "1"]).code == 0)
        _ = try await rig.admin("faults", ["deletion_delay": 3])
        #expect(try await rig.batch.deletePool("reused"))
        let dir = "\(d.root)/reused"
        let manifest = try write("""
            name: reused
            pool: {id: reused, dedicatedNodes: 1}
            tasks:
              - {id: only, command: "echo made again > out.txt"}
            outputs: {patterns: ['out.txt'], destination: output}
            """, dir, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        try await d.log.wait(from: from, timeout: 30, "the wait noticed") { $0.contains("PoolBeingDeleted") }
        let job = try #require(try await d.store().jobs(limit: 1).first)
        let w = try await d.batchctl(["wait", job.id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(read("\(dir)/output/out.txt") == "made again\n")
        #expect(await d.signal(SIGTERM) == 0)
    }
}

extension AzureTests {
    @Test("jobs refused by the account's active-job quota wait their turn, shown with the jobs ahead, and go in acceptance order as this daemon's Batch jobs end, without a busy loop")
    func quotaWaitsInOrder() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        _ = try await rig.admin("quotas", ["activeJobs": 1])
        let dir = "\(d.root)/quota"
        let gate = "\(dir)/gate"
        func manifest(_ name: String, _ task: String) throws -> String {
            try write("name: \(name)\ntasks:\n  - \(task)\noutputs: {patterns: ['out-*.txt'], destination: \(name)-out}\n", dir, "\(name).yaml")
        }
        #expect(try await d.batchctl(["submit", "--backend", "azure", try manifest("first", Self.gated("a", dir, gate: gate))]).code == 0)
        #expect(await waitForFiles(["\(dir)/started-a"], timeout: 60), "the first job runs")
        var ids: [String] = []
        for name in ["second", "third"] {
            let from = d.log.mark
            #expect(try await d.batchctl(["submit", "--backend", "azure", try manifest(name, "{id: \(name), command: \"echo \(name) > out-\(name).txt\"}")]).code == 0)
            try await d.log.wait(from: from, timeout: 30, "\(name) waits") { $0.contains("waiting for Azure quota") && $0.contains("job.id=") }
            ids.append(try #require(try await d.store().jobs(limit: 1).first).id)
        }
        let second = try await d.batchctl(["show", ids[0]]), third = try await d.batchctl(["show", ids[1]])
        #expect(second.out.contains("waiting for Azure quota: ActiveJobAndScheduleQuotaReached, 0 jobs ahead"), "\(second.out)")
        #expect(third.out.contains("waiting for Azure quota: ActiveJobAndScheduleQuotaReached, 1 job ahead"), "\(third.out)")
        let list = try await d.batchctl(["list"])
        #expect(list.out.split(separator: "\n").filter { $0.contains("submitting, waiting for Azure quota") }.count == 2, "\(list.out)")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        for id in ids {
            let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
            #expect(w.code == 0, "\(w.out)\n\(w.err)")
        }
        #expect(read("\(dir)/second-out/out-second.txt") == "second\n" && read("\(dir)/third-out/out-third.txt") == "third\n")
        // In acceptance order, and each refused at most once or twice: no busy loop.
        let submitted = d.log.lines.filter { $0.contains("tasks submitted") }.compactMap { line in ids.firstIndex { line.contains($0) } }
        #expect(submitted == [0, 1], "\(submitted)")
        let statuses = (try await rig.admin("stats"))["statuses"] as? [String: [String: Int]] ?? [:]
        #expect((statuses["batch.create_job"]?["409"] ?? 0) <= 3, "\(statuses["batch.create_job"] ?? [:])")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a Batch job whose auto-pool the pool quota refuses (completed by Batch with a schedulingError) waits its turn, and runs when this daemon's other pool goes")
    func autoPoolQuotaIsWaitedFor() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        _ = try await rig.admin("quotas", ["pools": 1])
        let dir = "\(d.root)/first"
        let gate = "\(dir)/gate"
        let first = try await submitRunning(d, "first", tasks: [Self.gated("a", dir, gate: gate)], started: ["a"])
        let from = d.log.mark
        let second = try await submitOnAutoPool(d, "second")
        try await d.log.wait(from: from, timeout: 30, "the second waits") { $0.contains("waiting for Azure quota") && $0.contains("PoolQuotaReached") }
        let shown = try await d.batchctl(["show", second])
        #expect(shown.out.contains("waiting for Azure quota: PoolQuotaReached, 0 jobs ahead"), "\(shown.out)")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(try await d.batchctl(["wait", first, "--timeout", "60"], timeout: 80).code == 0)
        let w = try await d.batchctl(["wait", second, "--timeout", "60"], timeout: 80)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let statuses = (try await rig.admin("stats"))["statuses"] as? [String: [String: Int]] ?? [:]
        #expect((statuses["batch.add_task_collection"]?["409"] ?? 0) >= 1, "its first Batch job was completed by Batch: \(statuses)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("task counts that lag (here frozen while every task runs) lose no task: the confirming listings find every end")
    func laggingCountsMissNothing() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 0.5s")
        let dir = "\(d.root)/lag"
        let gate = "\(dir)/gate"
        let names = (0..<4).map { "t\($0)" }
        let id = try await submitRunning(d, "lag", fields: "pool: {dedicatedNodes: 1, slotsPerNode: 4}\n",
                                         tasks: names.map { Self.gated($0, dir, gate: gate) }, started: names)
        // From now on the counts say what they say now: all running.
        _ = try await rig.admin("faults", ["counts_lag": 3600])
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let w = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 80)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        for name in names { #expect(read("\(dir)/output/out-\(name).txt") == "\(name)\n") }
        #expect(try await d.store().attempts(id).count == 4, "each task recorded once")
        let counts = try await rig.batch.taskCounts("batchd-\(id)")
        #expect(counts["running"] == 4 && counts["completed"] == 0, "the counts did lag: \(counts)")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
