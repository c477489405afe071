import BatchControl
import BackendAzure
import BatchBackend
import BatchCore
import BatchHTTP
import BatchStore
import Foundation
import Testing
import TestSupport
import Glibc

/// Pools on Azure Batch: kept outside jobs, named, reused, and orphans.
extension AzureTests {
    @Test("pools outside jobs: create, resize up and down and delete show on the emulator; a foreign pool is refused; an idle named pool goes to zero, and a job that names it grows it back")
    func poolManagement() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  poolIdleCheck: 0.2s\n  owner: it-pools")
        func steady(_ id: String) async throws -> [String: Any] {
            let r = try await rig.admin("wait", ["pool": id, "allocation": "steady", "timeout": 30])
            #expect(r["reached"] as? Bool == true, "\(id) reached steady: \(r)")
            return r
        }
        let created = try await d.batchctl(["pool", "create", "render", "--dedicated", "1", "--vm-size", "STANDARD_D4S_V3"])
        #expect(created.code == 0 && created.out.contains("created pool render"), "\(created.err)")
        let pool = try #require(try await rig.batch.pool("render"))
        #expect(BatchBodies.metadata(pool)["batchd.owner"] == "it-pools" && pool["vmSize"] as? String == "STANDARD_D4S_V3")
        #expect(try await steady("render")["dedicated"] as? Int == 1)
        #expect(try await d.batchctl(["pool", "resize", "render", "--dedicated", "3"]).code == 0)
        #expect(try await steady("render")["dedicated"] as? Int == 3, "resized up")
        #expect(try await d.batchctl(["pool", "resize", "render", "--dedicated", "0"]).code == 0)
        #expect(try await steady("render")["dedicated"] as? Int == 0, "resized down")
        let listed = try await d.batchctl(["pool", "list", "--json"])
        let items = (try JSONSerialization.jsonObject(with: Data(listed.out.utf8)) as? [String: Any])?["items"] as? [[String: Any]] ?? []
        #expect(items.contains { $0["id"] as? String == "render" && $0["kind"] as? String == "pool" }, "\(listed.out)")
        #expect(try await d.batchctl(["pool", "delete", "render"]).code == 0)
        #expect(try await rig.poolGone("render"), "deleted")

        // A pool another owner made is not touched, and its id is not taken.
        _ = try await rig.batch.createPool(BatchBodies.pool(id: "theirs", PoolSpec(), defaults: BatchBodies.PoolDefaults(), owner: "someone-else"))
        for args in [["pool", "resize", "theirs", "--dedicated", "0"], ["pool", "delete", "theirs"], ["pool", "create", "theirs"]] {
            let r = try await d.batchctl(args)
            #expect(r.code == 1 && r.err.contains("not this batchd's") && r.err.contains("'someone-else'"), "\(args): \(r.err)")
        }
        #expect(try await rig.batch.pool("theirs") != nil)

        // Idle past its own timeout: resized to zero (in the journal with MESSAGE_ID poolResized).
        let mark = d.log.mark
        #expect(try await d.batchctl(["pool", "create", "idle", "--dedicated", "1", "--idle-timeout", "1s"]).code == 0)
        try await d.log.wait(from: mark, timeout: 60, "the idle pool resized") {
            $0.contains("pool resized") && $0.contains("pool.id=idle") && $0.contains("reason=\"idle for")
        }
        #expect(try await steady("idle")["dedicated"] as? Int == 0)
        // A job that names the pool grows it back to what it asks for, and runs.
        let grow = d.log.mark
        let job = try write("name: onidle\npool: {id: idle, dedicatedNodes: 2}\ntasks: [{command: 'true'}]\n", d.root, "onidle.yaml")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", job])
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        #expect(d.log.lines[grow...].contains { $0.contains("pool resized") && $0.contains("pool.id=idle") && $0.contains("pool.dedicated=2") })
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a named pool is made once with batchd's tag and reused; a foreign pool is refused; orphans are listed, then deleted when asked")
    func namedPoolsAndOrphans() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  owner: it-owner")
        func manifest(_ name: String, pool: String) throws -> String {
            try write("""
                version: 1
                name: \(name)
                pool: {id: \(pool), dedicatedNodes: 1, slotsPerNode: 2}
                tasks: {forEachInteger: {from: 1, to: 2}}
                command: "true"
                """, "\(d.root)/\(name)", "job.yaml")
        }
        for name in ["first", "second"] {
            let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", try manifest(name, pool: "shared")])
            #expect(r.code == 0, "\(r.out)\n\(r.err)")
        }
        let pools = try await rig.batch.pools()
        #expect(pools.count == 1 && BatchBodies.metadata(pools[0])[BatchBodies.ownerKey] == "it-owner")
        let statuses = (try await rig.admin("stats"))["statuses"] as? [String: [String: Int]] ?? [:]
        #expect(statuses["batch.create_pool"] == ["201": 1], "made once, reused by the second job")

        try await rig.batch.createPool(BatchBodies.pool(id: "theirs", PoolSpec(), defaults: BatchBodies.PoolDefaults(), owner: "someone-else"))
        let refused = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", try manifest("third", pool: "theirs")])
        #expect(refused.code != 0)
        let third = try #require(try await d.store().job("third"))
        #expect(third.reason?.contains("pool theirs exists and is not this batchd's") == true, "\(third.reason ?? "")")

        // Tagged as ours, unknown to the database: an orphan.
        try await rig.batch.createJob(BatchBodies.job(id: "batchd-lost", batchdJob: "lost", owner: "it-owner", poolID: "shared",
                                                      spec: PoolSpec(), defaults: BatchBodies.PoolDefaults(), wallClockSeconds: 60, retries: 0))
        let listing = try await d.json(["pools"])
        let items = listing["items"] as? [[String: Any]] ?? []
        let orphans = items.filter { $0["orphan"] as? Bool == true }.compactMap { $0["id"] as? String }
        #expect(orphans == ["batchd-lost"], "\(items)")
        #expect(!items.contains { $0["id"] as? String == "theirs" }, "another owner's pool is not ours to list")
        #expect(await d.signal(SIGTERM) == 0)

        try String(contentsOfFile: d.config, encoding: .utf8).appending("\n  deleteOrphans: true\n").write(toFile: d.config, atomically: true, encoding: .utf8)
        let from = d.log.mark
        try await d.start(environment: rig.environment())
        try await d.log.wait(from: from, timeout: 30, "orphan deleted") { $0.contains("orphan deleted") }
        #expect(try await rig.jobGone("batchd-lost"))
        #expect(try await rig.batch.pool("shared") != nil, "a named pool jobs in the database used is no orphan")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
