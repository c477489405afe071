import BatchCore
import Foundation
import GRDB

/// A backend's own records about a job: typed values under keys of its
/// choosing (`pool`, `array.3.intent`, ...), stored as JSON. Intents go in
/// before a side effect and results after, each in its own transaction.
extension Store {
    /// The value under `key` for the job, nil when there is none.
    public func backendRecord<T: Decodable & Sendable>(_ jobID: String, _ key: String, as type: T.Type) async throws -> T? {
        let text = try await db.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM backend_records WHERE job_id = ? AND key = ?", arguments: [jobID, key])
        }
        return try text.map { try JSONDecoder().decode(T.self, from: Data($0.utf8)) }
    }

    /// Every key and value (JSON text) under `prefix` for the job, by key.
    public func backendRecords(_ jobID: String, prefix: String) async throws -> [(key: String, value: String)] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT key, value FROM backend_records WHERE job_id = ? AND substr(key, 1, ?) = ? ORDER BY key",
                             arguments: [jobID, prefix.count, prefix])
                .map { ($0["key"], $0["value"]) }
        }
    }

    /// Records `value` under `key` for the job (replacing what was there).
    public func setBackendRecord<T: Encodable & Sendable>(_ jobID: String, _ key: String, _ value: T) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(value), as: UTF8.self)
        let now = clock()
        try await write { db in
            try db.execute(sql: """
                INSERT INTO backend_records (job_id, key, value, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (job_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                """, arguments: [jobID, key, json, now])
        }
    }

    /// The value under `key` of every job that has one, as JSON text, by job
    /// id (a backend's view of all its jobs: orphans, pools in use).
    public func backendRecords(key: String) async throws -> [(jobID: String, value: String)] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT job_id, value FROM backend_records WHERE key = ? ORDER BY job_id", arguments: [key])
                .map { ($0["job_id"], $0["value"]) }
        }
    }

    /// The value under `key` for the job as JSON text, nil when there is none.
    public func backendRecordText(_ jobID: String, _ key: String) async throws -> String? {
        try await db.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM backend_records WHERE job_id = ? AND key = ?", arguments: [jobID, key])
        }
    }
}

/// Bytes a job moved to and from its backend's service (inputs uploaded,
/// logs and outputs downloaded), for `show` and `watch`: recorded under
/// `transfer` by a backend that moves files over the network; reports read
/// it whatever the backend.
public struct TransferProgress: Codable, Sendable, Equatable {
    /// The record's key.
    public static let key = "transfer"
    /// Input bytes to stage.
    public var inputBytes = 0
    /// Input bytes sent so far.
    public var uploaded = 0
    /// Input bytes found already stored (not sent).
    public var alreadyStored = 0
    /// Downloaded in all: finished downloads, and what has come of those under way.
    public var downloaded = 0
    /// The size of the downloads under way.
    public var underWay = 0
    /// What has come of them.
    public var underWayReceived = 0

    /// Progress.
    public init(inputBytes: Int = 0, uploaded: Int = 0, alreadyStored: Int = 0, downloaded: Int = 0, underWay: Int = 0,
                underWayReceived: Int = 0) {
        self.inputBytes = inputBytes
        self.uploaded = uploaded
        self.alreadyStored = alreadyStored
        self.downloaded = downloaded
        self.underWay = underWay
        self.underWayReceived = underWayReceived
    }

    /// This progress with staging's numbers replaced.
    public func staged(total: Int, uploaded: Int, alreadyStored: Int) -> TransferProgress {
        var p = self
        (p.inputBytes, p.uploaded, p.alreadyStored) = (total, uploaded, alreadyStored)
        return p
    }

    /// This progress with the downloads' numbers replaced.
    public func downloads(_ downloaded: Int, underWay: Int = 0, received: Int = 0) -> TransferProgress {
        var p = self
        (p.downloaded, p.underWay, p.underWayReceived) = (downloaded, underWay, received)
        return p
    }
}

/// What a backend adds to a job's report, under `summary`: lines for
/// `show` (a label and its text) and an object for `show --json` (under the
/// backend's name). Reports print it as it is, knowing no backend.
public struct BackendSummary<Fields: Codable & Sendable>: Codable, Sendable {
    /// The record's key.
    public static var key: String { "summary" }
    /// One line of `show`.
    public struct Line: Codable, Sendable, Equatable {
        public var label: String
        public var text: String
        public init(_ label: String, _ text: String) {
            self.label = label
            self.text = text
        }
    }
    public var lines: [Line]
    public var fields: Fields

    /// A summary.
    public init(lines: [Line], fields: Fields) {
        self.lines = lines
        self.fields = fields
    }
}
