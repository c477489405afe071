import BatchCore
import Foundation
import GRDB

/// What the Azure backend records: the Batch objects of a job, staging
/// progress, and task outcomes learnt from the service.
extension Store {
    /// The Azure row of a job.
    public func azureJob(_ jobID: String) async throws -> AzureJobRecord? {
        try await db.read { db in try AzureJobRecord.fetchOne(db, key: jobID) }
    }

    /// Every Azure row (orphan detection: what the database knows).
    public func azureJobs() async throws -> [AzureJobRecord] {
        try await db.read { db in try AzureJobRecord.fetchAll(db) }
    }

    /// Inserts or replaces a job's Azure row.
    public func saveAzureJob(_ record: AzureJobRecord) async throws {
        try await db.write { db in try record.upsert(db) }
    }

    /// Records staging progress.
    public func azureStaging(_ jobID: String, total: Int, uploaded: Int, skipped: Int) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE azure_jobs SET bytes_total = ?, bytes_uploaded = ?, bytes_skipped = ? WHERE job_id = ?",
                           arguments: [total, uploaded, skipped, jobID])
        }
    }

    /// Records download progress: bytes downloaded in all (finished
    /// downloads and what has come of those under way), and the size and
    /// received bytes of the downloads under way.
    public func azureDownloads(_ jobID: String, _ d: DownloadProgress) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE azure_jobs SET downloaded = ?, downloading = ?, downloading_received = ? WHERE job_id = ?",
                           arguments: [d.downloaded, d.underWay, d.underWayReceived, jobID])
        }
    }

    /// A job's download progress (zeros before any).
    public func azureDownloads(_ jobID: String) async throws -> DownloadProgress {
        try await db.read { db in
            guard let r = try Row.fetchOne(db, sql: "SELECT downloaded, downloading, downloading_received FROM azure_jobs WHERE job_id = ?",
                                           arguments: [jobID]) else { return DownloadProgress() }
            return DownloadProgress(downloaded: r[0], underWay: r[1], underWayReceived: r[2])
        }
    }

    /// Marks tasks the service reports running (pending → running).
    public func markRunning(_ jobID: String, taskIDs: [String]) async throws {
        guard !taskIDs.isEmpty else { return }
        let now = clock()
        try await db.write { db in
            let stmt = try db.makeStatement(sql: "UPDATE tasks SET state = 'running', updated_at = ? WHERE job_id = ? AND task_id = ? AND state = 'pending'")
            for id in taskIDs { try stmt.execute(arguments: [now, jobID, id]) }
        }
    }

    /// Records a task's attempt as the service ran it (Batch makes the retries
    /// itself, so this is its last): the attempt, the task's final state and
    /// its outputs, in one transaction.
    public func recordRemoteAttempt(_ jobID: String, idx: Int, attempt: Int, directory: String, startedAt: Double,
                                    outcome: TaskOutcome, decision: TaskDecision, outputs: [OutputRecord]) async throws {
        let now = clock()
        try await db.write { db in
            try AttemptRecord(jobId: jobID, idx: idx, attempt: attempt, state: .starting, pid: nil, directory: directory,
                              startedAt: startedAt, finishedAt: nil, outcome: nil, exitCode: nil, signal: nil, detail: nil,
                              counted: nil).insert(db)
            try self.finishAttempt(db, jobID, idx: idx, attempt: attempt, outcome: outcome, decision: decision, outputs: outputs, at: now)
        }
    }

    /// Marks every task not yet finished (pending or running on the service)
    /// as cancelled.
    public func cancelOpenTasks(_ jobID: String) async throws -> Int {
        let now = clock()
        return try await db.write { db in
            try db.execute(sql: "UPDATE tasks SET state = 'cancelled', updated_at = ? WHERE job_id = ? AND state IN ('pending','running')",
                           arguments: [now, jobID])
            return db.changesCount
        }
    }
}

/// Bytes an Azure job has downloaded (logs and outputs), for `show` and `watch`.
public struct DownloadProgress: Sendable, Equatable {
    /// In all: finished downloads, and what has come of those under way.
    public var downloaded = 0
    /// The size of the downloads under way.
    public var underWay = 0
    /// What has come of them.
    public var underWayReceived = 0

    /// Progress.
    public init(downloaded: Int = 0, underWay: Int = 0, underWayReceived: Int = 0) {
        self.downloaded = downloaded
        self.underWay = underWay
        self.underWayReceived = underWayReceived
    }
}
