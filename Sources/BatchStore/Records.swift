import BatchCore
import Foundation
import GRDB

/// A job row.
public struct JobRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "jobs"
    /// Columns are snake_case in SQL.
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    /// Columns are snake_case in SQL.
    public static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.convertToSnakeCase

    public var id: String
    public var name: String
    public var backend: BackendKind
    public var phase: JobPhase
    /// How the job ended, once known.
    public var verdict: VerdictKind?
    /// Why the job failed (or what cancelled it).
    public var reason: String?
    /// The file's name in the inbox.
    public var sourceFile: String
    /// The claimed copy of the manifest in the state directory.
    public var manifestPath: String
    public var taskCount: Int
    public var cancelRequested: Bool
    public var createdAt: Double
    public var updatedAt: Double
    public var finishedAt: Double?
    /// The job as accepted (JSON): the one record of what it asks for. Its
    /// columns are only what lists, looks up and follows jobs (v12 dropped
    /// the copies of the spec's fields).
    public var spec: JobSpec

    /// Where relative paths started.
    public var baseDirectory: String { spec.baseDirectory }
    /// Absolute output directory.
    public var destination: String { spec.destination }
    /// How many times a failed task is tried again.
    public var retries: Int { spec.retries }
    /// Per-attempt time limit in seconds.
    public var timeoutSeconds: Double? { spec.timeoutSeconds }
    /// What to delete when the job ends.
    public var cleanup: CleanupPolicy { spec.cleanup }
    /// Most tasks of this job at once (pool.slotsPerNode), nil for no own limit.
    public var maxParallel: Int? { spec.pool.slotsPerNode }

    /// The stored verdict as the core's value.
    public var jobVerdict: Verdict? {
        switch verdict {
        case .success?: return .success
        case .cancelled?: return .cancelled
        case .failure?: return .failure(reason: reason ?? "failed")
        case nil: return nil
        }
    }

    /// The state machine's view of this row.
    public var state: JobState { JobState(phase: phase, verdict: jobVerdict) }

    /// Creates a row.
    public init(id: String, phase: JobPhase, verdict: VerdictKind? = nil, reason: String? = nil, sourceFile: String, manifestPath: String,
                taskCount: Int, cancelRequested: Bool = false, createdAt: Double, updatedAt: Double, finishedAt: Double? = nil, spec: JobSpec) {
        self.id = id
        self.name = spec.name
        self.backend = spec.backend
        self.phase = phase
        self.verdict = verdict
        self.reason = reason
        self.sourceFile = sourceFile
        self.manifestPath = manifestPath
        self.taskCount = taskCount
        self.cancelRequested = cancelRequested
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.finishedAt = finishedAt
        self.spec = spec
    }
}

/// A task row.
public struct TaskRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "tasks"
    /// Columns are snake_case in SQL.
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    /// Columns are snake_case in SQL.
    public static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.convertToSnakeCase

    public var jobId: String
    public var idx: Int
    public var taskId: String
    public var command: String
    /// The task's own environment variables (stored as a JSON object).
    public var env: [String: String]
    /// The task's own input files (the shared ones are in the job's spec;
    /// stored as a JSON array).
    public var inputs: [InputFile]
    public var state: TaskState
    /// Attempts that used up a retry.
    public var countedAttempts: Int
    /// Last attempt's outcome kind, exit code, signal and detail.
    public var outcome: OutcomeKind?
    public var exitCode: Int?
    public var signal: Int?
    public var detail: String?
    public var updatedAt: Double
    /// Launches or adoptions the daemon did not live through (see the schema).
    public var strikes: Int

    /// Creates a row.
    public init(jobId: String, idx: Int, taskId: String, command: String, env: [String: String], inputs: [InputFile], state: TaskState, countedAttempts: Int, outcome: OutcomeKind?, exitCode: Int?, signal: Int?, detail: String?, updatedAt: Double, strikes: Int = 0) {
        self.jobId = jobId
        self.idx = idx
        self.taskId = taskId
        self.command = command
        self.env = env
        self.inputs = inputs
        self.state = state
        self.countedAttempts = countedAttempts
        self.outcome = outcome
        self.exitCode = exitCode
        self.signal = signal
        self.detail = detail
        self.updatedAt = updatedAt
        self.strikes = strikes
    }

    /// Reads a row by column name. Written out because the backends read
    /// every task of a job at once, and GRDB's Codable decoding (with its
    /// snake_case key conversion) took a quarter of the CPU of adding
    /// 10,000 tasks to an Azure job.
    public init(row: Row) throws {
        jobId = row["job_id"]
        idx = row["idx"]
        taskId = row["task_id"]
        command = row["command"]
        // Typed as they are read, once per read; most tasks have neither.
        let envText: String = row["env"], inputsText: String = row["inputs"]
        do {
            env = envText == "{}" ? [:] : try JSONDecoder().decode([String: String].self, from: Data(envText.utf8))
            inputs = inputsText == "[]" ? [] : try JSONDecoder().decode([InputFile].self, from: Data(inputsText.utf8))
        } catch {
            throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "task \(taskId) has an environment or inputs that are not the JSON batchd wrote")
        }
        let stateName: String = row["state"]
        guard let state = TaskState(rawValue: stateName) else {
            throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "task \(taskId) has an unknown state '\(stateName)'")
        }
        self.state = state
        countedAttempts = row["counted_attempts"]
        let outcomeName: String? = row["outcome"]
        if let outcomeName {
            guard let outcome = OutcomeKind(rawValue: outcomeName) else {
                throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "task \(taskId) has an unknown outcome '\(outcomeName)'")
            }
            self.outcome = outcome
        } else {
            outcome = nil
        }
        exitCode = row["exit_code"]
        signal = row["signal"]
        detail = row["detail"]
        updatedAt = row["updated_at"]
        strikes = row["strikes"]
    }
}

/// An attempt row: one run of a task.
public struct AttemptRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "attempts"
    /// Columns are snake_case in SQL.
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    /// Columns are snake_case in SQL.
    public static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.convertToSnakeCase

    public var jobId: String
    public var idx: Int
    /// 1-based.
    public var attempt: Int
    /// starting (written before the process is started), running, finished.
    public var state: AttemptState
    public var pid: Int?
    /// The attempt's directory (stdout, stderr, status, work/).
    public var directory: String
    public var startedAt: Double
    public var finishedAt: Double?
    public var outcome: OutcomeKind?
    public var exitCode: Int?
    public var signal: Int?
    public var detail: String?
    /// Whether it used up a retry.
    public var counted: Bool?

    /// Creates a row.
    public init(jobId: String, idx: Int, attempt: Int, state: AttemptState, pid: Int?, directory: String, startedAt: Double, finishedAt: Double?, outcome: OutcomeKind?, exitCode: Int?, signal: Int?, detail: String?, counted: Bool?) {
        self.jobId = jobId
        self.idx = idx
        self.attempt = attempt
        self.state = state
        self.pid = pid
        self.directory = directory
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.exitCode = exitCode
        self.signal = signal
        self.detail = detail
        self.counted = counted
    }
}

/// A collected output file.
public struct OutputRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "outputs"
    /// Columns are snake_case in SQL.
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    /// Columns are snake_case in SQL.
    public static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.convertToSnakeCase

    public var jobId: String
    /// Relative to the job's destination.
    public var path: String
    public var idx: Int
    public var size: Int
    public var sha256: String

    /// Creates a row.
    public init(jobId: String, path: String, idx: Int, size: Int, sha256: String) {
        self.jobId = jobId
        self.path = path
        self.idx = idx
        self.size = size
        self.sha256 = sha256
    }
}

/// A line of a job's history.
public struct EventRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "events"
    /// Columns are snake_case in SQL.
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    /// Columns are snake_case in SQL.
    public static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.convertToSnakeCase

    public var seq: Int64?
    public var jobId: String
    public var idx: Int?
    public var at: Double
    public var kind: String
    public var message: String

    /// Creates a row.
    public init(seq: Int64?, jobId: String, idx: Int?, at: Double, kind: String, message: String) {
        self.seq = seq
        self.jobId = jobId
        self.idx = idx
        self.at = at
        self.kind = kind
        self.message = message
    }
}

/// A staged input: its content hash, as put into the store.
public struct InputRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "inputs"
    /// Columns are snake_case in SQL.
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    /// Columns are snake_case in SQL.
    public static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.convertToSnakeCase

    public var jobId: String
    public var source: String
    public var sha256: String
    public var size: Int
    /// Its blob in the Azure input container, for jobs on Azure.
    public var blob: String?

    /// Creates a row.
    public init(jobId: String, source: String, sha256: String, size: Int, blob: String? = nil) {
        self.jobId = jobId
        self.source = source
        self.sha256 = sha256
        self.size = size
        self.blob = blob
    }
}

/// A cached hash of a file, valid while device, inode, size and mtime match.
public struct FileHashRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "file_hashes"
    /// Columns are snake_case in SQL.
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    /// Columns are snake_case in SQL.
    public static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.convertToSnakeCase

    public var path: String
    public var device: Int64
    public var inode: Int64
    public var size: Int64
    public var mtimeNs: Int64
    public var sha256: String
    /// Base64 MD5 (what Blob stores), once computed.
    public var md5: String?

    /// Creates a cache entry.
    /// Whether this cached hash still describes a file with this identity:
    /// the same device, inode, size and modification time (ns). The one
    /// rule for reusing a hash, wherever inputs are hashed.
    public func describes(device: Int64, inode: Int64, size: Int64, mtimeNs: Int64) -> Bool {
        self.device == device && self.inode == inode && self.size == size && self.mtimeNs == mtimeNs
    }

    public init(path: String, device: Int64, inode: Int64, size: Int64, mtimeNs: Int64, sha256: String, md5: String? = nil) {
        self.path = path
        self.device = device
        self.inode = inode
        self.size = size
        self.mtimeNs = mtimeNs
        self.sha256 = sha256
        self.md5 = md5
    }
}

/// A manifest claimed from the inbox and not yet accepted or rejected.
public struct IntakeRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "intake"
    /// Columns are snake_case in SQL.
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    /// Columns are snake_case in SQL.
    public static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.convertToSnakeCase

    /// The file's name in `claimed/`: `<job id>--<name>`.
    public var claimed: String
    /// The name it had in the inbox (in full, even when the claimed name is cut short).
    public var original: String
    /// The uid that owned it in the inbox: the submitter.
    public var owner: Int
    /// How many times the daemon began reading it.
    public var starts: Int
    public var claimedAt: Double

    /// Creates a row.
    public init(claimed: String, original: String, owner: Int, starts: Int, claimedAt: Double) {
        self.claimed = claimed
        self.original = original
        self.owner = owner
        self.starts = starts
        self.claimedAt = claimedAt
    }
}

/// An inbox entry that could be neither processed nor given a `.error` file.
public struct InboxProblemRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Table name.
    public static let databaseTableName = "inbox_problems"
    public var name: String
    public var reason: String
    public var at: Double
    /// Creates a row.
    public init(name: String, reason: String, at: Double) {
        self.name = name
        self.reason = reason
        self.at = at
    }
}

/// A step of a job that is being tried again after transient failures.
public struct RetryingRecord: Sendable, Equatable {
    /// What is retried, e.g. "download the outputs of t3".
    public var step: String
    /// Why, in plain words (the last failure).
    public var reason: String
    /// Failures so far.
    public var tries: Int
    /// The first failure and the last (seconds since 1970).
    public var since: Double
    public var last: Double

    /// A record.
    public init(step: String, reason: String, tries: Int, since: Double, last: Double) {
        self.step = step
        self.reason = reason
        self.tries = tries
        self.since = since
        self.last = last
    }
}
