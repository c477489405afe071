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
