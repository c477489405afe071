import BatchCore

/// The Slurm backend's pure decisions: how a manifest maps to sbatch, how a
/// job's tasks are cut into arrays, what an ended array element means.
public enum SlurmRules {
    /// Defaults for what a manifest leaves out (the config's `slurm:` section).
    public struct Defaults: Sendable, Equatable {
        public var partition: String?
        public var account: String?
        public var qos: String?
        public init(partition: String? = nil, account: String? = nil, qos: String? = nil) {
            self.partition = partition
            self.account = account
            self.qos = qos
        }
    }

    /// The job name of a job's `k`-th array: how batchd finds it again.
    public static func arrayName(job: String, sequence: Int) -> String { "batchd-\(job)-\(sequence)" }

    /// The owner tag in each array's comment.
    public static func comment(owner: String) -> String { "batchd owner=\(owner)" }

    /// The most tasks of a job running at once: `maxRunning`, else
    /// `slotsPerNode` × `dedicatedNodes` (1 node when unset) when
    /// `slotsPerNode` is given, else no throttle.
    public static func throttle(_ pool: PoolSpec) -> Int? {
        if let m = pool.maxRunning { return m }
        guard let slots = pool.slotsPerNode else { return nil }
        return slots * max(1, pool.int("dedicatedNodes") ?? 1)   // a manifest written for a batch service runs here as wide
    }

    /// `--time` for a per-attempt timeout: whole minutes, rounded up (Slurm's
    /// unit; at least 1).
    public static func timeLimit(_ seconds: Double) -> String {
        String(max(1, Int((seconds / 60).rounded(.up))))
    }

    /// The tasks (in order) cut into arrays of at most `maxArraySize` elements.
    public static func arrays<T>(_ tasks: [T], maxArraySize: Int) -> [[T]] {
        let size = max(1, maxArraySize)
        return stride(from: 0, to: tasks.count, by: size).map { Array(tasks[$0..<min(tasks.count, $0 + size)]) }
    }

    /// sbatch's arguments for one array of `count` elements: every value is
    /// its own argument (no shell), names were checked at intake.
    public static func sbatchArguments(spec: JobSpec, defaults: Defaults, name: String, comment: String, count: Int,
                                       script: String, logDirectory: String) -> [String] {
        var args = ["--parsable", "--job-name=\(name)", "--comment=\(comment)", "--array=0-\(count - 1)"
                    + (throttle(spec.pool).map { "%\(min($0, count))" } ?? ""),
                    // Slurm's own log of the element; the task's stdout and stderr go to its attempt directory.
                    "--output=\(logDirectory)/slurm-%A_%a.out", "--no-requeue", "--export=NONE"]
        args += resourceOptions(spec: spec, defaults: defaults)
        args.append(script)
        return args
    }

    /// Where and with what a job's tasks run: partition, account, QoS,
    /// CPUs, memory and time limit, from its manifest or the defaults.
    public static func resourceOptions(spec: JobSpec, defaults: Defaults) -> [String] {
        var args: [String] = []
        if let p = spec.pool.partition ?? defaults.partition { args.append("--partition=\(p)") }
        if let a = spec.pool.account ?? defaults.account { args.append("--account=\(a)") }
        if let q = spec.pool.qos ?? defaults.qos { args.append("--qos=\(q)") }
        if let c = spec.pool.cpusPerTask { args.append("--cpus-per-task=\(c)") }
        if let m = spec.pool.memoryMiB { args.append("--mem=\(m)M") }
        if let t = spec.timeoutSeconds { args.append("--time=\(timeLimit(t))") }
        return args
    }

    /// What an ended element means. `recorded` is batchd-exec's status file
    /// (nil when there is none), `state` what Slurm last said (nil when it
    /// said nothing). Nil: not known yet (look again, within the grace).
    ///
    /// Slurm's word wins where it explains a kill: TIMEOUT is a timeout
    /// (batchd-exec saw only the SIGTERM), NODE_FAIL, PREEMPTED and
    /// BOOT_FAIL are the cluster's failure (`lost`: run again, not counted
    /// against `retries`), OUT_OF_MEMORY names the memory limit, and a
    /// CANCELLED that batchd did not ask for is an administrator's.
    public static func outcome(recorded: TaskOutcome?, state: SlurmState?, timeout: Double?, cancelledByUs: Bool) -> TaskOutcome? {
        switch state {
        case .timeout?: return .timedOut(seconds: timeout ?? 0)
        case .nodeFail?, .preempted?, .bootFail?: return .lost
        case .outOfMemory?: return .launchFailed(reason: "Slurm stopped the task: OUT_OF_MEMORY (it went past pool.memory)")
        case .deadline?: return .launchFailed(reason: "Slurm stopped the task: DEADLINE")
        case .cancelled?:
            if cancelledByUs { return .cancelled }
            return recorded.map { _ in .launchFailed(reason: "cancelled outside batchd (Slurm: CANCELLED)") }
                ?? .launchFailed(reason: "cancelled outside batchd before it ran (Slurm: CANCELLED)")
        default:
            return recorded
        }
    }
}

extension SlurmRules {
    /// The batchd job id in an array's name (`batchd-<job>-<k>`), nil for another name.
    public static func jobID(fromArrayName name: String) -> String? {
        guard name.hasPrefix("batchd-"), let dash = name.lastIndex(of: "-") else { return nil }
        let job = name[name.index(name.startIndex, offsetBy: 7)..<dash]
        let seq = name[name.index(after: dash)...]
        guard !job.isEmpty, !seq.isEmpty, seq.allSatisfy({ ("0"..."9").contains($0) }) else { return nil }
        return String(job)
    }
}

extension SlurmRules {
    /// Whether a failed Slurm command is worth repeating: the controller
    /// could not be reached or was busy, or the command ran out of time. A
    /// refusal (an invalid partition, account or option) is not.
    public static func isTransient(_ status: Int32, _ stderr: String) -> Bool {
        if status == 124 || status == 127 { return true }   // took too long, or could not start
        let text = stderr.lowercased()
        return ["unable to contact slurm controller", "timed out", "temporarily", "connection refused", "try again",
                "slurm_persist_conn", "communication connection failure", "resource temporarily unavailable"].contains { text.contains($0) }
    }
}

extension SlurmRules {
    /// `sbatch --test-only` with the job's resource options and a script
    /// that does nothing: it validates them and submits nothing.
    public static func testArguments(spec: JobSpec, defaults: Defaults) -> [String] {
        ["--test-only", "--job-name=batchd-check", "--output=/dev/null"] + resourceOptions(spec: spec, defaults: defaults) + ["--wrap=true"]
    }

    /// The manifest field sbatch's refusal is about, by its words.
    public static func refusedField(_ stderr: String) -> String {
        let text = stderr.lowercased()
        if text.contains("account") { return "pool.account" }   // "Invalid account or account/partition combination"
        if text.contains("qos") { return "pool.qos" }
        if text.contains("partition") { return "pool.partition" }
        if text.contains("memory") { return "pool.memory" }
        if text.contains("time limit") { return "timeout" }
        if text.contains("cpu") { return "pool.cpusPerTask" }
        return "pool"
    }
}
