@testable import BackendAzure
import BatchCore
import Foundation
import Testing
import TestSupport

extension AzureTests {
    /// A job of two tasks on one slot: `first` runs (until `gate`, at most
    /// 120 s), `second` waits in the Batch job's queue. Returns the job's id
    /// once `first` runs.
    func oneRunningOneQueued(_ d: DaemonHarness, _ name: String, pool: String = "{dedicatedNodes: 1, slotsPerNode: 1}") async throws -> String {
        let dir = "\(d.root)/\(name)"
        return try await submitRunning(d, name, fields: "retries: 0\npool: \(pool)\n",
                                       tasks: [Self.gated("first", dir, gate: "\(dir)/gate"), Self.gated("second", dir, gate: "\(dir)/gate")],
                                       started: ["first"])
    }

    /// The job fails within a few polls, naming `words`; its open task is
    /// recorded with the same reason.
    func expectLost(_ d: DaemonHarness, _ jobID: String, _ words: String) async throws {
        let w = try await d.batchctl(["wait", jobID, "--timeout", "60"], timeout: 80)
        #expect(w.code != 0, "the job does not wait for ever: \(w.out)")
        let job = try #require(try await d.store().job(jobID))
        #expect(job.phase == .failed && (job.reason ?? "").contains(words), "\(job.reason ?? "")")
        let second = try #require(try await d.store().tasks(jobID).first { $0.taskId == "second" })
        #expect(second.state == .cancelled && (second.detail ?? "").contains(words), "\(second)")
    }

    @Test("a Batch job terminated outside batchd (its queued tasks left active, as the service leaves them) fails the job within a few polls, with the service's reason")
    func terminatedOutside() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 1s")
        let id = try await oneRunningOneQueued(d, "terminated")
        try await rig.batch.terminateJob("batchd-\(id)", reason: "UserTerminate")
        try await expectLost(d, id, "was ended outside batchd (terminateReason: UserTerminate)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a Batch job disabled outside batchd fails the job within a few polls; one whose pool was deleted does too")
    func disabledOrPoolDeletedOutside() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  pollMaxInterval: 1s")
        let disabled = try await oneRunningOneQueued(d, "disabled")
        let r = try await rig.batch.call("disable job", "POST", "/jobs/batchd-\(disabled)/disable", body: ["disableTasks": "requeue"])
        #expect(r.status == 202)
        try await expectLost(d, disabled, "was disabled outside batchd")

        #expect(try await d.batchctl(["pool", "create", "doomed", "--dedicated", "1"]).code == 0)
        let orphaned = try await oneRunningOneQueued(d, "orphaned", pool: "{id: doomed, dedicatedNodes: 1, slotsPerNode: 1}")
        #expect(try await rig.batch.deletePool("doomed"))
        try await expectLost(d, orphaned, "pool doomed of Batch job batchd-\(orphaned) was deleted outside batchd")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
