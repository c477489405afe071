import BatchControl
import BatchStore
import Foundation

/// Waits for a submission to become a job, and for a job to end. Through
/// the daemon, on its events (a `read` that answers when something
/// changed): no polling of the database, and a submitter needs no access
/// to it. When the daemon cannot be reached, by reading the database
/// (read-only) a few times a second, if this user may; otherwise it waits
/// for the daemon to come back (a restart), until the timeout.
struct Waiter {
    let config: DaemonConfig
    let json: Bool
    var global: Global?
    let interval: Duration = .milliseconds(200)

    init(config: DaemonConfig, json: Bool, global: Global? = nil) {
        self.config = config
        self.json = json
        self.global = global
    }

    func deadline(_ timeout: Double?) -> ContinuousClock.Instant? {
        timeout.map { ContinuousClock.now + .seconds($0) }
    }

    /// Seconds a waiting read may last: at most 30, and not past `end`.
    static func slice(_ end: ContinuousClock.Instant?) -> Double {
        guard let end else { return 30 }
        let left = end - ContinuousClock.now
        return max(0, min(30, Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18))
    }

    /// Whether this user may read the database (then it is the fallback).
    var databaseReadable: Bool { access(config.databasePath, R_OK) == 0 }

    /// The id of the job made from inbox file `name`, or a CLIError(2) with
    /// the daemon's reasons if it was rejected.
    func forSubmission(_ name: String, timeout: Double?) async throws -> String {
        let end = deadline(timeout)
        var away: ContinuousClock.Instant?
        var store: Store?   // opened once it exists (the daemon may not have run yet)
        while true {
            if let global, let a = try global.read(ReadQuery(what: "submission", job: name, wait: Self.slice(end)), timeout: 45) {
                if let id = a.job {
                    if !json { say("job \(id) accepted") }
                    return id
                }
            } else if global == nil || databaseReadable || !FileManager.default.fileExists(atPath: config.databasePath) {
                if store == nil {
                    do { store = try Store(readOnlyPath: config.databasePath) } catch {
                        // Only a database not made yet is worth waiting for: one this
                        // user may not read never will be (said at once, as `show` does).
                        if FileManager.default.fileExists(atPath: config.databasePath) || !Self.reachable(config.databasePath) {
                            throw CLIError(3, "\(error); the manifest is in the inbox, and the daemon takes it")
                        }
                    }
                }
                if let store, let job = try? await store.job(sourceFile: name) {
                    if !json { say("job \(job.id) accepted") }
                    return job.id
                }
                if let store, let problem = try? await store.inboxProblems().first(where: { $0.name == name }) {
                    throw CLIError(2, "the daemon could not process \(name): \(problem.reason)")
                }
                try await Task.sleep(for: interval)
            } else {
                try await awayGrace(&away)
            }
            let error = "\(config.rejectedDirectory)/\(name).error"
            if let data = FileManager.default.contents(atPath: error) {
                throw CLIError(2, "the daemon rejected the manifest:\n\(String(decoding: data, as: UTF8.self))")
            }
            if FileManager.default.fileExists(atPath: error) {
                throw CLIError(2, "the daemon rejected the manifest; its reason, \(error), is not readable by you (docs/security.md)")
            }
            if let end, ContinuousClock.now >= end { throw CLIError(5, "timed out waiting for the daemon to take \(name) (is it running?)") }
        }
    }

    /// How long a daemon that cannot be reached is waited for (a restart
    /// takes a few seconds) when the database is not this user's to read.
    static let awayGrace: Duration = .seconds(10)

    /// One more second of waiting for the daemon to come back; past the
    /// grace, says why at once (exit 3) rather than wait on what this user
    /// may not read.
    func awayGrace(_ since: inout ContinuousClock.Instant?) async throws {
        let first = since ?? ContinuousClock.now
        since = first
        if ContinuousClock.now - first >= Self.awayGrace {
            throw CLIError(3, "cannot reach batchd at \(config.socketPath) (for \(Self.awayGrace.components.seconds) s), "
                + "and its database is not yours to read (docs/security.md): is the daemon running?")
        }
        try await Task.sleep(for: .seconds(1))
    }

    /// Whether this user may look into the database's directory (else they
    /// could not tell whether it exists, and never read it).
    static func reachable(_ path: String) -> Bool {
        access((path as NSString).deletingLastPathComponent, X_OK) == 0
    }

    /// Waits until the job is over, prints its summary, and exits 0 only if it succeeded.
    func until(_ job: String, timeout: Double?) async throws {
        let end = deadline(timeout)
        var away: ContinuousClock.Instant?
        var id = job
        daemon: while let global {
            guard let a = try global.read(ReadQuery(what: "end", job: id, wait: Self.slice(end)), timeout: 45) else {
                if databaseReadable { break daemon }  // the daemon is away: read the database instead
                if let end, ContinuousClock.now >= end { throw CLIError(5, "timed out waiting for job \(id)") }
                try await awayGrace(&away)
                continue
            }
            away = nil
            id = a.job ?? id
            if let snapshot = a.report.flatMap({ try? JSONDecoder().decode(JobSnapshot.self, from: Data($0.utf8)) }), snapshot.jobPhase.isTerminal {
                let shown = try global.read(ReadQuery(what: "show", job: id, text: !json))
                say((json ? shown?.report : shown?.text) ?? "")
                if snapshot.jobPhase != .succeeded {
                    throw CLIError(1, "job \(id) \(snapshot.phase)\(snapshot.reason.map { ": \($0)" } ?? "")")
                }
                return
            }
            if let end, ContinuousClock.now >= end { throw CLIError(5, "timed out waiting for job \(id)") }
        }
        let store = try Store(readOnlyPath: config.databasePath)
        guard let record = try await store.job(id) else { throw CLIError(4, "no job with id or name '\(id)'") }
        while true {
            if let job = try await store.job(record.id), job.phase.isTerminal {
                let report = JobReport(store: store)
                say(json ? JobReport.json(try await report.show(job)) : try await report.showText(job))
                if job.phase != .succeeded { throw CLIError(1, "job \(job.id) \(job.phase.rawValue)\(job.reason.map { ": \($0)" } ?? "")") }
                return
            }
            if let end, ContinuousClock.now >= end { throw CLIError(5, "timed out waiting for job \(record.id)") }
            try await Task.sleep(for: interval)
        }
    }
}
