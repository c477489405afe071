import BatchCore
import BatchStore
import Foundation

/// What `batchctl watch` and `wait` follow of a job: its phase, counts,
/// transfers and retried steps, read the same way by the daemon (answering
/// the control socket's `read` of `progress`) and by batchctl (from the
/// database, when the daemon cannot be asked). `version` changes whenever
/// anything in it does.
public struct JobSnapshot: Codable, Sendable, Equatable {
    public struct Retrying: Codable, Sendable, Equatable {
        public var step: String
        public var reason: String
        public var tries: Int
        public var since: Double
        public var last: Double
        public var record: RetryingRecord { RetryingRecord(step: step, reason: reason, tries: tries, since: since, last: last) }
    }
    public var id: String
    public var name: String
    public var phase: String
    public var reason: String?
    public var counts: TaskCounts
    public var transfer: TransferProgress?
    public var retrying: [Retrying]
    /// What the backend says it is doing while the job is provisioned (its
    /// summary's lines: a local job's image being pulled, an Azure pool
    /// being made); nil otherwise.
    public var activity: [String]?

    public var jobPhase: JobPhase { JobPhase(rawValue: phase) ?? .failed }

    /// A fingerprint of everything above (FNV-1a of its JSON: the same in
    /// every process, unlike Swift's seeded hashes).
    public var version: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in (try? encoder.encode(self)) ?? Data() { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(h, radix: 16)
    }

    /// The snapshot of job `id` in `store`; nil when there is no such job.
    public static func read(_ store: Store, _ id: String) async throws -> JobSnapshot? {
        guard let job = try await store.job(id) else { return nil }
        let counts = try await store.counts(id)
        let transfer = (try? await store.backendRecord(id, TransferProgress.key, as: TransferProgress.self)) ?? nil
        let retrying = job.phase.isTerminal ? [] : ((try? await store.retrying(id)) ?? [])
        var activity: [String]?
        if job.phase == .provisioning, let text = (try? await store.backendRecordText(id, "summary")) ?? nil,
           let summary = try? JSONDecoder().decode(SummaryLines.self, from: Data(text.utf8)) {
            activity = summary.lines.map { "\($0.label) \($0.text)" }
        }
        return JobSnapshot(id: job.id, name: job.name, phase: job.phase.rawValue, reason: job.reason, counts: counts, transfer: transfer,
                           retrying: retrying.map { Retrying(step: $0.step, reason: $0.reason, tries: $0.tries, since: $0.since, last: $0.last) },
                           activity: activity)
    }

    /// A backend summary's lines, whatever its fields.
    struct SummaryLines: Decodable {
        struct Line: Decodable { let label: String; let text: String }
        let lines: [Line]
    }
}
