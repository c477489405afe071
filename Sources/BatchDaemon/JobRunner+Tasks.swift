import BatchControl
import BackendLocal
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Which task produced each output path of a job, so two tasks never write
/// the same file.
final class OutputClaims: Sendable {
    let owners: Mutex<[String: Int]>
    init(_ existing: [OutputRecord]) { owners = Mutex(Dictionary(existing.map { ($0.path, $0.idx) }, uniquingKeysWith: { a, _ in a })) }

    /// Claims `path` for task `idx`; the other owner if it is taken.
    func claim(_ path: String, for idx: Int) -> Int? {
        owners.withLock { o in
            if let other = o[path], other != idx { return other }
            o[path] = idx
            return nil
        }
    }
}

/// What the attempts of one monitoring pass share.
struct MonitorScope: Sendable {
    let job: JobRecord
    let shared: [InputFile]
    let sha: [String: String]
    let patterns: [String]
    let claims: OutputClaims
    let destination: LazyDestination
}

/// The job's destination, opened (and its missing directories made) when
/// the first output is collected, then shared by every task.
final class LazyDestination: Sendable {
    let path: String
    let policy: AccessPolicy
    let jobID: String
    let opened = Mutex<Destination?>(nil)

    init(path: String, policy: AccessPolicy, jobID: String) {
        self.path = path
        self.policy = policy
        self.jobID = jobID
    }

    func get() throws -> Destination {
        try opened.withLock { d in
            if let d { return d }
            let made = try Destination(path: path, policy: policy, jobID: jobID)
            d = made
            return made
        }
    }
}

extension JobRunner {
    /// Runs (and first reconciles) the job's tasks until none is left, the job
    /// is cancelled, or the daemon shuts down (nil).
    func monitor(_ job: JobRecord) async -> JobEvent? {
        guard let inputs = await retrying("read inputs", { try await ctx.store.inputs(jobID) }),
              let outputs = await retrying("read outputs", { try await ctx.store.outputs(jobID) }),
              let live = await retrying("read live attempts", { try await ctx.store.liveAttempts(jobID) }) else { return nil }
        let scope = MonitorScope(
            job: job, shared: decodeInputs(job.sharedInputs),
            sha: Dictionary(inputs.map { ($0.source, $0.sha256) }, uniquingKeysWith: { a, _ in a }),
            patterns: (try? JSONDecoder().decode([String].self, from: Data(job.outputPatterns.utf8))) ?? [],
            claims: OutputClaims(outputs),
            destination: LazyDestination(path: job.destination, policy: ctx.policy(job), jobID: jobID))
        if !live.isEmpty {
            // A daemon killed while copying an output left its temp file.
            let removed = Destination.sweep(job.destination, jobID: jobID)
            if removed > 0 { log.info("removed temp files left in the destination", metadata: ["files": "\(removed)"]) }
        }
        let limit = job.maxParallel ?? Int.max

        await withTaskGroup(of: Int?.self) { group in
            var running = 0
            // Reconcile what a crash left: finished while we were away, still
            // running (adopt it), or gone without a word (run it again, free).
            for attempt in live {
                guard let task = await retrying("read a task", { try await ctx.store.task(jobID, idx: attempt.idx) }) ?? nil else { continue }
                let pid = LocalRunner.livePid(attempt.directory, recorded: attempt.pid)
                switch Reconcile.decide(recorded: LocalRunner.recordedOutcome(attempt.directory), alive: pid != nil, strikes: task.strikes) {
                case .finished(let outcome):
                    _ = await finish(task, attempt.attempt, attempt.directory, outcome, scope)
                case .setAside:
                    // The crash-loop breaker: the daemon died twice while
                    // launching or taking over this task. It is failed, for
                    // good, instead of being tried a third time.
                    if let pid { ProcessControl.signalGroup(pid, SIGKILL) }
                    log.error("task set aside: the daemon stopped twice while starting it", metadata: ["task.id": "\(task.taskId)"])
                    _ = await finish(task, attempt.attempt, attempt.directory,
                                     .launchFailed(reason: "the daemon stopped twice while starting or taking over this task, so it is not run again"),
                                     scope, final: true)
                case .adopt:
                    guard let pid else { continue }
                    log.info("adopted a running task", metadata: ["task.id": "\(task.taskId)", "attempt": "\(attempt.attempt)", "pid": "\(pid)"])
                    // A strike while taking it over, lifted once it is watched.
                    guard await retrying("note the adoption", { try await ctx.store.strike(jobID, idx: task.idx) }) != nil else { continue }
                    Debug.crashPoint("adopt", task.command)
                    ctx.slots.take()
                    let remaining = job.timeoutSeconds.map { $0 - (ctx.clock() - attempt.startedAt) }
                    _ = await retrying("note the adoption", { try await ctx.store.unstrike(jobID, idx: task.idx) })
                    group.addTask {
                        defer { ctx.slots.release() }
                        let spec = AttemptSpec(directory: attempt.directory, command: task.command, env: [:], inputs: [], timeout: job.timeoutSeconds)
                        let outcome = await ctx.runner.wait(pid: pid, spec: spec, remaining: remaining, stop: control.stop)
                        return await finish(task, attempt.attempt, attempt.directory, outcome, scope)
                    }
                    running += 1
                case .lost:
                    _ = await finish(task, attempt.attempt, attempt.directory, .lost, scope)
                }
            }
            control.reconciled.fire(())

            var queue = await retrying("read pending tasks", { try await ctx.store.pendingIndices(jobID) }) ?? []
            queue.reverse()  // pop from the end: lowest index first
            while true {
                while let idx = queue.last, running < limit, control.halt.value == nil {
                    guard await acquireSlot() else { break }
                    queue.removeLast()
                    running += 1
                    group.addTask {
                        defer { ctx.slots.release() }
                        return await attempt(idx, scope)
                    }
                }
                if running == 0 { break }
                if let result = await group.next() {
                    running -= 1
                    if let idx = result ?? nil { queue.insert(idx, at: 0) }
                }
            }
        }
        if control.isCancelled { return .cancelRequested }
        if control.halt.value != nil { return nil }
        guard let counts = await retrying("count tasks", { try await ctx.store.counts(jobID) }) else { return nil }
        return .progress(counts)
    }

    /// Waits for a local slot; false if the job is halted first.
    func acquireSlot() async -> Bool {
        await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await ctx.slots.acquire() }
            group.addTask { await control.halt.wait(); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            var got = first == true
            for await r in group where r == true { got = true }
            if got && first != true { ctx.slots.release(); return false }
            return got
        }
    }

    /// Runs one attempt of task `idx`; returns `idx` if it should run again.
    func attempt(_ idx: Int, _ scope: MonitorScope) async -> Int? {
        guard let task = await retrying("read a task", { try await ctx.store.task(jobID, idx: idx) }) ?? nil,
              let number = await retrying("number the attempt", { try await ctx.store.nextAttemptNumber(jobID, idx: idx) }) else { return nil }
        let dir = "\(ctx.config.jobsDirectory)/\(jobID)/tasks/\(task.taskId)/attempt-\(number)"
        let env = TaskEnvironment.variables(base: ctx.baseEnvironment,
                                            task: (try? JSONDecoder().decode([String: String].self, from: Data(task.env.utf8))) ?? [:],
                                            job: jobID, name: scope.job.name, taskID: task.taskId, index: idx, attempt: number)
        var placed: [(sha256: String, target: String)] = []
        var missing: String?
        for input in scope.shared + decodeInputs(task.inputs) {
            if let sha = scope.sha[input.source] { placed.append((sha, input.target)) } else { missing = input.source }
        }
        let spec = AttemptSpec(directory: dir, command: task.command, env: env, inputs: placed, timeout: scope.job.timeoutSeconds,
                               hide: ctx.hidden(for: scope.job))
        // Write-ahead: the attempt is on record before its process exists
        // (with a strike, lifted once it runs: see the crash-loop breaker).
        guard await retrying("record the attempt", { try await ctx.store.beginAttempt(jobID, idx: idx, attempt: number, directory: dir) }) != nil else { return nil }
        Debug.crashPoint("start", task.command)
        let outcome: TaskOutcome
        do {
            if let missing { throw DaemonError("input \(missing) was not staged") }
            try ctx.runner.prepare(spec)
            let pid = try ctx.runner.start(spec)
            _ = await retrying("record the pid", { try await ctx.store.attemptRunning(jobID, idx: idx, attempt: number, pid: pid) })
            log.debug("task started", metadata: ["task.id": "\(task.taskId)", "attempt": "\(number)", "pid": "\(pid)"])
            outcome = await ctx.runner.wait(pid: pid, spec: spec, remaining: scope.job.timeoutSeconds, stop: control.stop)
        } catch {
            outcome = .launchFailed(reason: "\(error)")
        }
        return await finish(task, number, dir, outcome, scope)
    }

    /// Collects outputs of a successful attempt, decides the task's fate and
    /// records it all in one transaction. Returns the index to run again.
    /// With `final`, the task fails whatever retries it has left.
    func finish(_ task: TaskRecord, _ number: Int, _ dir: String, _ result: TaskOutcome, _ scope: MonitorScope, final: Bool = false) async -> Int? {
        var outcome = result
        var outputs: [OutputRecord] = []
        if outcome.isSuccess, !scope.patterns.isEmpty {
            do {
                let work = try OutputCollector.openDirectory(ctx.config.jobsDirectory, "\(jobID)/tasks/\(task.taskId)/attempt-\(number)/work")
                defer { close(work) }
                let found = try OutputCollector.find(in: work, patterns: scope.patterns)
                if !found.symlinks.isEmpty {
                    log.warning("symlinks among the outputs are not collected", metadata: [
                        "task.id": "\(task.taskId)", "paths": "\(found.symlinks.prefix(5).map { Printable.escape($0) }.joined(separator: ", "))"])
                }
                let destination = found.files.isEmpty ? nil : try scope.destination.get()
                for rel in found.files {
                    if let other = scope.claims.claim(rel, for: task.idx) {
                        throw DaemonError("output \(Printable.escape(rel)) is also produced by task \(other); make output names unique, e.g. with {task}")
                    }
                    let fd = try OutputCollector.open(rel, in: work)
                    defer { close(fd) }
                    let (sha, size) = try destination!.write(rel, from: fd)
                    outputs.append(OutputRecord(jobId: jobID, path: rel, idx: task.idx, size: Int(size), sha256: sha))
                }
            } catch {
                outcome = .outputsFailed(reason: "\(error)")
            }
        }
        let counted = task.countedAttempts + (outcome.countsAsAttempt ? 1 : 0)
        var decision = RetryPolicy.decide(outcome, countedAttempts: counted, retries: scope.job.retries)
        if decision == .retry && control.isCancelled { decision = .cancelled }
        if final { decision = .failed }
        let (o, d, collected) = (outcome, decision, outputs)
        guard await retrying("record the attempt's end", {
            try await ctx.store.finishAttempt(jobID, idx: task.idx, attempt: number, outcome: o, decision: d, outputs: collected)
        }) != nil else { return nil }
        let level: Logger.Level = decision == .failed ? .warning : .info
        log.log(level: level, "task finished", metadata: [
            "task.id": "\(task.taskId)", "attempt": "\(number)", "outcome": "\(outcome.summary)", "decision": "\(decision)",
        ])
        return decision == .retry && control.halt.value == nil ? task.idx : nil
    }

    /// Stops attempts still recorded as live (after a restart into a cancel)
    /// and records them cancelled.
    func stopLiveAttempts(_ job: JobRecord) async {
        guard let live = await retrying("read live attempts", { try await ctx.store.liveAttempts(jobID) }) else { return }
        for attempt in live {
            if let pid = LocalRunner.livePid(attempt.directory, recorded: attempt.pid) {
                let spec = AttemptSpec(directory: attempt.directory, command: "", env: [:], inputs: [], timeout: nil)
                let stop = AsyncEvent<StopReason>()
                stop.fire(.cancel)
                _ = await ctx.runner.wait(pid: pid, spec: spec, remaining: nil, stop: stop)
            }
            _ = await retrying("record the cancel", {
                try await ctx.store.finishAttempt(jobID, idx: attempt.idx, attempt: attempt.attempt, outcome: .cancelled, decision: .cancelled, outputs: [])
            })
        }
    }
}
