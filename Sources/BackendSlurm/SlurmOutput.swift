import BatchCore

/// Slurm's command output, parsed. Pure: every function here takes the text
/// a command printed and is tested on literal captured output
/// (Tests/BackendSlurmTests/SlurmOutputTests.swift).
public enum SlurmOutput {
    /// The job id `sbatch --parsable` printed: `123`, or `123;cluster` on a
    /// federation (the cluster is dropped); `Submitted batch job 123` is
    /// understood too. Nil for anything else.
    public static func submittedID(_ text: String) -> String? {
        for raw in text.split(whereSeparator: \.isNewline) {
            var line = Substring(raw).trimmingCharacters(in: " \t\r")
            if line.hasPrefix("Submitted batch job ") { line = String(line.dropFirst("Submitted batch job ".count)) }
            let id = line.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            if !id.isEmpty, id.count <= 20, id.allSatisfy(\.isASCIIDigit) { return id }
        }
        return nil
    }

    /// The squeue format batchd asks for: array job id, array task ids
    /// (`N/A`, `3`, or a pending range such as `4-9%2` or `1,3,5-7`), job
    /// name, state, reason, user, comment.
    public static let queueFormat = "%F|%K|%j|%T|%r|%u|%k"

    /// One line of `squeue --noheader -t all -o '%F|%K|%j|%T|%r|%u|%k'`.
    public struct QueueEntry: Sendable, Equatable {
        /// The array's job id (a job's own id when it is no array).
        public var arrayID: String
        /// The array indices this line stands for (empty for a non-array job).
        public var indices: [Int]
        /// The job name.
        public var name: String
        /// The state, e.g. PENDING, RUNNING, COMPLETED, TIMEOUT.
        public var state: SlurmState
        /// Why it waits or ended (`Resources`, `NonZeroExitCode`, ...).
        public var reason: String
        /// The job's comment (batchd's owner tag), empty when none.
        public var comment: String
        /// The user it runs as (its submitter's name).
        public var user: String = ""
    }

    /// Most array indices one line may expand to (a range `0-999999` of a
    /// pending array is one line); more is treated as an unreadable line.
    public static let maxIndicesPerLine = 1_000_000

    /// The lines of squeue's output; lines it cannot read are skipped (and
    /// counted in `skipped`).
    public static func queue(_ text: String) -> (entries: [QueueEntry], skipped: Int) {
        var out: [QueueEntry] = []
        var skipped = 0
        for line in text.split(whereSeparator: \.isNewline) where !line.allSatisfy(\.isWhitespace) {
            let f = line.split(separator: "|", maxSplits: 6, omittingEmptySubsequences: false).map(String.init)
            guard f.count == 7, let arrayID = f[0].split(separator: ";").first.map(String.init), !arrayID.isEmpty,
                  arrayID.allSatisfy(\.isASCIIDigit) else { skipped += 1; continue }
            let indices: [Int]
            if f[1] == "N/A" { indices = [] } else {
                guard let i = arrayIndices(f[1]) else { skipped += 1; continue }
                indices = i
            }
            out.append(QueueEntry(arrayID: arrayID, indices: indices, name: f[2], state: SlurmState(f[3]), reason: f[4],
                                  comment: f[6] == "(null)" ? "" : f[6], user: f[5]))
        }
        return (out, skipped)
    }

    /// `3` → [3]; `4-9%2` → [4, 5, 6, 7, 8, 9]; `[1,3,5-7]` → [1, 3, 5, 6, 7].
    /// Nil for text that is not such a list, or past `maxIndicesPerLine`.
    public static func arrayIndices(_ text: String) -> [Int]? {
        var body = Substring(text)
        if body.hasPrefix("["), body.hasSuffix("]") { body = body.dropFirst().dropLast() }
        if let percent = body.firstIndex(of: "%") {
            guard body[body.index(after: percent)...].allSatisfy(\.isASCIIDigit) else { return nil }
            body = body[..<percent]
        }
        var out: [Int] = []
        for part in body.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(ends.count), ends.allSatisfy({ (1...9).contains($0.count) && $0.allSatisfy(\.isASCIIDigit) }),
                  let a = Int(ends[0]), let b = Int(ends[ends.count - 1]), a <= b,
                  out.count + (b - a + 1) <= maxIndicesPerLine else { return nil }
            out.append(contentsOf: a...b)
        }
        return out.isEmpty ? nil : out
    }

    /// One line of `sacct -X --noheader --parsable2 -o JobID,JobName,State,ExitCode`.
    public struct AccountingEntry: Sendable, Equatable {
        public var arrayID: String
        public var indices: [Int]
        public var name: String
        public var state: SlurmState
        /// `ExitCode`'s two halves: the exit code and the signal.
        public var exitCode: Int32
        public var signal: Int32
    }

    /// sacct's lines; job ids `123`, `123_4`, `123_[5-9]`, `123;cluster`
    /// are understood, unreadable lines skipped.
    public static func accounting(_ text: String) -> [AccountingEntry] {
        var out: [AccountingEntry] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 4 else { continue }
            let id = f[0].split(separator: ";").first.map(String.init) ?? ""
            let parts = id.split(separator: "_", maxSplits: 1).map(String.init)
            guard let arrayID = parts.first, !arrayID.isEmpty, arrayID.allSatisfy(\.isASCIIDigit) else { continue }
            var indices: [Int] = []
            if parts.count == 2 {
                guard let i = arrayIndices(parts[1]) else { continue }
                indices = i
            }
            guard let (code, signal) = exitCode(f[3]) else { continue }
            out.append(AccountingEntry(arrayID: arrayID, indices: indices, name: f[1], state: SlurmState(f[2]), exitCode: code, signal: signal))
        }
        return out
    }

    /// `code:signal` (`0:0`, `3:0`, `0:9`) as two numbers.
    public static func exitCode(_ text: String) -> (Int32, Int32)? {
        let p = text.split(separator: ":", omittingEmptySubsequences: false)
        guard p.count == 2, let c = Int32(p[0]), let s = Int32(p[1]), c >= 0, s >= 0 else { return nil }
        return (c, s)
    }

    /// What batchd needs from `scontrol show config`.
    public struct ClusterConfig: Sendable, Equatable {
        /// Largest array index + 1 (`MaxArraySize`, default 1001).
        public var maxArraySize = 1001
        /// Seconds a finished job stays in squeue (`MinJobAge`, default 300).
        public var minJobAge = 300
        /// Whether sacct has a database to read (`AccountingStorageType` not `accounting_storage/none`).
        public var accounting = false
        /// `ClusterName`.
        public var clusterName = ""
        /// `SLURM_VERSION`.
        public var version = ""
    }

    /// `scontrol show config`'s `Key = value` lines.
    public static func clusterConfig(_ text: String) -> ClusterConfig {
        var c = ClusterConfig()
        for line in text.split(whereSeparator: \.isNewline) {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: " \t")
            let value = line[line.index(after: eq)...].trimmingCharacters(in: " \t")
            let number = Int(value.prefix(while: \.isASCIIDigit))
            switch key {
            case "MaxArraySize": if let n = number, n >= 1 { c.maxArraySize = n }
            case "MinJobAge":
                if let n = number {
                    let unit = value.drop(while: \.isASCIIDigit).trimmingCharacters(in: " ").lowercased()
                    c.minJobAge = unit.hasPrefix("h") ? n * 3600 : (unit.hasPrefix("min") ? n * 60 : n)
                }
            case "AccountingStorageType": c.accounting = !value.isEmpty && value != "accounting_storage/none" && value != "(null)"
            case "ClusterName": c.clusterName = value
            case "SLURM_VERSION": c.version = value
            default: break
            }
        }
        return c
    }
}

/// A Slurm job state (squeue's %T, sacct's State, with sacct's
/// `CANCELLED by 0` read as CANCELLED).
public enum SlurmState: Sendable, Equatable {
    case pending, configuring, running, completing, suspended, requeued, resizing, stopped
    case completed, failed, cancelled, timeout, nodeFail, preempted, outOfMemory, bootFail, deadline
    /// Any other state, as printed.
    case other(String)

    public init(_ text: String) {
        let word = text.split(separator: " ").first.map(String.init)?.uppercased() ?? ""
        switch word {
        case "PENDING", "PD": self = .pending
        case "CONFIGURING", "CF": self = .configuring
        case "RUNNING", "R": self = .running
        case "COMPLETING", "CG": self = .completing
        case "SUSPENDED", "S": self = .suspended
        case "REQUEUED", "RQ", "REQUEUE_FED", "REQUEUE_HOLD": self = .requeued
        case "RESIZING", "RS": self = .resizing
        case "STOPPED", "ST": self = .stopped
        case "COMPLETED", "CD": self = .completed
        case "FAILED", "F": self = .failed
        case "CANCELLED", "CA": self = .cancelled
        case "TIMEOUT", "TO": self = .timeout
        case "NODE_FAIL", "NF": self = .nodeFail
        case "PREEMPTED", "PR": self = .preempted
        case "OUT_OF_MEMORY", "OOM": self = .outOfMemory
        case "BOOT_FAIL", "BF": self = .bootFail
        case "DEADLINE", "DL": self = .deadline
        default: self = .other(text)
        }
    }

    /// Whether the job may still run (or runs now): not ended.
    public var isLive: Bool {
        switch self {
        case .pending, .configuring, .running, .completing, .suspended, .requeued, .resizing, .stopped: return true
        case .other: return true   // an unknown state is not an end
        default: return false
        }
    }

    /// Whether the task's process runs (or has run) on a node.
    public var isRunning: Bool { self == .running || self == .completing }

    /// The state's name as Slurm prints it.
    public var name: String {
        switch self {
        case .pending: return "PENDING"
        case .configuring: return "CONFIGURING"
        case .running: return "RUNNING"
        case .completing: return "COMPLETING"
        case .suspended: return "SUSPENDED"
        case .requeued: return "REQUEUED"
        case .resizing: return "RESIZING"
        case .stopped: return "STOPPED"
        case .completed: return "COMPLETED"
        case .failed: return "FAILED"
        case .cancelled: return "CANCELLED"
        case .timeout: return "TIMEOUT"
        case .nodeFail: return "NODE_FAIL"
        case .preempted: return "PREEMPTED"
        case .outOfMemory: return "OUT_OF_MEMORY"
        case .bootFail: return "BOOT_FAIL"
        case .deadline: return "DEADLINE"
        case .other(let s): return s
        }
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
