import BatchCore
import BatchStore

/// The workstation's own cores: inputs in the content store, tasks under
/// batchd-exec in the shared slots, outputs copied as each task ends.
struct LocalJobBackend: JobBackend {
    func stage(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { await run.stage(job) }
    /// Local slots need no pool.
    func provision(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { .provisioned }
    /// The tasks were recorded at acceptance, with deterministic ids.
    func submit(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { .submitted }
    func monitor(_ job: JobRecord, _ run: JobRunner) async -> JobEvent? { await run.monitor(job) }
    func cancel(_ job: JobRecord, _ run: JobRunner) async {
        await run.stopLiveAttempts(job)
        _ = await run.retrying("cancel pending tasks", { try await run.ctx.store.cancelPendingTasks(run.jobID) })
    }
    /// Nothing beyond the work directories, which the runner deletes for every backend.
    func cleanup(_ job: JobRecord, _ verdict: Verdict, _ run: JobRunner) async {}
}
