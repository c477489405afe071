import Foundation
import GRDB

/// The input stores' contents as the database knows them (`batchctl files`):
/// what jobs staged (`inputs`) and what was put without a job (`put_files`).
extension Store {
    /// Every stored file, by content: its size, the names it was staged or
    /// put from, the jobs that used it, the backends holding it, when it was
    /// last used (the end of the last job that used it, its acceptance while
    /// that job runs, or when it was put). Newest use first, at most `limit`.
    /// What `files prune` removed is not listed.
    public func storedFiles(limit: Int = 10_000) async throws -> [StoredFile] {
        try await db.read { db in
            let rows = try Row.fetchAll(db, sql: """
                WITH uses AS (
                  SELECT i.sha256, i.size, i.source, i.job_id AS job, j.backend, i.blob,
                         COALESCE(j.finished_at, j.created_at) AS used
                  FROM inputs i JOIN jobs j ON j.id = i.job_id WHERE i.pruned_at IS NULL
                  UNION ALL
                  SELECT sha256, size, source, NULL, backend, blob, put_at FROM put_files)
                SELECT sha256, MAX(size) AS size, MAX(used) AS last_used,
                       json_group_array(DISTINCT source) AS sources,
                       json_group_array(DISTINCT job) FILTER (WHERE job IS NOT NULL) AS jobs,
                       json_group_array(DISTINCT backend) AS backends, MAX(blob) AS blob
                FROM uses GROUP BY sha256 ORDER BY last_used DESC, sha256 LIMIT ?
                """, arguments: [limit])
            return rows.map { r in
                StoredFile(sha256: r["sha256"], size: r["size"], names: Self.jsonList(r["sources"]), jobs: Self.jsonList(r["jobs"]),
                           backends: Self.jsonList(r["backends"]), blob: r["blob"], lastUsed: r["last_used"])
            }
        }
    }

    /// A JSON array of strings from SQLite's `json_group_array`, sorted.
    static func jsonList(_ text: String?) -> [String] {
        guard let text, let list = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [Any] else { return [] }
        return list.compactMap { $0 as? String }.sorted()
    }

    /// Records files put into `backend`'s store (a path put again is updated).
    public func recordPut(_ files: [PutFileRecord]) async throws {
        let now = clock()
        try await write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT INTO put_files (backend, source, sha256, size, blob, put_at, uid) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (backend, source) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, blob = excluded.blob,
                  put_at = excluded.put_at, uid = excluded.uid
                """)
            for f in files { try insert.execute(arguments: [f.backend, f.source, f.sha256, f.size, f.blob, now, Int64(f.uid)]) }
        }
    }

    /// What `backend`'s store holds that no unfinished job on it uses and
    /// nothing used after `usedBefore` (seconds since 1970), by hash; at
    /// most `limit`.
    public func pruneCandidates(backend: String, usedBefore: Double, limit: Int = 100_000) async throws -> [PruneCandidate] {
        try await db.read { db in
            // An unfinished job's use counts as now-and-later: never old enough.
            try Row.fetchAll(db, sql: """
                WITH uses AS (
                  SELECT i.sha256, i.size, i.source, i.blob, COALESCE(j.finished_at, 1e300) AS used
                  FROM inputs i JOIN jobs j ON j.id = i.job_id WHERE j.backend = ?1 AND i.pruned_at IS NULL
                  UNION ALL
                  SELECT sha256, size, source, blob, put_at FROM put_files WHERE backend = ?1)
                SELECT sha256, MAX(size) AS size, MAX(blob) AS blob, json_group_array(DISTINCT source) AS names, MAX(used) AS last_used
                FROM uses GROUP BY sha256 HAVING MAX(used) <= ?2 ORDER BY sha256 LIMIT ?3
                """, arguments: [backend, usedBefore, limit]).map { r in
                PruneCandidate(sha256: r["sha256"], size: r["size"], blob: r["blob"], names: Self.jsonList(r["names"]), lastUsed: r["last_used"])
            }
        }
    }

    /// Records that `backend`'s store no longer holds these contents: the
    /// jobs' input rows are marked pruned (kept as history), put rows go.
    public func markPruned(backend: String, sha256s: [String]) async throws {
        let now = clock()
        try await write { db in
            let mark = try db.cachedStatement(sql: """
                UPDATE inputs SET pruned_at = ? WHERE sha256 = ? AND pruned_at IS NULL
                  AND job_id IN (SELECT id FROM jobs WHERE backend = ?)
                """)
            let drop = try db.cachedStatement(sql: "DELETE FROM put_files WHERE backend = ? AND sha256 = ?")
            for sha in sha256s {
                try mark.execute(arguments: [now, sha, backend])
                try drop.execute(arguments: [backend, sha])
            }
        }
    }

    /// How many of a job's inputs `files prune` removed from its store.
    public func prunedInputs(_ jobID: String) async throws -> Int {
        try await db.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM inputs WHERE job_id = ? AND pruned_at IS NOT NULL", arguments: [jobID]) ?? 0
        }
    }
}

/// What `outputs.merge` reads: the tasks ended so far, in order, and their files.
extension Store {
    /// The first task at or after `idx` that has not ended; nil when none has not.
    public func firstOpenTask(_ jobID: String, from idx: Int) async throws -> Int? {
        try await db.read { db in
            try Int.fetchOne(db, sql: """
                SELECT idx FROM tasks WHERE job_id = ? AND idx >= ? AND state IN ('pending', 'running') ORDER BY idx LIMIT 1
                """, arguments: [jobID, idx])
        }
    }

    /// The outputs of tasks `range`, by task and path.
    public func outputs(_ jobID: String, tasks range: Range<Int>) async throws -> [OutputRecord] {
        try await db.read { db in
            try OutputRecord.fetchAll(db, sql: "SELECT * FROM outputs WHERE job_id = ? AND idx >= ? AND idx < ? ORDER BY idx, path",
                                      arguments: [jobID, range.lowerBound, range.upperBound])
        }
    }
}
