import BatchAccess
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging

/// One job as a backend sees it: its record and spec, the store, the
/// signals, its submitter's rights, and the steps every backend shares
/// (retrying a database step, its input sources, recording a task's end with
/// its log line, the crash points). The runner makes one per job run.
public struct JobHandle: Sendable {
    /// The job's row.
    public let job: JobRecord
    /// What intake accepted, typed.
    public let spec: JobSpec
    /// The daemon's database: the handle's own (backends act through the
    /// handle's steps, JobHandle+Records.swift).
    let store: Store
    /// Cancel, halt, stop and shutdown, for this job.
    public let control: JobControl
    /// The daemon's logger, with the job's id and backend attached.
    public let log: Logger
    /// Where job directories live (`jobs/<id>/tasks/<task>/attempt-<n>`).
    public let jobsDirectory: String
    /// The submitter's rights: what they could not read is never staged,
    /// and outputs are written as they may.
    public let policy: AccessPolicy
    /// Seconds since 1970 (a test may pass its own).
    public let clock: @Sendable () -> Double

    /// A handle.
    public init(job: JobRecord, spec: JobSpec, store: Store, control: JobControl, logger: Logger, jobsDirectory: String,
                policy: AccessPolicy, clock: @escaping @Sendable () -> Double) {
        self.job = job
        self.spec = spec
        self.store = store
        self.control = control
        var l = logger
        l[metadataKey: "job.id"] = "\(job.id)"
        l[metadataKey: "backend"] = "\(job.backend.rawValue)"
        self.log = l
        self.jobsDirectory = jobsDirectory
        self.policy = policy
        self.clock = clock
    }

    /// The job's id.
    public var id: String { job.id }

    /// An attempt's directory: stdout, stderr, status and (locally) work/.
    public func attemptDirectory(_ taskID: String, _ attempt: Int) -> String {
        Self.attemptDirectory(jobsDirectory, job.id, taskID, attempt)
    }

    /// An attempt's directory under `jobsDirectory`.
    static func attemptDirectory(_ jobsDirectory: String, _ jobID: String, _ taskID: String, _ attempt: Int) -> String {
        "\(jobsDirectory)/\(jobID)/tasks/\(taskID)/attempt-\(attempt)"
    }

    /// A crash point of the walk (docs/testing.md): `<step>.<where>`.
    public func crashPoint(_ name: String) { CrashPoints.reached(name) }

    /// Retries a database step with backoff until it works or the daemon
    /// stops (nil): a full disk or a locked file is transient, and giving up
    /// would lose the record of work that happened.
    public func retrying<T: Sendable>(_ what: String, _ body: @Sendable () async throws -> T) async -> T? {
        await DatabaseRetry.run(what, log: log, control: control, body)
    }

    /// Notes that `step` failed for a transient reason (`reason`, in plain
    /// words) and is being tried again, for `show` and `watch`. Best effort:
    /// a database that cannot take the note does not hold the step up.
    public func noteRetrying(_ step: String, _ reason: String) async {
        try? await store.noteRetrying(job.id, step: step, reason: reason)
    }

    /// `step` is no longer being retried.
    public func clearRetrying(_ step: String) async {
        try? await store.clearRetrying(job.id, step: step)
    }

    /// Waits before attempt `attempt` of a step that failed for a transient
    /// reason (1 s, doubling, at most a minute, with jitter); false when
    /// `until` (the job's halt, unless given) fires first: stop, don't retry.
    public func pauseBeforeRetry(_ attempt: Int, until: AsyncEvent<Void>? = nil) async -> Bool {
        let event = until ?? control.halt
        if event.value != nil || Task.isCancelled { return false }
        let delay = Backoff(base: 1, factor: 2, cap: 60).delay(attempt: attempt, jitter: Double.random(in: 0...1))
        return await event.wait(timeout: delay) == nil && !Task.isCancelled
    }

    /// Every distinct input file of the job (shared and per task), sorted;
    /// nil on shutdown.
    public func inputSources() async -> [String]? {
        var sources = Set(spec.sharedInputs.map(\.source))
        guard let lists = await retrying("read tasks' inputs", { try await store.taskInputLists(job.id) }) else { return nil }
        for list in lists {
            for input in (try? JSONDecoder().decode([InputFile].self, from: Data(list.utf8))) ?? [] { sources.insert(input.source) }
        }
        return sources.sorted()
    }

    /// Where the job's outputs go, with which task claimed which path.
    public func outputSink() async -> OutputSink? {
        guard let outputs = await retrying("read outputs", { try await store.outputs(job.id) }) else { return nil }
        return OutputSink(job: job.id, destination: job.destination, patterns: spec.outputPatterns, policy: policy, existing: outputs)
    }

    /// Records how a task's attempt ended (`save` writes it, outputs and
    /// all, in one transaction) and logs it the same way on every backend.
    /// False when the daemon stopped first (the next start repeats it).
    public func recordTaskEnd(_ task: TaskRecord, attempt: Int, outcome: TaskOutcome, decision: TaskDecision,
                              _ save: @Sendable () async throws -> Void) async -> Bool {
        crashPoint("task.collected")
        guard await retrying("record the attempt's end", save) != nil else { return false }
        crashPoint("task.recorded")
        // A task that ends as expected is a debug line: a million-task job
        // must not write a million lines to the journal (its rate limit would
        // drop the ones that matter). Failures and retries stay visible; the
        // job's history (`batchctl logs JOB`) has every task's end.
        let level: Logger.Level = switch decision {
        case .failed: .warning
        case .retry: .info
        case .succeeded, .cancelled: .debug
        }
        log.log(level: level, "task finished", metadata: [
            "task.id": "\(task.taskId)", "attempt": "\(attempt)", "outcome": "\(outcome.summary)", "decision": "\(decision)",
        ])
        return true
    }

    /// The job's task counts, once monitoring ended.
    public func counts() async -> TaskCounts? {
        await retrying("count tasks", { try await store.counts(job.id) })
    }
}

/// How a database step is retried: with backoff until it works or the
/// daemon stops (nil). A full disk or a locked file is transient, and giving
/// up would lose the record of work that happened.
public enum DatabaseRetry {
    public static func run<T: Sendable>(_ what: String, log: Logger, control: JobControl,
                                        _ body: @Sendable () async throws -> T) async -> T? {
        var attempt = 0
        while true {
            do { return try await body() } catch {
                // A cancelled Swift task (a runner's child, when the job is
                // halted) makes every database call throw: stop, don't spin.
                if Task.isCancelled { return nil }
                log.error("database step failed; will retry", metadata: ["step": "\(what)", "error": "\(error)"])
                let delay = Backoff(base: 0.2, factor: 2, cap: 10).delay(attempt: attempt, jitter: Double.random(in: 0...1))
                attempt += 1
                if control.isShuttingDown { return nil }
                try? await Task.sleep(for: .seconds(delay))
            }
        }
    }
}
