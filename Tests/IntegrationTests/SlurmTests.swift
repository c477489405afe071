import BatchCore
import BatchStore
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Wrappers in front of Slurm's commands on the daemon's PATH: each call is
/// counted in `calls` (intake's `sbatch --test-only` as `sbatch-test`), with
/// the user it ran as in `callers`,
/// squeue fails while the file `fail-squeue` exists, and leaves out the
/// lines holding any line of `hide-squeue` (a job Slurm lost, as batchd sees it).
struct SlurmShims {
    let directory: String
    init(_ root: String) throws {
        directory = "\(root)/shims"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Commands run as submitters count their calls too.
        for log in ["calls", "callers"] {
            FileManager.default.createFile(atPath: "\(directory)/\(log)", contents: nil)
            chmod("\(directory)/\(log)", 0o666)
        }
        for command in ["sbatch", "squeue", "sacct", "scancel", "scontrol"] {
            let fail = command == "squeue"
                ? "if [ -e \(directory)/fail-squeue ]; then echo 'squeue: error: Unable to contact slurm controller (connect failure)' >&2; exit 1; fi\n"
                    + "if [ -s \(directory)/hide-squeue ]; then out=$(/usr/bin/squeue \"$@\") || exit $?; "
                    + "printf '%s\\n' \"$out\" | grep -v -F -f \(directory)/hide-squeue; exit 0; fi\n"
                : ""
            let name = "if [ \"$1\" = --test-only ]; then echo \(command)-test; else echo \(command); fi >> \(directory)/calls\n"
                + "echo \"\(command) $(id -un)\" >> \(directory)/callers\n"
            try write("#!/bin/sh\n\(name)\(fail)exec /usr/bin/\(command) \"$@\"\n", directory, command)
            chmod("\(directory)/\(command)", 0o755)
        }
    }
    /// Calls so far of `command`.
    func calls(_ command: String) -> Int {
        (read("\(directory)/calls") ?? "").split(separator: "\n").filter { $0 == command }.count
    }
    /// The users `command` ran as, one per call.
    func callers(_ command: String) -> [String] {
        (read("\(directory)/callers") ?? "").split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count == 2 && f[0] == command ? String(f[1]) : nil
        }
    }
    func environment(_ cluster: SlurmTestCluster) -> [String: String] {
        cluster.environment.merging(["PATH": "\(directory):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")"]) { $1 }
    }
}

@Suite("Slurm backend on a real cluster", .serialized)
struct SlurmTests {
    static let owner = "batchd-slurm-test"

    static func config(_ root: String) -> String {
        """
        slurm:
          sharedDirectory: \(root)/shared
          owner: \(owner)
          pollMinInterval: 0.2s
          pollMaxInterval: 30s
          missingGrace: 20s
        """
    }

    /// A cluster, and a daemon using it through counting shims.
    /// `slurm` lines are added to the slurm: section, `extra` to the config.
    func started(debug: String = "", missingGrace: String = "20s", slurm: String = "", extra: String = "") async throws -> (SlurmTestCluster, DaemonHarness, SlurmShims) {
        let cluster = try SlurmTestCluster()
        let d = try DaemonHarness(extra: extra)
        try FileManager.default.createDirectory(atPath: "\(d.root)/shared", withIntermediateDirectories: true)
        try (Self.config(d.root).replacingOccurrences(of: "missingGrace: 20s", with: "missingGrace: \(missingGrace)\(slurm)")
             + (debug.isEmpty ? "" : "\ndebug:\n  \(debug)\n")).appendLine(to: d.config)
        let shims = try SlurmShims(d.root)
        try await d.start(environment: shims.environment(cluster))
        return (cluster, d, shims)
    }

    /// Drops a manifest into the inbox; the job's id once accepted.
    func submit(_ d: DaemonHarness, _ text: String, _ name: String) async throws -> String {
        let from = d.log.mark
        try write(text, d.inbox, "\(name).yaml")
        try await d.log.wait(from: from, timeout: 60, "\(name) accepted") { $0.contains("job accepted") && $0.contains(name) }
        return try #require(try await d.store().jobs(limit: 1).first?.id)
    }

    /// Four tasks: each writes an output holding a shared input's line and
    /// its index, and appends its index to runs.log (once per run).
    func fourTasks(_ d: DaemonHarness, name: String, wait: String? = nil) throws -> String {
        try write("shared line\n", "\(d.root)/\(name)", "shared.txt")
        let gate = wait.map { "if [ {i} -gt 2 ]; then while [ ! -e \($0) ]; do sleep 0.1; done; fi; " } ?? ""
        return """
            name: \(name)
            backend: slurm
            baseDirectory: \(d.root)/\(name)
            inputs: {shared: [shared.txt]}
            tasks: {forEachInteger: {from: 1, to: 4}}
            command: "\(gate)cat shared.txt > out-{i}.txt && echo {i} >> out-{i}.txt && echo {i} >> \(d.root)/\(name)/runs.log"
            outputs: {patterns: ["out-*.txt"], destination: output}
            """
    }

    /// What must hold after a job of `fourTasks` succeeded.
    func expectFourDone(_ d: DaemonHarness, _ id: String, _ name: String) async throws {
        let store = try d.store()
        #expect(try await store.job(id)?.phase == .succeeded, "\(d.log.lines.suffix(30).joined(separator: "\n"))")
        let accepted = try await store.attempts(id).filter { $0.outcome == .exited && $0.exitCode == 0 }
        #expect(Dictionary(grouping: accepted, by: \.idx).mapValues(\.count) == [0: 1, 1: 1, 2: 1, 3: 1], "one accepted result per task")
        let outputs = tree("\(d.root)/\(name)/output")
        #expect(outputs.count == 4)
        #expect(outputs["out-3.txt"] == Data("shared line\n3\n".utf8))
        let runs = (read("\(d.root)/\(name)/runs.log") ?? "").split(separator: "\n").sorted()
        #expect(runs == ["1", "2", "3", "4"], "each task ran once")
    }

    /// Runs `examples/<example>` with --backend local, then slurm; each one's outputs.
    func onLocalAndSlurm(_ d: DaemonHarness, _ example: String) async throws -> (local: [String: Data], slurm: [String: Data]) {
        for backend in ["local", "slurm"] {
            let dir = "\(d.root)/\(backend)"
            try FileManager.default.copyItem(atPath: "\(repoRoot)/examples/\(example)", toPath: dir)
            try? FileManager.default.removeItem(atPath: "\(dir)/output")
            let r = try await d.batchctl(["submit", "--backend", backend, "\(dir)/job.yaml", "--wait", "--timeout", "120"], timeout: 140)
            #expect(r.code == 0, "\(backend): \(r.out)\n\(r.err)")
        }
        return (tree("\(d.root)/local/output"), tree("\(d.root)/slurm/output"))
    }

    @Test("wordcount with --backend slurm gives the local backend's bytes")
    func wordcountMatchesLocal() async throws {
        let (cluster, d, _) = try await started()
        let (local, slurm) = try await onLocalAndSlurm(d, "wordcount")
        #expect(local.count == 3 && slurm == local)
        #expect(await d.signal(SIGTERM) == 0)
        _ = cluster
    }

    @Test("2,000 tasks go in as ⌈2000 / MaxArraySize⌉ arrays and are followed with fewer than 0.02 squeue calls per task")
    func twoThousandTasks() async throws {
        let (cluster, d, shims) = try await started()
        let id = try await submit(d, "name: many\nbackend: slurm\ntasks: {forEachInteger: {from: 1, to: 2000}}\ncommand: \"true\"\n", "many")
        let started = ContinuousClock.now
        let w = try await d.batchctl(["wait", id, "--timeout", "1200"], timeout: 1260)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(try await d.store().counts(id).succeeded == 2000)
        let sbatch = shims.calls("sbatch"), squeue = shims.calls("squeue"), sacct = shims.calls("sacct")
        let perTask = Double(squeue + sacct) / 2000
        print("slurm 2,000 tasks: \(ContinuousClock.now - started), sbatch \(sbatch), squeue \(squeue), sacct \(sacct), \(perTask) status calls per task")
        #expect(sbatch == 2, "⌈2000 / 1001⌉ arrays")
        #expect(perTask < 0.02)
        // Tasks that wrote nothing leave nothing in the shared directory: no
        // empty Slurm log, no run.sh, no array script, no empty directory.
        let left = tree("\(d.root)/shared/jobs/\(id)")
        #expect(left.isEmpty, "\(left.count) files left, such as \(left.keys.sorted().prefix(3))")
        #expect(await d.signal(SIGTERM) == 0)
        _ = cluster
    }

    @Test("kill -9 after an array's sbatch and before its id is recorded: not submitted again, and the job completes")
    func killAfterSbatch() async throws {
        let (cluster, d, shims) = try await started(debug: "crashAt: submit.sbatched")
        let id = try await submit(d, try fourTasks(d, name: "resub"), "resub")
        #expect(await d.waitForExit(timeout: 60) == SIGKILL)
        #expect(shims.calls("sbatch") == 1)
        try String(contentsOfFile: d.config, encoding: .utf8).replacingOccurrences(of: "crashAt: submit.sbatched", with: "crashAt: \"\"")
            .write(toFile: d.config, atomically: true, encoding: .utf8)
        try await d.start(environment: shims.environment(cluster))
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(shims.calls("sbatch") == 1, "the array was found again by name, not submitted twice")
        #expect(d.log.lines.contains { $0.contains("array found again after a restart") })
        try await expectFourDone(d, id, "resub")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("kill -9 while tasks run, down until some end: those are recorded without running again, the rest re-adopted")
    func killWhileRunning() async throws {
        let (cluster, d, shims) = try await started(debug: "crashAt: monitor.begin")
        let gate = "\(d.root)/go"
        let id = try await submit(d, try fourTasks(d, name: "adopt", wait: gate), "adopt")
        #expect(await d.waitForExit(timeout: 60) == SIGKILL)
        // While the daemon is down, tasks 1 and 2 end (batchd-exec writes their status files).
        let shared = "\(d.root)/shared/jobs/\(id)/tasks"
        let store = try d.store()
        let ids = try await store.tasks(id).sorted { $0.idx < $1.idx }.map(\.taskId)
        #expect(await waitForFiles(["\(shared)/\(ids[0])/attempt-1/status", "\(shared)/\(ids[1])/attempt-1/status"], timeout: 60))
        try String(contentsOfFile: d.config, encoding: .utf8).replacingOccurrences(of: "crashAt: monitor.begin", with: "crashAt: \"\"")
            .write(toFile: d.config, atomically: true, encoding: .utf8)
        try await d.start(environment: shims.environment(cluster))
        try await d.log.wait(timeout: 60, "the first two recorded") { $0.contains("task finished") && $0.contains("task.id=\(ids[1])") }
        try write("", d.root, "go")
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        try await expectFourDone(d, id, "adopt")
        #expect(shims.calls("sbatch") == 1, "re-adopted, not submitted again")
        #expect(await d.signal(SIGTERM) == 0)
    }

    /// What must hold after a one-task job (`retries: 0`) whose first
    /// attempt vanished: it ran again free, in a new array, and succeeded.
    func expectRanAgainFree(_ d: DaemonHarness, _ shims: SlurmShims, _ id: String, output: String, _ expected: String) async throws {
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let attempts = try await d.store().attempts(id).sorted { $0.attempt < $1.attempt }
        #expect(attempts.map(\.outcome) == [.lost, .exited], "\(attempts)")
        #expect(attempts.first?.counted == false, "a lost attempt uses no retry")
        #expect(read(output) == expected)
        #expect(shims.calls("sbatch") == 2, "submitted again, in a new array")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a task that vanishes from Slurm without a word (no status file, in no squeue answer past the grace) is lost and runs again free")
    func vanishedIsFree() async throws {
        let (cluster, d, shims) = try await started(missingGrace: "2s")
        // A job holding the whole node: the element stays pending and writes no status file.
        let blocker = try cluster.command("sbatch", ["--parsable", "--exclusive", "--output=/dev/null", "--wrap=sleep 300"])
        #expect(blocker.status == 0, "\(blocker.output)")
        try FileManager.default.createDirectory(atPath: "\(d.root)/gone", withIntermediateDirectories: true)
        let from = d.log.mark
        let id = try await submit(d, """
            name: gone
            backend: slurm
            baseDirectory: \(d.root)/gone
            retries: 0
            tasks: [{id: only, command: "echo ran > out.txt"}]
            outputs: {patterns: [out.txt], destination: output}
            """, "gone")
        try await d.log.wait(from: from, timeout: 60, "the array submitted") { $0.contains("array submitted") }
        let array = try #require(d.log.lines.last { $0.contains("array submitted") }?.split(separator: " ")
            .first { $0.hasPrefix("slurm.id=") }?.dropFirst("slurm.id=".count))
        // Slurm loses it: squeue no longer shows it, and it never runs.
        try write("\(array)\n", shims.directory, "hide-squeue")
        #expect(try cluster.command("scancel", [String(array)]).status == 0)
        try await d.log.wait(from: from, timeout: 60, "the vanished task noticed") { $0.contains("task vanished from Slurm; it runs again") }
        #expect(try cluster.command("scancel", [blocker.output.trimmingCharacters(in: .whitespacesAndNewlines)]).status == 0)
        try await expectRanAgainFree(d, shims, id, output: "\(d.root)/gone/output/out.txt", "ran\n")
    }

    @Test("a node that goes down under a running task: the task is lost, runs again free (retries: 0), and the job succeeds")
    func nodeDownIsFree() async throws {
        let (cluster, d, shims) = try await started()
        let marker = "\(d.root)/vanish/first-run"
        try FileManager.default.createDirectory(atPath: "\(d.root)/vanish", withIntermediateDirectories: true)
        let id = try await submit(d, """
            name: vanish
            backend: slurm
            baseDirectory: \(d.root)/vanish
            retries: 0
            tasks: [{id: only, command: "if [ -e \(marker) ]; then echo again > out.txt; else touch \(marker); sleep 300; fi"}]
            outputs: {patterns: [out.txt], destination: output}
            """, "vanish")
        #expect(await waitForFiles([marker], timeout: 60), "the first run started")
        let from = d.log.mark
        // The node dies under it: Slurm ends the task NODE_FAIL.
        #expect(try cluster.command("scontrol", ["update", "nodename=localhost", "state=down", "reason=batchd-test"]).status == 0)
        try await d.log.wait(from: from, timeout: 60, "the lost attempt recorded") { $0.contains("task finished") && $0.contains("outcome=\"lost") }
        // Back up (its slurmd may have registered again already: ReturnToService=2, and then this is refused).
        _ = try cluster.command("scontrol", ["update", "nodename=localhost", "state=resume"])
        try await expectRanAgainFree(d, shims, id, output: "\(d.root)/vanish/output/out.txt", "again\n")
    }

    @Test("cancel leaves nothing in squeue for the job; an array under the daemon's tag made by hand is an orphan")
    func cancelAndOrphans() async throws {
        let (cluster, d, _) = try await started()
        let from = d.log.mark
        let id = try await submit(d, "name: held\nbackend: slurm\ntasks: {forEachInteger: {from: 1, to: 6}}\ncommand: \"sleep 300\"\n", "held")
        try await d.log.wait(from: from, timeout: 60, "the job running") { $0.contains("job.phase=running") }
        #expect(try await d.batchctl(["cancel", id]).code == 0)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code != 0)
        #expect(try await d.store().job(id)?.phase == .cancelled)
        #expect(try await d.store().counts(id).cancelled == 6)
        let live = try cluster.command("squeue", ["--noheader", "--format=%j|%T"]).output
        #expect(!live.contains("batchd-\(id)"), "squeue still shows: \(live)")
        // An array tagged as this daemon's that its database does not know.
        let orphan = try cluster.command("sbatch", ["--parsable", "--job-name=batchd-20991231-000000-deadbeef-1",
                                                    "--comment=batchd owner=\(Self.owner)", "--output=/dev/null", "--wrap=sleep 300"])
        #expect(orphan.status == 0, "\(orphan.output)")
        let pools = try await d.json(["pools"])
        let items = pools["items"] as? [[String: Any]] ?? []
        #expect(items.contains { $0["job"] as? String == "20991231-000000-deadbeef" && $0["orphan"] as? Bool == true }, "\(pools)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a partition the cluster does not have is refused at intake, with sbatch's words, and nothing is submitted")
    func unknownPartitionAtIntake() async throws {
        let (cluster, d, shims) = try await started()
        let from = d.log.mark
        try write("name: nopart\nbackend: slurm\npool: {partition: nope}\ntasks: [{command: \"true\"}]\n", d.inbox, "nopart.yaml")
        try await d.log.wait(from: from, timeout: 60, "the rejection") { $0.contains("manifest rejected") || $0.contains("rejected") }
        let error = try #require(read("\(d.inbox)/rejected/nopart.yaml.error"))
        #expect(error.contains("pool.partition") && error.contains("invalid partition"), "\(error)")
        #expect(shims.calls("sbatch-test") == 1 && shims.calls("sbatch") == 0, "checked, and nothing submitted")
        #expect(try await d.store().jobs(limit: 10).isEmpty)
        #expect(await d.signal(SIGTERM) == 0)
        _ = cluster
    }

    @Test("a failing squeue never fails a job: its states are unknown until squeue answers again")
    func failingSqueue() async throws {
        let (cluster, d, shims) = try await started()
        try write("", shims.directory, "fail-squeue")
        let from = d.log.mark
        let id = try await submit(d, "name: blind\nbackend: slurm\ntasks: {forEachInteger: {from: 1, to: 3}}\ncommand: \"true\"\n", "blind")
        try await d.log.wait(from: from, count: 3, timeout: 60, "squeue failing") { $0.contains("squeue failed") }
        #expect(try await d.store().job(id)?.phase == .running, "still running, not failed")
        try FileManager.default.removeItem(atPath: "\(shims.directory)/fail-squeue")
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(await d.signal(SIGTERM) == 0)
        _ = cluster
    }
}

/// Apart from the suite above so that its minute and a half of waiting for
/// Slurm's time-limit check overlaps the 2,000-task job.
@Suite("Slurm time limits")
struct SlurmTimeLimitTests {
    func started() async throws -> (SlurmTestCluster, DaemonHarness, SlurmShims) { try await SlurmTests().started() }
    func submit(_ d: DaemonHarness, _ text: String, _ name: String) async throws -> String { try await SlurmTests().submit(d, text, name) }

    @Test("a task Slurm kills at its time limit ends as timedOut, with Slurm's reason in the log")
    func timeLimit() async throws {
        let (cluster, d, _) = try await started()
        let id = try await submit(d, "name: slow\nbackend: slurm\ntimeout: 30s\ntasks: [{id: slow, command: \"sleep 600\"}]\n", "slow")
        let w = try await d.batchctl(["wait", id, "--timeout", "240"], timeout: 260)
        #expect(w.code != 0)
        let attempts = try await d.store().attempts(id)
        #expect(attempts.map(\.outcome) == [.timedOut], "\(attempts)")
        #expect(d.log.lines.contains { $0.contains("slurm ended the task") && $0.contains("slurm.state=TIMEOUT") })
        #expect(await d.signal(SIGTERM) == 0)
        _ = cluster
    }
}

extension String {
    /// Appends this text, on a line of its own, to the file at `path`.
    func appendLine(to path: String) throws {
        let existing = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        try (existing + "\n" + self + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }
}
