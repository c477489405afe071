import BatchControl
import BackendAzure
import BatchBackend
import BatchCore
import BatchHTTP
import BatchStore
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The project's emulator, and the environment a daemon needs to use it.
final class AzureRig: Sendable {
    let emulator: AzureEmulatorProcess
    let http = HTTPClient(transport: CurlTransport())
    static let tenant = "tenant-1", clientID = "batchd-client", clientSecret = "cl13nt-s3cr3t-never-log-me"

    init(emulatorEnvironment: [String: String] = [:]) throws {
        emulator = try AzureEmulatorProcess(extraArguments: ["--allocation-delay", "0.1",
                                                             "--client", "\(Self.tenant):\(Self.clientID):\(Self.clientSecret)"],
                                            environment: emulatorEnvironment)
    }

    /// Shared Key for Batch and Blob; `entra` signs Batch with Entra ID client credentials instead.
    func environment(entra: Bool = false) -> [String: String] {
        let key = AzureEmulatorProcess.key
        var env = [
            "AZURE_BATCH_ACCOUNT": "acct", "AZURE_BATCH_ENDPOINT": emulator.url,
            "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=store;AccountKey=\(key);BlobEndpoint=\(emulator.url)/store",
        ]
        if entra {
            env["AZURE_TENANT_ID"] = Self.tenant
            env["AZURE_CLIENT_ID"] = Self.clientID
            env["AZURE_CLIENT_SECRET"] = Self.clientSecret
            env["AZURE_AUTHORITY_HOST"] = emulator.url
        } else {
            env["AZURE_BATCH_ACCESS_KEY"] = key
        }
        return env
    }

    var batch: BatchClient { BatchClient(http: http, endpoint: emulator.url, account: "acct", key: Secret(AzureEmulatorProcess.key)) }

    /// GET (or POST `body` to) /_emulator/NAME.
    func admin(_ name: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        let url = "\(emulator.url)/_emulator/\(name)"
        let data = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        let r = try await http.execute(idempotent: true) {
            HTTPRequest(method: data == nil ? "GET" : "POST", url: url, headers: [("Content-Type", "application/json")],
                        body: data.map { .data($0) } ?? .none)
        }
        return (try JSONSerialization.jsonObject(with: r.body)) as? [String: Any] ?? [:]
    }

    /// The ids of these pools or jobs that are not on their way out (the
    /// service keeps a deleted one a while, `deleting`).
    static func kept(_ items: [[String: Any]]) -> [String] {
        items.filter { $0["state"] as? String != "deleting" }.compactMap { $0["id"] as? String }
    }

    /// Whether a pool is gone, or going (`deleting`).
    func poolGone(_ id: String) async throws -> Bool { try await batch.pool(id).map { $0["state"] as? String == "deleting" } ?? true }
    /// Whether a Batch job is gone, or going (`deleting`).
    func jobGone(_ id: String) async throws -> Bool { try await batch.job(id).map { $0["state"] as? String == "deleting" } ?? true }

    func requests(_ op: String) async throws -> Int {
        ((try await admin("stats"))["requests"] as? [String: Int])?[op] ?? 0
    }
}

/// Files under `dir` (relative path → bytes).
func tree(_ dir: String) -> [String: Data] {
    var out: [String: Data] = [:]
    for rel in FileManager.default.subpaths(atPath: dir) ?? [] {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: "\(dir)/\(rel)", isDirectory: &isDir), !isDir.boolValue {
            out[rel] = FileManager.default.contents(atPath: "\(dir)/\(rel)")
        }
    }
    return out
}

@Suite("Azure backend against the emulator", .serialized)
struct AzureTests {
    /// An emulator, and a daemon with `extra` config lines using it.
    func started(_ extra: String, entra: Bool = false) async throws -> (AzureRig, DaemonHarness) {
        let rig = try AzureRig()
        let d = try DaemonHarness(extra: extra)
        try await d.start(environment: rig.environment(entra: entra))
        return (rig, d)
    }

    func copyExample(_ d: DaemonHarness, _ name: String) throws -> String {
        let dir = "\(d.root)/\(name)"
        try FileManager.default.copyItem(atPath: "\(repoRoot)/examples/wordcount", toPath: dir)
        try? FileManager.default.removeItem(atPath: "\(dir)/output")
        return dir
    }

    @Test("wordcount on Azure gives the local backend's bytes; a second job uploads no input again")
    func wordcountMatchesLocal() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let local = try copyExample(d, "local"), azure = try copyExample(d, "azure"), again = try copyExample(d, "again")
        let l = try await d.batchctl(["submit", "--backend", "local", "--wait", "--timeout", "120", "\(local)/job.yaml"])
        #expect(l.code == 0, "\(l.err)")
        let a = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", "\(azure)/job.yaml"])
        #expect(a.code == 0, "\(a.out)\n\(a.err)")
        let expected = tree("\(local)/output")
        #expect(expected.count == 3)
        #expect(tree("\(azure)/output") == expected)

        let writesBefore = (try await rig.admin("stats"))["writesByContainer"] as? [String: Int] ?? [:]
        #expect((writesBefore["batchd-inputs"] ?? 0) == 4, "wordcount.py and three texts, each written once")
        let b = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", "\(again)/job.yaml"])
        #expect(b.code == 0, "\(b.out)\n\(b.err)")
        let writesAfter = (try await rig.admin("stats"))["writesByContainer"] as? [String: Int] ?? [:]
        #expect(writesAfter["batchd-inputs"] == writesBefore["batchd-inputs"])
        #expect(tree("\(again)/output") == expected)
        let store = try d.store()
        let second = try #require(try await store.jobs(limit: 1).first)
        let moved = try #require(try await store.backendRecord(second.id, TransferProgress.key, as: TransferProgress.self))
        #expect(moved.uploaded == 0 && moved.alreadyStored == moved.inputBytes && moved.inputBytes > 0)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("files put into batchd-inputs ahead of a job: the job uploads nothing; prune --dry-run keeps the blobs, --unused-for 0s deletes them; outputs.merge works on Azure too")
    func filesPutAndPrune() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = try copyExample(d, "wc")
        let manifest = try #require(read("\(dir)/job.yaml")).replacingOccurrences(of: "  destination: output\n",
                                                                                  with: "  destination: output\n  merge: {from: '*_OUTPUT.txt', into: top3.txt, format: concat}\n")
        try manifest.write(toFile: "\(dir)/job.yaml", atomically: true, encoding: .utf8)
        let put = try await d.json(["files", "put", "--backend", "azure", "\(dir)/texts", "\(dir)/wordcount.py"])
        #expect(put["count"] as? Int == 4 && (put["sent"] as? Int ?? 0) > 0, "\(put)")
        let writes = { ((try await rig.admin("stats"))["writesByContainer"] as? [String: Int] ?? [:])["batchd-inputs"] ?? 0 }
        #expect(try await writes() == 4)
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", "\(dir)/job.yaml"])
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        #expect(try await writes() == 4, "the job wrote no input")
        let store = try d.store()
        let job = try #require(try await store.jobs(limit: 1).first)
        let moved = try #require(try await store.backendRecord(job.id, TransferProgress.key, as: TransferProgress.self))
        #expect(moved.uploaded == 0 && moved.inputBytes > 0)
        let parts = (0..<3).map { read("\(dir)/output/taskdata\($0)_OUTPUT.txt") ?? "missing" }
        #expect(read("\(dir)/output/top3.txt") == parts.joined(), "the three results merged in task order")
        let listed = try await d.json(["files", "list"])["files"] as? [[String: Any]] ?? []
        #expect(listed.count == 4 && listed.allSatisfy { ($0["jobs"] as? [String]) == [job.id] && ($0["backends"] as? [String]) == ["azure"] },
                "\(listed)")
        let found = try await d.json(["files", "find", "wordcount.py"])["files"] as? [[String: Any]] ?? []
        #expect(found.count == 1 && (found.first?["blob"] as? String)?.hasPrefix("md5/") == true)

        let blob = BlobClient(http: rig.http, endpoint: "\(rig.emulator.url)/store", account: "store", key: Secret(AzureEmulatorProcess.key))
        #expect(try await blob.list("batchd-inputs").count == 4)
        let dry = try await d.json(["files", "prune", "--unused-for", "0s", "--dry-run", "--backend", "azure"])
        #expect(dry["count"] as? Int == 4 && dry["freed"] as? Int == 0, "\(dry)")
        #expect(try await blob.list("batchd-inputs").count == 4, "a dry run deletes nothing")
        let pruned = try await d.json(["files", "prune", "--unused-for", "0s"])
        #expect(pruned["count"] as? Int == 4, "\(pruned)")
        #expect(try await blob.list("batchd-inputs").isEmpty)
        #expect((try await d.json(["files", "list"])["files"] as? [Any])?.isEmpty == true)
        #expect(await d.signal(SIGTERM) == 0)
        withExtendedLifetime(rig) {}
    }

    @Test("batchctl retry of a failed Azure job runs only its failed task again, in a new Batch job, uploads no input again, and succeeds")
    func retryOnAzure() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/flaky", flag = "\(d.root)/flaky/fixed"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "shared data\n".write(toFile: "\(dir)/data.txt", atomically: true, encoding: .utf8)
        try """
            name: flaky
            backend: azure
            inputs: {shared: [data.txt]}
            tasks:
              forEachInteger: {from: 1, to: 4}
            command: if [ {i} -eq 3 ] && [ ! -e \(flag) ]; then exit 7; fi; cat data.txt > out-{i}.txt
            retries: 0
            outputs: {patterns: ['out-*.txt'], destination: out}
            """.write(toFile: "\(dir)/job.yaml", atomically: true, encoding: .utf8)
        let first = try await d.batchctl(["submit", "--wait", "--timeout", "120", "\(dir)/job.yaml"])
        #expect(first.code != 0)
        let failed = try await d.json(["show", "flaky"])
        #expect(failed["state"] as? String == "failed" && (failed["tasks"] as? [String: Any])?["failed"] as? Int == 1, "\(failed)")
        let id = try #require(failed["id"] as? String)
        #expect(try await rig.batch.job("batchd-\(id)") != nil, "the failed job's Batch job is kept (cleanup: onSuccess)")
        let inputWrites = { ((try await rig.admin("stats"))["writesByContainer"] as? [String: Int] ?? [:])["batchd-inputs"] ?? 0 }
        let writesBefore = try await inputWrites()

        try "".write(toFile: flag, atomically: true, encoding: .utf8)
        let retry = try await d.json(["retry", "flaky"])
        #expect(retry["tasks"] as? Int == 1, "\(retry)")
        let w = try await d.batchctl(["wait", "flaky", "--timeout", "120"])
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let done = try await d.json(["show", "flaky"])
        #expect(done["state"] as? String == "succeeded" && (done["tasks"] as? [String: Any])?["succeeded"] as? Int == 4, "\(done)")
        #expect((1...4).allSatisfy { read("\(dir)/out/out-\($0).txt") == "shared data\n" })
        // Only the failed task went to the new Batch job; the old one is gone; no input was sent again.
        #expect(try await rig.jobGone("batchd-\(id)"))
        #expect((done["azure"] as? [String: Any])?["batchJob"] as? String == "batchd-\(id)-r1")
        let logs = try await d.json(["logs", "flaky", "2"])
        #expect(logs["attempt"] as? Int == 2 && logs["attempts"] as? Int == 2, "the retry's run is the task's second attempt: \(logs)")
        #expect(try await inputWrites() == writesBefore)
        #expect(await d.signal(SIGTERM) == 0)
        withExtendedLifetime(rig) {}
    }

    @Test("2,000 tasks on 4 nodes × 4 slots: collections of 100, at most 0.05 polling calls per task")
    func twoThousandTasks() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 1s")
        let manifest = try write("""
            version: 1
            name: many
            pool: {dedicatedNodes: 4, slotsPerNode: 4}
            tasks: {forEachInteger: {from: 1, to: 2000}}
            command: "true"
            cleanup: never
            """, "\(d.root)/many", "job.yaml")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "600", manifest], timeout: 650)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let stats = try await rig.admin("stats")
        let requests = stats["requests"] as? [String: Int] ?? [:]
        let statuses = stats["statuses"] as? [String: [String: Int]] ?? [:]
        let polls = (requests["batch.task_counts"] ?? 0) + (requests["batch.list_tasks"] ?? 0)
        #expect(polls > 0 && Double(polls) / 2000 <= 0.05, "\(polls) polling calls for 2000 tasks")
        #expect(requests["batch.add_task_collection"] == 20, "2000 tasks in collections of 100")
        #expect(statuses["batch.add_task_collection"]?["413"] == nil)
        let job = try #require(try await d.store().jobs(limit: 1).first)
        let counts = try await d.store().counts(job.id)
        #expect(counts.succeeded == 2000)
        let listed = try await rig.batch.tasks("batchd-\(job.id)", select: ["id"])
        #expect(listed.count == 2000)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a task Batch retried itself shows as its last attempt of all it had, and an earlier attempt is said to be gone")
    func retriedOnBatch() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")   // the rig (the emulator) lives as long as it is held
        let manifest = try write("""
            version: 1
            name: flaky-once
            pool: {dedicatedNodes: 1}
            retries: 2
            tasks: [{id: t0, command: "echo tried; exit 3"}]
            """, "\(d.root)/retried", "job.yaml")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", manifest], timeout: 150)
        #expect(r.code == 1, "the task fails every time: \(r.out) \(r.err)")
        let job = try #require(try await d.store().jobs(limit: 1).first)
        let logs = try await d.batchctl(["logs", job.id, "t0"])
        #expect(logs.out.contains("attempt 3 of 3: exit code 3"), "\(logs.out)\n\(logs.err)")
        #expect(logs.out.contains("tried"))
        let first = try await d.batchctl(["logs", job.id, "t0", "--attempt", "1"])
        #expect(first.code == 4 && first.err.contains("retried the task itself") && first.err.contains("only its last attempt (3)"), "\(first.err)")
        #expect(await d.signal(SIGTERM) == 0)
        withExtendedLifetime(rig) {}
    }

    @Test("with 20% of requests answered 503/429 + Retry-After, wordcount succeeds and nothing is marked failed")
    func transientErrors() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        _ = try await rig.admin("faults", ["error_rate": 0.2, "retry_after": 0.1])
        let dir = try copyExample(d, "flaky")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "300", "\(dir)/job.yaml"], timeout: 320)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let faults = (try await rig.admin("stats"))["faults"] as? [String: Int] ?? [:]
        #expect((faults["503"] ?? 0) + (faults["429"] ?? 0) > 0, "the faults happened: \(faults)")
        let store = try d.store()
        let job = try #require(try await store.jobs(limit: 1).first)
        #expect(job.phase == .succeeded)
        let attempts = try await store.attempts(job.id)
        #expect(attempts.count == 3 && attempts.allSatisfy { $0.outcome == .exited && $0.exitCode == 0 })
        let events = try await store.events(job.id)
        #expect(!events.contains { $0.kind.contains("failed") })
        #expect(tree("\(dir)/output").count == 3)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("SIGKILL in the middle of adding tasks: after a restart no task is added twice and every output arrives")
    func killDuringSubmission() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.5s\n  concurrency: 1")
        let manifest = try write("""
            version: 1
            name: resubmit
            pool: {dedicatedNodes: 2, slotsPerNode: 8}
            tasks: {forEachInteger: {from: 1, to: 400}}
            command: "echo {i} > out-{i}.txt"
            outputs: {patterns: ["out-*.txt"]}
            cleanup: never
            """, "\(d.root)/resubmit", "job.yaml")
        // Slow every request, so the kill lands between collections.
        _ = try await rig.admin("faults", ["latency": 0.3])
        let from = d.log.mark
        let r = try await d.batchctl(["submit", "--backend", "azure", manifest])
        #expect(r.code == 0, "\(r.err)")
        try await d.log.wait(from: from, timeout: 120, "submitting") { $0.contains("job.phase=submitting") }
        var added = 0
        let deadline = ContinuousClock.now + .seconds(120)
        while added < 2 {   // each answer takes ≥ 0.3 s: this loop is paced by the emulator
            added = try await rig.requests("batch.add_task_collection")
            try #require(ContinuousClock.now < deadline, "the daemon added \(added) collections in 120 s")
        }
        #expect(await d.signal(SIGKILL) != 0)
        let job = try #require(try await d.store().jobs(limit: 1).first)
        #expect(job.phase == .submitting, "killed while adding tasks")
        let before = try await rig.batch.tasks("batchd-\(job.id)", select: ["id"]).count
        #expect(before > 0 && before < 400, "\(before) of 400 tasks were in when the daemon died")

        _ = try await rig.admin("faults", ["latency": 0])
        try await d.start(environment: rig.environment())
        let w = try await d.batchctl(["wait", job.id, "--timeout", "300"], timeout: 320)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let ids = try await rig.batch.tasks("batchd-\(job.id)", select: ["id"]).compactMap { $0["id"] as? String }
        #expect(ids.count == 400 && Set(ids).count == 400)
        let store = try d.store()
        #expect(try await store.counts(job.id).succeeded == 400)
        let attempts = try await store.attempts(job.id)
        #expect(attempts.count == 400, "one attempt per task")
        let outputs = tree("\(d.root)/resubmit/output")
        #expect(outputs.count == 400)
        #expect(outputs["out-7.txt"] == Data("7\n".utf8))
        #expect(await d.signal(SIGTERM) == 0)
    }

    /// Submits 4 × `sleep 120` on an auto-pool of 1 node × 2 slots as job
    /// `name` and waits for it to run; returns the log mark from before.
    func submitLongJob(_ d: DaemonHarness, _ name: String) async throws -> Int {
        let manifest = try write("""
            version: 1
            name: \(name)
            pool: {dedicatedNodes: 1, slotsPerNode: 2}
            tasks: {forEachInteger: {from: 1, to: 4}}
            command: "sleep 120"
            """, "\(d.root)/\(name)", "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        try await d.log.wait(from: from, timeout: 120, "the job running") { $0.contains("job.phase=running") }
        return from
    }

    /// Waits for a cancelled job to end; then it must be `cancelled` with its
    /// 4 tasks, and nothing active or pooled left on the service.
    func expectCancelledAndNothingLeft(_ rig: AzureRig, _ d: DaemonHarness, _ jobID: String) async throws {
        let w = try await d.batchctl(["wait", jobID, "--timeout", "120"], timeout: 140)
        #expect(w.code != 0)
        #expect(try await d.store().job(jobID)?.phase == .cancelled, "daemon log:\n\(d.log.lines.suffix(40).joined(separator: "\n"))")
        let jobs = try await rig.batch.jobs()
        #expect(jobs.allSatisfy { $0["state"] as? String != "active" }, "\(jobs.map { $0["state"] ?? "" })")
        #expect(AzureRig.kept(try await rig.batch.pools()).isEmpty)
        #expect(try await d.store().counts(jobID).cancelled == 4)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("cancel on a running auto-pool job leaves no active job and no pool")
    func cancelLeavesNothing() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        _ = try await submitLongJob(d, "long")
        #expect(try await rig.batch.pools().count == 1, "the auto-pool exists")
        let c = try await d.batchctl(["cancel", "long"])
        #expect(c.code == 0, "\(c.err)")
        let job = try #require(try await d.store().jobs(limit: 1).first)
        try await expectCancelledAndNothingLeft(rig, d, job.id)
    }

    @Test("with only Entra ID and the storage account's name (no key), wordcount succeeds: Blob through tokens, task SAS from user delegation keys")
    func noStorageKey() async throws {
        let rig = try AzureRig()
        let d = try DaemonHarness(extra: "azure:\n  pollMinInterval: 0.2s")
        var env = rig.environment(entra: true)
        // The account and where Blob is; no AccountKey, no AZURE_STORAGE_KEY.
        env["AZURE_STORAGE_CONNECTION_STRING"] = "DefaultEndpointsProtocol=http;AccountName=store;BlobEndpoint=\(rig.emulator.url)/store"
        try await d.start(environment: env)
        let dir = try copyExample(d, "wc")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", "\(dir)/job.yaml"], timeout: 150)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        #expect(tree("\(dir)/output").count == 3, "every output came back")
        let stats = try await rig.admin("stats")
        let requests = stats["requests"] as? [String: Int] ?? [:]
        #expect(requests["user.delegation.key"] == 1, "one key served the job's tokens: \(requests)")
        #expect(d.log.lines.contains { $0.contains("storage.auth=\"entra-id, user delegation SAS\"") })
        #expect(await d.signal(SIGTERM) == 0)
        withExtendedLifetime(rig) {}
    }

    @Test("a cancel cut short by an Azure outage and a shutdown is finished at the next start: no active job, no pool")
    func cancelThroughOutageAndRestart() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let from = try await submitLongJob(d, "outage")
        // From now on every Batch and Blob request is refused.
        _ = try await rig.admin("faults", ["outage_after": 0, "retry_after": 0.1])
        #expect(try await d.batchctl(["cancel", "outage"]).code == 0)
        try await d.log.wait(from: from, timeout: 120, "the stop refused") { $0.contains("azure step failed") && $0.contains("terminate the Batch job") }
        #expect(await d.signal(SIGTERM) == 0, "the daemon stops even with the cancel unfinished")
        _ = try await rig.admin("faults", ["outage_after": -1])
        let job = try #require(try await d.store().jobs(limit: 1).first)
        #expect(job.phase == .finalizing || job.phase == .running, "not over yet: \(job.phase)")
        #expect(try await rig.batch.pools().count == 1, "the outage kept the pool")

        try await d.start(environment: rig.environment())
        try await expectCancelledAndNothingLeft(rig, d, job.id)
    }

    @Test("no credential reaches the logs, the database, the state files or what batchctl prints")
    func noSecretsAnywhere() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s", entra: true)
        var printed = ""
        let dir = try copyExample(d, "wc")
        let ok = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", "\(dir)/job.yaml"])
        #expect(ok.code == 0, "\(ok.out)\n\(ok.err)")
        let failing = try write("""
            version: 1
            name: fails
            tasks: {forEachInteger: {from: 1, to: 2}}
            command: "echo oops >&2; exit 3"
            """, "\(d.root)/fails", "job.yaml")
        let bad = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", failing])
        #expect(bad.code != 0)
        for args in [["show", "fails"], ["logs", "fails"], ["logs", "fails", "1"], ["pools"], ["show", "wordcount", "--json"]] {
            let r = try await d.batchctl(args)
            printed += r.out + r.err
        }
        printed += ok.out + ok.err + bad.out + bad.err
        #expect(printed.contains("oops"), "the failing task's stderr came back")
        #expect(await d.signal(SIGTERM) == 0)
        // A daemon whose storage key is not valid base64: the error it prints must not echo it.
        let wrong = "not-base64-\(AzureRig.clientSecret)"
        var env = rig.environment()
        env["AZURE_STORAGE_CONNECTION_STRING"] = "AccountName=store;AccountKey=\(wrong);BlobEndpoint=\(rig.emulator.url)/store"
        try await d.start(environment: env)
        let dir2 = try copyExample(d, "wc2")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", "\(dir2)/job.yaml"])
        #expect(r.code != 0)
        printed += r.out + r.err
        #expect(await d.signal(SIGTERM) == 0)

        var haystack = Data(printed.utf8)
        haystack.append(Data(d.log.lines.joined(separator: "\n").utf8))
        for (_, data) in tree(d.state) { haystack.append(data) }   // the database (and its WAL), jobs/, logs, rejected/
        let text = String(decoding: haystack, as: UTF8.self)
        #expect(text.contains("20") && text.count > 10_000, "something was searched")
        for secret in [AzureEmulatorProcess.key, AzureRig.clientSecret, wrong] {
            #expect(!text.contains(secret), "a credential leaked")
        }
        #expect(text.contains("http request") && text.contains("http.status"), "the daemon ran at debug level, where every request is traced")
        #expect(text.range(of: #"sig=(?!REDACTED)"#, options: .regularExpression) == nil, "a SAS signature leaked")
    }

    @Test("an azure manifest this daemon cannot run is rejected with the reason beside it, nothing lost")
    func rejectedWithTheReason() async throws {
        let bare = try DaemonHarness()
        try await bare.start()   // no Azure credentials at all
        let dir = try copyExample(bare, "wc")
        let r = try await bare.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "60", "\(dir)/job.yaml"])
        #expect(r.code == 2, "\(r.out)\n\(r.err)")
        #expect(r.err.contains("backend 'azure' is not configured in this daemon") && r.err.contains("AZURE_BATCH_ACCOUNT is not set"), "\(r.err)")
        let rejected = try FileManager.default.contentsOfDirectory(atPath: "\(bare.inbox)/rejected")
        #expect(rejected.contains { $0.hasSuffix(".yaml") } && rejected.contains { $0.hasSuffix(".yaml.error") }, "\(rejected)")
        #expect(await bare.signal(SIGTERM) == 0)

        let (_, d) = try await started("azure:\n  maxTokenLifetime: 2d")
        let long = try write("""
            version: 1
            name: long
            tasks: {forEachInteger: {from: 1, to: 2}}
            command: "true"
            limits: {wallClock: 3d}
            """, "\(d.root)/long", "job.yaml")
        let l = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "60", long])
        #expect(l.code == 2)
        #expect(l.err.contains("limits.wallClock") && l.err.contains("azure.maxTokenLifetime"), "\(l.err)")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
