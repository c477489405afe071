import BatchAccess
import BatchControl
import BatchCore
import BatchStore
import Synchronization

/// Where one job's outputs go: the destination, opened (its missing
/// directories made, as the submitter may) when the first output arrives,
/// and which task produced each path, so two tasks never write the same file.
public final class OutputSink: Sendable {
    /// The job's output globs.
    public let patterns: [String]
    let job: String
    let path: String
    let policy: AccessPolicy
    let owners: Mutex<[String: Int]>
    let opened = Mutex<Destination?>(nil)

    /// A sink for `job`, knowing the outputs already recorded.
    public init(job: String, destination: String, patterns: [String], policy: AccessPolicy, existing: [OutputRecord]) {
        self.job = job
        self.path = destination
        self.patterns = patterns
        self.policy = policy
        owners = Mutex(Dictionary(existing.map { ($0.path, $0.idx) }, uniquingKeysWith: { a, _ in a }))
    }

    /// Claims `path` for task `idx`; the other owner if it is taken.
    public func claim(_ path: String, for idx: Int) -> Int? {
        owners.withLock { o in
            if let other = o[path], other != idx { return other }
            o[path] = idx
            return nil
        }
    }

    /// The destination, opened once.
    public func destination() throws -> Destination {
        try opened.withLock { d in
            if let d { return d }
            let made = try Destination(path: path, policy: policy, jobID: job)
            d = made
            return made
        }
    }

    /// Claims `relative` for task `idx` and copies it from `fd` into the
    /// destination (through a temp file, fsynced, renamed).
    public func write(_ relative: String, from fd: Int32, task idx: Int) throws -> OutputRecord {
        if let other = claim(relative, for: idx) {
            throw DaemonError("output \(Printable.escape(relative)) is also produced by task \(other); make output names unique, e.g. with {task}")
        }
        let (sha, size) = try destination().write(relative, from: fd)
        return OutputRecord(jobId: job, path: relative, idx: idx, size: Int(size), sha256: sha)
    }
}
