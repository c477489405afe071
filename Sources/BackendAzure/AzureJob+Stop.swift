import BatchBackend
import BatchCore
import Foundation
import Logging

/// Stopping a job on Azure and cleaning up after it: what costs money goes,
/// whatever happens, and a crash or a shutdown only puts it off.
extension AzureJob {
    /// Ends the Batch job (its running tasks stop) and deletes its auto-pool,
    /// so nothing keeps costing money. Safe to repeat. False when the daemon
    /// stopped before it was done (the next start repeats it).
    func azureStop(_ record: AzureJobRecord, reason: String) async -> Bool {
        let terminated = await azureStep("terminate the Batch job", persistent: true) {
            try await az.batch.terminateJob(record.batchJobId, reason: reason)
        }
        if case .failure(let e)? = terminated { log.warning("cannot terminate the Batch job", metadata: ["batch.job": "\(record.batchJobId)", "error": "\(e)"]) }
        guard terminated != nil else { return false }
        // An active Batch job less: a job waiting for the quota may go.
        await az.quota.freed()
        guard record.autoPool else { return true }
        var poolID = record.poolId
        if poolID == nil {
            switch await azureStep("read the job", persistent: true, { try await az.autoPoolID(record.batchJobId) }) {
            case nil: return false
            case .success(let p)?: poolID = p
            case .failure?: break   // the job is gone, and its auto-pool with it
            }
        }
        if let poolID {
            switch await azureStep("delete the auto-pool", persistent: true, { try await az.batch.deletePool(poolID) }) {
            case nil: return false
            case .failure(let e)?: log.warning("cannot delete the auto-pool", metadata: ["pool.id": "\(poolID)", "error": "\(e)"])
            case .success?: await az.quota.freed()
            }
        }
        return true
    }

    /// Cancel: stop everything on Azure, then record the open tasks cancelled
    /// (not before they are stopped: a shutdown first leaves them open, and
    /// the next start stops them again).
    func cancel() async {
        let record = await handle.azureRecord() ?? nil
        if let record {
            let stopped = await azureStop(record, reason: record.lost == nil ? "cancelled with batchctl cancel" : "batchd: the Batch job was lost")
            if !stopped, control.isShuttingDown { return }
        }
        _ = await handle.cancelOpenTasks(detail: record?.lost)
    }

    /// Whatever the verdict, the Batch job ends and its auto-pool goes; the
    /// cleanup policy then decides whether the Batch job and the scratch
    /// output container are deleted. The shared input container stays: it is
    /// what later jobs reuse.
    func cleanup(_ verdict: Verdict) async {
        guard var record = await handle.azureRecord() ?? nil, !record.cleaned else { return }
        guard await azureStop(record, reason: "batchd job \(verdict.phase.rawValue)") else { return }
        let policy = job.cleanup
        if policy == .always || (policy == .onSuccess && verdict == .success) {
            let r = record
            // The earlier Batch jobs of the run (each ended) go with it.
            guard await azureStep("delete the Batch job", persistent: true, { for id in r.batchJobs { _ = try await az.batch.deleteJob(id) } }) != nil,
                  await azureStep("delete the output container", persistent: true, { try await az.blob.deleteContainer(r.outputContainer) }) != nil
            else { return }
            log.info("azure scratch deleted", metadata: ["batch.job": "\(record.batchJobs.joined(separator: " "))", "container": "\(record.outputContainer)"])
        }
        handle.crashPoint("cleanup.deleted")
        record.cleaned = true
        let r = record
        _ = await handle.saveAzureRecord(r)
    }
}
