import BatchCore
import BatchStore
import Foundation
import Synchronization
import Testing

@Suite("SQLite store")
struct StoreTests {
    let dir: String
    let store: Store

    init() throws {
        dir = NSTemporaryDirectory() + "batchd-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        store = try Store(path: "\(dir)/batchd.db", clock: { 1000 })
    }

    func job(_ id: String = "J1", tasks: Int = 2) async throws {
        let record = Self.record(id, tasks: tasks)
        try await store.insertJob(record, tasks: (0..<tasks).map { TaskSpec(index: $0, id: "t\($0)", command: "true", env: [:], inputs: []) })
    }

    @Test("a retried step is counted from its first failure, replaced by its latest reason, and gone when it ends or the job does")
    func retryingSteps() async throws {
        let now = Mutex(1000.0)
        let clocked = try Store(path: "\(dir)/clocked.db", clock: { now.withLock { $0 } })
        let record = Self.record("J1", tasks: 1)
        try await clocked.insertJob(record, tasks: [TaskSpec(index: 0, id: "t0", command: "true", env: [:], inputs: [])])
        try await clocked.noteRetrying("J1", step: "download t0", reason: "first")
        now.withLock { $0 = 1010 }
        try await clocked.noteRetrying("J1", step: "download t0", reason: "second")
        try await clocked.noteRetrying("J1", step: "upload", reason: "busy")
        #expect(try await clocked.retrying("J1") == [RetryingRecord(step: "download t0", reason: "second", tries: 2, since: 1000, last: 1010),
                                                    RetryingRecord(step: "upload", reason: "busy", tries: 1, since: 1010, last: 1010)])
        try await clocked.clearRetrying("J1", step: "download t0")
        #expect(try await clocked.retrying("J1").map(\.step) == ["upload"])
        try await clocked.setPhase("J1", JobState(phase: .failed, verdict: .failure(reason: "x")))
        #expect(try await clocked.retrying("J1").isEmpty, "an ended job retries nothing")
    }

    @Test("prune takes only what no unfinished job uses and nothing used since the cut-off, per backend; pruned inputs leave the listing")
    func pruneCandidates() async throws {
        let now = Mutex(1000.0)
        let clocked = try Store(path: "\(dir)/prune.db", clock: { now.withLock { $0 } })
        func job(_ id: String, _ backend: BackendKind) async throws {
            let record = Self.record(id, name: id, backend: backend, tasks: 1, createdAt: now.withLock { $0 })
            try await clocked.insertJob(record, tasks: [TaskSpec(index: 0, id: "t0", command: "true", env: [:], inputs: [])])
        }
        try await job("OLD", .local)
        try await clocked.recordInputs("OLD", [InputRecord(jobId: "OLD", source: "/a", sha256: "A", size: 1, blob: nil),
                                               InputRecord(jobId: "OLD", source: "/shared", sha256: "S", size: 2, blob: nil)])
        try await clocked.setPhase("OLD", JobState(phase: .succeeded, verdict: .success))
        now.withLock { $0 = 2000 }
        try await job("RUNNING", .local)
        try await clocked.recordInputs("RUNNING", [InputRecord(jobId: "RUNNING", source: "/shared2", sha256: "S", size: 2, blob: nil)])
        try await job("CLOUD", .azure)
        try await clocked.recordInputs("CLOUD", [InputRecord(jobId: "CLOUD", source: "/a", sha256: "A", size: 1, blob: "md5/a")])
        try await clocked.recordPut([PutFileRecord(backend: "local", source: "/p", sha256: "P", size: 3, blob: nil, uid: 7)])

        // At 2000: A (ended at 1000) is old enough for a 500 s age; S is used by a running job; P was put at 2000.
        #expect(try await clocked.pruneCandidates(backend: "local", usedBefore: 1500).map(\.sha256) == ["A"])
        #expect(try await clocked.pruneCandidates(backend: "local", usedBefore: 2000).map(\.sha256) == ["A", "P"])
        #expect(try await clocked.pruneCandidates(backend: "azure", usedBefore: 3000).isEmpty, "the azure job has not ended")
        try await clocked.markPruned(backend: "local", sha256s: ["A", "P"])
        let listed = try await clocked.storedFiles()
        #expect(Set(listed.map(\.sha256)) == ["S", "A"], "P is gone; A stays listed for the azure job's store")
        #expect(listed.first { $0.sha256 == "A" }?.backends == ["azure"] && listed.first { $0.sha256 == "A" }?.jobs == ["CLOUD"])
        #expect(try await clocked.prunedInputs("OLD") == 1)
        #expect(try await clocked.prunedInputs("CLOUD") == 0)
        // Staged again, an input is in the store again.
        try await clocked.recordInputs("OLD", [InputRecord(jobId: "OLD", source: "/a", sha256: "A", size: 1, blob: nil)])
        #expect(try await clocked.prunedInputs("OLD") == 0)
    }

    @Test("hashes and inputs are written in bulk, a second write of a key replacing the first; many paths read in one call")
    func bulkHashesAndInputs() async throws {
        try await job()
        let hashes = (0..<1200).map { FileHashRecord(path: "/in/f\($0)", device: 1, inode: Int64($0), size: 10, mtimeNs: 5, sha256: "s\($0)", md5: nil) }
        try await store.saveHashes(hashes)
        try await store.saveHashes([FileHashRecord(path: "/in/f7", device: 2, inode: 70, size: 11, mtimeNs: 6, sha256: "new", md5: "m")])
        let read = try await store.cachedHashes(paths: hashes.map(\.path) + ["/not/there"])
        #expect(read.count == 1200, "paths beyond one query's worth are read too")
        #expect(read["/in/f7"] == FileHashRecord(path: "/in/f7", device: 2, inode: 70, size: 11, mtimeNs: 6, sha256: "new", md5: "m"))
        #expect(read["/in/f1199"]?.sha256 == "s1199" && read["/not/there"] == nil)

        try await store.recordInputs("J1", [InputRecord(jobId: "J1", source: "/in/a", sha256: "x", size: 1, blob: nil),
                                            InputRecord(jobId: "J1", source: "/in/b", sha256: "y", size: 2, blob: "md5/b")])
        try await store.recordInputs("J1", [InputRecord(jobId: "J1", source: "/in/a", sha256: "z", size: 3, blob: "md5/a")])
        #expect(try await store.inputs("J1") == [InputRecord(jobId: "J1", source: "/in/a", sha256: "z", size: 3, blob: "md5/a"),
                                                 InputRecord(jobId: "J1", source: "/in/b", sha256: "y", size: 2, blob: "md5/b")])
    }

    @Test("a few tasks, and their inputs, are read by index and by source without the job's whole list, past one query's worth")
    func someTasksAndInputs() async throws {
        try await job(tasks: 1200)
        let wanted = [1199, 3, 600, 7] + Array(100..<700)
        let read = try await store.tasks("J1", indices: wanted + [5000])
        #expect(read.map(\.idx) == Set(wanted).sorted(), "each wanted task once, in order; no such index, nothing")
        try await store.recordInputs("J1", (0..<1200).map { InputRecord(jobId: "J1", source: "/in/\($0)", sha256: "s\($0)", size: $0, blob: nil) })
        let inputs = try await store.inputs("J1", sources: (0..<600).map { "/in/\($0 * 2)" } + ["/in/none"])
        #expect(inputs.count == 600 && inputs.allSatisfy { Int($0.source.dropFirst(4))! % 2 == 0 })
    }

    @Test("a job's spec is its one record: stored at acceptance and read back as the type, the backend's pool options included")
    func specRoundTrip() async throws {
        var m = Manifest(name: "n", tasks: .list([TaskEntry(command: "true")]))
        m.pool.id = "p1"
        m.pool.slotsPerNode = 4
        m.pool.options = ["vmSize": .text("STANDARD_D2S_V3"), "idleTimeout": .number(90.5), "memory": .int(4096)]
        m.limits.wallClockSeconds = 3600
        m.retries = 3
        let spec = JobSpec(m, backend: .azure, baseDirectory: "/b", destination: "/d", submitterUID: 1001,
                           sharedInputs: [InputFile(source: "/b/x", target: "x")])
        try await store.insertJob(JobRecord(id: "J1", phase: .accepted, sourceFile: "n.yaml", manifestPath: "/m", taskCount: 1, createdAt: 1,
                                            updatedAt: 1, spec: spec),
                                  tasks: [TaskSpec(index: 0, id: "t0", command: "true", env: [:], inputs: [])])
        let read = try #require(try await store.job("J1"))
        #expect(read.spec == spec && read.retries == 3 && read.maxParallel == 4 && read.name == "n" && read.backend == .azure)
    }

    /// A job row for `spec`'s defaults.
    static func record(_ id: String, name: String = "n", backend: BackendKind = .local, tasks: Int, createdAt: Double = 1) -> JobRecord {
        var m = Manifest(name: name, tasks: .list([TaskEntry(command: "true")]))
        m.retries = 1
        return JobRecord(id: id, phase: .accepted, sourceFile: "n.yaml", manifestPath: "/m", taskCount: tasks, createdAt: createdAt, updatedAt: 1,
                         spec: JobSpec(m, backend: backend, baseDirectory: "/b", destination: "/d", submitterUID: 0, sharedInputs: []))
    }

    @Test("a backend's records: typed values under its keys, replaced in place, listed by prefix, gone with the job")
    func backendRecords() async throws {
        struct Intent: Codable, Equatable { var tag: String; var tasks: [Int] }
        try await job()
        #expect(try await store.backendRecord("J1", "array.1", as: Intent.self) == nil)
        try await store.setBackendRecord("J1", "array.1", Intent(tag: "batchd-J1-1", tasks: [0, 1]))
        try await store.setBackendRecord("J1", "array.2", Intent(tag: "batchd-J1-2", tasks: [2]))
        try await store.setBackendRecord("J1", "pool", "p1")
        #expect(try await store.backendRecord("J1", "array.1", as: Intent.self) == Intent(tag: "batchd-J1-1", tasks: [0, 1]))
        try await store.setBackendRecord("J1", "pool", "p2")
        #expect(try await store.backendRecord("J1", "pool", as: String.self) == "p2")
        #expect(try await store.backendRecords("J1", prefix: "array.").map(\.key) == ["array.1", "array.2"])
        await #expect(throws: (any Error).self) { try await store.setBackendRecord("nope", "pool", "p") }
        await #expect(throws: (any Error).self) { try await store.setBackendRecord("J1", "", "p") }
    }

    @Test func databaseIsWAL() async throws {
        try await job()
        #expect(FileManager.default.fileExists(atPath: "\(dir)/batchd.db-wal"))
    }

    @Test func jobAndTasksAreRecordedTogether() async throws {
        try await job(tasks: 3)
        #expect(try await store.counts("J1") == TaskCounts(pending: 3))
        #expect(try await store.unfinishedJobs().map(\.id) == ["J1"])
        #expect(try await store.job("n")?.id == "J1")
        #expect(try await store.events("J1").first?.kind == "accepted")
    }

    @Test func attemptLifecycleUpdatesTheTask() async throws {
        try await job()
        try await store.beginAttempt("J1", idx: 0, attempt: 1, directory: "/a1")
        #expect(try await store.counts("J1") == TaskCounts(pending: 1, running: 1))
        #expect(try await store.liveAttempts("J1").count == 1)
        try await store.attemptRunning("J1", idx: 0, attempt: 1, pid: 4242)
        try await store.finishAttempt("J1", idx: 0, attempt: 1, outcome: .exited(code: 2), decision: .retry, outputs: [])
        var task = try #require(try await store.task("J1", idx: 0))
        #expect(task.state == .pending)
        #expect(task.countedAttempts == 1)
        #expect(task.exitCode == 2)
        // A lost attempt does not count.
        try await store.beginAttempt("J1", idx: 0, attempt: 2, directory: "/a2")
        try await store.finishAttempt("J1", idx: 0, attempt: 2, outcome: .lost, decision: .retry, outputs: [])
        task = try #require(try await store.task("J1", idx: 0))
        #expect(task.countedAttempts == 1)
        #expect(try await store.beginNextAttempt("J1", idx: 0, directory: { _, _ in "/a3" })?.attempt == 3)
        try await store.finishAttempt("J1", idx: 0, attempt: 3, outcome: .exited(code: 0), decision: .succeeded,
                                      outputs: [OutputRecord(jobId: "J1", path: "o.txt", idx: 0, size: 3, sha256: "abc")])
        #expect(try await store.outputs("J1").map(\.path) == ["o.txt"])
        #expect(try await store.liveAttempts("J1").isEmpty)
    }

    @Test("a job's counts are kept through every change of its tasks, the same as counting them")
    func countsAreKept() async throws {
        try await job(tasks: 5)
        let recount: @Sendable () async throws -> TaskCounts = {
            var c = TaskCounts()
            for t in try await store.tasks("J1") {
                switch t.state {
                case .pending: c.pending += 1
                case .running: c.running += 1
                case .succeeded: c.succeeded += 1
                case .failed: c.failed += 1
                case .cancelled: c.cancelled += 1
                }
            }
            return c
        }
        let first = try #require(try await store.beginNextAttempt("J1", idx: 0, directory: { "/a/\($0.taskId)/\($1)" }))
        #expect(first.attempt == 1)
        _ = try await store.beginNextAttempt("J1", idx: 1, directory: { _, _ in "/b" })
        #expect(try await store.counts("J1") == TaskCounts(pending: 3, running: 2))
        try await store.finishAttempt("J1", idx: 0, attempt: 1, outcome: .exited(code: 1), decision: .retry, outputs: [])
        try await store.finishAttempt("J1", idx: 1, attempt: 1, outcome: .exited(code: 0), decision: .succeeded,
                                      outputs: [OutputRecord(jobId: "J1", path: "x", idx: 1, size: 1, sha256: "s")])
        #expect(try await store.counts("J1") == recount())
        let second = try #require(try await store.beginNextAttempt("J1", idx: 0, directory: { _, _ in "/a2" }))
        #expect(second.attempt == 2)
        // A task already running (or done) is not begun again, however often it was queued.
        #expect(try await store.beginNextAttempt("J1", idx: 0, directory: { _, _ in "/a3" }) == nil)
        #expect(try await store.beginNextAttempt("J1", idx: 1, directory: { _, _ in "/b2" }) == nil)
        try await store.finishAttempt("J1", idx: 0, attempt: 2, outcome: .exited(code: 1), decision: .failed, outputs: [])
        #expect(try await store.counts("J1") == TaskCounts(pending: 3, succeeded: 1, failed: 1))
        #expect(try await store.outputCount("J1") == 1)
        #expect(try await store.failedTasks("J1", limit: 10, offset: 0).map(\.idx) == [0])
        #expect(try await store.reopenFailedTasks("J1", JobState(phase: .running, verdict: nil)) == 1)
        #expect(try await store.counts("J1") == recount())
        try await store.cancelPendingTasks("J1")
        #expect(try await store.counts("J1") == TaskCounts(succeeded: 1, cancelled: 4))
        #expect(try await store.counts("J1") == recount())
        // The pending queue is read a chunk at a time, after an index.
        try await job("J2", tasks: 5)
        #expect(try await store.pendingIndices("J2", after: -1, limit: 2) == [0, 1])
        #expect(try await store.pendingIndices("J2", after: 1, limit: 10) == [2, 3, 4])
    }

    @Test("the schema refuses a second live attempt of one task")
    func oneLiveAttempt() async throws {
        try await job()
        try await store.beginAttempt("J1", idx: 1, attempt: 1, directory: "/a")
        await #expect(throws: (any Error).self) {
            try await store.beginAttempt("J1", idx: 1, attempt: 2, directory: "/b")
        }
    }

    @Test("attempts must belong to a task, and a finished job has an end time")
    func constraints() async throws {
        try await job()
        await #expect(throws: (any Error).self) {
            try await store.beginAttempt("J1", idx: 9, attempt: 1, directory: "/nope")  // no such task
        }
        try await store.setPhase("J1", JobState(phase: .succeeded, verdict: .success))
        let j = try #require(try await store.job("J1"))
        #expect(j.finishedAt != nil)
        #expect(j.jobVerdict == .success)
        #expect(try await store.unfinishedJobs().isEmpty)
    }

    @Test func readOnlyOpenSeesWritesAndCannotWrite() async throws {
        try await job()
        let reader = try Store(readOnlyPath: "\(dir)/batchd.db")
        #expect(try await reader.job("J1") != nil)
        await #expect(throws: (any Error).self) { try await reader.requestCancel("J1") }
    }

    @Test func migrationsAreIdempotentAcrossReopen() async throws {
        try await job()
        let again = try Store(path: "\(dir)/batchd.db", clock: { 2000 })
        #expect(try await again.job("J1")?.taskCount == 2)
    }
}
