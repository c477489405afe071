import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging

/// Slurm's part of the running phase: the job's arrays, followed through
/// the shared poller (one squeue per interval for every job); an element's
/// end read from its status file, squeue or sacct, whichever knows; a task
/// to run again submitted in a new array; outputs collected from the
/// shared directory. After a restart the same reading finds what ended
/// meanwhile and follows what still runs.
final class SlurmAdapter: TaskAdapter {
    let slurm: SlurmJob
    struct Element {
        var array: ArrayRecord
        var i: Int
        var e: ArrayRecord.Element
    }
    struct State {
        /// The live attempt's element in its array, by task index.
        var elements: [Int: Element] = [:]
        /// When a live element was first missing from squeue.
        var missingSince: [Int: ContinuousClock.Instant] = [:]
        /// Elements the phase stopped (a limit).
        var killed: Set<Int> = []
    }
    let state = Locked(State())

    init(_ slurm: SlurmJob) { self.slurm = slurm }

    var handle: JobHandle { slurm.handle }
    var cluster: SlurmCluster { slurm.cluster }
    var log: Logger { slurm.log }

    var traits: AdapterTraits {
        // Slurm throttles an array itself; retries go into new arrays of at most MaxArraySize.
        AdapterTraits(coresPerTask: Double(handle.spec.pool.cpusPerTask ?? 1), launchBatch: 100_000, throttledByPhase: false,
                      polls: true, endWidth: 4)
    }

    /// The elements of the job's arrays whose end is not recorded (an
    /// array's sbatch a crash cut short is settled first: found again by
    /// name, or submitted).
    func resume() async -> Resumed? {
        guard let arrays = await slurm.arrays() else { return nil }
        if arrays.contains(where: { $0.id == nil }) {
            switch await slurm.submit(only: []).0 {
            case .interrupted: return nil
            case .failed(let reason): return Resumed(found: [.jobLost(reason: reason)])
            case .done: break
            }
        }
        guard let settled = await slurm.arrays(), let ended = await slurm.ended(),
              let tasks = await handle.tasks() else { return nil }
        let open = Set(tasks.filter { $0.state.isOpen }.map(\.idx))
        var live: [LiveAttempt] = []
        state.withLock { s in
            for a in settled {
                for (i, e) in a.elements.enumerated() where !slurm.isEnded(e, ended) && open.contains(e.idx) {
                    s.elements[e.idx] = Element(array: a, i: i, e: e)
                    live.append(LiveAttempt(idx: e.idx, taskID: e.task, attempt: e.attempt))
                }
            }
        }
        return Resumed(live: live)
    }

    /// Submits the tasks in new arrays (recorded before sbatch).
    func launch(_ tasks: [Int]) async -> Launched {
        let (result, submitted) = await slurm.submit(only: Set(tasks))
        guard let arrays = await slurm.arrays() else { return .interrupted }
        let wanted = Set(submitted.map { ElementKey($0) })
        var live: [LiveAttempt] = []
        state.withLock { s in
            for a in arrays {
                for (i, e) in a.elements.enumerated() where wanted.contains(ElementKey(e)) {
                    s.elements[e.idx] = Element(array: a, i: i, e: e)
                    live.append(LiveAttempt(idx: e.idx, taskID: e.task, attempt: e.attempt))
                }
            }
        }
        switch result {
        case .done: return .launched(live, waiters: [])
        case .failed(let reason): return .failed(reason: reason)
        case .interrupted: return live.isEmpty ? .interrupted : .launched(live, waiters: [])
        }
    }

    struct ElementKey: Hashable {
        let idx: Int, attempt: Int
        init(_ e: ArrayRecord.Element) { (idx, attempt) = (e.idx, e.attempt) }
    }

    /// The poller's next answer, read for the live elements.
    func poll(_ live: [LiveAttempt]) async -> [TaskReport]? {
        guard let snapshot = await nextSnapshot() else { return nil }
        guard snapshot.ok else { return [] }
        var states: [String: [Int: SlurmState]] = [:]
        for e in snapshot.entries { for i in e.indices { states[e.arrayID, default: [:]][i] = e.state } }
        let grace = cluster.settings.missingGrace
        let now = ContinuousClock.now
        var reports: [TaskReport] = []
        var unknown: [Element] = []
        let cancelled = handle.control.isCancelled
        for attempt in live {
            guard let el = state.withLock({ $0.elements[attempt.idx] }), el.e.attempt == attempt.attempt, let slurmID = el.array.id else { continue }
            let st = states[slurmID]?[el.i]
            if let st, st.isLive {
                if st.isRunning { reports.append(.running(idx: attempt.idx)) }
                state.withLock { $0.missingSince[attempt.idx] = nil }
                continue
            }
            let killed = state.withLock { $0.killed.contains(attempt.idx) }
            if let outcome = SlurmRules.outcome(recorded: AttemptFiles.recordedOutcome(slurm.attemptDirectory(el.e)), state: st,
                                                timeout: handle.spec.timeoutSeconds, cancelledByUs: cancelled || killed) {
                reports.append(ending(el, outcome, state: st))
                continue
            }
            let since = state.withLock { s in
                let since = s.missingSince[attempt.idx] ?? now
                s.missingSince[attempt.idx] = since
                return since
            }
            if now - since >= .seconds(grace) { unknown.append(el) }
        }
        // Past the grace: what sacct says, else lost.
        if !unknown.isEmpty {
            let accounted = await slurm.accountedStates(Set(unknown.compactMap(\.array.id).filter { !$0.isEmpty }))
            for el in unknown {
                let st = accounted[el.array.id ?? ""]?[el.i]
                let dir = slurm.attemptDirectory(el.e)
                let killed = state.withLock { $0.killed.contains(el.e.idx) }
                // Gone from Slurm without a word (no status file, no state in
                // squeue or sacct past the grace): lost, as a local task whose
                // process vanished, and run again for free.
                let outcome = SlurmRules.outcome(recorded: AttemptFiles.recordedOutcome(dir), state: st,
                                                 timeout: handle.spec.timeoutSeconds, cancelledByUs: cancelled || killed)
                if outcome == nil {
                    log.warning("task vanished from Slurm; it runs again", metadata: [
                        "task.id": "\(el.e.task)", "attempt": "\(el.e.attempt)", "slurm.state": "\(st?.name ?? "in no squeue or sacct answer")",
                        "grace": "\(HumanDuration.format(grace))"])
                }
                reports.append(ending(el, outcome ?? .lost, state: st))
            }
        }
        return reports
    }

    /// An element's end, with what it leaves: its Slurm log (kept only if
    /// not empty) and its run.sh (scratch).
    func ending(_ el: Element, _ outcome: TaskOutcome, state st: SlurmState?) -> TaskReport {
        if let st, !st.isLive, st != .completed {
            log.info("slurm ended the task", metadata: ["task.id": "\(el.e.task)", "attempt": "\(el.e.attempt)", "slurm.state": "\(st.name)"])
        }
        state.withLock { $0.missingSince[el.e.idx] = nil }
        let dir = slurm.attemptDirectory(el.e)
        return .ended(idx: el.e.idx, Ending(attempt: el.e.attempt, directory: dir, outcome: outcome,
                                            row: .remote(ranFor: AttemptFiles.recordedRunTime(dir)),
                                            schedulerLogs: slurm.slurmLog(el.array, el.i).map { [$0] } ?? [], scratch: ["\(dir)/run.sh", "\(dir)/secrets"]))
    }

    /// The outputs a successful element left in its work directory.
    func collect(_ task: TaskRecord, _ ending: Ending, sink: OutputSink) async -> Result<[OutputRecord], any Error>? {
        handle.collectOutputs(root: cluster.shared, relative: "jobs/\(slurm.id)/tasks/\(task.taskId)/attempt-\(ending.attempt)/work",
                              task: task, sink: sink).mapError { $0 as any Error }
    }

    /// One scancel for these elements (`<array>_<i>`).
    func kill(_ live: [LiveAttempt]) async {
        let ids: [String] = state.withLock { s in
            live.compactMap { a in
                guard let el = s.elements[a.idx], let id = el.array.id, !id.isEmpty else { return nil }
                s.killed.insert(a.idx)
                return "\(id)_\(el.i)"
            }
        }
        guard !ids.isEmpty else { return }
        let out = await cluster.cancel(ids, as: slurm.runAs)
        if let out, !out.ok { log.warning("scancel failed", metadata: ["error": "\(out.why)"]) }
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
}

extension SlurmJob {
    /// Where Slurm writes element `i` of array `a`'s own log (sbatch's
    /// `--output`): what batchd-exec could not say, such as a node that
    /// could not start it.
    func slurmLog(_ a: ArrayRecord, _ i: Int) -> String? {
        guard let id = a.id, !id.isEmpty else { return nil }
        return "\(jobDirectory)/slurm/slurm-\(id)_\(i).out"
    }

    /// The states sacct has for elements of these arrays (empty without
    /// accounting, or when sacct fails).
    func accountedStates(_ ids: Set<String>) async -> [String: [Int: SlurmState]] {
        guard !ids.isEmpty, await cluster.usesAccounting() else { return [:] }
        let out = await cluster.commands.run("sacct", ["-X", "--noheader", "--parsable2", "--jobs=\(ids.sorted().joined(separator: ","))",
                                                       "--format=JobID,JobName,State,ExitCode"], as: runAs)
        guard out.ok else {
            log.warning("sacct failed", metadata: ["error": "\(out.why)"])
            return [:]
        }
        var states: [String: [Int: SlurmState]] = [:]
        for e in SlurmOutput.accounting(out.stdout) { for i in e.indices { states[e.arrayID, default: [:]][i] = e.state } }
        return states
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
                let out = await cluster.cancel(ids, as: runAs)
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
        _ = await handle.cancelOpenTasks()
    }

    /// Deletes what batchd made for Slurm that says nothing once the job is
    /// over: the arrays' scripts, and Slurm's log directory when every log
    /// in it was empty. (Work directories follow the cleanup policy, applied
    /// by the runner for every backend; an attempt's run.sh and empty Slurm
    /// log went when its end was recorded.)
    func cleanup(_ verdict: Verdict) async {
        try? FileManager.default.removeItem(atPath: "\(jobDirectory)/arrays")
        rmdir("\(jobDirectory)/slurm")
        handle.crashPoint("cleanup.removed")
    }
}
