import BackendAzure
import BatchCore
import Foundation
import Testing
import TestSupport

extension AzureTests {
    /// Submits a one-task job on an auto-pool with a start task; the job's id.
    func submitOnAutoPool(_ d: DaemonHarness, _ name: String, nodes: Int = 1, command: String = "echo ran > out.txt") async throws -> String {
        let dir = "\(d.root)/\(name)"
        let manifest = try write("""
            name: \(name)
            pool: {dedicatedNodes: \(nodes), startTask: "true"}
            tasks:
              - {id: only, command: "\(command)"}
            """, dir, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        try await d.log.wait(from: from, timeout: 30, "the job accepted") { $0.contains("job accepted") }
        return try #require(try await d.store().jobs(limit: 1).first).id
    }

    /// While the pool cannot run a task, `show` says why; after the grace the
    /// job fails with the service's words, and its auto-pool is deleted.
    func expectPoolFailure(_ rig: AzureRig, _ d: DaemonHarness, _ id: String, _ words: String, shown: String? = nil) async throws {
        try await d.log.wait(timeout: 60, "the pool's trouble noticed") { $0.contains("the job's pool cannot run its tasks") }
        let show = try await d.batchctl(["show", id])
        #expect(show.out.contains("run the tasks") && show.out.contains(shown ?? words), "\(show.out)")
        let w = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 80)
        #expect(w.code != 0, "the job does not wait for ever: \(w.out)")
        let reason = try #require(try await d.store().job(id)?.reason)
        #expect(reason.contains(words) && reason.contains("azure.poolFailureGrace"), "\(reason)")
        #expect(AzureRig.kept(try await rig.batch.pools()).isEmpty, "its auto-pool was deleted")
    }

    @Test("a pool whose every node fails its start task, rebooted azure.nodeRecoveries times, is shown on the job, then fails it after azure.poolFailureGrace, with the service's words; its auto-pool goes")
    func startTaskFailureFailsTheJob() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 0.5s\n  poolFailureGrace: 3s")
        _ = try await rig.admin("faults", ["start_task_fail": true])
        let id = try await submitOnAutoPool(d, "starts")
        // (While the last reboot runs, the node shows as rebooting.)
        try await expectPoolFailure(rig, d, id, "all 1 of its nodes are 1 starttaskfailed (its start task fails), after 2 reboots each (azure.nodeRecoveries)",
                                    shown: "cannot run a task: all 1 of its nodes are 1 ")
        #expect(try await rig.requests("batch.reboot_node") == 2, "rebooted azure.nodeRecoveries (2) times, no more")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a node that comes up unusable is rebooted, and the job's task then runs on it")
    func unusableNodeIsRebooted() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 0.5s")
        _ = try await rig.admin("faults", ["unusable_nodes": 1])
        let id = try await submitOnAutoPool(d, "unusable")
        try await d.log.wait(timeout: 60, "the node rebooted") { $0.contains("node rebooted") && $0.contains("unusable") }
        let w = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 80)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(try await rig.requests("batch.reboot_node") == 1)
        #expect(try await d.store().job(id)?.phase == .succeeded)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a pool left with no node by a resize error (no capacity for the VM size) is shown on the job, then fails it after azure.poolFailureGrace")
    func resizeErrorFailsTheJob() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 0.5s\n  poolFailureGrace: 3s")
        _ = try await rig.admin("faults", ["resize_error": "AllocationFailed"])
        let id = try await submitOnAutoPool(d, "capacity")
        try await expectPoolFailure(rig, d, id, "has no node and cannot get one (AllocationFailed: Desired number of dedicated nodes could not be allocated")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a node whose start task still fails after azure.nodeRecoveries reboots is removed from the pool while another runs the tasks")
    func failingNodeIsRemoved() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 0.5s\n  nodeRecoveries: 1")
        // Both nodes' first start tasks fail, and one of them fails again after its reboot.
        _ = try await rig.admin("faults", ["start_task_fail": 3])
        // The task runs on the good node until the bad one is gone: the job
        // polls quietly meanwhile, which is when nodes are looked at.
        let gate = "\(d.root)/removed/gate"
        let id = try await submitOnAutoPool(d, "removed", nodes: 2, command: "while [ ! -e \(gate) ]; do sleep 0.1; done")
        try await d.log.wait(timeout: 60, "the node removed") { $0.contains("node removed from its pool") }
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let w = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 80)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(try await rig.requests("batch.reboot_node") == 2)
        #expect(try await rig.requests("batch.remove_nodes") == 1)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a pool the account's core quota leaves with no node waits its turn for cores (shown, not failed by the grace), and grows when another job's pool goes")
    func coreQuotaWaitsForCapacity() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 0.5s\n  poolFailureGrace: 0.1s")
        _ = try await rig.admin("quotas", ["dedicatedCores": 2])   // one STANDARD_D2S_V3 node
        let dir = "\(d.root)/first"
        let gate = "\(dir)/gate"
        let first = try await submitRunning(d, "first", fields: "pool: {dedicatedNodes: 1}\n", tasks: [Self.gated("a", dir, gate: gate)], started: ["a"])
        let from = d.log.mark
        let second = try await submitOnAutoPool(d, "second")
        try await d.log.wait(from: from, timeout: 60, "the second waits for cores") {
            $0.contains("waiting for Azure quota") && $0.contains("AccountCoreQuotaReached")
        }
        let shown = try await d.batchctl(["show", second])
        #expect(shown.out.contains("waiting for Azure quota: AccountCoreQuotaReached, 0 jobs ahead"), "\(shown.out)")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(try await d.batchctl(["wait", first, "--timeout", "60"], timeout: 80).code == 0)
        let w = try await d.batchctl(["wait", second, "--timeout", "60"], timeout: 80)
        #expect(w.code == 0, "the second ran once the first's pool went: \(w.out)\n\(w.err)")
        #expect(try await rig.requests("batch.resize_pool") >= 1, "its pool was resized again")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
