import BatchControl
import BatchCore
import BatchStore

/// A backend as the job runner drives it: one method for each action of the
/// job state machine that depends on where tasks run. The runner knows no
/// backend by name; `Daemon` registers the ones it has in `BackendRegistry`,
/// in one place. The steps shared by every backend (verifying outputs,
/// deleting work directories, writing the summary) stay in the runner.
protocol JobBackend: Sendable {
    /// Why this backend would not run a job, checked at intake (nil: it would).
    func refusal(_ spec: JobSpec) -> ManifestIssue?
    /// Whether `batchctl retry` can run a failed job's failed tasks again here.
    var canRetry: Bool { get }
    /// Puts the job's inputs where its tasks will find them.
    func stage(_ job: JobRecord, _ run: JobRunner) async -> JobEvent
    /// Makes sure the compute the job needs exists.
    func provision(_ job: JobRecord, _ run: JobRunner) async -> JobEvent
    /// Hands the job's tasks to the backend.
    func submit(_ job: JobRecord, _ run: JobRunner) async -> JobEvent
    /// Follows the tasks (reconciling what a crash left) until none is open;
    /// nil when the daemon shuts down.
    func monitor(_ job: JobRecord, _ run: JobRunner) async -> JobEvent?
    /// Stops the job's tasks and records them cancelled.
    func cancel(_ job: JobRecord, _ run: JobRunner) async
    /// Deletes or stops what the job made on the backend, per its policy.
    func cleanup(_ job: JobRecord, _ verdict: Verdict, _ run: JobRunner) async
    /// What this backend holds that is tagged as this daemon's (`batchctl
    /// pools`); nil when it holds nothing of the kind.
    func owned(_ store: Store) async throws -> (owner: String, items: [ControlReply.PoolItem])?
}

extension JobBackend {
    func refusal(_ spec: JobSpec) -> ManifestIssue? { nil }
    var canRetry: Bool { true }
    func owned(_ store: Store) async throws -> (owner: String, items: [ControlReply.PoolItem])? { nil }
}

/// The backends this daemon runs, and for each it cannot run, why.
struct BackendRegistry: Sendable {
    private var backends: [BackendKind: any JobBackend] = [:]
    private var missing: [BackendKind: ManifestIssue] = [:]

    /// Registers a backend under its manifest name.
    mutating func register(_ name: BackendKind, _ backend: any JobBackend) {
        backends[name] = backend
        missing[name] = nil
    }

    /// Records that `name` cannot run here, and why (with the fix).
    mutating func unavailable(_ name: BackendKind, message: String, hint: String?) {
        missing[name] = ManifestIssue(line: nil, column: nil, field: "backend", message: message, hint: hint)
    }

    /// The names of the backends this daemon runs.
    var names: [BackendKind] { BackendKind.allCases.filter { backends[$0] != nil } }

    /// Why there is no backend called `name`.
    struct Missing: Error, Sendable, CustomStringConvertible {
        let issue: ManifestIssue
        var description: String { "\(issue.message)\(issue.hint.map { " (\($0))" } ?? "")" }
    }

    /// The backend called `name`, or why there is none.
    func lookup(_ name: BackendKind) -> Result<any JobBackend, Missing> {
        if let b = backends[name] { return .success(b) }
        return .failure(Missing(issue: missing[name] ?? ManifestIssue(line: nil, column: nil, field: "backend",
            message: "backend '\(name.rawValue)' is not available in this daemon", hint: "available: \(names.map(\.rawValue).joined(separator: ", "))")))
    }

    /// The backend for a job the daemon already accepted: one that went
    /// missing (credentials removed since) fails each step with the reason.
    func forJob(_ name: BackendKind) -> any JobBackend {
        switch lookup(name) {
        case .success(let b): return b
        case .failure(let m): return MissingBackend(reason: m.description)
        }
    }

    /// Why each backend this daemon lacks is missing, with the fix.
    var missingReasons: [String] {
        BackendKind.allCases.compactMap { missing[$0] }.map { Missing(issue: $0).description }
    }

    /// Every registered backend.
    var all: [any JobBackend] { names.compactMap { backends[$0] } }
}

/// Stands in for a backend the daemon no longer has: every step fails with
/// the reason; nothing is stopped or deleted (there is no way to reach it).
struct MissingBackend: JobBackend {
    let reason: String
    func stage(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { .failed(reason: reason) }
    func provision(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { .failed(reason: reason) }
    func submit(_ job: JobRecord, _ run: JobRunner) async -> JobEvent { .failed(reason: reason) }
    func monitor(_ job: JobRecord, _ run: JobRunner) async -> JobEvent? { .failed(reason: reason) }
    func cancel(_ job: JobRecord, _ run: JobRunner) async {}
    func cleanup(_ job: JobRecord, _ verdict: Verdict, _ run: JobRunner) async {}
}
