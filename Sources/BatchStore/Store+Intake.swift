import BatchCore
import Foundation
import GRDB

// MARK: - Intake: claimed manifests, the crash-loop breaker, inbox problems

extension Store {
    /// Records a claimed manifest (before it is read), or returns the row a
    /// crash left for it.
    @discardableResult
    public func claimIntake(claimed: String, original: String, owner: Int) async throws -> IntakeRecord {
        let now = clock()
        return try await write { db in
            if let existing = try IntakeRecord.fetchOne(db, key: claimed) { return existing }
            let row = IntakeRecord(claimed: claimed, original: original, owner: owner, starts: 0, claimedAt: now)
            try row.insert(db)
            return row
        }
    }

    /// The row of a claimed manifest, if any.
    public func intake(_ claimed: String) async throws -> IntakeRecord? {
        try await db.read { db in try IntakeRecord.fetchOne(db, key: claimed) }
    }

    /// Notes that the daemon begins reading a claimed manifest: done before
    /// parsing, so a crash while parsing leaves the count raised. Returns
    /// the count of reads begun, this one included.
    public func intakeStarting(_ claimed: String) async throws -> Int {
        try await write { db in
            try db.execute(sql: "UPDATE intake SET starts = starts + 1 WHERE claimed = ?", arguments: [claimed])
            return try Int.fetchOne(db, sql: "SELECT starts FROM intake WHERE claimed = ?", arguments: [claimed]) ?? 1
        }
    }

    /// Forgets a claimed manifest once it is rejected (acceptance forgets it
    /// in `insertJob`'s transaction).
    public func endIntake(_ claimed: String) async throws {
        try await write { db in _ = try IntakeRecord.deleteOne(db, key: claimed) }
    }

    /// Records an inbox entry the daemon could not process or give a `.error`.
    public func recordInboxProblem(_ name: String, reason: String) async throws {
        let now = clock()
        try await write { db in try InboxProblemRecord(name: name, reason: reason, at: now).upsert(db) }
    }

    /// Forgets the problem of an inbox entry that has gone or was handled.
    public func clearInboxProblem(_ name: String) async throws {
        try await write { db in _ = try InboxProblemRecord.deleteOne(db, key: name) }
    }

    /// Inbox entries that could not be processed, newest first.
    public func inboxProblems() async throws -> [InboxProblemRecord] {
        try await db.read { db in try InboxProblemRecord.fetchAll(db, sql: "SELECT * FROM inbox_problems ORDER BY at DESC") }
    }

    /// One more adoption of a task begun (the launch path counts in
    /// `beginAttempt`). Returns the task's strikes, this one included.
    public func strike(_ jobID: String, idx: Int) async throws -> Int {
        try await write { db in
            try db.execute(sql: "UPDATE tasks SET strikes = strikes + 1 WHERE job_id = ? AND idx = ?", arguments: [jobID, idx])
            return try Int.fetchOne(db, sql: "SELECT strikes FROM tasks WHERE job_id = ? AND idx = ?", arguments: [jobID, idx]) ?? 0
        }
    }

    /// An adoption or launch the daemon lived through: one strike less.
    public func unstrike(_ jobID: String, idx: Int) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE tasks SET strikes = MAX(strikes - 1, 0) WHERE job_id = ? AND idx = ?", arguments: [jobID, idx])
        }
    }
}
