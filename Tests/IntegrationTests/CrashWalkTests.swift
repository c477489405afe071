import BatchCore
import BatchStore
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// One backend as the crash-point walk drives it.
struct WalkTarget: Sendable {
    /// The manifest's `backend`.
    let backend: String
    /// The daemon's executable (`batchd-testd` for the fake).
    let executable: String
    /// Config lines for the backend.
    let config: String
    /// The daemon's environment (the emulator's credentials).
    let environment: @Sendable () -> [String: String]
    /// The job's tasks run one shell command each, and append their index to
    /// `runs.log` (false for the fake, whose remote counts submissions).
    let shell: Bool
    /// What the backend holds after the job (left-over pools or jobs, tasks
    /// submitted twice), as problems.
    let leftovers: @Sendable (_ jobID: String, _ d: DaemonHarness) async throws -> [String]
    /// The image the tasks run in, if any. Its tasks cannot reach `runs.log`
    /// (only their own directory is mounted): each leaves `ran` in its work
    /// directory instead, and the job keeps them (`cleanup: never`).
    var image: String? = nil
}

/// The crash-point walk (docs/testing.md): for each backend, a clean run
/// lists the crash points the job passes (`debug.crashTrace`); then, for
/// each, a fresh daemon is armed there (`debug.crashAt`), dies by SIGKILL at
/// it, and is started again unarmed. The job must then succeed with one
/// accepted result per task, outputs byte-identical to the clean run's,
/// every task run once and added once, nothing left on the backend, and a
/// sound database. `make test` walks each point's first passing;
/// `make crashwalk` (BATCHD_CRASHWALK=full) adds the second and the last
/// passing of the points a job passes more than once.
@Suite("crash-point walk", .serialized)
struct CrashWalkTests {
    /// Tasks in the walked job: with 12, the fake submits 6 batches.
    static var tasks: Int { full ? 12 : 4 }
    static var full: Bool { ProcessInfo.processInfo.environment["BATCHD_CRASHWALK"] == "full" }

    func manifest(_ t: WalkTarget, root: String) -> String {
        let command = t.image != nil ? "cat shared.txt > out-{i}.txt && echo {i} >> out-{i}.txt && touch ran"
            : t.shell ? "cat shared.txt > out-{i}.txt && echo {i} >> out-{i}.txt && echo {i} >> \(root)/runs.log"
            : "echo {i}"
        return """
            version: 1
            name: walk
            backend: \(t.backend)
            baseDirectory: \(root)/job
            pool: {dedicatedNodes: 1, slotsPerNode: 4}
            inputs:
              shared: [shared.txt]
            tasks: {forEachInteger: {from: 1, to: \(Self.tasks)}}
            command: "\(command)"
            outputs:
              patterns: ["out-*.txt", "*.out"]
              destination: output
            cleanup: \(t.image == nil ? "always" : "never")
            \(t.image.map { "container: {image: \($0)}" } ?? "")
            """
    }

    /// A daemon for `t` with `debug` lines, its job directory made.
    func daemon(_ t: WalkTarget, debug: String) throws -> DaemonHarness {
        let d = try DaemonHarness(slots: 4, extra: "\(t.config)\ndebug:\n  \(debug)")
        d.executable = t.executable
        // A backend's directory of its own under the daemon's root (Slurm's shared directory).
        try String(contentsOfFile: d.config, encoding: .utf8).replacingOccurrences(of: "@ROOT@", with: d.root)
            .write(toFile: d.config, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "\(d.root)/shared", withIntermediateDirectories: true)
        try write("shared line\n", "\(d.root)/job", "shared.txt")
        return d
    }

    /// Drops the manifest into the inbox; the job's id once accepted.
    func submit(_ t: WalkTarget, _ d: DaemonHarness) async throws -> String {
        let from = d.log.mark
        try write(manifest(t, root: d.root), d.inbox, "walk.yaml")
        try await d.log.wait(from: from, timeout: 60, "the job accepted") { $0.contains("job accepted") }
        guard let job = try await d.store().jobs(limit: 1).first else { throw HarnessError(description: "no job after acceptance") }
        return job.id
    }

    /// What must hold after the job ended (nothing, when all is well).
    func problems(_ t: WalkTarget, _ d: DaemonHarness, _ jobID: String, reference: [String: Data]) async throws -> [String] {
        var found: [String] = []
        let store = try d.store()
        let job = try await store.job(jobID)
        if job?.phase != .succeeded { found.append("the job ended \(job?.phase.rawValue ?? "missing"): \(job?.reason ?? "")") }
        let counts = try await store.counts(jobID)
        if counts.total != Self.tasks || counts.succeeded != Self.tasks { found.append("tasks: \(counts)") }
        let accepted = try await store.attempts(jobID).filter { $0.outcome == .exited && $0.exitCode == 0 }
        let perTask = Dictionary(grouping: accepted, by: \.idx).mapValues(\.count)
        if perTask.count != Self.tasks || perTask.values.contains(where: { $0 != 1 }) {
            found.append("accepted results per task: \(perTask.sorted { $0.key < $1.key })")
        }
        let outputs = tree("\(d.root)/job/output")
        if outputs != reference { found.append("outputs differ from the clean run's: \(outputs.keys.sorted()) vs \(reference.keys.sorted())") }
        if t.image != nil {
            // One `ran` per task, over all its attempts.
            let tasks = "\(d.state)/jobs/\(jobID)/tasks"
            var runs: [String: Int] = [:]
            for task in (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? [] {
                for attempt in (try? FileManager.default.contentsOfDirectory(atPath: "\(tasks)/\(task)")) ?? []
                where FileManager.default.fileExists(atPath: "\(tasks)/\(task)/\(attempt)/work/ran") { runs[task, default: 0] += 1 }
            }
            if runs.count != Self.tasks || runs.values.contains(where: { $0 != 1 }) { found.append("task runs: \(runs.sorted { $0.key < $1.key })") }
        } else if t.shell {
            let runs = (read("\(d.root)/runs.log") ?? "").split(separator: "\n")
            if runs.count != Self.tasks || Set(runs).count != Self.tasks { found.append("task runs: \(runs.sorted())") }
        }
        found += try await t.leftovers(jobID, d)
        let integrity = try await store.integrityCheck()
        if integrity != ["ok"] { found.append("integrity_check: \(integrity)") }
        return found
    }

    /// The clean run: the reference outputs and the points passed, in order, with counts.
    func cleanRun(_ t: WalkTarget) async throws -> (outputs: [String: Data], points: [(String, Int)]) {
        let d = try daemon(t, debug: "crashTrace: TRACE")
        let trace = "\(d.root)/trace"
        try String(contentsOfFile: d.config, encoding: .utf8).replacingOccurrences(of: "TRACE", with: trace)
            .write(toFile: d.config, atomically: true, encoding: .utf8)
        try await d.start(environment: t.environment())
        let id = try await submit(t, d)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let outputs = tree("\(d.root)/job/output")
        let problems = try await problems(t, d, id, reference: outputs)
        #expect(problems.isEmpty, "clean run: \(problems)")
        #expect(await d.signal(SIGTERM) == 0)
        var order: [String] = []
        var counts: [String: Int] = [:]
        for name in (read(trace) ?? "").split(separator: "\n").map(String.init) {
            if counts[name] == nil { order.append(name) }
            counts[name, default: 0] += 1
        }
        return (outputs, order.map { ($0, counts[$0]!) })
    }

    /// The passings walked: every point's first; with the full walk also the
    /// second and the last of those passed more than once.
    func passings(_ points: [(String, Int)]) -> [String] {
        points.flatMap { name, count -> [String] in
            guard Self.full, count > 1 else { return [name] }
            return Array(Set([1, 2, count])).sorted().map { $0 == 1 ? name : "\(name)#\($0)" }
        }
    }

    /// Kills the daemon at `point`, restarts it, and returns what is wrong.
    func crash(at point: String, _ t: WalkTarget, reference: [String: Data]) async throws -> [String] {
        let d = try daemon(t, debug: "crashAt: \(point)")
        try await d.start(environment: t.environment())
        let id = try await submit(t, d)
        guard let status = await d.waitForExit(timeout: 120) else {
            _ = await d.signal(SIGKILL)
            return ["the daemon never reached \(point)"]
        }
        guard status == SIGKILL, d.log.lines.contains(where: { $0.contains("dying at \(point.split(separator: "#")[0])") }) else {
            return ["the daemon exited with \(status) before \(point)"]
        }
        let config = try String(contentsOfFile: d.config, encoding: .utf8)
        try config.replacingOccurrences(of: "crashAt: \(point)", with: "crashAt: \"\"").write(toFile: d.config, atomically: true, encoding: .utf8)
        try await d.start(environment: t.environment())
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        var found = w.code == 0 ? [] : ["batchctl wait: \(w.code) \(w.out) \(w.err)"]
        found += try await problems(t, d, id, reference: reference)
        #expect(await d.signal(SIGTERM) == 0)
        return found
    }

    func walk(_ t: WalkTarget) async throws {
        let clean = try await cleanRun(t)
        let points = passings(clean.points)
        let label = t.image.map { "\(t.backend) in \($0)" } ?? t.backend
        print("crash walk [\(label)]: \(points.count) points: \(points.joined(separator: " "))")
        #expect(points.count >= 14, "every step's begin and done at least")
        for point in points {
            let started = ContinuousClock.now
            let found = try await crash(at: point, t, reference: clean.outputs)
            print("crash walk [\(label)] \(point): \(found.isEmpty ? "ok" : "FAILED \(found)") (\(ContinuousClock.now - started))")
            #expect(found.isEmpty, "crash at \(point): \(found)")
        }
    }

    @Test("the local backend survives a SIGKILL at every crash point")
    func local() async throws {
        try await walk(WalkTarget(backend: "local", executable: "batchd", config: "", environment: { [:] }, shell: true,
                                  leftovers: { _, _ in [] }))
    }

    @Test("the fake backend (Tests/TestDaemon) survives a SIGKILL at every crash point")
    func fake() async throws {
        try await walk(WalkTarget(backend: "fake", executable: "batchd-testd", config: "", environment: { [:] }, shell: false,
                                  leftovers: { jobID, d in try FakeRemoteView(d).problems(jobID) }))
    }

    @Test("the Azure backend (emulator) survives a SIGKILL at every crash point")
    func azure() async throws {
        let rig = try AzureRig()
        try await walk(WalkTarget(
            backend: "azure", executable: "batchd", config: "azure:\n  pollMinInterval: 0.1s\n  pollMaxInterval: 0.5s",
            environment: { rig.environment() }, shell: true,
            leftovers: { jobID, _ in
                var found: [String] = []
                let jobs = AzureRig.kept(try await rig.batch.jobs()).filter { $0 == "batchd-\(jobID)" }
                if !jobs.isEmpty { found.append("Batch job left: \(jobs)") }
                let pools = AzureRig.kept(try await rig.batch.pools())
                if !pools.isEmpty { found.append("pools left: \(pools)") }
                return found
            }))
    }
}

extension CrashWalkTests {
    @Test("the local backend with a container image (real podman) survives a SIGKILL at every crash point")
    func localContainer() async throws {
        let made = try await runProcess("/bin/bash", ["\(repoRoot)/scripts/container-image.sh", ContainerTests.conf], timeout: 300)
        #expect(made.code == 0, "the test image: \(made.err)")
        try await walk(WalkTarget(
            backend: "local", executable: "batchd", config: "containers: {environment: {CONTAINERS_CONF: \(ContainerTests.conf)}}",
            environment: { [:] }, shell: true,
            leftovers: { jobID, _ in
                let left = try await ContainerTests.podman(["ps", "--all", "--filter", "label=batchd.job=\(jobID)", "--format", "{{.Names}}"])
                let names = left.out.split(separator: "\n")
                return left.code != 0 ? ["podman ps: \(left.err)"] : names.isEmpty ? [] : ["containers left: \(names)"]
            }, image: ContainerTests.image))
    }

    @Test("the Slurm backend (a real one-host cluster) survives a SIGKILL at every crash point")
    func slurm() async throws {
        let cluster = try SlurmTestCluster()
        try await walk(WalkTarget(
            backend: "slurm", executable: "batchd",
            config: "slurm:\n  sharedDirectory: @ROOT@/shared\n  pollMinInterval: 0.2s\n  pollMaxInterval: 5s\n  missingGrace: 20s",
            environment: { cluster.environment }, shell: true,
            leftovers: { jobID, _ in
                let out = try cluster.command("squeue", ["--noheader", "--format=%j|%T"]).output
                let live = out.split(separator: "\n").filter { $0.hasPrefix("batchd-\(jobID)-") }
                return live.isEmpty ? [] : ["arrays still in squeue: \(live)"]
            }))
    }
}

/// The fake backend's remote, read from its file.
struct FakeRemoteView {
    let state: [String: Any]
    init(_ d: DaemonHarness) throws {
        let data = FileManager.default.contents(atPath: "\(d.state)/fake-remote/remote.json") ?? Data("{}".utf8)
        state = (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }
    var pools: [String: Any] { state["pools"] as? [String: Any] ?? [:] }
    var tasks: [String: Any] { state["tasks"] as? [String: Any] ?? [:] }
    var submissions: [String: Int] { state["submissions"] as? [String: Int] ?? [:] }
    var batches: [String: [Int]] { state["batches"] as? [String: [Int]] ?? [:] }

    /// Pools or tasks left, and tasks submitted other than once.
    func problems(_ jobID: String) -> [String] {
        var found: [String] = []
        if !pools.isEmpty { found.append("pools left: \(pools.keys.sorted())") }
        if !tasks.isEmpty { found.append("tasks left: \(tasks.keys.sorted())") }
        let mine = submissions.filter { $0.key.hasPrefix("\(jobID)/") }
        if mine.count != CrashWalkTests.tasks || mine.values.contains(where: { $0 != 1 }) {
            found.append("submissions: \(mine.sorted { $0.key < $1.key })")
        }
        return found
    }
}
