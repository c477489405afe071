import BatchAccess
import BatchCore
import BatchStore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How the store knows an attempt.
public enum AttemptRow: Sendable, Equatable {
    /// It was recorded before it started (the local backend's write-ahead).
    case begun
    /// The backend learned of it at its end (Slurm, Azure); it ran for
    /// `ranFor` seconds, when the backend knows.
    case remote(ranFor: Double?)
}

extension JobHandle {
    /// The rules the task machine applies to this job's tasks.
    public func taskRules(retriedByService: Set<OutcomeKind> = []) -> TaskRules {
        TaskRules(retries: spec.retries, retriedByService: retriedByService)
    }

    /// Records how an attempt ended, the same way on every backend. The task
    /// machine decides the task's fate; a successful attempt's outputs are
    /// collected first (`collect`, nil when the daemon stopped first); the
    /// attempt, the task's state and its outputs go into the database in one
    /// transaction, with the same log line everywhere; then what the attempt
    /// left that says nothing more is removed: its status file, empty logs,
    /// the backend's scratch files, and its directories once empty.
    ///
    /// Returns the task's fate, or nil when the daemon stopped first (the
    /// next start finds the attempt again and repeats this).
    /// `stopping`: the phase stopped the attempt (a limit): it is not run again.
    public func endAttempt(_ task: TaskRecord, _ ended: Ending, rules: TaskRules, stopping: Bool = false,
                           collect: @Sendable () async -> Result<[OutputRecord], any Error>?) async -> TaskDecision? {
        let setAside = ended.setAside
        let counted = task.countedAttempts + ended.serviceRetries
        var state = TaskMachineState(phase: .running, counted: counted, free: max(0, ended.attempt - 1 - counted),
                                     cancelling: control.isCancelled || stopping)
        var transition = TaskMachine.apply(setAside ? .setAside : .ended(ended.outcome), to: state, rules: rules)
        var outputs: [OutputRecord] = []
        if transition.actions.contains(.collectOutputs) {
            state = transition.state
            switch await collect() {
            case nil: return nil
            case .success(let collected)?:
                outputs = collected
                transition = TaskMachine.apply(.collected, to: state, rules: rules)
            case .failure(let error)?:
                transition = TaskMachine.apply(.ended(.outputsFailed(reason: "\(error)")), to: state, rules: rules)
            }
        }
        guard let (outcome, decision) = transition.recorded else { return nil }
        let (o, collected) = (outcome, outputs)
        let (store, id, idx, number, dir, retried) = (store, job.id, task.idx, ended.attempt, ended.directory, ended.serviceRetries)
        let saved: Bool
        switch ended.row {
        case .begun:
            saved = await recordTaskEnd(task, attempt: number, outcome: outcome, decision: decision) {
                try await store.finishAttempt(id, idx: idx, attempt: number, outcome: o, decision: decision, outputs: collected)
            }
        case .remote(let ranFor):
            let started = clock() - max(0, ranFor ?? 0)
            saved = await recordTaskEnd(task, attempt: number, outcome: outcome, decision: decision) {
                try await store.recordRemoteAttempt(id, idx: idx, attempt: number, directory: dir, startedAt: started,
                                                    outcome: o, decision: decision, outputs: collected, serviceRetries: retried)
            }
        }
        guard saved else { return nil }
        for file in ended.scratch { unlink(file) }
        // The task's own logs are made when their first byte comes (batchd-exec;
        // Azure downloads none that is empty): only a scheduler's may be empty.
        AttemptFiles.discardEmpty(ended.schedulerLogs)
        AttemptFiles.discardFinished(dir)
        return decision
    }
}

extension AttemptFiles {
    /// Removes each of these files that is empty: an empty log is not kept.
    public static func discardEmpty(_ paths: [String]) {
        var st = stat()
        for path in paths where lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_size == 0 {
            unlink(path)
        }
    }
}
