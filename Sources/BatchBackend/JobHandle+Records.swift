import BatchCore
import BatchStore
import Foundation

/// What a backend reads and writes about its job, through the handle: the
/// job's tasks and attempts, its staged inputs, and the backend's own
/// records. Each step is retried until it works (a full disk, a locked
/// file) and gives nil only when the daemon stops first; the backend then
/// stops too, and the next start repeats the step. Backends never see the
/// Store: everything they may do to the database is here.
extension JobHandle {
    // MARK: reads

    /// Every task of the job, by index.
    public func tasks() async -> [TaskRecord]? {
        await retrying("read tasks", { try await store.tasks(job.id) })
    }

    /// Up to `limit` tasks after index `after`, by index; throws instead of
    /// retrying (for a step that retries as a whole).
    public func taskPage(after: Int, limit: Int) async throws -> [TaskRecord] {
        try await store.tasks(job.id, after: after, limit: limit)
    }

    /// The tasks with these indices, by index.
    public func tasks(_ indices: [Int]) async -> [TaskRecord]? {
        await retrying("read tasks", { try await store.tasks(job.id, indices: indices) })
    }

    /// One task (`.some(nil)` when there is no such task).
    public func task(_ idx: Int) async -> TaskRecord?? {
        await retrying("read a task", { try await store.task(job.id, idx: idx) })
    }

    /// The attempts of one task, or of every task.
    public func attempts(of idx: Int? = nil) async -> [AttemptRecord]? {
        await retrying("read attempts", { try await store.attempts(job.id, idx: idx) })
    }

    /// Attempts begun and not finished.
    public func liveAttempts() async -> [AttemptRecord]? {
        await retrying("read live attempts", { try await store.liveAttempts(job.id) })
    }

    /// What staging recorded: each input's content and, where it went, its blob.
    public func stagedInputs() async -> [InputRecord]? {
        await retrying("read inputs", { try await store.inputs(job.id) })
    }

    /// What staging recorded for these sources only.
    public func stagedInputs(_ sources: [String]) async -> [InputRecord]? {
        await retrying("read inputs", { try await store.inputs(job.id, sources: sources) })
    }

    /// Hashes computed before, by path (valid while the file is unchanged).
    public func cachedHashes(paths: [String]) async -> [String: FileHashRecord]? {
        await retrying("read the hash cache", { try await store.cachedHashes(paths: paths) })
    }

    // MARK: writes

    /// Records the staged inputs.
    public func recordInputs(_ inputs: [InputRecord]) async -> Void? {
        await retrying("record inputs", { try await store.recordInputs(job.id, inputs) })
    }

    /// Adds hashes to the cache.
    public func saveHashes(_ records: [FileHashRecord]) async -> Void? {
        await retrying("cache the inputs' hashes", { try await store.saveHashes(records) })
    }

    /// Begins the next attempt of a pending task, write-ahead: the task and
    /// the attempt's number, `.some(nil)` when it is not pending (a task
    /// queued twice runs once).
    public func beginNextAttempt(_ idx: Int) async -> (task: TaskRecord, attempt: Int)?? {
        // The escaping closure holds two strings, not a copy of the handle
        // (a dozen references to retain and release for every attempt).
        let (root, id) = (jobsDirectory, job.id)
        return await retrying("record the attempt", {
            try await store.beginNextAttempt(id, idx: idx, directory: { Self.attemptDirectory(root, id, $0.taskId, $1) })
        })
    }

    /// The attempt's process started, with its pid (its strike lifted).
    public func attemptRunning(_ idx: Int, attempt: Int, pid: Int32) async -> Void? {
        await retrying("record the pid", { try await store.attemptRunning(job.id, idx: idx, attempt: attempt, pid: pid) })
    }

    /// A strike against a task while the daemon takes it over (the
    /// crash-loop breaker: see `Reconcile`).
    public func strike(_ idx: Int) async -> Int? {
        await retrying("note the adoption", { try await store.strike(job.id, idx: idx) })
    }

    /// The strike lifted, once the task is watched.
    public func unstrike(_ idx: Int) async -> Void? {
        await retrying("note the adoption", { try await store.unstrike(job.id, idx: idx) })
    }

    /// Records a live attempt cancelled (its process is stopped).
    public func recordCancelled(_ idx: Int, attempt: Int) async -> Void? {
        await retrying("record the cancel", {
            try await store.finishAttempt(job.id, idx: idx, attempt: attempt, outcome: .cancelled, decision: .cancelled, outputs: [])
        })
    }

    /// Records every pending task cancelled.
    public func cancelPendingTasks() async -> Void? {
        await retrying("cancel pending tasks", { try await store.cancelPendingTasks(job.id) })
    }

    /// Records every task not yet finished (pending, or running on a
    /// service that has stopped it) cancelled; `detail` says why, when it
    /// was not the user (the service lost the job).
    public func cancelOpenTasks(detail: String? = nil) async -> Int? {
        await retrying("cancel open tasks", { try await store.cancelOpenTasks(job.id, detail: detail) })
    }

    // MARK: the backend's own records

    /// The backend's value under `key` (`.some(nil)` when there is none).
    public func record<T: Codable & Sendable>(_ key: String, as type: T.Type) async -> T?? {
        await retrying("read the record \(key)", { try await store.backendRecord(job.id, key, as: type) })
    }

    /// Every key and value (JSON text) under `prefix`, by key.
    public func records(prefix: String) async -> [(key: String, value: String)]? {
        await retrying("read the records \(prefix)", { try await store.backendRecords(job.id, prefix: prefix) })
    }

    /// Records `value` under `key`, replacing what was there.
    public func setRecord<T: Codable & Sendable>(_ key: String, _ value: T) async -> Void? {
        await retrying("record \(key)", { try await store.setBackendRecord(job.id, key, value) })
    }

    /// Records bytes moved for `show` and `watch`. Best effort: progress
    /// that cannot be written now is written with the next change.
    public func noteTransfer(_ progress: TransferProgress) async {
        try? await store.setBackendRecord(job.id, TransferProgress.key, progress)
    }

    /// The bytes moved so far (zeros before any).
    public func transfer() async -> TransferProgress? {
        await retrying("read the transfer progress", {
            try await store.backendRecord(job.id, TransferProgress.key, as: TransferProgress.self) ?? TransferProgress()
        })
    }

    /// What the backend adds to the job's report (`show`): lines, and
    /// fields under the backend's name in `show --json`.
    public func setSummary<F: Codable & Sendable>(_ summary: BackendSummary<F>) async -> Void? {
        await setRecord(BackendSummary<F>.key, summary)
    }
}

/// What a backend knows of all its jobs, beyond one job's handle: its
/// records of every job (orphans, the jobs using a pool) and which jobs are
/// unfinished. The daemon gives one to each backend it makes.
public struct BackendLedger: Sendable {
    let store: Store

    /// A ledger on the daemon's database.
    public init(_ store: Store) { self.store = store }

    /// Every job's value under `key`, by job id (a value that no longer
    /// decodes is left out).
    public func records<T: Decodable & Sendable>(_ key: String, as type: T.Type) async throws -> [(jobID: String, value: T)] {
        try await store.backendRecords(key: key).compactMap { row in
            (try? JSONDecoder().decode(T.self, from: Data(row.value.utf8))).map { (row.jobID, $0) }
        }
    }

    /// One job's value under `key`.
    public func record<T: Decodable & Sendable>(_ jobID: String, _ key: String, as type: T.Type) async throws -> T? {
        try await store.backendRecord(jobID, key, as: type)
    }

    /// Records `value` under `key` for a job.
    public func setRecord<T: Encodable & Sendable>(_ jobID: String, _ key: String, _ value: T) async throws {
        try await store.setBackendRecord(jobID, key, value)
    }

    /// The ids of jobs not yet finished.
    public func unfinishedJobIDs() async throws -> Set<String> {
        Set(try await store.unfinishedJobs().map(\.id))
    }

    /// A job by id or name.
    public func job(_ idOrName: String) async throws -> JobRecord? {
        try await store.job(idOrName)
    }
}
