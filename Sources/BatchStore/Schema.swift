import BatchCore
import Foundation
import GRDB

/// The schema, as named, append-only migrations: never edit a shipped one; add
/// the next.
enum Schema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-jobs-tasks-attempts") { db in
            try db.execute(sql: """
                CREATE TABLE jobs (
                  id TEXT PRIMARY KEY NOT NULL,
                  name TEXT NOT NULL,
                  backend TEXT NOT NULL,
                  phase TEXT NOT NULL CHECK (phase IN ('accepted','staging','provisioning','submitting',
                        'running','collecting','finalizing','succeeded','failed','cancelled')),
                  verdict TEXT CHECK (verdict IN ('success','failure','cancelled')),
                  reason TEXT,
                  source_file TEXT NOT NULL,
                  manifest_path TEXT NOT NULL,
                  base_directory TEXT NOT NULL,
                  destination TEXT NOT NULL,
                  retries INTEGER NOT NULL CHECK (retries >= 0),
                  timeout_seconds REAL CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
                  cleanup TEXT NOT NULL CHECK (cleanup IN ('always','onSuccess','never')),
                  max_parallel INTEGER CHECK (max_parallel IS NULL OR max_parallel > 0),
                  output_patterns TEXT NOT NULL,
                  shared_inputs TEXT NOT NULL,
                  task_count INTEGER NOT NULL CHECK (task_count > 0),
                  cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0,1)),
                  created_at REAL NOT NULL,
                  updated_at REAL NOT NULL,
                  finished_at REAL,
                  CHECK ((finished_at IS NULL) = (phase NOT IN ('succeeded','failed','cancelled')))
                );
                CREATE INDEX jobs_by_name ON jobs(name, created_at);
                CREATE INDEX jobs_unfinished ON jobs(phase) WHERE finished_at IS NULL;

                CREATE TABLE tasks (
                  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                  idx INTEGER NOT NULL CHECK (idx >= 0),
                  task_id TEXT NOT NULL,
                  command TEXT NOT NULL,
                  env TEXT NOT NULL,
                  inputs TEXT NOT NULL,
                  state TEXT NOT NULL CHECK (state IN ('pending','running','succeeded','failed','cancelled')),
                  counted_attempts INTEGER NOT NULL DEFAULT 0 CHECK (counted_attempts >= 0),
                  outcome TEXT,
                  exit_code INTEGER,
                  signal INTEGER,
                  detail TEXT,
                  updated_at REAL NOT NULL,
                  PRIMARY KEY (job_id, idx),
                  UNIQUE (job_id, task_id)
                );
                CREATE INDEX tasks_by_state ON tasks(job_id, state);

                CREATE TABLE attempts (
                  job_id TEXT NOT NULL,
                  idx INTEGER NOT NULL,
                  attempt INTEGER NOT NULL CHECK (attempt >= 1),
                  state TEXT NOT NULL CHECK (state IN ('starting','running','finished')),
                  pid INTEGER,
                  directory TEXT NOT NULL,
                  started_at REAL NOT NULL,
                  finished_at REAL,
                  outcome TEXT,
                  exit_code INTEGER,
                  signal INTEGER,
                  detail TEXT,
                  counted INTEGER CHECK (counted IN (0,1)),
                  PRIMARY KEY (job_id, idx, attempt),
                  FOREIGN KEY (job_id, idx) REFERENCES tasks(job_id, idx) ON DELETE CASCADE,
                  CHECK ((state = 'finished') = (outcome IS NOT NULL))
                );
                -- At most one unfinished attempt per task: a task never runs twice at once.
                CREATE UNIQUE INDEX attempts_one_live ON attempts(job_id, idx) WHERE state != 'finished';

                CREATE TABLE outputs (
                  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                  path TEXT NOT NULL,
                  idx INTEGER NOT NULL,
                  size INTEGER NOT NULL CHECK (size >= 0),
                  sha256 TEXT NOT NULL,
                  PRIMARY KEY (job_id, path),
                  FOREIGN KEY (job_id, idx) REFERENCES tasks(job_id, idx) ON DELETE CASCADE
                );

                CREATE TABLE inputs (
                  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                  source TEXT NOT NULL,
                  sha256 TEXT NOT NULL,
                  size INTEGER NOT NULL CHECK (size >= 0),
                  PRIMARY KEY (job_id, source)
                );

                CREATE TABLE file_hashes (
                  path TEXT PRIMARY KEY NOT NULL,
                  device INTEGER NOT NULL,
                  inode INTEGER NOT NULL,
                  size INTEGER NOT NULL,
                  mtime_ns INTEGER NOT NULL,
                  sha256 TEXT NOT NULL
                );

                CREATE TABLE events (
                  seq INTEGER PRIMARY KEY AUTOINCREMENT,
                  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                  idx INTEGER,
                  at REAL NOT NULL,
                  kind TEXT NOT NULL,
                  message TEXT NOT NULL
                );
                CREATE INDEX events_by_job ON events(job_id, seq);
                """)
        }
        m.registerMigration("v2-azure") { db in
            try db.execute(sql: """
                -- What a job on Azure Batch has made there, so a restart finds it again.
                CREATE TABLE azure_jobs (
                  job_id TEXT PRIMARY KEY NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                  batch_job_id TEXT NOT NULL,
                  pool_id TEXT,
                  auto_pool INTEGER NOT NULL CHECK (auto_pool IN (0,1)),
                  output_container TEXT NOT NULL,
                  wall_clock_seconds REAL NOT NULL CHECK (wall_clock_seconds > 0),
                  token_expiry REAL,
                  submitted INTEGER NOT NULL DEFAULT 0 CHECK (submitted IN (0,1)),
                  bytes_total INTEGER NOT NULL DEFAULT 0 CHECK (bytes_total >= 0),
                  bytes_uploaded INTEGER NOT NULL DEFAULT 0 CHECK (bytes_uploaded >= 0),
                  bytes_skipped INTEGER NOT NULL DEFAULT 0 CHECK (bytes_skipped >= 0),
                  cleaned INTEGER NOT NULL DEFAULT 0 CHECK (cleaned IN (0,1))
                );
                CREATE UNIQUE INDEX azure_jobs_batch_id ON azure_jobs(batch_job_id);
                -- Blob names of staged inputs (content-addressed by MD5).
                ALTER TABLE inputs ADD COLUMN blob TEXT;
                -- Blob's hash (base64 MD5) beside the SHA-256, same validity rule.
                ALTER TABLE file_hashes ADD COLUMN md5 TEXT;
                """)
        }
        m.registerMigration("v3-intake-strikes") { db in
            try db.execute(sql: """
                -- Launches and adoptions of this task that the daemon did not
                -- live through; at 2 the task fails instead of being tried again.
                ALTER TABLE tasks ADD COLUMN strikes INTEGER NOT NULL DEFAULT 0 CHECK (strikes >= 0);
                -- Manifests claimed from the inbox and not yet accepted or
                -- rejected; `starts` counts the reads begun, so a manifest the
                -- daemon died reading twice is set aside, not read again.
                CREATE TABLE intake (
                  claimed TEXT PRIMARY KEY NOT NULL,
                  original TEXT NOT NULL,
                  owner INTEGER NOT NULL CHECK (owner >= 0),
                  starts INTEGER NOT NULL DEFAULT 0 CHECK (starts >= 0),
                  claimed_at REAL NOT NULL
                );
                -- Inbox entries that could be neither processed nor given a
                -- .error file: batchctl list shows them.
                CREATE TABLE inbox_problems (
                  name TEXT PRIMARY KEY NOT NULL,
                  reason TEXT NOT NULL,
                  at REAL NOT NULL
                );
                """)
        }
        m.registerMigration("v4-job-spec") { db in
            // The accepted job as one typed value (JobSpec, JSON), so nothing
            // reads the manifest again. Jobs accepted before this have none;
            // the daemon fills it in once for those still unfinished.
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN spec TEXT")
        }
        m.registerMigration("v5-backend-records") { db in
            try db.execute(sql: """
                -- What a backend records about a job beyond the common tables
                -- (an intent before a side effect, the id it got after), one
                -- JSON value per key, so a new backend needs no schema change.
                CREATE TABLE backend_records (
                  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                  key TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
                  value TEXT NOT NULL,
                  updated_at REAL NOT NULL,
                  PRIMARY KEY (job_id, key)
                );
                """)
        }
        m.registerMigration("v6-job-counts") { db in
            try db.execute(sql: """
                -- Each job's tasks by state, kept as they change, so a view of a
                -- job of any size reads one row instead of counting its tasks.
                CREATE TABLE job_counts (
                  job_id TEXT PRIMARY KEY NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                  pending INTEGER NOT NULL DEFAULT 0 CHECK (pending >= 0),
                  running INTEGER NOT NULL DEFAULT 0 CHECK (running >= 0),
                  succeeded INTEGER NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
                  failed INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
                  cancelled INTEGER NOT NULL DEFAULT 0 CHECK (cancelled >= 0),
                  outputs INTEGER NOT NULL DEFAULT 0 CHECK (outputs >= 0)
                );
                INSERT INTO job_counts (job_id, pending, running, succeeded, failed, cancelled, outputs)
                  SELECT job_id, SUM(state = 'pending'), SUM(state = 'running'), SUM(state = 'succeeded'),
                         SUM(state = 'failed'), SUM(state = 'cancelled'),
                         (SELECT COUNT(*) FROM outputs o WHERE o.job_id = tasks.job_id)
                  FROM tasks GROUP BY job_id;
                CREATE TRIGGER outputs_count_insert AFTER INSERT ON outputs BEGIN
                  UPDATE job_counts SET outputs = outputs + 1 WHERE job_id = NEW.job_id;
                END;
                CREATE TRIGGER outputs_count_delete AFTER DELETE ON outputs BEGIN
                  UPDATE job_counts SET outputs = outputs - 1 WHERE job_id = OLD.job_id;
                END;
                -- `show` lists a job's failed tasks a page at a time.
                CREATE INDEX tasks_failed ON tasks(job_id, idx) WHERE state = 'failed';
                -- A job's tasks are inserted with their row here (insertJob);
                -- every change of state after that moves one count.
                CREATE TRIGGER tasks_count_state AFTER UPDATE OF state ON tasks WHEN OLD.state != NEW.state BEGIN
                  UPDATE job_counts SET
                    pending = pending + (NEW.state = 'pending') - (OLD.state = 'pending'),
                    running = running + (NEW.state = 'running') - (OLD.state = 'running'),
                    succeeded = succeeded + (NEW.state = 'succeeded') - (OLD.state = 'succeeded'),
                    failed = failed + (NEW.state = 'failed') - (OLD.state = 'failed'),
                    cancelled = cancelled + (NEW.state = 'cancelled') - (OLD.state = 'cancelled')
                  WHERE job_id = NEW.job_id;
                END;
                -- Counting no longer needs it, and a million-row cancel took 4.2 s
                -- with it, 2.5 s without (docs/architecture.md).
                DROP INDEX tasks_by_state;
                """)
        }
        m.registerMigration("v7-retrying") { db in
            try db.execute(sql: """
                -- A step of a job that keeps failing for a transient reason
                -- and is being tried again: what, why in plain words, how
                -- often and since when, for `show` and `watch`. A row goes
                -- when its step ends, one way or the other.
                CREATE TABLE retrying (
                  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                  step TEXT NOT NULL,
                  reason TEXT NOT NULL,
                  tries INTEGER NOT NULL CHECK (tries >= 1),
                  since REAL NOT NULL,
                  last REAL NOT NULL,
                  PRIMARY KEY (job_id, step)
                );
                """)
        }
        m.registerMigration("v8-outputs-by-task") { db in
            // `batchctl outputs JOB [TASK]` lists a job's files by task.
            try db.execute(sql: "CREATE INDEX outputs_by_task ON outputs(job_id, idx, path)")
        }
        m.registerMigration("v9-put-and-pruned-files") { db in
            try db.execute(sql: """
                -- Files put into a backend's input store without a job
                -- (`batchctl files put`), one row per path and backend.
                CREATE TABLE put_files (
                  backend TEXT NOT NULL,
                  source TEXT NOT NULL,
                  sha256 TEXT NOT NULL,
                  size INTEGER NOT NULL CHECK (size >= 0),
                  blob TEXT,
                  put_at REAL NOT NULL,
                  uid INTEGER NOT NULL,
                  PRIMARY KEY (backend, source)
                );
                -- When `batchctl files prune` removed a job's input from its
                -- backend's store (the row stays: the job's history).
                ALTER TABLE inputs ADD COLUMN pruned_at REAL;
                CREATE INDEX inputs_by_content ON inputs(sha256);
                """)
        }
        m.registerMigration("v10-azure-downloads") { db in
            try db.execute(sql: """
                -- Bytes of logs and outputs downloaded for an Azure job, and
                -- of the downloads under way: their size and what has come.
                ALTER TABLE azure_jobs ADD COLUMN downloaded INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE azure_jobs ADD COLUMN downloading INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE azure_jobs ADD COLUMN downloading_received INTEGER NOT NULL DEFAULT 0;
                """)
        }
        m.registerMigration("v11-azure-records") { db in
            let azureLine = """
                json_object('label', 'azure', 'text', 'Batch job ' || batch_job_id || ' on '
                  || CASE auto_pool WHEN 1 THEN 'auto-pool' ELSE 'pool' END || ' ' || coalesce(pool_id, '(not yet made)')
                  || '; outputs via container ' || output_container)
                """
            // The Azure backend keeps what it made as its own record
            // (`azure.job`), like every backend, and its transfers and
            // report lines in the records every report reads (`transfer`,
            // `summary`): the store names no backend's columns any more.
            try db.execute(sql: """
                INSERT OR REPLACE INTO backend_records (job_id, key, value, updated_at)
                  SELECT job_id, 'azure.job', json_object(
                    'jobId', job_id, 'batchJobId', batch_job_id, 'poolId', pool_id,
                    'autoPool', json(CASE auto_pool WHEN 1 THEN 'true' ELSE 'false' END),
                    'outputContainer', output_container, 'wallClockSeconds', wall_clock_seconds, 'tokenExpiry', token_expiry,
                    'submitted', json(CASE submitted WHEN 1 THEN 'true' ELSE 'false' END),
                    'cleaned', json(CASE cleaned WHEN 1 THEN 'true' ELSE 'false' END)), (julianday('now') - 2440587.5) * 86400.0
                  FROM azure_jobs;
                INSERT OR REPLACE INTO backend_records (job_id, key, value, updated_at)
                  SELECT job_id, 'transfer', json_object(
                    'inputBytes', bytes_total, 'uploaded', bytes_uploaded, 'alreadyStored', bytes_skipped,
                    'downloaded', downloaded, 'underWay', downloading, 'underWayReceived', downloading_received), (julianday('now') - 2440587.5) * 86400.0
                  FROM azure_jobs;
                INSERT OR REPLACE INTO backend_records (job_id, key, value, updated_at)
                  SELECT job_id, 'summary', json_object(
                    'lines', CASE WHEN token_expiry IS NULL THEN json_array(\(azureLine))
                             ELSE json_array(\(azureLine), json_object('label', 'tokens', 'text',
                               'SAS valid until ' || strftime('%Y-%m-%dT%H:%M:%SZ', token_expiry, 'unixepoch'))) END,
                    'fields', json_object('batchJob', batch_job_id, 'pool', pool_id,
                      'autoPool', json(CASE auto_pool WHEN 1 THEN 'true' ELSE 'false' END), 'outputContainer', output_container,
                      'submitted', json(CASE submitted WHEN 1 THEN 'true' ELSE 'false' END),
                      'tokenExpiry', CASE WHEN token_expiry IS NULL THEN NULL
                                     ELSE strftime('%Y-%m-%dT%H:%M:%SZ', token_expiry, 'unixepoch') END)), (julianday('now') - 2440587.5) * 86400.0
                  FROM azure_jobs;
                DROP TABLE azure_jobs;
                """)
        }
        m.registerMigration("v12-spec-only") { db in
            // The spec is the one record of what a job asks for: jobs an older
            // batchd accepted get theirs, made from their columns (their
            // manifest is not read again: pool options and limits it did not
            // store take their defaults), and the copies of its fields go.
            let rows = try Row.fetchAll(db, sql: """
                SELECT id, name, backend, manifest_path, base_directory, destination, retries, timeout_seconds, cleanup, max_parallel,
                       output_patterns, shared_inputs FROM jobs WHERE spec IS NULL
                """)
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            for r in rows {
                var m = Manifest(name: r["name"], tasks: .list([]))
                m.retries = r["retries"]
                m.timeoutSeconds = r["timeout_seconds"]
                m.cleanup = CleanupPolicy(rawValue: r["cleanup"]) ?? .onSuccess
                m.outputs.patterns = (try? JSONDecoder().decode([String].self, from: Data((r["output_patterns"] as String).utf8))) ?? []
                m.pool.slotsPerNode = r["max_parallel"]
                let shared = (try? JSONDecoder().decode([InputFile].self, from: Data((r["shared_inputs"] as String).utf8))) ?? []
                // The submitter: the accepted manifest's owner, as intake had it.
                var st = stat()
                let path: String = r["manifest_path"]
                let uid = stat(path, &st) == 0 ? st.st_uid : geteuid()
                let spec = JobSpec(m, backend: BackendKind(rawValue: r["backend"]), baseDirectory: r["base_directory"], destination: r["destination"],
                                   submitterUID: uid, sharedInputs: shared)
                try db.execute(sql: "UPDATE jobs SET spec = ? WHERE id = ?",
                               arguments: [String(decoding: try encoder.encode(spec), as: UTF8.self), r["id"] as String])
            }
            for column in ["base_directory", "destination", "retries", "timeout_seconds", "cleanup", "max_parallel", "output_patterns", "shared_inputs"] {
                try db.execute(sql: "ALTER TABLE jobs DROP COLUMN \(column)")
            }
        }
        return m
    }
}
