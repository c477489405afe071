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
        try await db.write { db in
            try db.execute(sql: """
                INSERT INTO backend_records (job_id, key, value, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (job_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                """, arguments: [jobID, key, json, now])
        }
    }
}
