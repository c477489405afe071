import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging

extension SlurmJob {
    /// Follows the job's arrays through the shared poller until no task is
    /// open: each element that ended is read (status file, squeue, then
    /// sacct), its outputs collected and its end recorded; a task to run
    /// again goes into a new array. After a restart the same reading finds
    /// what ended meanwhile and re-adopts what still runs.
    func monitor() async -> StepResult {
        handle.control.reconciled.fire(())
        guard let sink = await handle.outputSink() else { return .interrupted }
        var missingSince: [ArrayRecord.Element: ContinuousClock.Instant] = [:]
        let grace = cluster.settings.missingGrace
        while true {
            guard let tasks = await handle.retrying("read tasks", { try await store.tasks(id) }),
                  var arrays = await arrays(), var ended = await ended() else { return .interrupted }
            if !tasks.contains(where: { $0.state.isOpen }) { return .done }
            if handle.control.isHalted { return .interrupted }
            // Tasks to run again (or never submitted): a new array.
            if needsSubmission(tasks, arrays, ended) {
                switch await submit() {
                case .done: break
                case .failed(let reason): return .failed(reason: reason)
                case .interrupted: return .interrupted
                }
                guard let a = await self.arrays(), let e = await self.ended() else { return .interrupted }
                (arrays, ended) = (a, e)
            }
            guard let snapshot = await nextSnapshot() else { return .interrupted }
            guard snapshot.ok else { continue }
            let byIndex = Dictionary(tasks.map { ($0.idx, $0) }, uniquingKeysWith: { x, _ in x })
            var states: [String: [Int: SlurmState]] = [:]
            for e in snapshot.entries { for i in e.indices { states[e.arrayID, default: [:]][i] = e.state } }
            var running: [String] = []
            var unknown: [(ArrayRecord, Int, ArrayRecord.Element)] = []
            for a in arrays {
                guard let slurmID = a.id else { continue }
                for (i, e) in a.elements.enumerated() where !isEnded(e, ended) {
                    guard let task = byIndex[e.idx], task.state.isOpen else { continue }
                    let state = states[slurmID]?[i]
                    if let state, state.isLive {
                        if state.isRunning, task.state == .pending { running.append(task.taskId) }
                        missingSince[e] = nil
                        continue
                    }
                    if let outcome = SlurmRules.outcome(recorded: AttemptFiles.recordedOutcome(attemptDirectory(e)), state: state,
                                                        timeout: handle.spec.timeoutSeconds, cancelledByUs: handle.control.isCancelled) {
                        await finish(task, e, outcome, state: state, slurmLog: slurmLog(a, i), sink)
                        missingSince[e] = nil
                        continue
                    }
                    let since = missingSince[e] ?? .now
                    missingSince[e] = since
                    if ContinuousClock.now - since >= .seconds(grace) { unknown.append((a, i, e)) }
                }
            }
            if !running.isEmpty {
                let ids = running
                _ = await handle.retrying("mark tasks running", { try await store.markRunning(id, taskIDs: ids) })
            }
            // Past the grace: what sacct says, else the reason it is failed.
            if !unknown.isEmpty {
                let accounted = await accountedStates(Set(unknown.compactMap(\.0.id).filter { !$0.isEmpty }))
                for (a, i, e) in unknown {
                    guard let task = byIndex[e.idx] else { continue }
                    let state = accounted[a.id ?? ""]?[i]
                    let dir = attemptDirectory(e)
                    // Gone from Slurm without a word (no status file, no state
                    // in squeue or sacct past the grace): lost, as a local task
                    // whose process vanished, and run again for free.
                    let outcome = SlurmRules.outcome(recorded: AttemptFiles.recordedOutcome(dir), state: state,
                                                     timeout: handle.spec.timeoutSeconds, cancelledByUs: handle.control.isCancelled)
                    if outcome == nil {
                        log.warning("task vanished from Slurm; it runs again", metadata: [
                            "task.id": "\(task.taskId)", "attempt": "\(e.attempt)", "slurm.state": "\(state?.name ?? "in no squeue or sacct answer")",
                            "grace": "\(HumanDuration.format(grace))"])
                    }
                    await finish(task, e, outcome ?? .lost, state: state, slurmLog: slurmLog(a, i), sink)
                    missingSince[e] = nil
                }
            }
        }
    }

    /// Where Slurm writes element `i` of array `a`'s own log (sbatch's
    /// `--output`): what batchd-exec could not say, such as a node that
    /// could not start it.
    func slurmLog(_ a: ArrayRecord, _ i: Int) -> String? {
        guard let id = a.id, !id.isEmpty else { return nil }
        return "\(jobDirectory)/slurm/slurm-\(id)_\(i).out"
    }

    /// Whether an open task is in no array still running (or an array's
    /// sbatch was cut short).
    func needsSubmission(_ tasks: [TaskRecord], _ arrays: [ArrayRecord], _ ended: Set<ArrayRecord.Element>) -> Bool {
        if arrays.contains(where: { $0.id == nil }) { return true }
        var inFlight = Set<Int>()
        for a in arrays { for e in a.elements where !isEnded(e, ended) { inFlight.insert(e.idx) } }
        return tasks.contains { $0.state.isOpen && !inFlight.contains($0.idx) }
    }

    /// The poller's next answer, or nil when the job is halted first.
    func nextSnapshot() async -> SlurmPoller.Snapshot? {
        let poller = cluster.poller
        let control = handle.control
        return await withTaskGroup(of: SlurmPoller.Snapshot?.self) { group in
            group.addTask { await poller.next() }
            group.addTask { await control.halt.wait(); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// The states sacct has for elements of these arrays (empty without
    /// accounting, or when sacct fails).
    func accountedStates(_ ids: Set<String>) async -> [String: [Int: SlurmState]] {
        guard !ids.isEmpty, await cluster.usesAccounting() else { return [:] }
        let out = await cluster.commands.run("sacct", ["-X", "--noheader", "--parsable2", "--jobs=\(ids.sorted().joined(separator: ","))",
                                                       "--format=JobID,JobName,State,ExitCode"])
        guard out.ok else {
            log.warning("sacct failed", metadata: ["error": "\(out.why)"])
            return [:]
        }
        var states: [String: [Int: SlurmState]] = [:]
        for e in SlurmOutput.accounting(out.stdout) { for i in e.indices { states[e.arrayID, default: [:]][i] = e.state } }
        return states
    }

    /// Ends an element's attempt the shared way (`JobHandle.endAttempt`):
    /// outputs of a success collected from its work directory in the shared
    /// directory, the machine's decision recorded, and what says nothing more
    /// removed (its run.sh, an empty Slurm log).
    func finish(_ task: TaskRecord, _ e: ArrayRecord.Element, _ outcome: TaskOutcome, state: SlurmState?, slurmLog: String?, _ sink: OutputSink) async {
        if let state, !state.isLive, state != .completed {
            log.info("slurm ended the task", metadata: ["task.id": "\(task.taskId)", "attempt": "\(e.attempt)", "slurm.state": "\(state.name)"])
        }
        let dir = attemptDirectory(e)
        let ended = EndedAttempt(task: task, attempt: e.attempt, directory: dir, outcome: outcome,
                                 row: .remote(ranFor: AttemptFiles.recordedRunTime(dir)),
                                 schedulerLogs: slurmLog.map { [$0] } ?? [], scratch: ["\(dir)/run.sh"])
        let (root, shared) = (cluster.shared, handle)
        _ = await handle.endAttempt(ended, rules: handle.taskRules()) {
            shared.collectOutputs(root: root, relative: "jobs/\(id)/tasks/\(e.task)/attempt-\(e.attempt)/work", task: task, sink: sink)
                .mapError { $0 as any Error }
        }
    }

    // MARK: cancel and cleanup

    /// Cancels every array of the job (one scancel), waits until squeue shows
    /// none of them live, then records the open tasks cancelled. A shutdown
    /// first leaves them open: the next start cancels again.
    func cancel() async {
        guard var arrays = await arrays() else { return }
        // An array recorded without its id may have been submitted (a crash
        // between sbatch and its record): found by name, it is cancelled too.
        for (i, a) in arrays.enumerated() where a.id == nil {
            guard let found = await find(a, until: handle.control.shutdown) else { return }
            if let found {
                arrays[i].id = found
                _ = await save(arrays[i])
            }
        }
        let ids = arrays.compactMap(\.id).filter { !$0.isEmpty }
        var rounds = 0
        while !ids.isEmpty {
            if rounds % 5 == 0 {
                let out = await cluster.cancel(ids)
                handle.crashPoint("cancel.sent")
                if let out, !out.ok { log.warning("scancel failed; will retry", metadata: ["error": "\(out.why)"]) }
            }
            rounds += 1
            let snapshot = await withTaskGroup(of: SlurmPoller.Snapshot?.self) { group in
                let poller = cluster.poller, control = handle.control
                group.addTask { await poller.next() }
                group.addTask { await control.shutdown.wait(); return nil }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            guard let snapshot else { return }   // shutdown: the next start cancels again
            if snapshot.ok, !snapshot.entries.contains(where: { ids.contains($0.arrayID) && $0.state.isLive }) { break }
        }
        log.info("arrays cancelled", metadata: ["arrays": "\(ids.count)"])
        _ = await handle.retrying("cancel open tasks", { try await store.cancelOpenTasks(id) })
    }

    /// Deletes the tasks' work directories in the shared directory when the
    /// policy says so (their logs and status files stay for `batchctl logs`).
    func cleanup(_ verdict: Verdict) async {
        AttemptFiles.removeWorkDirectories(under: "\(jobDirectory)/tasks", policy: handle.spec.cleanup, verdict: verdict)
        handle.crashPoint("cleanup.removed")
    }
}
