import BatchCore
import BatchStore
import BatchSupport

/// A backend's part of the running phase, as a Nextflow executor is to its
/// task monitor: launch attempts, report what became of them, collect a
/// success's outputs, stop them. The shared `RunningPhase` does the rest
/// (what to launch next, the task machine's decisions and their records,
/// limits, halts, what an ended attempt leaves). A backend makes one
/// adapter per run of the phase (`JobBackend.adapter`), so an adapter may
/// keep what it learns (Slurm's arrays) for the run.
public protocol TaskAdapter: Sendable {
    /// How the backend behaves.
    var traits: AdapterTraits { get }

    /// The attempts live now (after a restart: what the backend still runs),
    /// what it learned of attempts that ended while the daemon was away, and
    /// a waiter per live attempt it follows itself. nil when the job was
    /// halted first.
    func resume() async -> Resumed?

    /// Asks for room for `wanted` (> 0) more attempts, and calls `grant`
    /// with how many may start (fewer when that is what there is), at once
    /// or when room frees; with nil when `until` fires first. `grant` is
    /// called once and should only pass the answer on (the phase waits for
    /// it without a task of its own). The local backend's shared slots; a
    /// remote service queues the tasks itself.
    func reserve(_ wanted: Int, until: AsyncEvent<Void>, then grant: @escaping @Sendable (Int?) -> Void)

    /// Gives back what `reserve` granted and `launch` did not use.
    func unreserve(_ count: Int)

    /// Starts an attempt of each of these tasks (the next attempt of each),
    /// recording it before any side effect, so that a crash never launches
    /// one twice.
    func launch(_ tasks: [Int]) async -> Launched

    /// Waits for the backend's next word on the live attempts, one call per
    /// interval for the whole job (a task it says nothing of is unknown:
    /// still live). nil when it has no more to say (it was halted).
    /// Never called on an adapter whose traits say it does not poll.
    func poll(_ live: [LiveAttempt]) async -> [TaskReport]?

    /// Fetches an ended attempt's logs (a remote service keeps them), before
    /// the machine decides; the ending, its outcome changed if what the
    /// backend found says otherwise; nil when the daemon stopped first.
    func fetchLogs(_ task: TaskRecord, _ ending: Ending) async -> Ending?

    /// Collects a successful attempt's outputs into the destination; nil
    /// when the daemon stopped first.
    func collect(_ task: TaskRecord, _ ending: Ending, sink: OutputSink) async -> Result<[OutputRecord], any Error>?

    /// Stops these attempts (the job's limit was reached). Their ends are
    /// recorded by the job's `cancel` step, which follows.
    func kill(_ live: [LiveAttempt]) async

    /// The phase is over (whatever its result): release what the run held.
    func finish() async
}

extension TaskAdapter {
    public func reserve(_ wanted: Int, until: AsyncEvent<Void>, then grant: @escaping @Sendable (Int?) -> Void) {
        grant(until.value == nil ? wanted : nil)
    }
    public func unreserve(_ count: Int) {}
    public func poll(_ live: [LiveAttempt]) async -> [TaskReport]? { nil }
    public func fetchLogs(_ task: TaskRecord, _ ending: Ending) async -> Ending? { ending }
    public func finish() async {}
}

/// How a backend behaves, as the running phase needs to know.
public struct AdapterTraits: Sendable {
    /// Failures the service retries itself (Azure's `maxTaskRetryCount`
    /// covers a nonzero exit): one it reports is the task's end.
    public var retriedByService: Set<OutcomeKind>
    /// Cores one task holds, for `limits.coreHours`.
    public var coresPerTask: Double
    /// At most this many tasks per `launch`.
    public var launchBatch: Int
    /// The phase applies the job's `maxParallel` (a service that throttles
    /// the tasks itself, as Slurm's `%N`, is handed all at once).
    public var throttledByPhase: Bool
    /// The backend reports through `poll` (else only through its waiters).
    public var polls: Bool
    /// Ended attempts recorded at once (each collects its outputs).
    public var endWidth: Int

    public init(retriedByService: Set<OutcomeKind> = [], coresPerTask: Double = 1, launchBatch: Int = 1, throttledByPhase: Bool = true,
                polls: Bool = true, endWidth: Int = 1) {
        self.retriedByService = retriedByService
        self.coresPerTask = coresPerTask
        self.launchBatch = launchBatch
        self.throttledByPhase = throttledByPhase
        self.polls = polls
        self.endWidth = endWidth
    }
}

/// One attempt the running phase follows.
public struct LiveAttempt: Sendable, Equatable {
    public let idx: Int
    public let taskID: String
    /// Its number; `numberedAtEnd` where the service retries it itself and
    /// its number is known only when it ends (Azure).
    public let attempt: Int
    public static let numberedAtEnd = 0
    /// When it started running (seconds since 1970, the daemon's clock);
    /// nil while the service has it queued, or when not known yet.
    public var startedAt: Double?
    /// The task as it was when the attempt began, when the adapter has it
    /// (else it is read when the attempt ends).
    public var task: TaskRecord?

    public init(idx: Int, taskID: String, attempt: Int, startedAt: Double? = nil, task: TaskRecord? = nil) {
        self.idx = idx
        self.taskID = taskID
        self.attempt = attempt
        self.startedAt = startedAt
        self.task = task
    }
}

/// How an attempt ended, as its backend learned it.
public struct Ending: Sendable, Equatable {
    public let attempt: Int
    public let directory: String
    public var outcome: TaskOutcome
    public let row: AttemptRow
    /// Logs a scheduler writes whether or not it has anything to say
    /// (Slurm's): removed when empty.
    public var schedulerLogs: [String]
    /// Files the attempt no longer needs once its end is recorded.
    public var scratch: [String]
    /// The crash-loop breaker set the task aside.
    public var setAside: Bool
    /// Failed attempts before this one that the service retried itself
    /// (Azure's retry count), never seen here: they count against `retries`.
    public var serviceRetries: Int

    public init(attempt: Int, directory: String, outcome: TaskOutcome, row: AttemptRow, schedulerLogs: [String] = [],
                scratch: [String] = [], setAside: Bool = false, serviceRetries: Int = 0) {
        self.attempt = attempt
        self.directory = directory
        self.outcome = outcome
        self.row = row
        self.schedulerLogs = schedulerLogs
        self.scratch = scratch
        self.setAside = setAside
        self.serviceRetries = serviceRetries
    }

    /// How long it ran, when the backend knows.
    public var ranFor: Double? { if case .remote(let s) = row { return s }; return nil }
}

/// What a backend says about a task.
public enum TaskReport: Sendable, Equatable {
    /// Its attempt runs.
    case running(idx: Int)
    /// Its attempt ended.
    case ended(idx: Int, Ending)
    /// The service put its running attempt back in its queue.
    case requeued(idx: Int)
    /// The backend lost the whole job (its Batch job was deleted behind
    /// batchd's back): the job fails with this reason.
    case jobLost(reason: String)
}

/// Follows one attempt the adapter started; returns its end.
public typealias AttemptWaiter = @Sendable () async -> TaskReport

/// What `resume` found.
public struct Resumed: Sendable {
    public var live: [LiveAttempt]
    public var found: [TaskReport]
    public var waiters: [AttemptWaiter]
    public init(live: [LiveAttempt] = [], found: [TaskReport] = [], waiters: [AttemptWaiter] = []) {
        self.live = live
        self.found = found
        self.waiters = waiters
    }
}

/// What `launch` did.
public enum Launched: Sendable {
    /// These attempts started (a waiter for each the adapter follows itself);
    /// tasks of the batch not among them were not launched (no longer pending).
    case launched([LiveAttempt], waiters: [AttemptWaiter])
    /// The backend refused them for good: the job fails.
    case failed(reason: String)
    /// The job was halted first.
    case interrupted
}
