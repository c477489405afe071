import BatchSupport
import Foundation
import Synchronization

/// The service the fake backend talks to: a pretend scheduler that keeps its
/// state in memory and writes it to one JSON file after every change, so it
/// outlives the daemon's SIGKILL as a real service would. It runs a task by
/// advancing it one step per poll (queued, running, done) and "produces"
/// `<task>.out` holding the task's command: deterministic, so two runs give
/// byte-identical outputs. It counts every submission of every task, which is
/// how the crash-point walk proves that no task was added twice.
final class FakeRemote: Sendable {
    struct Task: Codable, Sendable {
        var job: String
        var taskID: String
        var command: String
        var state: String   // queued, running, done, cancelled
        var exitCode: Int32 = 0
    }

    struct State: Codable, Sendable {
        /// Pool id → the owner and job that made it.
        var pools: [String: [String: String]] = [:]
        /// "<job>/<task>" → the task.
        var tasks: [String: Task] = [:]
        /// "<job>/<task>" → how many times it was submitted (never reset).
        var submissions: [String: Int] = [:]
        /// Job → the size of each batch submitted, in order.
        var batches: [String: [Int]] = [:]

        init() {}

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            pools = try c.decode([String: [String: String]].self, forKey: .pools)
            tasks = try c.decode([String: Task].self, forKey: .tasks)
            submissions = try c.decode([String: Int].self, forKey: .submissions)
            batches = try c.decodeIfPresent([String: [Int]].self, forKey: .batches) ?? [:]
        }
    }

    let path: String
    /// The remote's blob store (content-addressed, like Azure's input container).
    let blobs: ContentStore
    let state: Mutex<State>

    init(directory: String) throws {
        try FileOps.makeDirectory(directory)
        path = "\(directory)/remote.json"
        blobs = ContentStore(root: "\(directory)/blobs")
        var s = State()
        if let data = FileManager.default.contents(atPath: path) { s = try JSONDecoder().decode(State.self, from: data) }
        state = Mutex(s)
    }

    /// Changes the state and saves it (write, then rename: a reader never
    /// sees half a file).
    func change<T>(_ body: (inout State) -> T) -> T {
        state.withLock { s in
            let result = body(&s)
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            if let data = try? encoder.encode(s) {
                let tmp = path + ".tmp"
                if FileManager.default.createFile(atPath: tmp, contents: data) { rename(tmp, path) }
            }
            return result
        }
    }

    func ensurePool(_ id: String, owner: String, job: String) {
        change { s in if s.pools[id] == nil { s.pools[id] = ["owner": owner, "job": job] } }
    }

    func deletePool(_ id: String) { change { s in s.pools[id] = nil } }

    /// The tasks of `job` the remote knows (by their tag), to submit no task twice.
    func known(job: String) -> Set<String> {
        state.withLock { s in Set(s.tasks.values.filter { $0.job == job }.map(\.taskID)) }
    }

    func submit(job: String, _ tasks: [(id: String, command: String)]) {
        change { s in
            s.batches[job, default: []].append(tasks.count)
            for t in tasks {
                let key = "\(job)/\(t.id)"
                s.tasks[key] = Task(job: job, taskID: t.id, command: t.command, state: "queued")
                s.submissions[key, default: 0] += 1
            }
        }
    }

    /// Task `id` of `job` as it is, without advancing anything (its output, for collecting).
    func task(job: String, _ id: String) -> Task? { state.withLock { $0.tasks["\(job)/\(id)"] } }

    /// One poll for every task of `job`: each advances one step, and the
    /// states are returned. A command starting with `fail` exits 1; one
    /// reading `wait-for PATH` keeps running until PATH exists (a test's
    /// handle on "mid-job").
    func poll(job: String) -> [String: Task] {
        change { s in
            var out: [String: Task] = [:]
            for (key, var t) in s.tasks where t.job == job {
                switch t.state {
                case "queued": t.state = "running"
                case "running":
                    if t.command.hasPrefix("wait-for "), !FileManager.default.fileExists(atPath: String(t.command.dropFirst(9))) { break }
                    t.state = "done"
                    t.exitCode = t.command.hasPrefix("fail") ? 1 : 0
                default: break
                }
                s.tasks[key] = t
                out[t.taskID] = t
            }
            return out
        }
    }

    func cancel(job: String) {
        change { s in
            for (key, t) in s.tasks where t.job == job && (t.state == "queued" || t.state == "running") { s.tasks[key]?.state = "cancelled" }
        }
    }

    func deleteTasks(job: String) {
        change { s in for (key, t) in s.tasks where t.job == job { s.tasks[key] = nil } }
    }
}
