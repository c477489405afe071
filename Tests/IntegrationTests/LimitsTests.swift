import BatchCore
import BatchStore
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `limits.wallClock` and `limits.coreHours` end a job the same way on every
/// backend (the shared running phase enforces them): the same manifest, the
/// same reason words, nothing left running.
struct LimitScenario {
    /// Four tasks that would run five minutes, stopped after 20 s.
    static func wallClock(_ backend: String) -> String {
        """
        name: walled-\(backend)
        backend: \(backend)
        pool: {dedicatedNodes: 1, slotsPerNode: 2, maxRunning: 2}
        tasks: {forEachInteger: {from: 1, to: 4}}
        command: sleep 300
        limits: {wallClock: 20s}
        """
    }

    /// Twelve tasks of 2 s, two at a time, with 7.2 core-seconds to spend:
    /// what runs finishes, nothing new starts once they are used up.
    static func coreHours(_ backend: String) -> String {
        """
        name: budget-\(backend)
        backend: \(backend)
        pool: {dedicatedNodes: 1, slotsPerNode: 2, maxRunning: 2}
        tasks: {forEachInteger: {from: 1, to: 12}}
        command: sleep 2
        limits: {coreHours: 0.002}
        """
    }

    static let wallClockReason = "limits.wallClock (20s) reached: the job was stopped"
    static let coreHoursReason = "limits.coreHours (0.002 h) used up: no new task was started"

    /// Runs both jobs on `backend` and checks how they ended.
    static func run(_ backend: String, _ d: DaemonHarness) async throws {
        for (name, text) in [("walled-\(backend)", wallClock(backend)), ("budget-\(backend)", coreHours(backend))] {
            try write(text, "\(d.root)/\(name)", "job.yaml")
            let w = try await d.batchctl(["submit", "\(d.root)/\(name)/job.yaml", "--wait", "--timeout", "180"], timeout: 200)
            #expect(w.code == 1, "\(w.out)\n\(w.err)")
        }
        let store = try d.store()
        let walled = try #require(try await store.job("walled-\(backend)"))
        #expect(walled.phase == .failed && walled.reason == wallClockReason, "\(backend): \(walled.reason ?? "")")
        let wc = try await store.counts(walled.id)
        #expect(wc.succeeded == 0 && wc.cancelled == 4, "\(backend): \(wc)")

        let budget = try #require(try await store.job("budget-\(backend)"))
        #expect(budget.phase == .failed && budget.reason == coreHoursReason, "\(backend): \(budget.reason ?? "")")
        let bc = try await store.counts(budget.id)
        // 7.2 core-seconds: three or four tasks of 2 s start; what started ran to its end.
        #expect(bc.succeeded >= 2 && bc.succeeded <= 6 && bc.succeeded + bc.cancelled == 12, "\(backend): \(bc)")
        let attempts = try await store.attempts(budget.id).filter { $0.outcome != .cancelled }
        #expect(attempts.allSatisfy { $0.outcome == .exited && $0.exitCode == 0 }, "\(backend): \(attempts)")
    }
}

@Suite("limits on the local backend and Azure", .serialized)
struct LimitsTests {
    @Test("limits.wallClock and limits.coreHours end a local job with the same words as on Slurm and Azure")
    func local() async throws {
        let d = try DaemonHarness(slots: 2)
        try await d.start()
        try await LimitScenario.run("local", d)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("limits.wallClock and limits.coreHours end an Azure job with the same words; the Batch job is not left active")
    func azure() async throws {
        let (rig, d) = try await AzureTests().started("azure:\n  pollMinInterval: 0.2s")
        try await LimitScenario.run("azure", d)
        let jobs = try await rig.batch.jobs()
        #expect(!jobs.contains { ($0["state"] as? String) == "active" }, "\(jobs.map { "\($0["id"] ?? "")=\($0["state"] ?? "")" })")
        #expect(await d.signal(SIGTERM) == 0)
    }
}

/// Its name holds `SlurmTests`, so it runs with the Slurm suite (make test).
@Suite("limits on Slurm", .serialized)
struct LimitsSlurmTests {
    @Test("limits.wallClock and limits.coreHours end a Slurm job with the same words as locally and on Azure; nothing left in squeue")
    func slurm() async throws {
        let (cluster, d, _) = try await SlurmTests().started()
        try await LimitScenario.run("slurm", d)
        let live = try cluster.command("squeue", ["--noheader", "--format=%j|%T"]).output
        for name in ["walled-slurm", "budget-slurm"] {
            let id = try #require(try await d.store().job(name)?.id)
            #expect(!live.contains("batchd-\(id)"), "squeue still shows: \(live)")
        }
        #expect(await d.signal(SIGTERM) == 0)
    }
}
