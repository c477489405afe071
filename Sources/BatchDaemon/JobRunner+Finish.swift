import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation

extension JobRunner {
    /// Checks that every collected output is still at its destination.
    func verifyOutputs(_ job: JobHandle) async -> StepResult {
        guard let outputs = await job.retrying("read outputs", { try await ctx.store.outputs(jobID) }) else { return .interrupted }
        for output in outputs {
            let path = "\(job.spec.destination)/\(output.path)"
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: path),
                  (attrs[.size] as? NSNumber)?.intValue == output.size else {
                return .failed(reason: "output \(path) is missing or changed since it was collected")
            }
        }
        return .done
    }

    /// Deletes the attempts' work directories when the policy says so; the
    /// logs (stdout, stderr, status) stay for `batchctl logs`.
    func cleanup(_ job: JobRecord, _ verdict: Verdict) {
        AttemptFiles.removeWorkDirectories(under: "\(ctx.config.jobsDirectory)/\(jobID)/tasks", policy: job.spec?.cleanup ?? job.cleanup,
                                           verdict: verdict)
    }

    /// Writes `jobs/<id>/summary.json`.
    func writeSummary(_ job: JobRecord, _ verdict: Verdict) async {
        let counts = (try? await ctx.store.counts(jobID)) ?? TaskCounts()
        let outputs = (try? await ctx.store.outputs(jobID)) ?? []
        let summary: [String: Any] = [
            "id": jobID, "name": job.name, "state": verdict.phase.rawValue, "reason": verdict.reason ?? NSNull(),
            "tasks": ["total": counts.total, "succeeded": counts.succeeded, "failed": counts.failed, "cancelled": counts.cancelled],
            "destination": job.destination, "outputs": outputs.map(\.path),
        ]
        if let data = try? JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys]) {
            let path = "\(ctx.config.jobsDirectory)/\(jobID)/summary.json"
            try? data.write(to: URL(fileURLWithPath: path), options: .atomic)
        }
    }
}
