import BatchCore
import BatchStore
import BatchSupport
import Logging

/// The running phase, written once for every backend. It owns the loop:
/// what to launch next (the adapter's capacity, the job's `maxParallel`,
/// batches as large as the backend takes), when to ask the backend (its
/// poll, or its waiters), the task machine's decisions and their records
/// (each ended attempt through `JobHandle.endAttempt`), the job's limits,
/// and its halts. The backend's `TaskAdapter` carries out what only it can.
///
/// Everything the loop waits for arrives as one stream of inputs: the
/// adapter's reports (from its poll, or from a waiter per attempt), ends
/// recorded, the job's halt, and the limits' timer. So nothing races:
/// the loop's state is its own.
public struct RunningPhase: Sendable {
    public let job: JobHandle
    public let adapter: any TaskAdapter

    public init(job: JobHandle, adapter: any TaskAdapter) {
        self.job = job
        self.adapter = adapter
    }

    enum Input: Sendable {
        case reports([TaskReport], waiter: Bool)
        case recorded(idx: Int, decision: TaskDecision?)
        case halted
        case limit
        /// What `reserve` granted (nil: launching stopped first).
        case reserved(Int?)
    }

    /// Runs the job's tasks until none is open (`.done`), the job is halted
    /// (`.interrupted`), or it fails (a limit, a backend that refused).
    public func run() async -> StepResult {
        let control = job.control
        let traits = adapter.traits
        guard let sink = await job.outputSink(),
              let ran = await job.retrying("read the core time used", { try await job.store.coreSecondsUsed(job.id) }) else { return .interrupted }
        let limits = Locked(JobLimits(job.spec.limits, acceptedAt: job.job.createdAt, used: ran * traits.coresPerTask,
                                     cores: traits.coresPerTask))
        if let refusal = limits.withLock({ $0.refusal(at: job.clock()) }) {
            // Past a limit already (the daemon was down when it ran out):
            // the job's stop (the cancel step) ends what still runs.
            return .failed(reason: refusal)
        }
        guard let resumed = await adapter.resume() else { return .interrupted }
        control.reconciled.fire(())

        var loop = Loop(phase: self, sink: sink, limits: limits)
        let (inputs, input) = AsyncStream<Input>.makeStream()
        var next = inputs.makeAsyncIterator()
        // Launching stops at a halt or a limit (the adapter's reserve waits on it).
        let launchStop = AsyncEvent<Void>()
        let haltToken = control.halt.observe { _ in launchStop.fire(()); input.yield(.halted) }
        defer { control.halt.unobserve(haltToken) }
        // Live before the poll starts: its first answer may be about them.
        for a in resumed.live { loop.add(a) }

        return await withDiscardingTaskGroup(returning: StepResult.self) { group in
            if let liveBox = loop.liveBox {
                let adapter = adapter
                group.addTask {
                    while !Task.isCancelled {
                        let live = liveBox.withLock { Array($0.values) }
                        guard let reports = await adapter.poll(live) else { break }
                        if !reports.isEmpty { input.yield(.reports(reports, waiter: false)) }
                    }
                }
            }
            if limits.withLock({ $0.deadline != nil || $0.coreSeconds != nil }) {
                let clock = job.clock
                group.addTask {
                    // Checked when a limit may be reached as things stand, and
                    // at least once a second (a task started since brings it nearer).
                    while !Task.isCancelled {
                        let now = clock()
                        let (reached, wait) = limits.withLock { ($0.reached(at: now), $0.secondsUntilReached(at: now)) }
                        if reached != nil {
                            launchStop.fire(())
                            input.yield(.limit)
                            return
                        }
                        try? await Task.sleep(for: .seconds(min(max(wait ?? 1, 0.01), 1)))
                    }
                }
            }
            func follow(_ waiter: @escaping AttemptWaiter) {
                loop.waiting += 1
                group.addTask { input.yield(.reports([await waiter()], waiter: true)) }
            }
            func end(_ idx: Int, _ attempt: LiveAttempt, _ ending: Ending, stopping: Bool) {
                loop.ending += 1
                let (job, adapter) = (job, adapter)
                group.addTask {
                    let decision = await Self.end(job, adapter, attempt, ending, sink: sink, stopping: stopping)
                    input.yield(.recorded(idx: idx, decision: decision))
                }
            }

            for w in resumed.waiters { follow(w) }
            await loop.apply(resumed.found, waiter: false)
            if control.isHalted { loop.halted = true }

            while true {
                while let item = loop.endQueue.popFirst(ifUnder: traits.endWidth, running: loop.ending) {
                    end(item.0, item.1, item.2, stopping: item.3)
                }
                // Capacity comes as an input (a local slot may take a while),
                // so ends are recorded while the launch waits.
                if !loop.reserving, let wanted = await loop.wanted() {
                    loop.reserving = true
                    adapter.reserve(wanted, until: launchStop) { input.yield(.reserved($0)) }
                }
                if loop.failure != nil { launchStop.fire(()) }
                if let result = loop.result() {
                    group.cancelAll()
                    await adapter.finish()
                    return result
                }
                guard let item = await next.next() else { group.cancelAll(); await adapter.finish(); return .interrupted }
                switch item {
                case .reports(let reports, let waiter): await loop.apply(reports, waiter: waiter)
                case .recorded(let idx, let decision): loop.recorded(idx, decision)
                case .halted: loop.halted = true
                case .limit: await loop.limitReached()
                case .reserved(let granted):
                    loop.reserving = false
                    guard let granted else { break }
                    switch await loop.launch(granted) {
                    case .launched(_, let waiters): for w in waiters { follow(w) }
                    case .failed(let reason): loop.failure = reason
                    case .interrupted: loop.halted = true
                    }
                }
            }
        }
    }

    /// Records an attempt's end through the task machine; nil on shutdown.
    static func end(_ job: JobHandle, _ adapter: any TaskAdapter, _ attempt: LiveAttempt, _ ending: Ending, sink: OutputSink,
                    stopping: Bool) async -> TaskDecision? {
        var record = attempt.task
        if record == nil {
            guard let read = await job.retrying("read a task", { try await job.store.task(job.id, idx: attempt.idx) }) else { return nil }
            record = read
        }
        guard let task = record, let ending = await adapter.fetchLogs(task, ending) else { return nil }
        return await job.endAttempt(task, ending, rules: job.taskRules(retriedByService: adapter.traits.retriedByService),
                                    stopping: stopping) {
            await adapter.collect(task, ending, sink: sink)
        }
    }
}

/// The loop's own state: what is live, what each task's machine says,
/// what waits to be recorded, and why the phase is ending.
struct Loop {
    let phase: RunningPhase
    let sink: OutputSink
    let limits: Locked<JobLimits>
    var job: JobHandle { phase.job }
    var traits: AdapterTraits { phase.adapter.traits }

    /// The live attempts, by task index (and a copy the poll reads, for an
    /// adapter that polls).
    var live: [Int: LiveAttempt] = [:]
    let liveBox: Locked<[Int: LiveAttempt]>?
    /// The machine's state of each live task.
    var states: [Int: TaskMachineState] = [:]
    /// Waiters not yet back, ends being recorded, ends waiting their turn.
    var waiting = 0
    var ending = 0
    var endQueue = EndQueue()
    var queue: PendingQueue
    var halted = false
    /// A `reserve` is under way (its answer comes as an input).
    var reserving = false
    var failure: String?
    var limit: LimitReached?

    init(phase: RunningPhase, sink: OutputSink, limits: Locked<JobLimits>) {
        self.phase = phase
        self.sink = sink
        self.limits = limits
        liveBox = phase.adapter.traits.polls ? Locked([:]) : nil
        let job = phase.job
        queue = PendingQueue(chunk: 1000) { after, limit in
            await job.retrying("read pending tasks", { try await job.store.pendingIndices(job.id, after: after, limit: limit) })
        }
    }

    mutating func add(_ a: LiveAttempt) {
        live[a.idx] = a
        liveBox?.withLock { $0[a.idx] = a }
        states[a.idx] = TaskMachineState(phase: a.startedAt == nil ? .launching : .running)
        if let started = a.startedAt { limits.withLock { $0.started(a.idx, at: started) } }
    }

    mutating func remove(_ idx: Int) {
        live[idx] = nil
        liveBox?.withLock { $0[idx] = nil }
        states[idx] = nil
    }

    /// How many tasks to ask capacity for: the next batch, as the job's
    /// `maxParallel` allows; nil when there is nothing to launch now.
    mutating func wanted() async -> Int? {
        guard !halted, failure == nil, limit == nil, !job.control.isHalted else { return nil }
        let maxParallel = traits.throttledByPhase ? (job.job.maxParallel ?? Int.max) : Int.max
        let room = maxParallel - live.count
        guard room > 0 else { return nil }
        let current = live
        let batch = await queue.peek(upTo: min(traits.launchBatch, room)) { current[$0] != nil }
        return batch.isEmpty ? nil : batch.count
    }

    /// Launches up to `granted` of the next batch (the capacity `reserve`
    /// gave; what is not used is given back), unless the job was halted or
    /// its limits were reached meanwhile.
    mutating func launch(_ granted: Int) async -> Launched {
        let adapter = phase.adapter
        guard !halted, failure == nil, limit == nil, !job.control.isHalted else {
            adapter.unreserve(granted)
            return .launched([], waiters: [])
        }
        // The job's limits, checked before each start.
        if let reached = limits.withLock({ $0.reached(at: job.clock()) }) {
            adapter.unreserve(granted)
            await limitReached(reached)
            return .launched([], waiters: [])
        }
        let current = live
        let take = await queue.peek(upTo: granted) { current[$0] != nil }
        if take.count < granted { adapter.unreserve(granted - take.count) }
        guard !take.isEmpty else { return .launched([], waiters: []) }
        queue.take(take.count)
        let result = await adapter.launch(take)
        switch result {
        case .launched(let attempts, _):
            if attempts.count < take.count { adapter.unreserve(take.count - attempts.count) }
            for a in attempts { add(a) }
        case .failed, .interrupted:
            adapter.unreserve(take.count)
        }
        return result
    }

    /// Applies the backend's reports through the task machine.
    mutating func apply(_ reports: [TaskReport], waiter: Bool) async {
        if waiter { waiting -= reports.count }
        var running: [String] = []
        let now = job.clock()
        for report in reports {
            switch report {
            case .running(let idx):
                guard let state = states[idx] else { continue }
                let t = TaskMachine.apply(.running, to: state, rules: rules)
                states[idx] = t.state
                if t.actions.contains(.markRunning), let a = live[idx] {
                    running.append(a.taskID)
                    limits.withLock { $0.started(idx, at: now) }
                }
            case .requeued(let idx):
                guard let state = states[idx] else { continue }
                states[idx] = TaskMachine.apply(.requeued, to: state, rules: rules).state
                limits.withLock { $0.ended(idx, at: now) }
                job.log.info("the service put the task back in its queue", metadata: ["task.id": "\(live[idx]?.taskID ?? "")"])
            case .ended(let idx, let e):
                // A report of an attempt already ended (a poll that crossed its record) says nothing.
                guard let a = live[idx], a.attempt == e.attempt || a.attempt == LiveAttempt.numberedAtEnd else { continue }
                let stopping = states[idx]?.cancelling ?? false
                remove(idx)
                limits.withLock { $0.ended(idx, at: now, ranFor: e.ranFor) }
                endQueue.append((idx, a, e, stopping))
            case .jobLost(let reason):
                if failure == nil { failure = reason }
            }
        }
        if !running.isEmpty {
            let (store, id, ids) = (job.store, job.id, running)
            _ = await job.retrying("mark tasks running", { try await store.markRunning(id, taskIDs: ids) })
        }
    }

    var rules: TaskRules { job.taskRules(retriedByService: traits.retriedByService) }

    /// An attempt's end is recorded: a task to run again goes to the back of the queue.
    mutating func recorded(_ idx: Int, _ decision: TaskDecision?) {
        ending -= 1
        if decision == .retry, !halted, failure == nil, limit == nil { queue.retry(idx) }
    }

    /// The limits' timer fired (or a launch found a limit reached).
    mutating func limitReached(_ known: LimitReached? = nil) async {
        guard limit == nil, let reached = known ?? limits.withLock({ $0.reached(at: job.clock()) }) else { return }
        limit = reached
        failure = reached.reason
        var kill: [LiveAttempt] = []
        for (idx, state) in states {
            let t = TaskMachine.apply(.limitReached(stop: reached.stopsRunning), to: state, rules: rules)
            states[idx] = t.state
            if t.actions.contains(.kill), let a = live[idx] { kill.append(a) }
        }
        job.log.warning("job stopped by its limits", metadata: ["reason": "\(reached.reason)", "tasks.stopped": "\(kill.count)"])
        if !kill.isEmpty { await phase.adapter.kill(kill.sorted { $0.idx < $1.idx }) }
    }

    /// The phase's result, once it is over; nil while it goes on.
    func result() -> StepResult? {
        guard waiting == 0, ending == 0, endQueue.isEmpty, !reserving else { return nil }
        if let failure {
            // Core-hours used up: what runs and was not stopped finishes
            // first. What was stopped, and what a backend that refused or
            // lost the job still holds, the job's cancel step records.
            if limit != nil, !halted, states.contains(where: { !$0.value.cancelling }) { return nil }
            return .failed(reason: failure)
        }
        if halted { return .interrupted }
        return live.isEmpty && queue.exhausted ? .done : nil
    }
}

/// Ends waiting for their turn to be recorded.
struct EndQueue {
    var items: [(Int, LiveAttempt, Ending, Bool)] = []
    var head = 0
    var isEmpty: Bool { head == items.count }
    mutating func append(_ item: (Int, LiveAttempt, Ending, Bool)) { items.append(item) }
    mutating func popFirst(ifUnder width: Int, running: Int) -> (Int, LiveAttempt, Ending, Bool)? {
        guard running < width, head < items.count else { return nil }
        let item = items[head]
        head += 1
        if head == items.count { items.removeAll(keepingCapacity: true); head = 0 }
        return item
    }
}

/// The tasks the phase has yet to launch: pending tasks in index order,
/// read from the database a chunk at a time (memory bounded by the chunk,
/// not the job), then those to run again in the order they ended.
struct PendingQueue {
    let chunk: Int
    let read: (_ after: Int, _ limit: Int) async -> [Int]?
    var buffered: [Int] = []
    var head = 0
    var after = -1
    var readAll = false
    var retries: [Int] = []

    init(chunk: Int, read: @escaping (_ after: Int, _ limit: Int) async -> [Int]?) {
        self.chunk = chunk
        self.read = read
    }

    /// Whether no task is left to launch.
    var exhausted: Bool { readAll && head == buffered.count && retries.isEmpty }

    /// Up to `n` tasks to launch next, without taking them. Tasks `skip`
    /// says are live when they are read are dropped: only a launch of ours
    /// makes one live later, and its end brings it back if need be.
    mutating func peek(upTo n: Int, skip: (Int) -> Bool) async -> [Int] {
        while buffered.count - head < n {
            if !readAll {
                guard let next = await read(after, chunk) else { readAll = true; break }
                after = next.last ?? after
                readAll = next.count < chunk
                compact()
                buffered += next.filter { !skip($0) }
            } else if !retries.isEmpty {
                compact()
                buffered += retries.filter { !skip($0) }
                retries.removeAll(keepingCapacity: true)
            } else {
                break
            }
        }
        return Array(buffered[head..<min(buffered.count, head + n)])
    }

    mutating func compact() {
        if head > 0 { buffered.removeFirst(head); head = 0 }
    }

    /// Takes the first `n` that `peek` returned.
    mutating func take(_ n: Int) { head += n }

    /// A task to run again, after every task now waiting.
    mutating func retry(_ idx: Int) { retries.append(idx) }
}
