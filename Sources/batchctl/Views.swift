import ArgumentParser
import BatchCore
import BatchControl
import BatchStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow a job's progress until it ends: a live bar on a terminal, one line per change otherwise.")
    @OptionGroup var global: Global
    @Argument(help: "Job id or name (a name means its latest job).") var job: String
    @Flag(help: "Print one JSON object per change.") var json = false

    func run() async throws {
        try await guarded {
            let tty = isatty(1) == 1
            if let first = try global.read(ReadQuery(what: "progress", job: job)),
               let snapshot = first.report.flatMap({ try? JSONDecoder().decode(JobSnapshot.self, from: Data($0.utf8)) }) {
                // Through the daemon: each answer comes when something changed
                // (on a terminal, at least every second, for the rate and ETA).
                let global = self.global
                var pending: JobSnapshot? = snapshot
                var version = first.text
                try await Watcher(jobID: snapshot.id, name: snapshot.name, json: json, tty: tty) {
                    if let p = pending { pending = nil; return p }
                    guard let a = try global.read(ReadQuery(what: "progress", job: snapshot.id, after: version, wait: tty && !json ? 1 : 30), timeout: 45),
                          let s = a.report.flatMap({ try? JSONDecoder().decode(JobSnapshot.self, from: Data($0.utf8)) }) else {
                        throw CLIError(3, "the daemon went away while watching job \(snapshot.id); watch again once it is back")
                    }
                    version = a.text
                    return s
                }.run()
                return
            }
            let store = try global.store()
            let record = try await global.job(store, job)
            var first = true
            try await Watcher(jobID: record.id, name: record.name, json: json, tty: tty) {
                if !first { try await Task.sleep(for: .milliseconds(500)) }
                first = false
                guard let s = try await JobSnapshot.read(store, record.id) else { throw CLIError(4, "job \(record.id) is gone") }
                return s
            }.run()
        }
    }
}

/// The watch loop, over snapshots of the job (`next`: from the daemon as
/// they change, or from the database twice a second).
struct Watcher {
    let jobID: String
    let name: String
    let json: Bool
    let tty: Bool
    let next: () async throws -> JobSnapshot

    init(jobID: String, name: String, json: Bool, tty: Bool, next: @escaping () async throws -> JobSnapshot) {
        self.jobID = jobID
        self.name = name
        self.json = json
        self.tty = tty
        self.next = next
    }

    func run() async throws {
        var samples: [(t: ContinuousClock.Instant, done: Int)] = []
        var last = "", lastRetry = "", lastActivity = ""
        while true {
            let snapshot = try await next()
            let counts = snapshot.counts
            let phase = snapshot.jobPhase
            let now = ContinuousClock.now
            var p = Progress(counts: counts, phase: phase, rate: nil)
            // A backend that moves files over the network records how far it got.
            if let t = snapshot.transfer {
                p.stagedBytes = t.uploaded + t.alreadyStored
                p.totalBytes = t.inputBytes
                p.downloading = (t.underWay, t.underWayReceived)
            }
            samples.append((now, p.done))
            samples.removeAll { now - $0.t > .seconds(10) }
            if let first = samples.first, now - first.t >= .seconds(1) {
                let dt = Double((now - first.t).components.seconds) + Double((now - first.t).components.attoseconds) / 1e18
                p.rate = Double(p.done - first.done) / dt
            }
            // A step that keeps failing and is retried: said once per new
            // failure (at most one a minute, by the retries' backoff).
            let retrying = snapshot.retrying.map(\.record)
            let retryKey = retrying.map { "\($0.step) \($0.tries)" }.joined(separator: "; ")
            // What the backend is doing while it provisions (an image pulled):
            // said once per change.
            let activity = snapshot.activity ?? []
            if !json, activity.joined(separator: "\n") != lastActivity {
                if tty { FileHandle.standardOutput.write(Data("\r\u{1B}[2K".utf8)) }
                for a in activity { say("\(name) \(Printable.escape(a))") }
                lastActivity = activity.joined(separator: "\n")
            }
            if json {
                let line = JobReport.json(["id": jobID, "state": phase.rawValue, "done": p.done, "total": counts.total, "running": counts.running,
                                           "failed": counts.failed, "percent": p.percent,
                                           "inputBytes": p.totalBytes.map { ["staged": p.stagedBytes ?? 0, "total": $0] as [String: Any] } as Any? ?? NSNull(),
                                           "downloadBytes": p.downloading.map { ["underWay": $0.size, "received": $0.received] as [String: Any] } as Any? ?? NSNull(),
                                           "retrying": retrying.map { ["step": $0.step, "reason": $0.reason, "tries": $0.tries] },
                                           "activity": activity])
                    .replacingOccurrences(of: "\n", with: "")
                if line != last { say(line); last = line }
            } else if tty {
                if retryKey != lastRetry, !retrying.isEmpty {
                    FileHandle.standardOutput.write(Data("\r\u{1B}[2K".utf8))
                    for r in retrying { say("\(name) retrying \(JobReport.retryingText(r))") }
                }
                FileHandle.standardOutput.write(Data("\r\u{1B}[2K\(name) \(p.bar(width: barWidth()))".utf8))
            } else {
                if retryKey != lastRetry { for r in retrying { say("\(name) retrying \(JobReport.retryingText(r))") } }
                let line = "\(name) \(p.percent)% \(p.details)"
                // The rate and ETA move every sample; a new line is for a change in the counts or phase.
                let key = "\(p.done) \(counts.running) \(counts.failed) \(phase.rawValue) \(p.stagedBytes ?? 0) \(p.downloading?.received ?? 0)"
                if key != last { say(line); last = key }
            }
            lastRetry = retryKey
            if phase.isTerminal {
                if tty && !json { say("") }
                if phase != .succeeded { throw CLIError(1, "job \(jobID) \(phase.rawValue)\(snapshot.reason.map { ": \($0)" } ?? "")") }
                return
            }
        }
    }

    func barWidth() -> Int {
        var ws = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0 else { return 30 }
        return max(10, min(40, Int(ws.ws_col) - name.count - 75))
    }
}

struct Retry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a failed job's failed tasks again, each with its retries back.")
    @OptionGroup var global: Global
    @Argument(help: "Job id or name.") var job: String
    @Flag(help: "Wait until the job ends; exit 0 only if it succeeded.") var wait = false
    @Flag(help: "Print JSON: the job's id and how many tasks run again.") var json = false

    func run() async throws {
        try await guarded {
            let config = try global.load()
            // A cloud backend may start a new job for the tasks first.
            let answer = try global.control(.retry(job: job), timeout: 120)
            guard let id = answer.job else { throw CLIError(1, "retry refused") }
            if json { say(JobReport.json(["job": id, "tasks": answer.tasks ?? 0])) } else { say("retrying \(answer.tasks ?? 0) failed tasks of \(id)") }
            if wait { try await Waiter(config: config, json: json, global: global).until(id, timeout: nil) }
        }
    }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Dry run: the tasks a manifest makes, the bytes staged after dedup, the pool, estimated core-hours.")
    @OptionGroup var global: Global
    @Argument(help: "The manifest.") var file: String
    @Option(help: "Plan for this backend instead of the manifest's.") var backend: String?
    @Option(name: .customLong("set"), help: ArgumentHelp("Set a parameter of the job (or of its type); repeat for more.", valueName: "NAME=VALUE"))
    var set: [String] = []
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await guarded {
            let config = try global.load()
            let plan: (object: [String: Any], text: String)
            do {
                plan = try await Plan.make(path: file, backend: backend, config: config, cores: ProcessInfo.processInfo.activeProcessorCount,
                                           set: try parameterValues(set))
            } catch { throw CLIError(2, "\(error)") }
            say(json ? JobReport.json(plan.object) : plan.text)
        }
    }
}

/// `logs --follow`: prints what a task writes, or a job's history, as it comes.
struct Follower {
    let store: Store
    let job: JobRecord

    func task(_ task: String) async throws {
        var attempt = 0
        var offsets = ["stdout": UInt64(0), "stderr": UInt64(0)]
        while true {
            guard let t = try await store.task(job.id, task) else { throw CLIError(4, "job \(job.id) has no task '\(task)'") }
            if let latest = try await store.attempts(job.id, idx: t.idx).last {
                if latest.attempt != attempt {
                    attempt = latest.attempt
                    offsets = ["stdout": 0, "stderr": 0]
                    FileHandle.standardError.write(Data("== task \(t.taskId) attempt \(attempt)\n".utf8))
                }
                for (name, sink) in [("stdout", FileHandle.standardOutput), ("stderr", FileHandle.standardError)] {
                    // Never through a symlink a task put in place of its log.
                    let fd = open("\(latest.directory)/\(name)", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
                    guard fd >= 0 else { continue }
                    let h = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
                    try h.seek(toOffset: offsets[name]!)
                    let data = h.readDataToEndOfFile()
                    try h.close()
                    offsets[name]! += UInt64(data.count)
                    if !data.isEmpty { sink.write(data) }
                }
                if latest.state == .finished, t.state.isFinished { return }
            }
            if let j = try await store.job(job.id), j.phase.isTerminal, t.state.isFinished { return }
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    /// `logs --follow` through the daemon: each answer brings what is new,
    /// when it is (no polling of files or the database here).
    static func throughDaemon(_ global: Global, job: String, task: String?) async throws {
        var offsets: [Int] = []
        var attempt = 0
        while true {
            guard let a = try global.read(ReadQuery(what: "tail", job: job, task: task, wait: 30, offsets: offsets), timeout: 45) else {
                throw CLIError(3, "the daemon went away while following job \(job); follow again once it is back")
            }
            let o = Global.object(a)
            offsets = o["offsets"] as? [Int] ?? offsets
            if let task {
                let n = o["attempt"] as? Int ?? 0
                if n != attempt, n > 0 {
                    attempt = n
                    FileHandle.standardError.write(Data("== task \(task) attempt \(n)\n".utf8))
                }
                if let out = o["stdout"] as? String, !out.isEmpty { FileHandle.standardOutput.write(Data(out.utf8)) }
                if let err = o["stderr"] as? String, !err.isEmpty { FileHandle.standardError.write(Data(err.utf8)) }
            } else {
                for e in o["events"] as? [[String: Any]] ?? [] { say("\(e["at"] ?? "")  \(e["message"] ?? "")") }
            }
            if o["done"] as? Bool == true { return }
        }
    }

    func history() async throws {
        var seen: Int64 = 0
        while true {
            for e in try await store.events(job.id) where (e.seq ?? 0) > seen {
                seen = e.seq ?? seen
                say("\(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: e.at)))  \(e.message)")
            }
            if let j = try await store.job(job.id), j.phase.isTerminal { return }
            try await Task.sleep(for: .milliseconds(300))
        }
    }
}
