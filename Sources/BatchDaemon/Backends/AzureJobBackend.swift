import BackendAzure
import BatchControl
import BatchCore
import BatchStore

/// Azure Batch with Blob Storage: content-addressed inputs in Blob, a named
/// or auto pool, tasks added in collections, one poller for the account,
/// outputs downloaded as each task completes (docs/azure.md).
struct AzureJobBackend: JobBackend {
    let azure: AzureBackend

    /// A job whose wall-clock limit no SAS token may cover is refused.
    func refusal(_ spec: JobSpec) -> ManifestIssue? {
        do {
            _ = try SASLifetime.forJob(wallClock: spec.limits.wallClockSeconds, margin: azure.settings.tokenMargin,
                                       maximum: azure.settings.maxTokenLifetime)
            return nil
        } catch {
            return ManifestIssue(line: nil, column: nil, field: "limits.wallClock", message: "\(error)", hint: nil)
        }
    }

    /// The ended Batch job holds the task ids; a retry would need new ids in
    /// a new Batch job.
    var canRetry: Bool { false }

    func stage(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { await run.azureStage(job) }
    func provision(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { await run.azureProvision(job) }
    func submit(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { await run.azureSubmit(job) }
    func monitor(_ job: JobRecord, _ run: JobRunner) async -> JobEvent? { await run.azureMonitor(job) }
    func cancel(_ job: JobRecord, _ run: JobRunner) async { await run.azureCancel(job) }
    func cleanup(_ job: JobRecord, _ verdict: Verdict, _ run: JobRunner) async { await run.azureCleanup(job, verdict) }

    func owned(_ store: Store) async throws -> (owner: String, items: [ControlReply.PoolItem])? {
        let items = try await azure.inventory(store: store)
        return (azure.owner, items.map { .init(kind: $0.kind, id: $0.id, state: $0.state, job: $0.job, nodes: $0.nodes, orphan: $0.orphan) })
    }
}
