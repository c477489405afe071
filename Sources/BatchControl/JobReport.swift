import BatchCore
import BatchStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `batchctl list/show/logs` print, built from the database (read-only).
public struct JobReport: Sendable {
    let store: Store

    /// A report reader over a read-only store.
    public init(store: Store) { self.store = store }

    /// A time (seconds since 1970) as ISO 8601, or null.
    public static func iso(_ t: Double?) -> Any {
        guard let t else { return NSNull() }
        return UTCTime.iso(t)
    }

    /// JSON text of a value made of dictionaries and arrays.
    public static func json(_ object: Any) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    static func countsObject(_ c: TaskCounts) -> [String: Int] {
        ["total": c.total, "pending": c.pending, "running": c.running, "succeeded": c.succeeded, "failed": c.failed, "cancelled": c.cancelled]
    }

    /// The latest jobs: of one submitter, or everyone's (nil).
    func jobs(limit: Int, submitter: UInt32?) async throws -> [JobRecord] {
        if let submitter { return try await store.jobs(limit: limit, submitter: submitter) }
        return try await store.jobs(limit: limit)
    }

    /// The jobs list as objects (`submitter`: only theirs).
    public func list(limit: Int, submitter: UInt32? = nil) async throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        for job in try await jobs(limit: limit, submitter: submitter) {
            let c = try await store.counts(job.id)
            let retrying = job.phase.isTerminal ? [] : try await store.retrying(job.id)
            out.append(["id": job.id, "name": job.name, "state": job.phase.rawValue, "backend": job.backend.rawValue,
                        "tasks": Self.countsObject(c), "createdAt": Self.iso(job.createdAt), "finishedAt": Self.iso(job.finishedAt),
                        "retrying": retrying.map { ["step": $0.step, "reason": $0.reason] }])
        }
        return out
    }

    /// The jobs list as a table (`submitter`: only theirs, and not the
    /// inbox's problems, which may name others' files).
    public func listTable(limit: Int, submitter: UInt32? = nil) async throws -> String {
        var rows = [["ID", "NAME", "STATE", "TASKS OK/ALL", "FAILED", "CREATED"]]
        for job in try await jobs(limit: limit, submitter: submitter) {
            let c = try await store.counts(job.id)
            rows.append([job.id, job.name, try await stateCell(job), "\(c.succeeded)/\(c.total)", "\(c.failed)", "\(Self.iso(job.createdAt))"])
        }
        var text = Self.table(rows)
        // Entries the daemon could neither process nor give a .error (an
        // older database has no such table: nothing to show then).
        if submitter == nil, let problems = try? await store.inboxProblems(), !problems.isEmpty {
            text += "\n\ninbox entries not processed (the daemon's journal has more):"
            for p in problems { text += "\n  \(Printable.escape(p.name))  \(Self.iso(p.at))  \(Printable.escape(p.reason))" }
        }
        return text
    }

    /// A job's phase, and what holds it up while a step waits or retries
    /// (`submitting, waiting for Azure quota`): `show` has the whole story.
    func stateCell(_ job: JobRecord) async throws -> String {
        guard !job.phase.isTerminal, let first = try await store.retrying(job.id).first else { return job.phase.rawValue }
        if first.reason.hasPrefix("waiting for ") {
            return "\(job.phase.rawValue), " + (first.reason.split(separator: ":").first.map(String.init) ?? first.reason)
        }
        return "\(job.phase.rawValue), retrying"
    }

    /// Rows as left-aligned columns two spaces apart (the first row is the header).
    public static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        let widths = (0..<first.count).map { i in rows.map { $0[i].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// How many failed tasks and outputs `show` lists per page.
    public static let pageSize = 100

    /// One job in detail: its counts (one row, whatever the job's size), and
    /// page `page` of its failed tasks and of its outputs.
    public func show(_ job: JobRecord, page: Int = 1) async throws -> [String: Any] {
        let counts = try await store.counts(job.id)
        let outputCount = try await store.outputCount(job.id)
        let offset = (max(page, 1) - 1) * Self.pageSize
        let failedPage = try await store.failedTasks(job.id, limit: Self.pageSize + 1, offset: offset)
        let outputPage = try await store.outputs(job.id, limit: Self.pageSize + 1, offset: offset)
        let failed = failedPage.prefix(Self.pageSize).map { t -> [String: Any] in
            ["id": t.taskId, "outcome": t.outcome?.rawValue ?? NSNull(), "exitCode": t.exitCode ?? NSNull(), "signal": t.signal ?? NSNull(),
             "detail": t.detail ?? NSNull(), "attempts": t.countedAttempts]
        }
        let names = try await store.taskIDs(job.id, indices: Set(outputPage.map(\.idx)))
        let summary = await backendSummary(job)
        var transfer: Any = NSNull()
        if let t = await self.transfer(job) {
            transfer = ["inputs": ["bytesTotal": t.inputBytes, "bytesUploaded": t.uploaded, "bytesAlreadyStored": t.alreadyStored],
                        "downloads": ["bytes": t.downloaded, "underWay": ["bytes": t.underWay, "received": t.underWayReceived]]]
        }
        // A database from before v7 (a daemon not restarted since the upgrade) has no such table.
        let retrying = ((try? await store.retrying(job.id)) ?? []).map { r -> [String: Any] in
            ["step": r.step, "reason": r.reason, "tries": r.tries, "since": Self.iso(r.since), "last": Self.iso(r.last)]
        }
        let merged = try await mergedObject(job)
        var shown: [String: Any] = [
            "id": job.id, "name": job.name, "state": job.phase.rawValue, "reason": job.reason ?? NSNull(), "backend": job.backend.rawValue,
            "transfer": transfer, "retrying": retrying,
            "createdAt": Self.iso(job.createdAt), "finishedAt": Self.iso(job.finishedAt), "manifest": job.manifestPath,
            "sourceFile": job.sourceFile, "cancelRequested": job.cancelRequested,
            "tasks": Self.countsObject(counts), "failedTasks": failed,
            "outputs": ["destination": job.destination, "count": outputCount, "merged": merged,
                        "files": outputPage.prefix(Self.pageSize).map {
                            ["path": $0.path, "task": names[$0.idx] ?? "\($0.idx)", "size": $0.size, "sha256": $0.sha256]
                        }],
            "page": ["number": max(page, 1), "size": Self.pageSize, "more": failedPage.count > Self.pageSize || outputPage.count > Self.pageSize],
        ]
        // What the backend adds, under its own name (`azure`: its Batch job, pool, tokens).
        if let fields = summary?["fields"], shown[job.backend.rawValue] == nil { shown[job.backend.rawValue] = fields }
        return shown
    }

    /// What the job's backend recorded for its report (`lines` and
    /// `fields`: BackendSummary), as JSON objects; nil when it recorded none.
    func backendSummary(_ job: JobRecord) async -> [String: Any]? {
        guard let text = (try? await store.backendRecordText(job.id, "summary")) ?? nil else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    /// The bytes the job moved to and from its backend's service; nil when
    /// its backend moves none over the network.
    func transfer(_ job: JobRecord) async -> TransferProgress? {
        (try? await store.backendRecord(job.id, TransferProgress.key, as: TransferProgress.self)) ?? nil
    }

    /// Where `outputs.merge` stands: its file, the tasks merged so far (the
    /// first `tasks`), its size, the task files left out; null without one.
    func mergedObject(_ job: JobRecord) async throws -> Any {
        guard let merge = job.spec.merge else { return NSNull() }
        let state = try? await store.backendRecord(job.id, MergeState.key, as: MergeState.self)
        return ["path": merge.into, "format": merge.format.rawValue, "tasks": state?.next ?? 0, "bytes": state?.bytes ?? 0,
                "leftOut": state?.skipped ?? 0]
    }

    /// Each task's collected files (the artifacts by task index), a page of
    /// `pageSize` files at a time; one task's when `task` is given.
    public func outputs(_ job: JobRecord, task: String?, page: Int = 1) async throws -> [String: Any] {
        var idx: Int?
        if let task {
            guard let t = try await store.task(job.id, task) else { throw DaemonError("job \(job.id) has no task '\(task)'") }
            idx = t.idx
        }
        let offset = (max(page, 1) - 1) * Self.pageSize
        let rows = try await store.outputsByTask(job.id, idx: idx, limit: Self.pageSize + 1, offset: offset)
        let shown = Array(rows.prefix(Self.pageSize))
        let names = try await store.taskIDs(job.id, indices: Set(shown.map(\.idx)))
        var tasks: [[String: Any]] = []
        for r in shown {
            let file: [String: Any] = ["path": r.path, "size": r.size, "sha256": r.sha256]
            if let last = tasks.last, last["index"] as? Int == r.idx {
                tasks[tasks.count - 1]["files"] = (last["files"] as? [[String: Any]] ?? []) + [file]
            } else {
                tasks.append(["task": names[r.idx] ?? "\(r.idx)", "index": r.idx, "files": [file]])
            }
        }
        return ["job": job.id, "destination": job.destination, "count": try await store.outputCount(job.id), "tasks": tasks,
                "page": ["number": max(page, 1), "size": Self.pageSize, "more": rows.count > Self.pageSize]]
    }

    /// `outputs` for people: one block per task, in task order.
    public func outputsText(_ job: JobRecord, task: String?, page: Int = 1) async throws -> String {
        let o = try await outputs(job, task: task, page: page)
        let tasks = o["tasks"] as? [[String: Any]] ?? []
        guard !tasks.isEmpty else { return task == nil ? "job \(job.id) has collected no files" : "task \(task!) of job \(job.id) has collected no files" }
        var lines = ["files in \(job.destination)"]
        for t in tasks {
            lines.append("task \(t["task"]!) (index \(t["index"]!)):")
            for f in t["files"] as? [[String: Any]] ?? [] {
                lines.append("  \(f["path"]!)  \(Progress.bytes(f["size"] as? Int ?? 0))  sha256 \(String((f["sha256"] as? String ?? "").prefix(12)))")
            }
        }
        if (o["page"] as? [String: Any])?["more"] as? Bool == true { lines.append("… more with --page \(max(page, 1) + 1)") }
        return lines.joined(separator: "\n")
    }

    /// A step being retried, for people: what, why, how often, since when.
    public static func retryingText(_ r: RetryingRecord, now: Double = Date().timeIntervalSince1970) -> String {
        let ago = max(0, Int((now - r.last).rounded()))
        return "\(r.step): \(r.reason) — \(r.tries) \(r.tries == 1 ? "try" : "tries") since \(iso(r.since)), the last \(ago) s ago"
    }

    /// One job in detail, for people (page `page` of its failed tasks).
    public func showText(_ job: JobRecord, page: Int = 1) async throws -> String {
        let c = try await store.counts(job.id)
        let outputCount = try await store.outputCount(job.id)
        var lines = [
            "job        \(job.id)", "name       \(job.name)", "state      \(job.phase.rawValue)\(job.reason.map { " — \($0)" } ?? "")",
            "backend    \(job.backend.rawValue)", "created    \(Self.iso(job.createdAt))",
            "finished   \(job.finishedAt.map { "\(Self.iso($0))" } ?? "-")",
            "tasks      \(c.total) total: \(c.succeeded) succeeded, \(c.failed) failed, \(c.running) running, \(c.pending) pending, \(c.cancelled) cancelled",
            "outputs    \(outputCount) files in \(job.destination)",
        ]
        if let merge = job.spec.merge {
            let state = try? await store.backendRecord(job.id, MergeState.key, as: MergeState.self)
            lines.append("merged     \(merge.into): \(state?.next ?? 0) of \(c.total) tasks, \(Progress.bytes(Int(state?.bytes ?? 0)))"
                + ((state?.skipped ?? 0) > 0 ? ", \(state?.skipped ?? 0) files left out (see the log)" : ""))
        }
        lines += [
            "manifest   \(job.manifestPath)",
        ]
        let summary = (await backendSummary(job))?["lines"] as? [[String: Any]] ?? []
        func line(_ label: String, _ text: String) -> String { label.padding(toLength: max(10, label.count), withPad: " ", startingAt: 0) + " " + text }
        if let first = summary.first, let label = first["label"] as? String, let text = first["text"] as? String { lines.append(line(label, text)) }
        if let t = await transfer(job) {
            lines.append(line("inputs", "\(Progress.bytes(t.inputBytes)): \(Progress.bytes(t.uploaded)) uploaded, "
                + "\(Progress.bytes(t.alreadyStored)) already stored"))
            lines.append(line("downloads", "\(Progress.bytes(t.downloaded)) of logs and outputs"
                + (t.underWay > 0 ? "; \(Progress.bytes(t.underWayReceived)) of \(Progress.bytes(t.underWay)) under way" : "")))
        }
        for l in summary.dropFirst() {
            if let label = l["label"] as? String, let text = l["text"] as? String { lines.append(line(label, text)) }
        }
        for r in (try? await store.retrying(job.id)) ?? [] {
            lines.append("retrying   \(Self.retryingText(r))")
        }
        let offset = (max(page, 1) - 1) * Self.pageSize
        let failed = try await store.failedTasks(job.id, limit: Self.pageSize, offset: offset)
        if !failed.isEmpty {
            lines.append("failed tasks (see `batchctl logs \(job.id) TASK`):")
            for t in failed {
                let how = t.exitCode.map { "exit code \($0)" } ?? t.signal.map { "signal \($0)" } ?? t.outcome?.rawValue ?? "?"
                lines.append("  \(t.taskId): \(how)\(t.detail.map { " (\($0))" } ?? "")")
            }
            let shown = offset + failed.count
            if c.failed > shown { lines.append("  … and \(c.failed - shown) more (--page \(max(page, 1) + 1))") }
        }
        return lines.joined(separator: "\n")
    }

    /// A task's log file, never through a symlink (a task may replace its
    /// own log with one; whoever reads logs must not be shown another file),
    /// and at most its last 16 MiB.
    static func readLog(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return errno == ELOOP ? "(not shown: the task replaced this log with a symlink)\n" : "" }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return "(not shown: not a regular file)\n" }
        let limit: off_t = 16 << 20
        if st.st_size > limit { lseek(fd, st.st_size - limit, SEEK_SET) }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }

    /// The files of one attempt of a task (the latest by default).
    public func taskLogs(_ job: JobRecord, task: String, attempt: Int?) async throws -> [String: Any] {
        guard let t = try await store.task(job.id, task) else {
            throw DaemonError("job \(job.id) has no task '\(task)'")
        }
        let attempts = try await store.attempts(job.id, idx: t.idx)
        // A backend that retries a task itself (Azure Batch) leaves only the
        // last attempt, numbered as the service counted it: "attempt 3 of 3",
        // and attempts 1 and 2 are said to be gone rather than never made.
        let total = max(attempts.count, attempts.map(\.attempt).max() ?? 0)
        guard let a = attempt.map({ n in attempts.first { $0.attempt == n } }) ?? attempts.last else {
            if let n = attempt, n >= 1, n <= total {
                throw DaemonError("task \(t.taskId) attempt \(n) ran on the backend, which retried the task itself; "
                    + "only its last attempt (\(total)) is kept: leave out --attempt")
            }
            throw DaemonError("task \(t.taskId) has \(attempts.isEmpty ? "not run yet" : "no attempt \(attempt!) (it has \(total))")")
        }
        func read(_ name: String) -> String {
            Self.readLog("\(a.directory)/\(name)")
        }
        return ["job": job.id, "task": t.taskId, "attempt": a.attempt, "attempts": total, "state": t.state.rawValue,
                "outcome": a.outcome?.rawValue ?? NSNull(), "exitCode": a.exitCode ?? NSNull(), "signal": a.signal ?? NSNull(),
                "detail": a.detail ?? NSNull(), "directory": a.directory, "stdout": read("stdout"), "stderr": read("stderr")]
    }

    /// A job's history, and the end of each failed task's stderr.
    public func jobLogs(_ job: JobRecord) async throws -> [String: Any] {
        let events = try await store.events(job.id).map { e -> [String: Any] in
            ["at": Self.iso(e.at), "kind": e.kind, "message": e.message]
        }
        var failed: [[String: Any]] = []
        for t in try await store.tasks(job.id) where t.state == .failed {
            var logs = try await taskLogs(job, task: t.taskId, attempt: nil)
            let tail = (logs["stderr"] as? String ?? "").split(separator: "\n", omittingEmptySubsequences: false).suffix(20)
            logs["stderr"] = tail.joined(separator: "\n")
            logs["stdout"] = nil
            failed.append(logs)
        }
        return ["job": job.id, "events": events, "failedTasks": failed]
    }
}
