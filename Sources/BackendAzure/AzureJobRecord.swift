import BatchBackend
import BatchCore
import BatchStore
import Foundation

/// What a job on Azure Batch has made there, kept as the backend's own
/// record (`azure.job`) so that a restart finds it again.
struct AzureJobRecord: Codable, Sendable, Equatable {
    /// The record's key.
    static let key = "azure.job"

    var jobId: String
    /// The Batch job's id (`batchd-<job id>`, `-r<n>` after a retry).
    var batchJobId: String
    /// The named pool, or the auto-pool once the service has named it.
    var poolId: String?
    /// Whether the pool is an auto-pool of this job.
    var autoPool: Bool
    /// Scratch container the tasks' outputs and logs go to.
    var outputContainer: String
    /// The Batch job's maxWallClockTime.
    var wallClockSeconds: Double
    /// When the tasks' SAS tokens expire (seconds since 1970).
    var tokenExpiry: Double?
    /// Every task is in the Batch job, and the job set to end itself.
    var submitted = false
    /// The cleanup policy has been carried out.
    var cleaned = false
    /// Why the Batch job can no longer run the job's tasks, when it was
    /// ended, disabled or deleted outside batchd (or its pool was): the
    /// open tasks are recorded with it.
    var lost: String?
    /// Earlier Batch jobs of this run, oldest first: each ended (every task
    /// in it completed) while some of its tasks had to run again, and the
    /// next took them. Deleted with the current one, by the cleanup policy.
    var retired: [String]?

    /// Every Batch job the job holds on the service, the current one last.
    var batchJobs: [String] { (retired ?? []) + [batchJobId] }

    /// The id of the Batch job after `batchJobId`: `batchd-<job id>-r<n+1>`.
    var nextBatchJobId: String {
        let base = "batchd-\(jobId)"
        let generation = batchJobId.hasPrefix("\(base)-r") ? (Int(batchJobId.dropFirst(base.count + 2)) ?? 0) : 0
        return "\(base)-r\(generation + 1)"
    }

    /// What `show` says of it: a line for the Batch job and one for the
    /// tokens, and the same as fields under `azure` in `show --json`.
    var summary: BackendSummary<Fields> {
        let expiry = tokenExpiry.map(UTCTime.iso)
        var lines = [BackendSummary<Fields>.Line("azure", "Batch job \(batchJobId) on \(autoPool ? "auto-pool" : "pool") \(poolId ?? "(not yet made)"); "
                                                 + "outputs via container \(outputContainer)")]
        if let expiry { lines.append(.init("tokens", "SAS valid until \(expiry)")) }
        return BackendSummary(lines: lines, fields: Fields(batchJob: batchJobId, pool: poolId, autoPool: autoPool, outputContainer: outputContainer,
                                                           submitted: submitted, tokenExpiry: expiry))
    }

    /// The fields of `show --json`.
    struct Fields: Codable, Sendable {
        var batchJob: String
        var pool: String?
        var autoPool: Bool
        var outputContainer: String
        var submitted: Bool
        var tokenExpiry: String?

        /// Nulls are written out: a missing pool reads `"pool": null`.
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(batchJob, forKey: .batchJob)
            try c.encode(pool, forKey: .pool)
            try c.encode(autoPool, forKey: .autoPool)
            try c.encode(outputContainer, forKey: .outputContainer)
            try c.encode(submitted, forKey: .submitted)
            try c.encode(tokenExpiry, forKey: .tokenExpiry)
        }
    }
}

extension JobHandle {
    /// The job's Azure record (`.some(nil)` before staging made it).
    func azureRecord() async -> AzureJobRecord?? { await record(AzureJobRecord.key, as: AzureJobRecord.self) }

    /// Saves the job's Azure record, and what `show` says of it.
    func saveAzureRecord(_ r: AzureJobRecord) async -> Void? {
        guard await setRecord(AzureJobRecord.key, r) != nil else { return nil }
        return await setSummary(r.summary)
    }
}
