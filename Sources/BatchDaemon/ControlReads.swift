import BatchCore
import BatchControl
import BatchStore
import BatchSupport
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A pulse for each change to the daemon's database: what a `read` that
/// waits (`progress`, `submission`, `tail`) waits on, instead of asking the
/// database again and again.
final class ChangePulse: Sendable {
    /// The event the next change fires, and whether anyone took it (a
    /// change with no one waiting costs a lock, nothing more).
    let current = Mutex((event: AsyncEvent<Void>(), taken: false))

    /// After each transaction that changed the database.
    func fire() {
        let old = current.withLock { c -> AsyncEvent<Void>? in
            guard c.taken else { return nil }
            let o = c.event
            c = (AsyncEvent(), false)
            return o
        }
        old?.fire(())
    }

    /// The next change (wait on it, with a timeout).
    var next: AsyncEvent<Void> {
        current.withLock { c in
            c.taken = true
            return c.event
        }
    }
}

/// The control socket's `read`: what batchctl shows, read by the daemon,
/// for the sender (docs/security.md, "Private by default"). A submitter
/// sees their own jobs only; an operator sees every job. A job of another's
/// is refused with who may see it.
struct ControlReads {
    let store: Store
    let authority: ControlAuthority
    let pulse: ChangePulse
    let requester: Requester?
    /// Where rejected manifests go (a submission rejected is answered at once).
    var rejectedDirectory: String?

    /// Longest a read waits for a change.
    static let longestWait = 60.0

    /// When a read asked to wait `wait` seconds gives up (at most `longestWait`).
    static func deadline(_ wait: Double?) -> ContinuousClock.Instant {
        ContinuousClock.now + .seconds(min(max(0, wait ?? 0), longestWait))
    }

    /// Waits for `change`, at most until `end` and at most `atMost` seconds.
    static func await(_ change: AsyncEvent<Void>, until end: ContinuousClock.Instant, atMost: Double = longestWait) async {
        let left = end - ContinuousClock.now
        _ = await change.wait(timeout: max(0, min(atMost, Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18)))
    }

    /// A snapshot as a read's answer: the object, and its version as `text`.
    static func reply(_ snapshot: JobSnapshot) throws -> ControlReply {
        var r = ControlReply(ok: true, job: snapshot.id)
        r.report = String(decoding: try JSONEncoder().encode(snapshot), as: UTF8.self)
        r.text = snapshot.version
        return r
    }

    func perform(_ q: ReadQuery) async -> ControlReply {
        do {
            return try await answer(q)
        } catch let e as Refusal {
            var reply = ControlReply.refused(e.message)
            reply.code = e.code
            return reply
        } catch {
            return .refused("\(error)")
        }
    }

    struct Refusal: Error {
        let code: Int
        let message: String
    }

    /// The job `q.job` names, if the sender may see it.
    func job(_ idOrName: String?) async throws -> JobRecord {
        guard let idOrName else { throw Refusal(code: 2, message: "the read names no job") }
        let scope = authority.visible(to: requester)
        let found: JobRecord?
        if let scope { found = try await store.job(idOrName, submitter: scope) } else { found = try await store.job(idOrName) }
        guard let job = found else { throw Refusal(code: 4, message: "no job with id or name '\(idOrName)'") }
        if let refusal = authority.refusal(requester, "see", job) { throw Refusal(code: 1, message: refusal) }
        return job
    }

    func answer(_ q: ReadQuery) async throws -> ControlReply {
        let report = JobReport(store: store)
        let page = max(1, q.page ?? 1)
        switch q.what {
        case "list":
            let limit = min(max(1, q.limit ?? 50), 10_000)
            let scope = authority.visible(to: requester)
            return reply(try await report.list(limit: limit, submitter: scope),
                         text: q.text == true ? try await report.listTable(limit: limit, submitter: scope) : nil)
        case "show":
            let job = try await job(q.job)
            return reply(try await report.show(job, page: page), text: q.text == true ? try await report.showText(job, page: page) : nil)
        case "outputs":
            let job = try await job(q.job)
            do {
                return reply(try await report.outputs(job, task: q.task, page: page),
                             text: q.text == true ? try await report.outputsText(job, task: q.task, page: page) : nil)
            } catch let e as DaemonError {
                throw Refusal(code: 4, message: "\(e)")
            }
        case "logs":
            let job = try await job(q.job)
            guard let task = q.task else { return reply(try await report.jobLogs(job)) }
            do { return reply(try await report.taskLogs(job, task: task, attempt: q.attempt)) } catch {
                throw Refusal(code: 4, message: "\(error)")
            }
        case "progress":
            let job = try await job(q.job)
            return try await progress(job.id, after: q.after, wait: q.wait)
        case "end":
            let job = try await job(q.job)
            return try await end(job.id, wait: q.wait)
        case "submission":
            return try await submission(q.job, wait: q.wait)
        case "tail":
            let job = try await job(q.job)
            return try await tail(job, task: q.task, offsets: q.offsets ?? [], wait: q.wait)
        default:
            throw Refusal(code: 2, message: "unknown read '\(q.what)': list, show, outputs, logs, progress, end, submission or tail")
        }
    }

    func reply(_ object: [String: Any], text: String? = nil) -> ControlReply {
        var r = ControlReply(ok: true)
        r.report = JobReport.json(object)
        r.text = text
        return r
    }

    func reply(_ objects: [[String: Any]], text: String? = nil) -> ControlReply {
        var r = ControlReply(ok: true)
        r.report = JobReport.json(objects)
        r.text = text
        return r
    }

    /// The job's snapshot once its version is not `after` (at once when it
    /// already is not), or as it is after `wait` seconds.
    func progress(_ id: String, after: String?, wait: Double?) async throws -> ControlReply {
        let end = Self.deadline(wait)
        // One who has a version gets the next at most five times a second,
        // however fast the job changes: a watcher costs the daemon at most
        // five looks a second.
        if after != nil { try? await Task.sleep(for: .milliseconds(200)) }
        while true {
            let change = pulse.next   // taken before reading: a change after the read still wakes us
            guard let snapshot = try await JobSnapshot.read(store, id) else { throw Refusal(code: 4, message: "job \(id) is gone") }
            if snapshot.version != after || snapshot.jobPhase.isTerminal || ContinuousClock.now >= end { return try Self.reply(snapshot) }
            await Self.await(change, until: end)
            // Many changes a second (tasks ending): look again at most ten times a second.
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// `logs --follow`: what a task's latest attempt wrote past `offsets`
    /// ([stdout bytes, stderr bytes, attempt]; at most 1 MiB of each per
    /// answer), or the job's history events past `offsets[0]` (its
    /// sequence number); waits up to `wait` seconds for something new.
    /// `done` once nothing more will come.
    func tail(_ job: JobRecord, task: String?, offsets: [Int], wait: Double?) async throws -> ControlReply {
        let end = Self.deadline(wait)
        while true {
            let change = pulse.next
            let over = (try await store.job(job.id))?.phase.isTerminal ?? true
            var object: [String: Any]
            var fresh = false
            if let task {
                guard let t = try await store.task(job.id, task) else { throw Refusal(code: 4, message: "job \(job.id) has no task '\(task)'") }
                object = ["attempt": 0, "stdout": "", "stderr": "", "offsets": offsets, "done": over && t.state.isFinished]
                if let latest = try await store.attempts(job.id, idx: t.idx).last {
                    let same = offsets.count == 3 && offsets[2] == latest.attempt
                    var next = [same ? offsets[0] : 0, same ? offsets[1] : 0, latest.attempt]
                    for (i, name) in ["stdout", "stderr"].enumerated() {
                        let data = Self.readLog("\(latest.directory)/\(name)", from: next[i], max: 1 << 20)
                        next[i] += data.count
                        object[name] = String(decoding: data, as: UTF8.self)
                        fresh = fresh || !data.isEmpty
                    }
                    fresh = fresh || !same
                    object["attempt"] = latest.attempt
                    object["offsets"] = next
                    object["done"] = (latest.state == .finished && t.state.isFinished) || (over && t.state.isFinished)
                }
            } else {
                let after = Int64(offsets.first ?? 0)
                let events = try await store.events(job.id).filter { ($0.seq ?? 0) > after }
                fresh = !events.isEmpty
                object = ["events": events.map { ["at": JobReport.iso($0.at), "message": $0.message] },
                          "offsets": [Int(events.last?.seq ?? after)], "done": over]
            }
            if fresh || object["done"] as? Bool == true || ContinuousClock.now >= end { return reply(object) }
            // Logs grow without a database change: look again within 0.3 s.
            await Self.await(change, until: end, atMost: 0.3)
        }
    }

    /// Up to `max` bytes of a log from `offset`, never through a symlink a
    /// task put in its place.
    static func readLog(_ path: String, from offset: Int, max: Int) -> Data {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return Data() }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: max)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, max, off_t(offset)) }
        return n > 0 ? Data(buffer.prefix(n)) : Data()
    }

    /// The job's snapshot once it is over, or as it is after `wait`
    /// seconds: one answer, however much the job changes meanwhile (what
    /// `wait` and `submit --wait` need). Its phase is looked at no more than
    /// ten times a second, on changes only.
    func end(_ id: String, wait: Double?) async throws -> ControlReply {
        let end = Self.deadline(wait)
        while true {
            let change = pulse.next
            guard let job = try await store.job(id) else { throw Refusal(code: 4, message: "job \(id) is gone") }
            if job.phase.isTerminal || ContinuousClock.now >= end {
                guard let snapshot = try await JobSnapshot.read(store, id) else { throw Refusal(code: 4, message: "job \(id) is gone") }
                return try Self.reply(snapshot)
            }
            await Self.await(change, until: end)
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// The job inbox file `name` became, once it has (the sender's own, or
    /// any for an operator); `job` nil when it has not within `wait`.
    func submission(_ name: String?, wait: Double?) async throws -> ControlReply {
        guard let name, !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
            throw Refusal(code: 2, message: "the read names no inbox file")
        }
        let end = Self.deadline(wait)
        while true {
            let change = pulse.next
            if let job = try await store.job(sourceFile: name), authority.refusal(requester, "see", job) == nil {
                return ControlReply(ok: true, job: job.id)
            }
            if let problem = try? await store.inboxProblems().first(where: { $0.name == name }) {
                throw Refusal(code: 2, message: "the daemon could not process \(name): \(problem.reason)")
            }
            // Rejected: the sender reads the reason beside it (theirs to read).
            if let dir = rejectedDirectory, FileManager.default.fileExists(atPath: "\(dir)/\(name).error") { return ControlReply(ok: true) }
            if ContinuousClock.now >= end { return ControlReply(ok: true) }
            // A rejection makes no database change: look for it every second too.
            await Self.await(change, until: end, atMost: 1)
        }
    }
}
