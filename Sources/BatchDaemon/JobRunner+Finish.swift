import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation

extension JobRunner {
    /// Checks that every collected output is still at its destination.
    /// `outputs.merge` while the tasks run: a pass whenever a second has
    /// gone by (or four times as long as the last pass took, so copying a
    /// large merged file takes at most a fifth of the time).
    func mergeWhileRunning(_ job: JobHandle) -> Task<Void, Never>? {
        guard let spec = job.spec.merge else { return nil }
        let log = self.log
        return Task {
            let merger = OutputMerger(handle: job, spec: spec)
            var pause = 1.0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(pause))
                if Task.isCancelled { break }
                let started = ContinuousClock.now
                do {
                    while try await merger.pass(), !Task.isCancelled {}
                } catch {
                    log.warning("outputs.merge failed; will try again", metadata: ["error": "\(error)"])
                }
                let took = ContinuousClock.now - started
                pause = max(1, 4 * (Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18))
            }
        }
    }

    /// The last passes of `outputs.merge`, once every task has ended; the
    /// job fails if the merged file cannot be written.
    func finishMerge(_ job: JobHandle) async -> StepResult {
        guard let spec = job.spec.merge else { return .done }
        let merger = OutputMerger(handle: job, spec: spec)
        do {
            while try await merger.pass() {}
        } catch {
            return .failed(reason: "outputs.merge into \(Printable.escape(spec.into)) failed: \(error)")
        }
        if let state = try? await ctx.store.backendRecord(jobID, OutputMerger.key, as: MergeState.self) {
            log.info("outputs merged", metadata: ["path": "\(Printable.escape(spec.into))", "bytes": "\(state.bytes)",
                                                  "files.left.out": "\(state.skipped)"])
        }
        return .done
    }

    func verifyOutputs(_ job: JobHandle) async -> StepResult {
        let merged = await finishMerge(job)
        guard merged == .done else { return merged }
        guard let outputs = await job.retrying("read outputs", { try await ctx.store.outputs(jobID) }) else { return .interrupted }
        // Looked at as the submitter, whose files they are.
        let changed: String?
        do {
            changed = try Identity.acting(as: job.policy.submitter) {
                outputs.lazy.map { ("\(job.spec.destination)/\($0.path)", $0.size) }.first { path, size in
                    var st = stat()
                    return lstat(path, &st) != 0 || st.st_mode & S_IFMT != S_IFREG || Int64(st.st_size) != size
                }?.0
            }
        } catch {
            return .failed(reason: "cannot look at the outputs: \(error)")
        }
        if let changed { return .failed(reason: "output \(changed) is missing or changed since it was collected") }
        return .done
    }

    /// Deletes the attempts' work directories when the policy says so, on
    /// every backend, where it keeps them; the logs stay for `batchctl logs`.
    func cleanup(_ job: JobHandle, _ backend: any JobBackend, _ verdict: Verdict) {
        AttemptFiles.removeWorkDirectories(under: backend.attemptsDirectory(job), policy: job.spec.cleanup, verdict: verdict)
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
