import BatchCore
import GRDB

extension Store {
    /// Jobs, newest first.
    public func jobs(limit: Int = 100) async throws -> [JobRecord] {
        try await db.read { db in
            try JobRecord.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?", arguments: [limit])
        }
    }

    /// The latest jobs of one submitter (their uid), newest first.
    public func jobs(limit: Int = 100, submitter uid: UInt32) async throws -> [JobRecord] {
        try await db.read { db in
            try JobRecord.fetchAll(db, sql: "SELECT * FROM jobs WHERE json_extract(spec, '$.submitterUID') = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                                   arguments: [Int64(uid), limit])
        }
    }

    /// A job by id; or, by name or inbox file, the latest of one
    /// submitter's (their names mean their jobs: another's of the same
    /// name is not theirs to find).
    public func job(_ idOrName: String, submitter uid: UInt32) async throws -> JobRecord? {
        try await db.read { db in
            if let j = try JobRecord.fetchOne(db, key: idOrName) { return j }
            for column in ["name", "source_file"] {
                if let j = try JobRecord.fetchOne(db, sql: "SELECT * FROM jobs WHERE \(column) = ? AND json_extract(spec, '$.submitterUID') = ? "
                                                      + "ORDER BY created_at DESC, id DESC LIMIT 1", arguments: [idOrName, Int64(uid)]) { return j }
            }
            return nil
        }
    }

    /// A job by id, or the latest job with that name, or the job made from
    /// the inbox file of that name.
    public func job(_ idOrName: String) async throws -> JobRecord? {
        try await db.read { db in
            if let j = try JobRecord.fetchOne(db, key: idOrName) { return j }
            if let j = try JobRecord.fetchOne(db, sql: "SELECT * FROM jobs WHERE name = ? ORDER BY created_at DESC, id DESC LIMIT 1",
                                              arguments: [idOrName]) { return j }
            // The inbox file it came from, as `batchctl submit` prints it.
            return try JobRecord.fetchOne(db, sql: "SELECT * FROM jobs WHERE source_file = ? ORDER BY created_at DESC, id DESC LIMIT 1",
                                          arguments: [idOrName])
        }
    }

    /// The job created from an inbox file of this name, if any (`job(_:)`
    /// falls back to it too, after the id and the name).
    public func job(sourceFile: String) async throws -> JobRecord? {
        try await db.read { db in
            try JobRecord.fetchOne(db, sql: "SELECT * FROM jobs WHERE source_file = ? ORDER BY created_at DESC LIMIT 1", arguments: [sourceFile])
        }
    }


    /// Jobs not yet in a terminal phase, oldest first.
    public func unfinishedJobs() async throws -> [JobRecord] {
        try await db.read { db in
            try JobRecord.fetchAll(db, sql: "SELECT * FROM jobs WHERE finished_at IS NULL ORDER BY created_at, id")
        }
    }

    /// A job's tasks in order.
    public func tasks(_ jobID: String) async throws -> [TaskRecord] {
        try await db.read { db in
            try TaskRecord.fetchAll(db, sql: "SELECT * FROM tasks WHERE job_id = ? ORDER BY idx", arguments: [jobID])
        }
    }

    /// Up to `limit` tasks of a job with an index above `after`, in order:
    /// a job's tasks read a page at a time, so a million-task job is never
    /// in memory at once.
    public func tasks(_ jobID: String, after: Int, limit: Int) async throws -> [TaskRecord] {
        try await db.read { db in
            try TaskRecord.fetchAll(db, sql: "SELECT * FROM tasks WHERE job_id = ? AND idx > ? ORDER BY idx LIMIT ?", arguments: [jobID, after, limit])
        }
    }

    /// Seconds its ended attempts ran, summed: the core time a job used on a
    /// backend where an attempt holds one core (`limits.coreHours`).
    public func coreSecondsUsed(_ jobID: String) async throws -> Double {
        try await db.read { db in
            try Double.fetchOne(db, sql: """
                SELECT COALESCE(SUM(MAX(finished_at - started_at, 0)), 0) FROM attempts
                WHERE job_id = ? AND finished_at IS NOT NULL
                """, arguments: [jobID]) ?? 0
        }
    }

    /// The steps of a job being retried, the longest-failing first.
    public func retrying(_ jobID: String) async throws -> [RetryingRecord] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT step, reason, tries, since, last FROM retrying WHERE job_id = ? ORDER BY since, step LIMIT 20",
                             arguments: [jobID]).map {
                RetryingRecord(step: $0["step"], reason: $0["reason"], tries: $0["tries"], since: $0["since"], last: $0["last"])
            }
        }
    }

    /// One task by id or index.
    public func task(_ jobID: String, _ idOrIndex: String) async throws -> TaskRecord? {
        try await db.read { db in
            if let t = try TaskRecord.fetchOne(db, sql: "SELECT * FROM tasks WHERE job_id = ? AND task_id = ?", arguments: [jobID, idOrIndex]) {
                return t
            }
            guard let i = Int(idOrIndex) else { return nil }
            return try TaskRecord.fetchOne(db, sql: "SELECT * FROM tasks WHERE job_id = ? AND idx = ?", arguments: [jobID, i])
        }
    }

    /// Task counts by state: one row, kept as tasks change (schema v6).
    public func counts(_ jobID: String) async throws -> TaskCounts {
        try await db.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM job_counts WHERE job_id = ?", arguments: [jobID]) else { return TaskCounts() }
            var c = TaskCounts()
            c.pending = row["pending"]
            c.running = row["running"]
            c.succeeded = row["succeeded"]
            c.failed = row["failed"]
            c.cancelled = row["cancelled"]
            return c
        }
    }

    /// How many output files a job has collected (one row, schema v6).
    public func outputCount(_ jobID: String) async throws -> Int {
        try await db.read { db in try Int.fetchOne(db, sql: "SELECT outputs FROM job_counts WHERE job_id = ?", arguments: [jobID]) ?? 0 }
    }

    /// A page of a job's failed tasks, in order.
    public func failedTasks(_ jobID: String, limit: Int, offset: Int) async throws -> [TaskRecord] {
        try await db.read { db in
            try TaskRecord.fetchAll(db, sql: "SELECT * FROM tasks WHERE job_id = ? AND state = 'failed' ORDER BY idx LIMIT ? OFFSET ?",
                                    arguments: [jobID, limit, offset])
        }
    }

    /// A page of a job's collected outputs, by path.
    public func outputs(_ jobID: String, limit: Int, offset: Int) async throws -> [OutputRecord] {
        try await db.read { db in
            try OutputRecord.fetchAll(db, sql: "SELECT * FROM outputs WHERE job_id = ? ORDER BY path LIMIT ? OFFSET ?", arguments: [jobID, limit, offset])
        }
    }

    /// A page of a job's collected files in task order (by index, then
    /// path), or of one task's.
    public func outputsByTask(_ jobID: String, idx: Int? = nil, limit: Int, offset: Int) async throws -> [OutputRecord] {
        try await db.read { db in
            if let idx {
                return try OutputRecord.fetchAll(db, sql: "SELECT * FROM outputs WHERE job_id = ? AND idx = ? ORDER BY path LIMIT ? OFFSET ?",
                                                 arguments: [jobID, idx, limit, offset])
            }
            return try OutputRecord.fetchAll(db, sql: "SELECT * FROM outputs WHERE job_id = ? ORDER BY idx, path LIMIT ? OFFSET ?",
                                             arguments: [jobID, limit, offset])
        }
    }

    /// The ids of some of a job's tasks, by index.
    public func taskIDs(_ jobID: String, indices: Set<Int>) async throws -> [Int: String] {
        try await db.read { db in
            var out: [Int: String] = [:]
            let stmt = try db.cachedStatement(sql: "SELECT task_id FROM tasks WHERE job_id = ? AND idx = ?")
            for i in indices { out[i] = try String.fetchOne(stmt, arguments: [jobID, i]) }
            return out
        }
    }

    /// The distinct per-task input lists of a job (JSON arrays of
    /// `InputFile`), read without holding its tasks in memory.
    public func taskInputLists(_ jobID: String) async throws -> [String] {
        try await db.read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT inputs FROM tasks WHERE job_id = ? AND inputs != '[]'", arguments: [jobID])
        }
    }

    /// Attempts of a job (or of one task), in order.
    public func attempts(_ jobID: String, idx: Int? = nil) async throws -> [AttemptRecord] {
        try await db.read { db in
            if let idx {
                return try AttemptRecord.fetchAll(db, sql: "SELECT * FROM attempts WHERE job_id = ? AND idx = ? ORDER BY attempt",
                                                  arguments: [jobID, idx])
            }
            return try AttemptRecord.fetchAll(db, sql: "SELECT * FROM attempts WHERE job_id = ? ORDER BY idx, attempt", arguments: [jobID])
        }
    }

    /// Attempts recorded as started but not finished: what a crash may have left.
    public func liveAttempts(_ jobID: String) async throws -> [AttemptRecord] {
        try await db.read { db in
            try AttemptRecord.fetchAll(db, sql: "SELECT * FROM attempts WHERE job_id = ? AND state != 'finished' ORDER BY idx", arguments: [jobID])
        }
    }

    /// Collected outputs of a job.
    public func outputs(_ jobID: String) async throws -> [OutputRecord] {
        try await db.read { db in
            try OutputRecord.fetchAll(db, sql: "SELECT * FROM outputs WHERE job_id = ? ORDER BY path", arguments: [jobID])
        }
    }

    /// Staged inputs of a job with these sources (primary-key reads, 500 at
    /// a time): what a few tasks need, without the job's whole list.
    public func inputs(_ jobID: String, sources: [String]) async throws -> [InputRecord] {
        var out: [InputRecord] = []
        for start in stride(from: 0, to: sources.count, by: 500) {
            let chunk = Array(sources[start..<min(start + 500, sources.count)])
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            out += try await db.read { db in
                try InputRecord.fetchAll(db, sql: "SELECT * FROM inputs WHERE job_id = ? AND source IN (\(marks))",
                                         arguments: StatementArguments([jobID] + chunk))
            }
        }
        return out
    }

    /// Staged inputs of a job.
    public func inputs(_ jobID: String) async throws -> [InputRecord] {
        try await db.read { db in
            try InputRecord.fetchAll(db, sql: "SELECT * FROM inputs WHERE job_id = ? ORDER BY source", arguments: [jobID])
        }
    }

    /// A job's history.
    public func events(_ jobID: String) async throws -> [EventRecord] {
        try await db.read { db in
            try EventRecord.fetchAll(db, sql: "SELECT * FROM events WHERE job_id = ? ORDER BY seq", arguments: [jobID])
        }
    }

    /// A cached file hash.
    public func cachedHash(path: String) async throws -> FileHashRecord? {
        try await db.read { db in try FileHashRecord.fetchOne(db, key: path) }
    }

    /// The cached hashes of many paths in one read (a job's inputs), by path.
    public func cachedHashes(paths: [String]) async throws -> [String: FileHashRecord] {
        try await db.read { db in
            var out: [String: FileHashRecord] = [:]
            for chunk in stride(from: 0, to: paths.count, by: 500).map({ paths[$0..<min(paths.count, $0 + 500)] }) {
                for r in try FileHashRecord.fetchAll(db, keys: Array(chunk)) { out[r.path] = r }
            }
            return out
        }
    }
}

extension Store {
    /// The tasks with these indices (500 at a time), in order.
    public func tasks(_ jobID: String, indices: [Int]) async throws -> [TaskRecord] {
        var out: [TaskRecord] = []
        let sorted = indices.sorted()
        for start in stride(from: 0, to: sorted.count, by: 500) {
            let chunk = Array(sorted[start..<min(start + 500, sorted.count)])
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            out += try await db.read { db in
                try TaskRecord.fetchAll(db, sql: "SELECT * FROM tasks WHERE job_id = ? AND idx IN (\(marks)) ORDER BY idx",
                                        arguments: StatementArguments([jobID] + chunk.map { $0 as (any DatabaseValueConvertible) }))
            }
        }
        return out
    }

    /// One task by index.
    public func task(_ jobID: String, idx: Int) async throws -> TaskRecord? {
        try await db.read { db in
            try TaskRecord.fetchOne(db, sql: "SELECT * FROM tasks WHERE job_id = ? AND idx = ?", arguments: [jobID, idx])
        }
    }

    /// Up to `limit` indices of a job's pending tasks after index `after`, in
    /// order: the local backend reads its queue a chunk at a time.
    public func pendingIndices(_ jobID: String, after: Int, limit: Int) async throws -> [Int] {
        try await db.read { db in
            try Int.fetchAll(db, sql: "SELECT idx FROM tasks WHERE job_id = ? AND idx > ? AND state = 'pending' ORDER BY idx LIMIT ?",
                             arguments: [jobID, after, limit])
        }
    }
}

extension Store {
    /// SQLite's `PRAGMA integrity_check`: `["ok"]` for a sound file, else
    /// what is wrong (the crash-point walk checks it after every restart).
    public func integrityCheck() async throws -> [String] {
        try await db.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
    }
}
