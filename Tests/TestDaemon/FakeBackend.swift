import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A backend that lives only in the tests: it drives `FakeRemote` through
/// the same port as local and Azure, with the shape of a remote scheduler
/// (inputs uploaded, a pool made, tasks submitted in batches and tagged with
/// the job, state learned by one poll per interval for the whole job,
/// outputs fetched as each task ends). It exists to prove the port: the
/// crash-point walk and the lifecycle test run it in `batchd-testd`.
struct FakeBackend: JobBackend {
    let remote: FakeRemote
    let owner: String
    /// What it knows of all its jobs (the pools of jobs in the database).
    let ledger: BackendLedger
    /// Tasks per submitted batch (as Slurm's arrays or Azure's
    /// collections): the config's `fake.batchSize`, unless a job's
    /// `pool.batchSize` says otherwise.
    let batchSize: Int

    func batchSize(_ job: JobHandle) -> Int { job.spec.pool.int("batchSize") ?? batchSize }

    func poolID(_ job: JobHandle) -> String { "fake-\(job.id)" }

    /// Uploads each input the remote lacks (content-addressed, so a repeat
    /// uploads nothing), then records the inputs.
    func stage(_ job: JobHandle) async -> StepResult {
        guard let sources = await job.inputSources() else { return .interrupted }
        var records: [InputRecord] = []
        for source in sources {
            do {
                let file = try job.policy.openForReading(source)
                defer { close(file.fd) }
                let put = try remote.blobs.put(fd: file.fd, name: source)
                records.append(InputRecord(jobId: job.id, source: source, sha256: put.sha256, size: Int(put.size)))
            } catch {
                return .failed(reason: "input \(Printable.escape(source)) could not be uploaded: \(error)")
            }
        }
        job.crashPoint("stage.uploaded")
        let staged = records
        return await job.recordInputs(staged) == nil ? .interrupted : .done
    }

    /// Makes the job's pool (or finds it, by its id) and records it in the
    /// job's backend records.
    func provision(_ job: JobHandle) async -> StepResult {
        let id = poolID(job)
        remote.ensurePool(id, owner: owner, job: job.id)
        return await job.setRecord("pool", id) == nil ? .interrupted : .done
    }

    /// Submits the open tasks the remote does not know yet, in batches; the
    /// remote's tags are the record, so a crash between two batches submits
    /// the rest and nothing twice.
    func submit(_ job: JobHandle) async -> StepResult {
        guard let tasks = await job.tasks() else { return .interrupted }
        let known = remote.known(job: job.id)
        let todo = tasks.filter { $0.state.isOpen && !known.contains($0.taskId) }
        for start in stride(from: 0, to: todo.count, by: batchSize(job)) {
            if job.control.isHalted { return .interrupted }
            remote.submit(job: job.id, todo[start..<min(todo.count, start + batchSize(job))].map { ($0.taskId, $0.command) })
            job.crashPoint("submit.batch")
        }
        job.log.info("tasks submitted", metadata: ["tasks": "\(todo.count)", "already.there": "\(tasks.count - todo.count)"])
        return .done
    }

    func adapter(for job: JobHandle) async -> (any TaskAdapter)? { FakeAdapter(backend: self, job: job) }

    /// Stops the job's tasks on the remote, then records the open ones cancelled.
    func cancel(_ job: JobHandle) async {
        remote.cancel(job: job.id)
        _ = await job.cancelOpenTasks()
    }

    /// Whatever the verdict, the job's tasks and its pool go (nothing left
    /// to bill). Repeating it deletes nothing more.
    func cleanup(_ job: JobHandle, _ verdict: Verdict) async {
        guard let cleaned = await job.record("cleaned", as: Bool.self), cleaned != true else { return }
        remote.cancel(job: job.id)
        remote.deleteTasks(job: job.id)
        if let pool = await job.record("pool", as: String.self) ?? nil {
            remote.deletePool(pool)
        }
        job.crashPoint("cleanup.deleted")
        _ = await job.setRecord("cleaned", true)
    }

    func owned() async throws -> (owner: String, items: [HeldItem])? {
        let known = Set(try await ledger.records("pool", as: String.self).map(\.jobID))
        let pools = remote.state.withLock { $0.pools }
        return (owner, pools.sorted { $0.key < $1.key }.map { id, tags in
            HeldItem(kind: "pool", id: id, state: "active", job: tags["job"], nodes: 1, orphan: !known.contains(tags["job"] ?? ""))
        })
    }
}

/// The fake's part of the running phase: one poll per interval for the
/// whole job; each finished task's output fetched as it ends; a task to run
/// again (or one deleted behind our back: lost) submitted again.
struct FakeAdapter: TaskAdapter {
    let backend: FakeBackend
    let job: JobHandle
    var remote: FakeRemote { backend.remote }

    var traits: AdapterTraits { AdapterTraits(launchBatch: backend.batchSize(job), throttledByPhase: false) }

    /// The number of each open task's next attempt.
    func nextAttempts() async -> [Int: Int]? {
        guard let attempts = await job.attempts() else { return nil }
        var next: [Int: Int] = [:]
        for a in attempts { next[a.idx] = max(next[a.idx] ?? 1, a.attempt + 1) }
        return next
    }

    /// Every open task the remote knows is live.
    func resume() async -> Resumed? {
        guard let tasks = await job.tasks(), let next = await nextAttempts() else { return nil }
        let known = remote.known(job: job.id)
        return Resumed(live: tasks.filter { $0.state.isOpen && known.contains($0.taskId) }.map {
            LiveAttempt(idx: $0.idx, taskID: $0.taskId, attempt: next[$0.idx] ?? 1, task: $0)
        })
    }

    func launch(_ tasks: [Int]) async -> Launched {
        guard let all = await job.tasks(), let next = await nextAttempts() else { return .interrupted }
        let wanted = Set(tasks)
        let todo = all.filter { wanted.contains($0.idx) && $0.state.isOpen }
        remote.submit(job: job.id, todo.map { ($0.taskId, $0.command) })
        return .launched(todo.map { LiveAttempt(idx: $0.idx, taskID: $0.taskId, attempt: next[$0.idx] ?? 1, task: $0) }, waiters: [])
    }

    /// One poll of the remote for the whole job, every 20 ms.
    func poll(_ live: [LiveAttempt]) async -> [TaskReport]? {
        if await job.control.halt.wait(timeout: 0.02) != nil { return nil }
        let seen = remote.poll(job: job.id)
        var reports: [TaskReport] = []
        for a in live {
            let dir = job.attemptDirectory(a.taskID, a.attempt)
            func ended(_ outcome: TaskOutcome) -> TaskReport {
                .ended(idx: a.idx, Ending(attempt: a.attempt, directory: dir, outcome: outcome, row: .remote(ranFor: nil)))
            }
            guard let r = seen[a.taskID] else {
                // Deleted behind our back: lost (the phase submits it again while the machine says so).
                reports.append(ended(.lost))
                continue
            }
            switch r.state {
            case "running": reports.append(.running(idx: a.idx))
            case "done": reports.append(ended(.exited(code: r.exitCode)))
            case "cancelled": reports.append(ended(.cancelled))
            default: break
            }
        }
        return reports
    }

    /// Fetches the remote's output into the attempt's directory, then
    /// writes it into the destination as the submitter may.
    func collect(_ task: TaskRecord, _ ending: Ending, sink: OutputSink) async -> Result<[OutputRecord], any Error>? {
        let name = "\(task.taskId).out"
        guard sink.patterns.contains(where: { Glob($0).matches([name]) }) else { return .success([]) }
        guard let r = remote.task(job: job.id, task.taskId) else { return .failure(DaemonError("the remote no longer has task \(task.taskId)")) }
        let staged = "\(ending.directory)/\(name)"
        return Result {
            try FileOps.makeDirectory(ending.directory)
            try Data((r.command + "\n").utf8).write(to: URL(fileURLWithPath: staged))
            defer { unlink(staged) }
            let fd = open(staged, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw DaemonError("cannot read \(staged)") }
            defer { close(fd) }
            return [try sink.write(name, from: fd, task: task.idx)]
        }
    }

    func kill(_ live: [LiveAttempt]) async { remote.cancel(job: job.id) }
}
