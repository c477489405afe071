import BackendAzure
import BatchCore
import Foundation
import Testing
import TestSupport

extension AzureTests {
    /// Submits a one-task job on an auto-pool with a start task; the job's id.
    func submitOnAutoPool(_ d: DaemonHarness, _ name: String) async throws -> String {
        let dir = "\(d.root)/\(name)"
        let manifest = try write("""
            name: \(name)
            pool: {dedicatedNodes: 1, startTask: "true"}
            tasks:
              - {id: only, command: "echo ran > out.txt"}
            """, dir, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        try await d.log.wait(from: from, timeout: 30, "the job accepted") { $0.contains("job accepted") }
        return try #require(try await d.store().jobs(limit: 1).first).id
    }

    /// While the pool cannot run a task, `show` says why; after the grace the
    /// job fails with the service's words, and its auto-pool is deleted.
    func expectPoolFailure(_ rig: AzureRig, _ d: DaemonHarness, _ id: String, _ words: String) async throws {
        try await d.log.wait(timeout: 60, "the pool's trouble noticed") { $0.contains("the job's pool cannot run its tasks") }
        let shown = try await d.batchctl(["show", id])
        #expect(shown.out.contains("run the tasks") && shown.out.contains(words), "\(shown.out)")
        let w = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 80)
        #expect(w.code != 0, "the job does not wait for ever: \(w.out)")
        let reason = try #require(try await d.store().job(id)?.reason)
        #expect(reason.contains(words) && reason.contains("azure.poolFailureGrace"), "\(reason)")
        #expect(AzureRig.kept(try await rig.batch.pools()).isEmpty, "its auto-pool was deleted")
    }

    @Test("a pool whose every node failed its start task is shown on the job, then fails it after azure.poolFailureGrace, with the service's words; its auto-pool goes")
    func startTaskFailureFailsTheJob() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 0.5s\n  poolFailureGrace: 3s")
        _ = try await rig.admin("faults", ["start_task_fail": true])
        let id = try await submitOnAutoPool(d, "starts")
        try await expectPoolFailure(rig, d, id, "all 1 of its nodes are 1 starttaskfailed (its start task fails)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a pool left with no node by a resize error (the account's core quota) is shown on the job, then fails it after azure.poolFailureGrace")
    func resizeErrorFailsTheJob() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 0.5s\n  poolFailureGrace: 3s")
        _ = try await rig.admin("faults", ["resize_error": "AccountCoreQuotaReached"])
        let id = try await submitOnAutoPool(d, "cores")
        try await expectPoolFailure(rig, d, id, "has no node and cannot get one (AccountCoreQuotaReached: The specified account has reached its quota of dedicated cores")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
