import BatchControl
import BatchStore
import Foundation

/// Waits for a submission to become a job, and for a job to end, by reading
/// the database (read-only) a few times a second: it keeps working across
/// daemon restarts, and while the daemon is down.
struct Waiter {
    let config: DaemonConfig
    let json: Bool
    let interval: Duration = .milliseconds(200)

    func deadline(_ timeout: Double?) -> ContinuousClock.Instant? {
        timeout.map { ContinuousClock.now + .seconds($0) }
    }

    /// The id of the job made from inbox file `name`, or a CLIError(2) with
    /// the daemon's reasons if it was rejected.
    func forSubmission(_ name: String, timeout: Double?) async throws -> String {
        let end = deadline(timeout)
        var store: Store?   // opened once it exists (the daemon may not have run yet)
        while true {
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
            let error = "\(config.rejectedDirectory)/\(name).error"
            if let data = FileManager.default.contents(atPath: error) {
                throw CLIError(2, "the daemon rejected the manifest:\n\(String(decoding: data, as: UTF8.self))")
            }
            if FileManager.default.fileExists(atPath: error) {
                throw CLIError(2, "the daemon rejected the manifest; its reason, \(error), is not readable by you (docs/security.md)")
            }
            if let store, let problem = try? await store.inboxProblems().first(where: { $0.name == name }) {
                throw CLIError(2, "the daemon could not process \(name): \(problem.reason)")
            }
            if let end, ContinuousClock.now >= end { throw CLIError(5, "timed out waiting for the daemon to take \(name) (is it running?)") }
            try await Task.sleep(for: interval)
        }
    }

    /// Whether this user may look into the database's directory (else they
    /// could not tell whether it exists, and never read it).
    static func reachable(_ path: String) -> Bool {
        access((path as NSString).deletingLastPathComponent, X_OK) == 0
    }

    /// Waits until the job is over, prints its summary, and exits 0 only if it succeeded.
    func until(_ id: String, timeout: Double?) async throws {
        let end = deadline(timeout)
        let store = try Store(readOnlyPath: config.databasePath)
        while true {
            if let job = try await store.job(id), job.phase.isTerminal {
                let report = JobReport(store: store)
                say(json ? JobReport.json(try await report.show(job)) : try await report.showText(job))
                if job.phase != .succeeded { throw CLIError(1, "job \(job.id) \(job.phase.rawValue)\(job.reason.map { ": \($0)" } ?? "")") }
                return
            }
            if let end, ContinuousClock.now >= end { throw CLIError(5, "timed out waiting for job \(id)") }
            try await Task.sleep(for: interval)
        }
    }
}
