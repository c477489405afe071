import BatchCore
import Foundation
import GRDB
import GRDBSQLite
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Errors of the store, with what to do about them.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var message: String
    /// The database file.
    public var path: String
    /// A printable description naming the file.
    public var description: String { "\(path): \(message)" }
}

/// An observation of the store's changes (`Store.observeChanges`); it ends
/// when released, or cancelled.
public final class StoreObservation: Sendable {
    let end: @Sendable () -> Void
    init(_ end: @escaping @Sendable () -> Void) { self.end = end }
    public func cancel() { end() }
    deinit { end() }
}

/// The database: one SQLite file in WAL mode. The daemon is its only writer;
/// `batchctl` opens it read-only. Every write method is one transaction that
/// keeps the schema's invariants.
public final class Store: Sendable {
    let db: DatabasePool
    let clock: @Sendable () -> Double
    /// Called after each write transaction (`observeChanges`).
    let changeHandlers = Mutex<[UUID: @Sendable () -> Void]>([:])
    /// The database file.
    public let path: String

    /// Opens (creating and migrating) the database for writing.
    public init(path: String, clock: @escaping @Sendable () -> Double) throws {
        self.path = path
        self.clock = clock
        var config = Configuration()
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(5)
        // Three readers, not GRDB's five: the control socket's reads joined
        // the daemon's own in issue 24, and each reader is a connection
        // with its own cache (bench/limits.md, "Peak RSS").
        config.maximumReaderCount = 3
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // A reader's page cache is dropped whenever the daemon has
            // written since its last read (always, while a job runs), so a
            // big one holds memory and saves nothing: 512 KiB, not 2 MiB,
            // for each of the pool's readers (the control socket's reads
            // added to them: bench/limits.md, "Peak RSS").
            if db.configuration.readonly { try db.execute(sql: "PRAGMA cache_size = -512") }
        }
        do {
            db = try DatabasePool(path: path, configuration: config)
            try Schema.migrator.migrate(db)
        } catch {
            throw StoreError(message: "cannot open the database: \(error)", path: path)
        }
        // The daemon's alone (docs/security.md, "Private by default"):
        // batchctl reads through the daemon. SQLite gives the WAL and the
        // shared memory the database's mode when it makes them.
        for file in [path, "\(path)-wal", "\(path)-shm"] { chmod(file, 0o600) }
    }

    /// Opens an existing database read-only (for `batchctl`).
    public init(readOnlyPath path: String) throws {
        self.path = path
        self.clock = { Date().timeIntervalSince1970 }
        if access(path, R_OK) != 0 {
            let e = errno
            let dir = (path as NSString).deletingLastPathComponent
            if e == ENOENT && access(dir, X_OK) == 0 {
                throw StoreError(message: "no database yet (has batchd run with this config?)", path: path)
            }
            throw StoreError(message: e == EACCES || access(dir, X_OK) != 0
                ? "permission denied reading the database (are you in the daemon's group? docs/operations.md)"
                : "cannot read the database: \(String(cString: strerror(e)).lowercased())", path: path)
        }
        var config = Configuration()
        config.readonly = true
        config.busyMode = .timeout(5)
        do {
            db = try DatabasePool(path: path, configuration: config)
        } catch {
            throw StoreError(message: "cannot open the database read-only: \(error)", path: path)
        }
    }

    /// Calls `onChange` after each write transaction of this store (the
    /// daemon's: it is the only writer), until the returned value is
    /// cancelled or released. (A GRDB DatabaseRegionObservation did the
    /// same at 48% more daemon CPU per local task: it follows every
    /// statement.)
    public func observeChanges(_ onChange: @escaping @Sendable () -> Void) -> StoreObservation {
        let id = UUID()
        changeHandlers.withLock { $0[id] = onChange }
        return StoreObservation { [weak self] in _ = self?.changeHandlers.withLock { $0.removeValue(forKey: id) } }
    }

    /// One write transaction, then the change handlers.
    func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let value = try await db.write(updates)
        for handler in changeHandlers.withLock({ Array($0.values) }) { handler() }
        return value
    }

    func event(_ db: Database, _ job: String, _ idx: Int?, _ kind: String, _ message: String, at: Double) throws {
        try db.cachedStatement(sql: "INSERT INTO events (job_id, idx, at, kind, message) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [job, idx, at, kind, message])
    }
}

// MARK: - Writes

extension Store {
    /// Records an accepted job and all its tasks (state pending) in one transaction.
    public func insertJob(_ job: JobRecord, tasks: [TaskSpec], claimed: String? = nil) async throws {
        try await insertJob(job, claimed: claimed) { emit in for t in tasks { try emit(t) } }
    }

    /// Records an accepted job and the tasks `produce` hands to `emit`, one
    /// at a time (state pending), in one transaction: nothing is recorded
    /// if `produce` throws, and no task list is held in memory.
    public func insertJob(_ job: JobRecord, claimed: String? = nil,
                          tasks produce: @escaping @Sendable (_ emit: (TaskSpec) throws -> Void) throws -> Void) async throws {
        let now = clock()
        try await write { db in
            try job.insert(db)
            if let claimed { _ = try IntakeRecord.deleteOne(db, key: claimed) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let stmt = try db.makeStatement(sql: """
                INSERT INTO tasks (job_id, idx, task_id, command, env, inputs, state, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)
                """)
            var count = 0
            // Bound through SQLite's C API: GRDB's StatementArguments boxed
            // each of a million tasks' seven values (a third of acceptance).
            let h = stmt.sqliteStatement
            let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
            func text(_ i: Int32, _ s: String) {
                var s = s
                s.withUTF8 { b in
                    b.withMemoryRebound(to: CChar.self) { c in _ = sqlite3_bind_text(h, i, c.baseAddress ?? UnsafePointer(bitPattern: 1), Int32(c.count), transient) }
                }
            }
            text(1, job.id)
            sqlite3_bind_double(h, 7, now)
            try produce { t in
                sqlite3_reset(h)
                sqlite3_bind_int64(h, 2, Int64(t.index))
                text(3, t.id)
                text(4, t.command)
                text(5, t.env.isEmpty ? "{}" : String(decoding: try encoder.encode(t.env), as: UTF8.self))
                text(6, t.inputs.isEmpty ? "[]" : String(decoding: try encoder.encode(t.inputs), as: UTF8.self))
                let rc = sqlite3_step(h)
                guard rc == SQLITE_DONE else {
                    throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)),
                                        sql: stmt.sql)
                }
                count += 1
            }
            sqlite3_reset(h)
            try db.execute(sql: "INSERT INTO job_counts (job_id, pending) VALUES (?, ?)", arguments: [job.id, count])
            try self.event(db, job.id, nil, "accepted", "job accepted with \(count) tasks from \(job.sourceFile)", at: now)
        }
    }

    /// Moves a job to a new phase (recording the verdict once known).
    public func setPhase(_ jobID: String, _ state: JobState, message: String? = nil) async throws {
        let now = clock()
        try await write { db in
            let verdict: String? = switch state.verdict {
            case .success: "success"
            case .failure: "failure"
            case .cancelled: "cancelled"
            case nil: nil
            }
            try db.execute(sql: """
                UPDATE jobs SET phase = ?, verdict = ?, reason = ?, updated_at = ?,
                  finished_at = CASE WHEN ? THEN ? ELSE NULL END WHERE id = ?
                """, arguments: [state.phase.rawValue, verdict, state.verdict?.reason, now,
                                 state.phase.isTerminal, now, jobID])
            // A job that has ended retries nothing.
            if state.phase.isTerminal { try db.execute(sql: "DELETE FROM retrying WHERE job_id = ?", arguments: [jobID]) }
            try self.event(db, jobID, nil, state.phase.rawValue, message ?? "job \(state.phase.rawValue)", at: now)
        }
    }

    /// Records a user's cancel request; the supervisor acts on it.
    public func requestCancel(_ jobID: String) async throws {
        let now = clock()
        try await write { db in
            try db.execute(sql: "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", arguments: [now, jobID])
            try self.event(db, jobID, nil, "cancel", "cancel requested", at: now)
        }
    }

    /// Reopens a failed job: its failed tasks go back to pending with their
    /// retries restored, the job to `state` (running). Returns how many tasks
    /// will run again.
    public func reopenFailedTasks(_ jobID: String, _ state: JobState) async throws -> Int {
        let now = clock()
        return try await write { db in
            try db.execute(sql: """
                UPDATE tasks SET state = 'pending', counted_attempts = 0, updated_at = ?
                WHERE job_id = ? AND state = 'failed'
                """, arguments: [now, jobID])
            let n = db.changesCount
            try db.execute(sql: """
                UPDATE jobs SET phase = ?, verdict = NULL, reason = NULL, finished_at = NULL, cancel_requested = 0,
                  updated_at = ? WHERE id = ?
                """, arguments: [state.phase.rawValue, now, jobID])
            try self.event(db, jobID, nil, "retry", "retry requested: \(n) failed tasks will run again", at: now)
            return n
        }
    }

    /// Records the staged inputs of a job.
    public func recordInputs(_ jobID: String, _ inputs: [InputRecord]) async throws {
        try await write { db in
            // One cached statement (GRDB's Codable upsert per row was a tenth
            // of the CPU of staging 500 small inputs).
            let insert = try db.cachedStatement(sql: """
                INSERT INTO inputs (job_id, source, sha256, size, blob) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (job_id, source) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, blob = excluded.blob, pruned_at = NULL
                """)
            for i in inputs { try insert.execute(arguments: [i.jobId, i.source, i.sha256, i.size, i.blob]) }
        }
    }

    /// Write-ahead for an attempt: recorded before the process starts, and the
    /// task marked running. Fails if the task already has a live attempt.
    public func beginAttempt(_ jobID: String, idx: Int, attempt: Int, directory: String) async throws {
        let now = clock()
        try await write { db in
            try self.beginAttempt(db, jobID, idx: idx, attempt: attempt, directory: directory, at: now)
        }
    }

    /// `beginAttempt` for the next attempt of a pending task, numbered here,
    /// in one transaction that also reads the task: its record and the
    /// attempt's number, or nil if there is no such task or it is not
    /// pending (so a task queued twice, say once as a retry and once read
    /// again from the database, still runs once). `directory` names the
    /// attempt's directory from its number.
    public func beginNextAttempt(_ jobID: String, idx: Int,
                                 directory: @escaping @Sendable (TaskRecord, Int) -> String) async throws -> (task: TaskRecord, attempt: Int)? {
        let now = clock()
        return try await write { db in
            guard let task = try TaskRecord.fetchOne(
                db.cachedStatement(sql: "SELECT * FROM tasks WHERE job_id = ? AND idx = ?"), arguments: [jobID, idx]),
                task.state == .pending else { return nil }
            let last = try Int.fetchOne(db.cachedStatement(sql: "SELECT MAX(attempt) FROM attempts WHERE job_id = ? AND idx = ?"),
                                        arguments: [jobID, idx]) ?? 0
            try self.beginAttempt(db, jobID, idx: idx, attempt: last + 1, directory: directory(task, last + 1), at: now)
            return (task, last + 1)
        }
    }

    func beginAttempt(_ db: Database, _ jobID: String, idx: Int, attempt: Int, directory: String, at now: Double) throws {
        try db.cachedStatement(sql: """
            INSERT INTO attempts (job_id, idx, attempt, state, directory, started_at) VALUES (?, ?, ?, 'starting', ?, ?)
            """).execute(arguments: [jobID, idx, attempt, directory, now])
        // A strike until the attempt is running: a daemon that dies while
        // launching it leaves the strike (see the schema, v3).
        try db.cachedStatement(sql: "UPDATE tasks SET state = 'running', strikes = strikes + 1, updated_at = ? WHERE job_id = ? AND idx = ?")
            .execute(arguments: [now, jobID, idx])
        guard db.changesCount == 1 else { throw StoreError(message: "no task \(idx) in job \(jobID)", path: path) }
    }

    /// Confirms that an attempt's process started, with its pid.
    public func attemptRunning(_ jobID: String, idx: Int, attempt: Int, pid: Int32) async throws {
        try await write { db in
            try db.cachedStatement(sql: "UPDATE attempts SET state = 'running', pid = ? WHERE job_id = ? AND idx = ? AND attempt = ? AND state = 'starting'")
                .execute(arguments: [Int(pid), jobID, idx, attempt])
            try db.cachedStatement(sql: "UPDATE tasks SET strikes = MAX(strikes - 1, 0) WHERE job_id = ? AND idx = ?").execute(arguments: [jobID, idx])
        }
    }

    /// Records how an attempt ended, the task's resulting state and the outputs
    /// it produced, in one transaction.
    public func finishAttempt(_ jobID: String, idx: Int, attempt: Int, outcome: TaskOutcome,
                              decision: TaskDecision, outputs: [OutputRecord]) async throws {
        let now = clock()
        try await write { db in
            try self.finishAttempt(db, jobID, idx: idx, attempt: attempt, outcome: outcome, decision: decision, outputs: outputs, at: now)
        }
    }

    /// The rows of an attempt's end, inside the caller's transaction.
    func finishAttempt(_ db: Database, _ jobID: String, idx: Int, attempt: Int, outcome: TaskOutcome,
                       decision: TaskDecision, outputs: [OutputRecord], at now: Double, serviceRetries: Int = 0) throws {
        let (code, signal, detail) = Self.columns(of: outcome)
        try db.cachedStatement(sql: """
            UPDATE attempts SET state = 'finished', finished_at = ?, outcome = ?, exit_code = ?, signal = ?,
              detail = ?, counted = ? WHERE job_id = ? AND idx = ? AND attempt = ?
            """).execute(arguments: [now, outcome.kind, code, signal, detail, outcome.countsAsAttempt, jobID, idx, attempt])
        let state: String = switch decision {
        case .succeeded: "succeeded"
        case .retry: "pending"
        case .failed: "failed"
        case .cancelled: "cancelled"
        }
        try db.cachedStatement(sql: """
            UPDATE tasks SET state = ?, counted_attempts = counted_attempts + ?, outcome = ?, exit_code = ?,
              signal = ?, detail = ?, updated_at = ?, strikes = CASE WHEN ? = 'pending' THEN strikes ELSE 0 END
              WHERE job_id = ? AND idx = ?
            """).execute(arguments: [state, (outcome.countsAsAttempt ? 1 : 0) + max(0, serviceRetries), outcome.kind, code, signal, detail, now,
                                     state, jobID, idx])
        for output in outputs { try output.upsert(db) }
        let taskID = try String.fetchOne(db.cachedStatement(sql: "SELECT task_id FROM tasks WHERE job_id = ? AND idx = ?"),
                                         arguments: [jobID, idx]) ?? "\(idx)"
        let verb: String = switch decision {
        case .succeeded: "succeeded"
        case .retry: "will be retried"
        case .failed: "failed"
        case .cancelled: "cancelled"
        }
        try self.event(db, jobID, idx, "task.\(state)", "task \(taskID) attempt \(attempt) \(outcome.summary); \(verb)", at: now)
    }

    /// Marks every task not yet finished as cancelled (after their processes stopped).
    public func cancelPendingTasks(_ jobID: String) async throws {
        let now = clock()
        try await write { db in
            try db.execute(sql: "UPDATE tasks SET state = 'cancelled', updated_at = ? WHERE job_id = ? AND state = 'pending'",
                           arguments: [now, jobID])
        }
    }

    /// Adds a line to a job's history.
    public func note(_ jobID: String, idx: Int? = nil, kind: String, _ message: String) async throws {
        let now = clock()
        try await write { db in try self.event(db, jobID, idx, kind, message, at: now) }
    }

    /// Notes that a job's step failed for a transient reason and will be
    /// tried again: its tries counted, `since` kept from the first.
    public func noteRetrying(_ jobID: String, step: String, reason: String) async throws {
        let now = clock()
        try await write { db in
            try db.cachedStatement(sql: """
                INSERT INTO retrying (job_id, step, reason, tries, since, last) VALUES (?, ?, ?, 1, ?, ?)
                ON CONFLICT (job_id, step) DO UPDATE SET reason = excluded.reason, tries = tries + 1, last = excluded.last
                """).execute(arguments: [jobID, step, reason, now, now])
        }
    }

    /// The step is over (it worked, failed for good, or was stopped).
    public func clearRetrying(_ jobID: String, step: String) async throws {
        try await write { db in
            try db.cachedStatement(sql: "DELETE FROM retrying WHERE job_id = ? AND step = ?").execute(arguments: [jobID, step])
        }
    }

    /// Caches a file's hash.
    public func saveHash(_ record: FileHashRecord) async throws {
        try await saveHashes([record])
    }

    /// Caches many hashes in one transaction.
    public func saveHashes(_ records: [FileHashRecord]) async throws {
        guard !records.isEmpty else { return }
        try await write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT INTO file_hashes (path, device, inode, size, mtime_ns, sha256, md5) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (path) DO UPDATE SET device = excluded.device, inode = excluded.inode, size = excluded.size,
                  mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
                  md5 = COALESCE(excluded.md5, CASE WHEN file_hashes.sha256 = excluded.sha256 THEN file_hashes.md5 END)
                """)
            for r in records { try insert.execute(arguments: [r.path, r.device, r.inode, r.size, r.mtimeNs, r.sha256, r.md5]) }
        }
    }

    static func columns(of outcome: TaskOutcome) -> (Int?, Int?, String?) {
        switch outcome {
        case .exited(let c): return (Int(c), nil, nil)
        case .signaled(let s): return (nil, Int(s), nil)
        case .timedOut(let s): return (nil, nil, "after \(HumanDuration.format(s))")
        case .launchFailed(let r), .outputsFailed(let r): return (nil, nil, r)
        case .lost, .interrupted, .cancelled: return (nil, nil, nil)
        }
    }
}
