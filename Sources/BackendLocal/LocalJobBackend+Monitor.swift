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

/// The tasks a monitoring pass has yet to start: pending tasks in index
/// order, read from the database a chunk at a time, then those to run again
/// in the order they ended.
struct PendingQueue {
    let chunk: Int
    let read: (_ after: Int, _ limit: Int) async -> [Int]?
    var buffered: ArraySlice<Int> = []
    var after = -1
    var exhausted = false
    var retries: [Int] = []
    var nextRetry = 0

    init(chunk: Int, read: @escaping (_ after: Int, _ limit: Int) async -> [Int]?) {
        self.chunk = chunk
        self.read = read
    }

    /// The next task to start, reading the next chunk when needed; nil when
    /// none is left (or the daemon is stopping).
    mutating func peek() async -> Int? {
        if buffered.isEmpty && !exhausted {
            guard let next = await read(after, chunk) else { exhausted = true; return nil }
            buffered = next[...]
            after = next.last ?? after
            exhausted = next.count < chunk
        }
        if let first = buffered.first { return first }
        return nextRetry < retries.count ? retries[nextRetry] : nil
    }

    /// Removes what `peek` returned.
    mutating func take() {
        if !buffered.isEmpty { buffered.removeFirst(); return }
        nextRetry += 1
        if nextRetry == retries.count { retries.removeAll(keepingCapacity: true); nextRetry = 0 }
    }

    /// A task to run again, after every task now waiting.
    mutating func retry(_ idx: Int) { retries.append(idx) }
}

/// What the attempts of one monitoring pass share.
struct MonitorScope: Sendable {
    let job: JobHandle
    let sha: [String: String]
    let outputs: OutputSink
    /// Stops running attempts: the job's own stop, or its wall clock running out.
    let stop: AsyncEvent<StopReason>
}

extension LocalJobBackend {
    /// Reconciles what a crash left, then runs the job's tasks until none is
    /// left or the job is halted.
    public func monitor(_ job: JobHandle) async -> StepResult {
        guard let inputs = await job.retrying("read inputs", { try await job.store.inputs(job.id) }),
              let sink = await job.outputSink(),
              let live = await job.retrying("read live attempts", { try await job.store.liveAttempts(job.id) }) else { return .interrupted }
        guard let used = await job.retrying("read the core time used", { try await job.store.coreSecondsUsed(job.id) }) else { return .interrupted }
        var limits = JobLimits(job.spec.limits, acceptedAt: job.job.createdAt, used: used)
        if let refusal = limits.refusal(at: job.clock()) {
            // Past a limit already (the daemon was down when it ran out):
            // the job's stop (cancelTasks) ends what is still running.
            return .failed(reason: refusal)
        }
        let control = job.control
        let stop = AsyncEvent<StopReason>()
        let forward = control.stop.observe { stop.fire($0) }
        defer { control.stop.unobserve(forward) }
        // The wall clock: when it runs out, running attempts are stopped too.
        let wallClock = limits.wallClockLeft(at: job.clock()).map { left in
            Task {
                try? await Task.sleep(for: .seconds(left))
                if !Task.isCancelled { stop.fire(.cancel) }
            }
        }
        defer { wallClock?.cancel() }
        let scope = MonitorScope(job: job, sha: Dictionary(inputs.map { ($0.source, $0.sha256) }, uniquingKeysWith: { a, _ in a }),
                                 outputs: sink, stop: stop)
        if !live.isEmpty {
            // A daemon killed while copying an output left its temp file.
            let removed = Destination.sweep(job.job.destination, jobID: job.id)
            if removed > 0 { job.log.info("removed temp files left in the destination", metadata: ["files": "\(removed)"]) }
        }
        let limit = job.job.maxParallel ?? Int.max

        // Each attempt reports its end through `ended`; the group discards a
        // finished attempt's task at once (a task group that keeps results
        // for `next()` held every finished attempt's memory until the job
        // ended: about 10 KB a task).
        let (ended, report) = AsyncStream<(idx: Int, again: Bool)>.makeStream()
        var endings = ended.makeAsyncIterator()
        var refusal: String?
        await withDiscardingTaskGroup { group in
            var running = 0
            // Reconcile what a crash left: finished while we were away, still
            // running (adopt it), or gone without a word (run it again, free).
            for attempt in live {
                guard let task = await job.retrying("read a task", { try await job.store.task(job.id, idx: attempt.idx) }) ?? nil else { continue }
                let pid = LocalRunner.livePid(attempt.directory, recorded: attempt.pid)
                switch Reconcile.decide(recorded: LocalRunner.recordedOutcome(attempt.directory), alive: pid != nil, strikes: task.strikes) {
                case .finished(let outcome):
                    _ = await finish(task, attempt.attempt, attempt.directory, outcome, scope)
                case .setAside:
                    // The crash-loop breaker: the daemon died twice while
                    // launching or taking over this task. It is failed, for
                    // good, instead of being tried a third time.
                    if let pid { ProcessControl.signalGroup(pid, SIGKILL) }
                    job.log.error("task set aside: the daemon stopped twice while starting it", metadata: ["task.id": "\(task.taskId)"])
                    _ = await finish(task, attempt.attempt, attempt.directory, .lost, scope, setAside: true)
                case .adopt:
                    guard let pid else { continue }
                    job.log.info("adopted a running task", metadata: ["task.id": "\(task.taskId)", "attempt": "\(attempt.attempt)", "pid": "\(pid)"])
                    // A strike while taking it over, lifted once it is watched.
                    guard await job.retrying("note the adoption", { try await job.store.strike(job.id, idx: task.idx) }) != nil else { continue }
                    Debug.crashPoint("adopt", task.command)
                    slots.take()
                    let remaining = job.spec.timeoutSeconds.map { $0 - (job.clock() - attempt.startedAt) }
                    _ = await job.retrying("note the adoption", { try await job.store.unstrike(job.id, idx: task.idx) })
                    limits.started(task.idx, at: attempt.startedAt)
                    group.addTask {
                        let spec = AttemptSpec(directory: attempt.directory, command: task.command, env: [:], inputs: [], timeout: job.spec.timeoutSeconds)
                        let outcome = await runner.wait(pid: pid, spec: spec, remaining: remaining, stop: stop)
                        let again = await finish(task, attempt.attempt, attempt.directory, outcome, scope)
                        slots.release()  // before the report, so the next task finds the slot free
                        report.yield((task.idx, again != nil))
                    }
                    running += 1
                case .lost:
                    _ = await finish(task, attempt.attempt, attempt.directory, .lost, scope)
                }
            }
            control.reconciled.fire(())

            // The pending tasks, read a chunk at a time in index order (memory
            // stays bounded by the chunk, not the job), then the retries.
            var queue = PendingQueue(chunk: 1000) { after, limit in
                await job.retrying("read pending tasks", { try await job.store.pendingIndices(job.id, after: after, limit: limit) })
            }
            while true {
                while running < limit, !control.isHalted, refusal == nil, let idx = await queue.peek() {
                    guard await acquireSlot(control) else { break }
                    // The job's limits, checked before each start.
                    if let why = limits.refusal(at: job.clock()) {
                        slots.release()
                        refusal = why
                        break
                    }
                    queue.take()
                    running += 1
                    limits.started(idx, at: job.clock())
                    group.addTask {
                        let again = await attempt(idx, scope)
                        slots.release()  // before the report, so the next task finds the slot free
                        report.yield((idx, again != nil))
                    }
                }
                if running == 0 { break }
                guard let result = await endings.next() else { break }
                running -= 1
                limits.ended(result.idx, at: job.clock())
                if result.again { queue.retry(result.idx) }
                // The wall clock ran out: what was running is being stopped.
                if refusal == nil, stop.value != nil, !control.isHalted { refusal = limits.wallClockReason }
            }
        }
        if control.isHalted { return .interrupted }
        if let refusal {
            job.log.warning("job stopped by its limits", metadata: ["reason": "\(refusal)"])
            return .failed(reason: refusal)
        }
        return .done
    }

    /// Waits for a local slot; false if the job is halted first.
    func acquireSlot(_ control: JobControl) async -> Bool {
        if slots.tryAcquire() {
            if control.isHalted { slots.release(); return false }
            return true
        }
        return await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await slots.acquire() }
            group.addTask { await control.halt.wait(); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            var got = first == true
            for await r in group where r == true { got = true }
            if got && first != true { slots.release(); return false }
            return got
        }
    }

    /// Runs one attempt of task `idx`; returns `idx` if it should run again.
    func attempt(_ idx: Int, _ scope: MonitorScope) async -> Int? {
        let job = scope.job
        // Write-ahead: the attempt is on record before its process exists
        // (with a strike, lifted once it runs: see the crash-loop breaker).
        guard let (task, number) = await job.retrying("record the attempt", {
            try await job.store.beginNextAttempt(job.id, idx: idx, directory: { job.attemptDirectory($0.taskId, $1) })
        }) ?? nil else { return nil }
        let dir = job.attemptDirectory(task.taskId, number)
        let env = TaskEnvironment.variables(base: baseEnvironment, task: task.environment,
                                            job: job.id, name: job.spec.name, taskID: task.taskId, index: idx, attempt: number)
        var placed: [(sha256: String, target: String)] = []
        var missing: String?
        for input in job.spec.sharedInputs + task.inputFiles {
            if let sha = scope.sha[input.source] { placed.append((sha, input.target)) } else { missing = input.source }
        }
        let spec = AttemptSpec(directory: dir, command: task.command, env: env, inputs: placed, timeout: job.spec.timeoutSeconds,
                               hide: hidden(for: job.spec))
        job.crashPoint("task.begun")
        Debug.crashPoint("start", task.command)
        let outcome: TaskOutcome
        do {
            if let missing { throw DaemonError("input \(missing) was not staged") }
            try runner.prepare(spec)
            let pid = try runner.start(spec)
            job.crashPoint("task.spawned")
            _ = await job.retrying("record the pid", { try await job.store.attemptRunning(job.id, idx: idx, attempt: number, pid: pid) })
            job.log.debug("task started", metadata: ["task.id": "\(task.taskId)", "attempt": "\(number)", "pid": "\(pid)"])
            outcome = await runner.wait(pid: pid, spec: spec, remaining: job.spec.timeoutSeconds, stop: scope.stop)
        } catch {
            outcome = .launchFailed(reason: "\(error)")
        }
        return await finish(task, number, dir, outcome, scope)
    }

    /// Ends an attempt the shared way (`JobHandle.endAttempt`): outputs of
    /// a success collected from its work directory, the machine's decision
    /// recorded. Returns the index to run again. A task `setAside` fails
    /// whatever retries it has left.
    func finish(_ task: TaskRecord, _ number: Int, _ dir: String, _ outcome: TaskOutcome, _ scope: MonitorScope, setAside: Bool = false) async -> Int? {
        let job = scope.job
        let decision = await job.endAttempt(EndedAttempt(task: task, attempt: number, directory: dir, outcome: outcome, row: .begun),
                                            rules: job.taskRules(), setAside: setAside) {
            job.collectOutputs(root: job.jobsDirectory, relative: "\(job.id)/tasks/\(task.taskId)/attempt-\(number)/work",
                               task: task, sink: scope.outputs).mapError { $0 as any Error }
        }
        return decision == .retry && !job.control.isHalted ? task.idx : nil
    }

    /// Stops attempts still recorded as live (after a restart into a cancel)
    /// and records them cancelled.
    func stopLiveAttempts(_ job: JobHandle) async {
        guard let live = await job.retrying("read live attempts", { try await job.store.liveAttempts(job.id) }) else { return }
        for attempt in live {
            if let pid = LocalRunner.livePid(attempt.directory, recorded: attempt.pid) {
                let spec = AttemptSpec(directory: attempt.directory, command: "", env: [:], inputs: [], timeout: nil)
                let stop = AsyncEvent<StopReason>()
                stop.fire(.cancel)
                _ = await runner.wait(pid: pid, spec: spec, remaining: nil, stop: stop)
            }
            _ = await job.retrying("record the cancel", {
                try await job.store.finishAttempt(job.id, idx: attempt.idx, attempt: attempt.attempt, outcome: .cancelled, decision: .cancelled, outputs: [])
            })
        }
    }
}
