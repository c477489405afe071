import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The local backend's part of the running phase: attempts under
/// batchd-exec in the slots every local job shares, one waiter per attempt
/// (the process's exit, its timeout, the job's stop), outputs copied from
/// its work directory.
struct LocalAdapter: TaskAdapter {
    let backend: LocalJobBackend
    let job: JobHandle
    /// The staged inputs: source → sha256.
    let sha: [String: String]
    /// Stops running attempts: the job's own stop, or its wall clock.
    let stop: AsyncEvent<StopReason>
    /// Whom the tasks run as, when not the daemon's own user.
    let user: Submitter?
    /// The environment every task starts from: the daemon's passed
    /// variables, with HOME, USER and LOGNAME the task user's.
    let baseEnvironment: [String: String]

    var traits: AdapterTraits {
        // Ends are recorded as they come (each copies its outputs), as many
        // at once as there are slots.
        AdapterTraits(coresPerTask: 1, launchBatch: 1, throttledByPhase: true, polls: false, endWidth: max(1, backend.slots.usage.limit))
    }

    var slots: SlotPool { backend.slots }
    var runner: LocalRunner { backend.runner }

    /// Reconciles what a crash left: finished while we were away, still
    /// running (adopted, with a waiter), or gone without a word (lost: it
    /// runs again, free).
    func resume() async -> Resumed? {
        guard let live = await job.liveAttempts() else { return nil }
        if !live.isEmpty {
            // A daemon killed while copying an output left its temp file.
            let removed = Destination.sweep(job.job.destination, jobID: job.id, as: job.policy.submitter)
            if removed > 0 { job.log.info("removed temp files left in the destination", metadata: ["files": "\(removed)"]) }
        }
        var resumed = Resumed()
        for attempt in live {
            guard let task = await job.task(attempt.idx) ?? nil else { continue }
            let pid = LocalRunner.livePid(attempt.directory, recorded: attempt.pid)
            let dir = attempt.directory
            func ending(_ outcome: TaskOutcome, setAside: Bool = false) -> TaskReport {
                .ended(idx: task.idx, Ending(attempt: attempt.attempt, directory: dir, outcome: outcome, row: .begun, setAside: setAside))
            }
            let a = LiveAttempt(idx: task.idx, taskID: task.taskId, attempt: attempt.attempt, startedAt: attempt.startedAt, task: task)
            switch Reconcile.decide(recorded: LocalRunner.recordedOutcome(dir), alive: pid != nil, strikes: task.strikes) {
            case .finished(let outcome):
                resumed.live.append(a)
                resumed.found.append(ending(outcome))
            case .setAside:
                // The crash-loop breaker: the daemon died twice while
                // launching or taking over this task. It is failed, for
                // good, instead of being tried a third time.
                if let pid { ProcessControl.signalGroup(pid, SIGKILL, as: job.spec.container == nil ? user?.uid : nil) }
                if let c = backend.adoptedContainer(job, idx: task.idx, attempt: attempt.attempt) { await c.engine.remove(c.name, grace: 0) }
                job.log.error("task set aside: the daemon stopped twice while starting it", metadata: ["task.id": "\(task.taskId)"])
                resumed.live.append(a)
                resumed.found.append(ending(.lost, setAside: true))
            case .adopt:
                guard let pid else { continue }
                job.log.info("adopted a running task", metadata: ["task.id": "\(task.taskId)", "attempt": "\(attempt.attempt)", "pid": "\(pid)"])
                // A strike while taking it over, lifted once it is watched.
                guard await job.strike(task.idx) != nil else { return nil }
                Debug.crashPoint("adopt", task.command)
                slots.take()
                let remaining = job.spec.timeoutSeconds.map { $0 - (job.clock() - attempt.startedAt) }
                _ = await job.unstrike(task.idx)
                var spec = AttemptSpec(directory: dir, command: task.command, env: [:], inputs: [], timeout: job.spec.timeoutSeconds, user: user)
                spec.container = backend.adoptedContainer(job, idx: task.idx, attempt: attempt.attempt)
                resumed.live.append(a)
                resumed.waiters.append(waiter(pid: pid, spec: spec, remaining: remaining, attempt: a))
            case .lost:
                resumed.live.append(a)
                resumed.found.append(ending(.lost))
            }
        }
        return resumed
    }

    /// A slot, when one is free and the jobs that asked before have theirs.
    func reserve(_ wanted: Int, until: AsyncEvent<Void>, then grant: @escaping @Sendable (Int?) -> Void) {
        slots.acquire(until: until) { grant($0 ? 1 : nil) }
    }

    func unreserve(_ count: Int) { for _ in 0..<count { slots.release() } }

    /// Starts one attempt of each task. Write-ahead: the attempt is on
    /// record before its process exists (with a strike, lifted once it runs:
    /// see the crash-loop breaker).
    func launch(_ tasks: [Int]) async -> Launched {
        var launched: [LiveAttempt] = []
        var waiters: [AttemptWaiter] = []
        for idx in tasks {
            guard let begun = await job.beginNextAttempt(idx) else { return .interrupted }
            guard let (task, number) = begun else { continue }
            let dir = job.attemptDirectory(task.taskId, number)
            let env = TaskEnvironment.variables(base: baseEnvironment, task: task.env,
                                                job: job.id, name: job.spec.name, taskID: task.taskId, index: idx, attempt: number)
            var placed: [(sha256: String, target: String)] = []
            var missing: String?
            for input in job.spec.sharedInputs + task.inputs {
                if let sha = sha[input.source] { placed.append((sha, input.target)) } else { missing = input.source }
            }
            var spec = AttemptSpec(directory: dir, command: task.command, env: env, inputs: placed, timeout: job.spec.timeoutSeconds,
                                   hide: backend.hidden(for: job.spec), user: user)
            if job.spec.container != nil {
                // Into a container go the task's and the job's variables, none of the host's.
                let own = TaskEnvironment.variables(task: task.env, job: job.id, name: job.spec.name, taskID: task.taskId, index: idx, attempt: number)
                spec.env = own
                spec.hide = []
                spec.container = backend.containerLaunch(job, idx: idx, attempt: number, directory: dir, variables: own, command: task.command)
            }
            job.crashPoint("task.begun")
            Debug.crashPoint("start", task.command)
            let attempt = LiveAttempt(idx: idx, taskID: task.taskId, attempt: number, startedAt: job.clock(), task: task)
            launched.append(attempt)
            do {
                if let missing { throw DaemonError("input \(missing) was not staged") }
                // Read again at each launch, as the submitter: a secret
                // rotated between attempts is the new one.
                if let secrets = job.spec.secrets { spec.secrets = try Secrets.values(secrets, policy: job.policy) }
                try runner.prepare(spec)
                let pid = try runner.start(spec)
                spec.secrets = [:]  // not kept while the attempt runs
                job.crashPoint("task.spawned")
                _ = await job.attemptRunning(idx, attempt: number, pid: pid)
                job.log.debug("task started", metadata: ["task.id": "\(task.taskId)", "attempt": "\(number)", "pid": "\(pid)"])
                waiters.append(waiter(pid: pid, spec: spec, remaining: job.spec.timeoutSeconds, attempt: attempt))
            } catch {
                let reason = "\(error)"
                waiters.append { [slots] in
                    slots.release()
                    return .ended(idx: idx, Ending(attempt: number, directory: dir, outcome: .launchFailed(reason: reason), row: .begun))
                }
            }
        }
        return .launched(launched, waiters: waiters)
    }

    /// Waits for an attempt's process; its slot is given back before the
    /// report, so the next task finds it free.
    func waiter(pid: pid_t, spec: AttemptSpec, remaining: Double?, attempt: LiveAttempt) -> AttemptWaiter {
        let (runner, slots, stop) = (runner, slots, stop)
        return {
            let outcome = await runner.wait(pid: pid, spec: spec, remaining: remaining, stop: stop)
            slots.release()
            return .ended(idx: attempt.idx, Ending(attempt: attempt.attempt, directory: spec.directory, outcome: outcome, row: .begun))
        }
    }

    /// Copies what a successful attempt left in its work directory.
    func collect(_ task: TaskRecord, _ ending: Ending, sink: OutputSink) async -> Result<[OutputRecord], any Error>? {
        job.collectOutputs(root: job.jobsDirectory, relative: "\(job.id)/tasks/\(task.taskId)/attempt-\(ending.attempt)/work",
                           task: task, sink: sink).mapError { $0 as any Error }
    }

    /// Stops every running attempt (the wall clock: it stops them all).
    func kill(_ live: [LiveAttempt]) async { stop.fire(.cancel) }
}

extension LocalJobBackend {
    /// The local adapter for one run of the running phase, with the job's
    /// staged inputs and its stop (the job's own, or its wall clock); nil on
    /// shutdown.
    public func adapter(for job: JobHandle) async -> (any TaskAdapter)? {
        guard let inputs = await job.stagedInputs() else { return nil }
        let stop = AsyncEvent<StopReason>()
        // The job's signals live as long as this run of the job: no need to stop observing.
        _ = job.control.stop.observe { stop.fire($0) }
        let user = taskUser(job)
        var base = baseEnvironment
        if let user {
            base["HOME"] = user.home
            base["USER"] = user.name
            base["LOGNAME"] = user.name
        }
        return LocalAdapter(backend: self, job: job, sha: Dictionary(inputs.map { ($0.source, $0.sha256) }, uniquingKeysWith: { a, _ in a }),
                            stop: stop, user: user, baseEnvironment: base)
    }

    /// Whom a job's tasks run as, when another than the daemon's user.
    func taskUser(_ job: JobHandle) -> Submitter? {
        Identity.switches(to: job.policy.submitter) ? job.policy.submitter : nil
    }

    /// Stops attempts still recorded as live (after a restart into a cancel)
    /// and records them cancelled.
    func stopLiveAttempts(_ job: JobHandle) async {
        guard let live = await job.liveAttempts() else { return }
        for attempt in live {
            if let pid = LocalRunner.livePid(attempt.directory, recorded: attempt.pid) {
                var spec = AttemptSpec(directory: attempt.directory, command: "", env: [:], inputs: [], timeout: nil, user: taskUser(job))
                spec.container = adoptedContainer(job, idx: attempt.idx, attempt: attempt.attempt)
                let stop = AsyncEvent<StopReason>()
                stop.fire(.cancel)
                _ = await runner.wait(pid: pid, spec: spec, remaining: nil, stop: stop)
            }
            _ = await job.recordCancelled(attempt.idx, attempt: attempt.attempt)
        }
    }
}
