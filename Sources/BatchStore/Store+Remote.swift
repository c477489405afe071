import BatchCore
import Foundation
import GRDB

/// What a backend whose service runs the tasks records: tasks the service
/// reports running, and attempts learnt at their end.
extension Store {
    /// Marks tasks the service reports running (pending → running).
    public func markRunning(_ jobID: String, taskIDs: [String]) async throws {
        guard !taskIDs.isEmpty else { return }
        let now = clock()
        try await write { db in
            let stmt = try db.makeStatement(sql: "UPDATE tasks SET state = 'running', updated_at = ? WHERE job_id = ? AND task_id = ? AND state = 'pending'")
            for id in taskIDs { try stmt.execute(arguments: [now, jobID, id]) }
        }
    }

    /// Records a task's attempt as the service ran it: the attempt, the
    /// task's resulting state and its outputs, in one transaction.
    /// `serviceRetries`: failed attempts before it that the service retried
    /// itself (Batch's retry count), unseen here; they count against the
    /// task's retries.
    public func recordRemoteAttempt(_ jobID: String, idx: Int, attempt: Int, directory: String, startedAt: Double,
                                    outcome: TaskOutcome, decision: TaskDecision, outputs: [OutputRecord],
                                    serviceRetries: Int = 0) async throws {
        let now = clock()
        try await write { db in
            try AttemptRecord(jobId: jobID, idx: idx, attempt: attempt, state: .starting, pid: nil, directory: directory,
                              startedAt: startedAt, finishedAt: nil, outcome: nil, exitCode: nil, signal: nil, detail: nil,
                              counted: nil).insert(db)
            try self.finishAttempt(db, jobID, idx: idx, attempt: attempt, outcome: outcome, decision: decision, outputs: outputs, at: now,
                                   serviceRetries: serviceRetries)
        }
    }

    /// Marks every task not yet finished (pending or running on the service)
    /// as cancelled.
    public func cancelOpenTasks(_ jobID: String, detail: String? = nil) async throws -> Int {
        let now = clock()
        return try await write { db in
            try db.execute(sql: """
                UPDATE tasks SET state = 'cancelled', detail = COALESCE(?, detail), updated_at = ?
                  WHERE job_id = ? AND state IN ('pending','running')
                """, arguments: [detail, now, jobID])
            return db.changesCount
        }
    }
}
