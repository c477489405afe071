import BatchCore
import GRDB

extension Store {
    /// Jobs, newest first.
    public func jobs(limit: Int = 100) async throws -> [JobRecord] {
        try await db.read { db in
            try JobRecord.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?", arguments: [limit])
        }
    }

    /// A job by id, or the latest job with that name.
    public func job(_ idOrName: String) async throws -> JobRecord? {
        try await db.read { db in
            if let j = try JobRecord.fetchOne(db, key: idOrName) { return j }
            return try JobRecord.fetchOne(db, sql: "SELECT * FROM jobs WHERE name = ? ORDER BY created_at DESC, id DESC LIMIT 1",
                                          arguments: [idOrName])
        }
    }

    /// The job created from an inbox file of this name, if any.
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

    /// Task counts by state.
    public func counts(_ jobID: String) async throws -> TaskCounts {
        try await db.read { db in
            var c = TaskCounts()
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM tasks WHERE job_id = ? GROUP BY state", arguments: [jobID]) {
                let n: Int = row["n"]
                switch row["state"] as String {
                case "pending": c.pending = n
                case "running": c.running = n
                case "succeeded": c.succeeded = n
                case "failed": c.failed = n
                default: c.cancelled = n
                }
            }
            return c
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


    /// The number of the next attempt of a task.
    public func nextAttemptNumber(_ jobID: String, idx: Int) async throws -> Int {
        try await db.read { db in
            (try Int.fetchOne(db, sql: "SELECT MAX(attempt) FROM attempts WHERE job_id = ? AND idx = ?", arguments: [jobID, idx]) ?? 0) + 1
        }
    }
}

extension Store {
    /// One task by index.
    public func task(_ jobID: String, idx: Int) async throws -> TaskRecord? {
        try await db.read { db in
            try TaskRecord.fetchOne(db, sql: "SELECT * FROM tasks WHERE job_id = ? AND idx = ?", arguments: [jobID, idx])
        }
    }

    /// Indices of a job's pending tasks, in order.
    public func pendingIndices(_ jobID: String) async throws -> [Int] {
        try await db.read { db in
            try Int.fetchAll(db, sql: "SELECT idx FROM tasks WHERE job_id = ? AND state = 'pending' ORDER BY idx", arguments: [jobID])
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
