@testable import BatchStore
import BatchCore
import Foundation
import GRDB
import Testing

@Suite("schema migrations")
struct MigrationTests {
    @Test("v11 moves each Azure job's row into the backend's records: what it made, its transfers and its report lines, then drops the table")
    func azureRowsBecomeRecords() async throws {
        let dir = NSTemporaryDirectory() + "batchd-migrate-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/batchd.db"
        do {
            let old = try DatabaseQueue(path: path)
            try Schema.migrator.migrate(old, upTo: "v10-azure-downloads")
            try await old.write { db in
                for id in ["A", "B"] {
                    try db.execute(sql: """
                        INSERT INTO jobs (id, name, backend, phase, source_file, manifest_path, base_directory, destination, retries,
                                          cleanup, output_patterns, shared_inputs, task_count, created_at, updated_at)
                        VALUES (?, 'n', 'azure', 'running', 'n.yaml', '/m', '/b', '/d', 1, 'onSuccess', '[]', '[]', 1, 1, 1)
                        """, arguments: [id])
                }
                try db.execute(sql: """
                    INSERT INTO azure_jobs (job_id, batch_job_id, pool_id, auto_pool, output_container, wall_clock_seconds, token_expiry,
                                            submitted, bytes_total, bytes_uploaded, bytes_skipped, cleaned, downloaded, downloading, downloading_received)
                    VALUES ('A', 'batchd-A', 'p1', 0, 'batchd-A', 3600, 86400, 1, 100, 60, 40, 0, 7, 5, 2),
                           ('B', 'batchd-B-r1', NULL, 1, 'batchd-B', 60, NULL, 0, 0, 0, 0, 1, 0, 0, 0)
                    """)
            }
        }
        let store = try Store(path: path, clock: { 1000 })

        struct Made: Codable, Sendable, Equatable {
            var jobId: String, batchJobId: String, poolId: String?, autoPool: Bool, outputContainer: String
            var wallClockSeconds: Double, tokenExpiry: Double?, submitted: Bool, cleaned: Bool
        }
        #expect(try await store.backendRecord("A", "azure.job", as: Made.self)
            == Made(jobId: "A", batchJobId: "batchd-A", poolId: "p1", autoPool: false, outputContainer: "batchd-A", wallClockSeconds: 3600,
                    tokenExpiry: 86400, submitted: true, cleaned: false))
        #expect(try await store.backendRecord("B", "azure.job", as: Made.self)
            == Made(jobId: "B", batchJobId: "batchd-B-r1", poolId: nil, autoPool: true, outputContainer: "batchd-B", wallClockSeconds: 60,
                    tokenExpiry: nil, submitted: false, cleaned: true))
        #expect(try await store.backendRecord("A", TransferProgress.key, as: TransferProgress.self)
            == TransferProgress(inputBytes: 100, uploaded: 60, alreadyStored: 40, downloaded: 7, underWay: 5, underWayReceived: 2))

        let summary = try #require(try await store.backendRecordText("A", "summary"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(summary.utf8)) as? [String: Any])
        let lines = (object["lines"] as? [[String: String]] ?? []).map { "\($0["label"] ?? "") \($0["text"] ?? "")" }
        #expect(lines == ["azure Batch job batchd-A on pool p1; outputs via container batchd-A", "tokens SAS valid until 1970-01-02T00:00:00Z"])
        let fields = try #require(object["fields"] as? [String: Any])
        #expect(fields["batchJob"] as? String == "batchd-A" && fields["autoPool"] as? Bool == false && fields["tokenExpiry"] as? String == "1970-01-02T00:00:00Z")
        #expect(try await store.backendRecords(key: "azure.job").map(\.jobID) == ["A", "B"])
        let table = try await store.db.read { db in try db.tableExists("azure_jobs") }
        #expect(!table)
    }

    @Test("v12 gives a job an older batchd accepted its spec from its columns, keeps a stored one, and drops the columns the spec repeats")
    func specIsTheOneRecord() async throws {
        let dir = NSTemporaryDirectory() + "batchd-migrate-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/batchd.db"
        var m = Manifest(name: "new", tasks: .list([]))
        m.pool.options = ["vmSize": .text("STANDARD_D4S_V3")]
        let stored = JobSpec(m, backend: BackendKind(rawValue: "azure"), baseDirectory: "/n", destination: "/n/out", submitterUID: 7, sharedInputs: [])
        do {
            let old = try DatabaseQueue(path: path)
            try Schema.migrator.migrate(old, upTo: "v11-azure-records")
            let json = String(decoding: try JSONEncoder().encode(stored), as: UTF8.self)
            try await old.write { db in
                try db.execute(sql: """
                    INSERT INTO jobs (id, name, backend, phase, source_file, manifest_path, base_directory, destination, retries, timeout_seconds,
                                      cleanup, max_parallel, output_patterns, shared_inputs, task_count, created_at, updated_at, spec)
                    VALUES ('OLD', 'old', 'local', 'running', 'o.yaml', '/nonexistent/m.yaml', '/b', '/b/out', 2, 60, 'always', 3,
                            '["*.txt"]', '[{"source":"/b/x","target":"x"}]', 1, 1, 1, NULL),
                           ('NEW', 'new', 'azure', 'running', 'n.yaml', '/m', '/n', '/n/out', 0, NULL, 'onSuccess', NULL, '[]', '[]', 1, 1, 1, ?)
                    """, arguments: [json])
            }
        }
        let store = try Store(path: path, clock: { 1000 })
        let old = try #require(try await store.job("OLD"))
        #expect(old.spec.name == "old" && old.backend.rawValue == "local" && old.baseDirectory == "/b" && old.destination == "/b/out")
        #expect(old.retries == 2 && old.timeoutSeconds == 60 && old.cleanup == .always && old.maxParallel == 3)
        #expect(old.spec.outputPatterns == ["*.txt"] && old.spec.sharedInputs == [InputFile(source: "/b/x", target: "x")])
        #expect(try await store.job("NEW")?.spec == stored)
        let columns = try await store.db.read { db in try db.columns(in: "jobs").map(\.name) }
        #expect(!columns.contains("retries") && !columns.contains("destination") && !columns.contains("shared_inputs") && columns.contains("spec"))
    }
}
