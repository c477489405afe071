import BatchBackend
import BatchControl
import BatchCore
import BatchStore

/// Azure Batch with Blob Storage: content-addressed inputs in Blob, a named
/// or auto pool, tasks added in collections, one poller for the account,
/// outputs downloaded as each task completes (docs/azure.md).
public struct AzureJobBackend: JobBackend {
    /// Its name in manifests.
    public static let name = BackendKind(rawValue: "azure")
    /// The account's clients, poller and settings.
    public let azure: AzureBackend

    /// The backend for an account.
    public init(azure: AzureBackend) { self.azure = azure }

    /// A job whose wall-clock limit no SAS token may cover is refused.
    public func refusal(_ spec: JobSpec) async -> ManifestIssue? {
        if let container = spec.container {
            if let issue = AzureContainers.refusal(container) { return issue }
            if let (field, message, hint) = azure.containers.registryRefusal(container, credentialsDirectory: azure.credentialsDirectory) {
                return ManifestIssue(line: nil, column: nil, field: field, message: message, hint: hint)
            }
        }
        do {
            _ = try SASLifetime.forJob(wallClock: spec.limits.wallClockSeconds, margin: azure.settings.tokenMargin,
                                       maximum: azure.maxTokenLifetime)
            return nil
        } catch {
            return ManifestIssue(line: nil, column: nil, field: "limits.wallClock", message: "\(error)", hint: nil)
        }
    }

    /// The ended Batch job holds the task ids: a retry deletes it and runs
    /// the reopened tasks in a new Batch job, `batchd-<id>-r<n>`, with
    /// fresh tokens and the inputs already in `batchd-inputs`.
    public func prepareRetry(_ job: JobRecord) async throws {
        guard var record = try await azure.ledger.record(job.id, AzureJobRecord.key, as: AzureJobRecord.self) else { return }
        let old = record.batchJobId
        if try await azure.batch.job(old) != nil {
            try await azure.batch.deleteJob(old)
        }
        record.batchJobId = record.nextBatchJobId
        record.submitted = false
        record.tokenExpiry = nil
        record.cleaned = false
        record.lost = nil
        if record.autoPool { record.poolId = nil }
        try await azure.ledger.setRecord(job.id, AzureJobRecord.key, record)
        try await azure.ledger.setRecord(job.id, BackendSummary<AzureJobRecord.Fields>.key, record.summary)
    }

    public func stage(_ job: JobHandle) async -> StepResult { await AzureJob(handle: job, az: azure).stage() }
    public var inputFiles: (any InputFiles)? { AzureInputFiles(az: azure) }
    public func provision(_ job: JobHandle) async -> StepResult { await AzureJob(handle: job, az: azure).provision() }
    public func submit(_ job: JobHandle) async -> StepResult { await AzureJob(handle: job, az: azure).submit() }
    public func adapter(for job: JobHandle) async -> (any TaskAdapter)? { await AzureJob(handle: job, az: azure).adapter() }
    public func cancel(_ job: JobHandle) async { await AzureJob(handle: job, az: azure).cancel() }
    public func cleanup(_ job: JobHandle, _ verdict: Verdict) async { await AzureJob(handle: job, az: azure).cleanup(verdict) }

    public func owned() async throws -> (owner: String, items: [HeldItem])? {
        (azure.owner, try await azure.inventory())
    }

    /// `batchctl pool create | resize | delete`.
    public func managePool(_ change: PoolChange) async throws -> String? {
        try await azure.managePool(change)
    }

    /// The account's task poller, after one look for orphans (deleted when
    /// `azure.deleteOrphans` says so).
    public var background: (@Sendable () async -> Void)? {
        let azure = self.azure
        return { await azure.runBackground() }
    }

    /// Stops the HTTP transport (its curl thread ends).
    public func shutdown() { azure.shutdown() }
}

/// Azure Batch as the daemon registers it: off (with the reason) without
/// credentials.
public enum AzurePlugin: BackendPlugin {
    public static let name = AzureJobBackend.name
    public static var poolOptions: [PoolOption] { AzurePoolOptions.declared }
    public static let setupHint = "see docs/azure.md"
    public static func make(_ setup: BackendSetup, section: ConfigSection?) throws -> any JobBackend {
        let settings = try AzureSettings(section)
        return AzureJobBackend(azure: try AzureBackend.make(settings: settings, variables: setup.variables, hostName: setup.hostName,
                                                            ledger: setup.ledger, logger: setup.logger, containers: setup.config.containers))
    }
}
