import BatchCore
import Foundation
import Logging

/// A task's state as the poller reports it.
public struct TaskSnapshot: Sendable, Equatable {
    /// The task id.
    public var id: String
    /// active, preparing, running or completed.
    public var state: String
    /// When it entered that state (the service's text, ISO 8601).
    public var transitionTime: String
    /// Exit code, once completed (nil if it never ran).
    public var exitCode: Int?
    /// success or failure, once completed.
    public var result: String?
    /// failureInfo.code, when it failed.
    public var failureCode: String?
    /// failureInfo.message, when it failed.
    public var failureMessage: String?
    /// failureInfo.details, as `name=value` pairs (the blob and HTTP status of
    /// a failed upload, say).
    public var failureDetails: String?
    /// Retries the service made (the attempt that ended is retryCount + 1).
    public var retryCount = 0
    /// When its last attempt started and ended (executionInfo; the service's text).
    public var startTime: String?
    public var endTime: String?

    /// How long its last attempt ran, in seconds, once it ended.
    public var runTime: Double? {
        guard let s = startTime.flatMap(TaskPoller.seconds), let e = endTime.flatMap(TaskPoller.seconds) else { return nil }
        return max(0, e - s)
    }
}

/// What the poller tells the watcher of a job.
public enum PollUpdate: Sendable, Equatable {
    /// Tasks that changed since the last update.
    case tasks([TaskSnapshot])
    /// Azure refused batchd's credentials while polling the job (each
    /// failed poll says it again), or accepts them again (nil).
    case refused(CredentialRefusal?)
    /// The Batch job can no longer run its open tasks: it was ended,
    /// disabled or is being deleted outside batchd, or its pool is gone.
    case ended(String)
    /// Its pool cannot run any task now (each quiet confirming poll says it
    /// again), or it can again (nil).
    case poolTrouble(String?)
    /// Some of its pool's nodes cannot run tasks (batchd reboots them, a
    /// bounded number of times, then removes them), or none (nil).
    case nodes(String?)
    /// Its pool has no node: the account's core quota (`code`) is full. The
    /// job waits its turn for cores, then grows the pool again; `poolTrouble(nil)`
    /// says when the pool has nodes again.
    case coreQuota(pool: String, code: String, words: String)
}

/// Credentials Azure refused: what happened, and what to do about it.
public struct CredentialRefusal: Sendable, Equatable {
    public var words: String
    public var fix: String

    /// The refusal `error` says.
    public init(_ error: Error) {
        words = AzureRules.plainWords(error)
        fix = AzureRules.authFix(error)
    }
}

/// One poller per Batch account serves every watched job: it asks for task
/// counts first, lists only tasks whose stateTransitionTime moved since the
/// last poll (with $select), and paces itself with `PollSchedule`. A failed
/// poll changes nothing: it is "unknown", never "failed".
public actor TaskPoller {
    struct Watch {
        var counts: [String: Int] = [:]
        var since: String?
        /// Tasks already reported at exactly `since` (the filter is `ge`, so
        /// a task changing in the same instant as the last one seen is not missed).
        var boundary: Set<String> = []
        var quietPolls = 0
        /// Tasks already reported completed.
        var completed: Set<String> = []
        /// Tasks batchd holds open in the Batch job (not yet reported
        /// completed): when the service holds fewer active and running
        /// ones, some may have vanished (deleted behind batchd's back).
        var open: Set<String> = []
        /// Polls since the job's tasks were last listed in full.
        var sinceFullList = 0
        /// The last listing found tasks that changed: the next poll lists
        /// again without asking the counts first.
        var busy = false
        /// The last poll was refused for its credentials.
        var refused = false
        /// The job was found ended behind batchd's back (said once).
        var ended = false
        /// Its pool was found unable to run any task (cleared when tasks move).
        var poolTrouble = false
        /// Some of its pool's nodes were found unable to run tasks.
        var nodeTrouble = false
        let updates: AsyncStream<PollUpdate>.Continuation
        /// Which watch of the job this is (a job unwatched and watched again
        /// during a poll must not get the old watch's state back).
        let generation: Int
    }

    let client: BatchClient
    let logger: Logger
    var watches: [String: Watch] = [:]
    /// Tasks added again to each job since its last poll (`expect`).
    var expected: [String: Set<String>] = [:]
    var generations = 0
    var schedule: PollSchedule
    /// List even when the counts did not move, every this many quiet polls
    /// (the counts are documented as possibly lagging).
    let confirmEvery = 5
    static let fields = ["id", "state", "stateTransitionTime", "executionInfo"]
    /// Tasks the last round saw end, and tasks still active or running, over
    /// every watched job: the schedule follows the rate at which tasks end.
    var roundEnded = 0
    var roundLive = 0
    /// Reboots batchd made of each node that could not run tasks, by
    /// "pool/node", at most `nodeRecoveries`; nodes it then removed.
    var reboots: [String: Int] = [:]
    var removed: Set<String> = []
    let nodeRecoveries: Int
    /// Pools last found with no node for want of the account's cores.
    var shortOfCores: [String: JobTrouble] = [:]

    /// A poller for one account.
    public init(client: BatchClient, schedule: PollSchedule = PollSchedule(), nodeRecoveries: Int = 2, logger: Logger) {
        self.client = client
        self.schedule = schedule
        self.nodeRecoveries = nodeRecoveries
        self.logger = logger
    }

    /// Starts watching a job whose tasks `open` batchd holds open; its
    /// changed tasks arrive on the stream, the first batch holding every task
    /// already past `active`, and a task that is no longer in the job at all
    /// as state `vanished`; so does what the poller learns of the job itself
    /// (`PollUpdate`). The stream ends when the job is unwatched or
    /// found deleted.
    public func watch(_ jobID: String, open: Set<String> = []) -> AsyncStream<PollUpdate> {
        let (stream, continuation) = AsyncStream.makeStream(of: PollUpdate.self)
        watches[jobID]?.updates.finish()
        generations += 1
        var w = Watch(updates: continuation, generation: generations)
        w.open = open
        w.sinceFullList = confirmEvery   // the first poll may list in full at once
        watches[jobID] = w
        return stream
    }

    /// Tasks added to a watched job again (after they vanished), taken in
    /// at the job's next poll (a poll under way keeps its own copy).
    public func expect(_ jobID: String, _ ids: [String]) {
        guard watches[jobID] != nil else { return }
        expected[jobID, default: []].formUnion(ids)
    }

    /// Stops watching a job.
    public func unwatch(_ jobID: String) {
        expected[jobID] = nil
        watches.removeValue(forKey: jobID)?.updates.finish()
    }

    /// Polls every watched job once; returns what the round found.
    public func pollOnce() async -> PollSchedule.Result {
        var result = PollSchedule.Result.quiet
        (roundEnded, roundLive) = (0, 0)
        for jobID in watches.keys.sorted() {
            switch await poll(jobID) {
            case .changed: if case .quiet = result { result = .changed }
            case .throttled(let w): result = .throttled(retryAfter: w)
            case .failed: if case .quiet = result { result = .failed }
            case .quiet: break
            }
        }
        return result
    }

    /// Polls until cancelled, pacing with the schedule.
    public func run(sleep: @Sendable (Double) async throws -> Void = { try await Task.sleep(for: .seconds($0)) }) async {
        while !Task.isCancelled {
            let result = await pollOnce()
            // While tasks end, the next poll comes when about 100 more should
            // have (half the live ones near the end); otherwise the
            // plain schedule (back off when quiet, obey throttling).
            let wait = if case .changed = result, roundEnded > 0 {
                schedule.next(ended: roundEnded, live: roundLive, jitter: Double.random(in: 0...1))
            } else {
                schedule.next(after: result, jitter: Double.random(in: 0...1))
            }
            do { try await sleep(wait) } catch { return }
        }
    }

    func poll(_ jobID: String) async -> PollSchedule.Result {
        guard var w = watches[jobID] else { return .quiet }
        if let again = expected.removeValue(forKey: jobID) {
            w.open.formUnion(again)
            w.completed.subtract(again)
            watches[jobID] = w
        }
        // While the last listing found tasks changing, they are still ending:
        // list again at once, without asking the counts first (they would
        // only say so, for a call more each poll). The counts kept meanwhile
        // are an estimate.
        let busy = w.busy
        var counts = w.counts
        if !busy {
            do { counts = try await client.taskCounts(jobID) } catch {
                return classify(error, jobID, w.generation)
            }
            accepted(&w, jobID)
        }
        let moved = busy || counts != w.counts
        if !busy, let before = w.counts["completed"] { roundEnded += max(0, (counts["completed"] ?? 0) - before) }
        roundLive += (counts["active"] ?? 0) + (counts["running"] ?? 0)
        w.quietPolls = moved ? 0 : w.quietPolls + 1
        guard moved || w.quietPolls % confirmEvery == 0 else {
            if watches[jobID]?.generation == w.generation { watches[jobID]?.quietPolls = w.quietPolls }
            return .quiet
        }
        let filter = w.since.map { "stateTransitionTime ge datetime'\($0)'" } ?? "state ne 'active'"
        let listed: [[String: Any]]
        do { listed = try await client.tasks(jobID, filter: filter, select: Self.fields) } catch {
            return classify(error, jobID, w.generation)
        }
        if busy { accepted(&w, jobID) }
        var snapshots = listed.compactMap(Self.snapshot).filter { !w.boundary.contains("\($0.id) \($0.transitionTime)") }
        // Safety net: a quiet confirm poll whose counts say more tasks are
        // complete than were reported (a change that became visible after a
        // later one, under an eventually consistent list) lists the completed
        // tasks once in full.
        let reported = w.completed.union(snapshots.filter { $0.state == "completed" }.map(\.id))
        if !moved, (counts["completed"] ?? 0) > reported.count {
            do {
                let all = try await client.tasks(jobID, filter: "state eq 'completed'", select: Self.fields)
                snapshots += all.compactMap(Self.snapshot).filter { !reported.contains($0.id) }
            } catch {
                return classify(error, jobID, w.generation)
            }
        }
        guard watches[jobID]?.generation == w.generation else { return .quiet }   // unwatched meanwhile
        w.counts = counts
        w.busy = !snapshots.isEmpty
        if busy {
            let ended = snapshots.filter { $0.state == "completed" && !w.completed.contains($0.id) }.count
            roundEnded += ended
            w.counts["completed", default: 0] += ended
        }
        if let latest = snapshots.max(by: { Self.timeKey($0.transitionTime) < Self.timeKey($1.transitionTime) }),
           Self.timeKey(latest.transitionTime) >= Self.timeKey(w.since ?? "") {
            if Self.timeKey(latest.transitionTime) > Self.timeKey(w.since ?? "") { w.boundary = [] }
            w.since = latest.transitionTime
            for t in snapshots where Self.timeKey(t.transitionTime) == Self.timeKey(latest.transitionTime) {
                w.boundary.insert("\(t.id) \(t.transitionTime)")
            }
        }
        for t in snapshots where t.state == "completed" {
            w.completed.insert(t.id)
            w.open.remove(t.id)
        }
        // Nothing moved: is the Batch job still one that can run the open
        // tasks? Ended, disabled or deleted outside batchd, or its pool
        // deleted, it leaves them active for ever. One read of the job (and
        // of its pool), on a quiet confirming poll only.
        if moved, w.poolTrouble {
            w.poolTrouble = false
            w.updates.yield(.poolTrouble(nil))
        }
        if !moved, !w.ended, !w.open.subtracting(w.completed).isEmpty {
            let trouble: JobTrouble?
            do { trouble = try await jobTrouble(jobID) } catch { return classify(error, jobID, w.generation) }
            guard watches[jobID]?.generation == w.generation else { return .quiet }
            switch trouble {
            case .ended(let why)?:
                logger.warning("Batch job ended outside batchd", metadata: ["batch.job": "\(jobID)", "reason": "\(why)"])
                w.ended = true
                watches[jobID] = w
                w.updates.yield(.ended(why))
                return .changed
            case .pool(let why)?:
                if !w.poolTrouble { logger.warning("the job's pool cannot run its tasks", metadata: ["batch.job": "\(jobID)", "reason": "\(why)"]) }
                w.poolTrouble = true
                w.updates.yield(.poolTrouble(why))
            case .quota(let pool, let code, let words)?:
                if !w.poolTrouble { logger.warning("the job's pool waits for the account's core quota", metadata: ["batch.job": "\(jobID)", "reason": "\(words)"]) }
                w.poolTrouble = true
                w.updates.yield(.coreQuota(pool: pool, code: code, words: words))
            case .nodes(let why)?:
                if w.poolTrouble {
                    w.poolTrouble = false
                    w.updates.yield(.poolTrouble(nil))
                }
                w.nodeTrouble = true
                w.updates.yield(.nodes(why))
            case nil:
                if w.poolTrouble {
                    w.poolTrouble = false
                    w.updates.yield(.poolTrouble(nil))
                }
            }
            if w.nodeTrouble, trouble.map({ if case .nodes = $0 { false } else { true } }) ?? true {
                w.nodeTrouble = false
                w.updates.yield(.nodes(nil))
            }
        }
        // Fewer tasks active or running on the service than batchd holds
        // open: one listing of every task's id (at most every
        // `confirmEvery` polls, as counts may lag) finds any that vanished.
        w.sinceFullList += 1
        if (counts["active"] ?? 0) + (counts["running"] ?? 0) < w.open.count, w.sinceFullList >= confirmEvery {
            w.sinceFullList = 0
            let present: Set<String>
            do { present = Set(try await client.tasks(jobID, filter: nil, select: ["id"]).compactMap { $0["id"] as? String }) } catch {
                return classify(error, jobID, w.generation)
            }
            guard watches[jobID]?.generation == w.generation else { return .quiet }
            for id in w.open.subtracting(present).sorted() {
                logger.warning("task vanished from its Batch job", metadata: ["batch.job": "\(jobID)", "task.id": "\(id)"])
                snapshots.append(TaskSnapshot(id: id, state: "vanished", transitionTime: w.since ?? ""))
                w.open.remove(id)
            }
        }
        watches[jobID] = w
        if !snapshots.isEmpty { w.updates.yield(.tasks(snapshots)) }
        return snapshots.isEmpty ? .quiet : .changed
    }

    /// A call about the job went through: a credential refusal is over.
    func accepted(_ w: inout Watch, _ jobID: String) {
        guard w.refused else { return }
        w.refused = false
        w.updates.yield(.refused(nil))
        if watches[jobID]?.generation == w.generation { watches[jobID]?.refused = false }
    }

    func classify(_ error: Error, _ jobID: String, _ generation: Int) -> PollSchedule.Result {
        if let e = error as? BatchServiceError, e.status == 429 || e.status == 503 { return .throttled(retryAfter: 0) }
        if AzureRules.isAuthFailure(error), let w = watches[jobID], w.generation == generation {
            // Each job's runner shows it, and fails the job if it lasts.
            if !w.refused { logger.warning("Azure refused batchd's credentials while polling", metadata: ["batch.job": "\(jobID)", "error": "\(error)"]) }
            watches[jobID]?.refused = true
            w.updates.yield(.refused(CredentialRefusal(error)))
            return .failed
        }
        if let e = error as? BatchServiceError, e.status == 404, e.code == "JobNotFound" {
            // Gone for good (deleted by someone else): end the stream, so the
            // job's runner learns it instead of waiting forever.
            logger.warning("Batch job is gone; no more polls for it", metadata: ["batch.job": "\(jobID)"])
            if watches[jobID]?.generation == generation { unwatch(jobID) }
            return .quiet
        }
        logger.info("poll failed; task states unknown until the next poll", metadata: ["job.id": "\(jobID)", "error": "\(error)"])
        return .failed
    }

    /// A sortable key for an ISO 8601 time whatever its number of fractional
    /// digits: `2026-11-21T18:32:18.12Z` → `2026-11-21T18:32:18.120000000`.
    static func timeKey(_ text: String) -> String {
        let t = text.hasSuffix("Z") ? String(text.dropLast()) : text
        let parts = t.split(separator: ".", maxSplits: 1)
        let fraction = parts.count > 1 ? String(parts[1]) : ""
        return String(parts.first ?? "") + "." + fraction.padding(toLength: 9, withPad: "0", startingAt: 0)
    }

    /// `[{name, value}]` as `name=value, …` (nil when empty).
    static func details(_ list: [[String: Any]]) -> String? {
        let pairs = list.prefix(8).compactMap { d -> String? in
            guard let name = d["name"] as? String else { return nil }
            return "\(name)=\(d["value"] as? String ?? "")"
        }
        return pairs.isEmpty ? nil : pairs.joined(separator: ", ")
    }

    static func snapshot(_ t: [String: Any]) -> TaskSnapshot? {
        guard let id = t["id"] as? String, let state = t["state"] as? String, let time = t["stateTransitionTime"] as? String else { return nil }
        let info = t["executionInfo"] as? [String: Any]
        let failure = info?["failureInfo"] as? [String: Any]
        return TaskSnapshot(id: id, state: state, transitionTime: time, exitCode: info?["exitCode"] as? Int,
                            result: info?["result"] as? String, failureCode: failure?["code"] as? String,
                            failureMessage: failure?["message"] as? String,
                            failureDetails: (failure?["details"] as? [[String: Any]]).flatMap(details),
                            retryCount: info?["retryCount"] as? Int ?? 0,
                            startTime: info?["startTime"] as? String, endTime: info?["endTime"] as? String)
    }

    /// Seconds since 1970 of an ISO 8601 UTC time with any number of
    /// fractional digits (`2026-11-21T18:32:18.1234567Z`); nil if it is not one.
    static func seconds(_ text: String) -> Double? {
        let key = timeKey(text)   // yyyy-MM-ddTHH:mm:ss.fffffffff
        let d = Array(key.utf8)
        guard d.count == 29 else { return nil }
        func n(_ from: Int, _ len: Int) -> Int? { Int(String(decoding: d[from..<from + len], as: UTF8.self)) }
        guard let y = n(0, 4), let mo = n(5, 2), let day = n(8, 2), let h = n(11, 2), let mi = n(14, 2), let s = n(17, 2),
              let ns = n(20, 9), (1...12).contains(mo) else { return nil }
        // Days from 1970-01-01 (civil calendar, Howard Hinnant's algorithm).
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Double(days * 86400 + h * 3600 + mi * 60 + s) + Double(ns) / 1e9
    }
}
