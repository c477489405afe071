import BackendAzure
import BatchCore
import Foundation
import Testing
import TestSupport

extension AzureTests {
    /// A task that says it started, waits for `gate` (at most 120 s), and
    /// writes `out-<id>.txt`.
    static func gated(_ id: String, _ dir: String, gate: String, then: String = "") -> String {
        "{id: \(id), command: \"touch \(dir)/started-\(id); i=0; while [ ! -e \(gate) ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; \(then)echo \(id) > out-\(id).txt\"}"
    }

    /// Writes `<root>/<name>/job.yaml` (its `fields` lines, then `tasks`,
    /// outputs `out-*.txt` into `output` there), submits it, and waits until
    /// each task in `started` runs (a `gated` task says so); the job's id.
    func submitRunning(_ d: DaemonHarness, _ name: String, fields: String = "", tasks: [String], started: [String]) async throws -> String {
        let dir = "\(d.root)/\(name)"
        let manifest = try write("name: \(name)\n\(fields)tasks:\n" + tasks.map { "  - \($0)\n" }.joined()
                                 + "outputs: {patterns: ['out-*.txt'], destination: output}\n", dir, "job.yaml")
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        #expect(await waitForFiles(started.map { "\(dir)/started-\($0)" }, timeout: 60), "\(started) started")
        return try #require(try await d.store().jobs(limit: 1).first).id
    }

    func blob(_ rig: AzureRig) -> BlobClient {
        BlobClient(http: rig.http, endpoint: "\(rig.emulator.url)/store", account: "store", key: Secret(AzureEmulatorProcess.key))
    }

    @Test("outputs the node could not upload (its output container deleted) fail the task with the service's code and detail, though it exited 0")
    func uploadFailureFails() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/upload"
        let gate = "\(dir)/gate"
        let id = try await submitRunning(d, "upload", fields: "retries: 0\n", tasks: [Self.gated("only", dir, gate: gate)], started: ["only"])
        #expect(try await blob(rig).deleteContainer("batchd-\(id)"))
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code != 0, "the job fails: its one task's outputs are not anywhere\n\(w.out)")
        let task = try #require(try await d.store().tasks(id).first)
        #expect(task.state == .failed && task.outcome == .outputsFailed, "\(task)")
        let detail = task.detail ?? ""
        #expect(detail.contains("FileUploadMiscError") && detail.contains("FilePath=out-only.txt") && detail.contains("HttpStatusCode=404"), "\(detail)")
        #expect(!detail.contains("sig="), "no token in the words kept")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/output/out-only.txt"))
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a task whose outputs could not be uploaded runs again (retries: 1), with fresh tokens, into its output container made again")
    func uploadFailureIsRetried() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/upload"
        let (gate, ran, done) = ("\(dir)/gate", "\(dir)/ran", "\(dir)/done")
        // `first` fails its upload once; its second run lets `keeper`
        // (keeping the Batch job open, in the node's other slot) finish.
        let id = try await submitRunning(d, "upload", fields: "retries: 1\npool: {dedicatedNodes: 1, slotsPerNode: 2}\n",
                                         tasks: [Self.gated("first", dir, gate: gate, then: "if [ -e \(ran) ]; then touch \(done); else touch \(ran); fi; "),
                                                 Self.gated("keeper", dir, gate: done)],
                                         started: ["first", "keeper"])
        #expect(try await blob(rig).deleteContainer("batchd-\(id)"))
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let attempts = try await d.store().attempts(id).filter { $0.idx == 0 }.sorted { $0.attempt < $1.attempt }
        #expect(attempts.map(\.outcome) == [.outputsFailed, .exited], "\(attempts)")
        #expect(attempts.first?.detail?.contains("FileUploadMiscError") == true)
        #expect(read("\(dir)/output/out-first.txt") == "first\n" && read("\(dir)/output/out-keeper.txt") == "keeper\n")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a task that must run again after its Batch job ended (its last task completed) runs in the next Batch job, -r1; both go at cleanup")
    func retriedAfterTheBatchJobEnded() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/ended"
        let gate = "\(dir)/gate"
        // The only task: when it completes, Batch ends the job (terminatejob),
        // before batchd learns that its uploads failed.
        // (With an input of its own, staged once and read again by its second run.)
        try write("from the input\n", dir, "in.txt")
        let task = Self.gated("only", dir, gate: gate, then: "cp in.txt out-in.txt; ").dropLast() + ", inputs: [in.txt]}"
        let id = try await submitRunning(d, "ended", fields: "retries: 1\n", tasks: [String(task)], started: ["only"])
        #expect(try await blob(rig).deleteContainer("batchd-\(id)"))
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let attempts = try await d.store().attempts(id).sorted { $0.attempt < $1.attempt }
        #expect(attempts.map(\.outcome) == [.outputsFailed, .exited], "\(attempts)")
        #expect(read("\(dir)/output/out-only.txt") == "only\n")
        #expect(read("\(dir)/output/out-in.txt") == "from the input\n")
        let show = try await d.batchctl(["show", id])
        #expect(show.out.contains("Batch job batchd-\(id)-r1"), "\(show.out)")
        let (first, next) = (try await rig.jobGone("batchd-\(id)"), try await rig.jobGone("batchd-\(id)-r1"))
        #expect(first && next, "both Batch jobs deleted by the cleanup")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a task Batch ended at its timeout (maxWallClockTime) runs again within retries, its first attempt recorded timedOut")
    func timedOutTaskIsRetried() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/slow"
        // The first run outlasts its 1 s; the second is quick.
        let id = try await submitRunning(d, "slow", fields: "retries: 1\ntimeout: 1s\n", tasks: [
            "{id: slow, command: \"touch \(dir)/started-slow; if [ -e \(dir)/ran ]; then echo slow > out-slow.txt; else touch \(dir)/ran; sleep 30; fi\"}",
        ], started: ["slow"])
        let w = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 80)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let attempts = try await d.store().attempts(id).sorted { $0.attempt < $1.attempt }
        #expect(attempts.map(\.outcome) == [.timedOut, .exited], "\(attempts)")
        #expect(read("\(dir)/output/out-slow.txt") == "slow\n")
        #expect(try await rig.requests("batch.delete_task") == 1, "added again by batchd, not retried by the emulator")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("an output the node has but the container lacks (its upload lost), though the task succeeded and its logs are there, fails the task, naming the file")
    func lostOutputFailsTheTask() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        _ = try await rig.admin("faults", ["lose_upload": "out-b.txt"])
        let dir = "\(d.root)/lost"
        let manifest = try write("name: lost\nretries: 0\ntasks:\n  - {id: two, command: \"echo a > out-a.txt; echo b > out-b.txt\"}\n"
                                 + "outputs: {patterns: ['out-*.txt'], destination: output}\n", dir, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        try await d.log.wait(from: from, timeout: 30, "the job accepted") { $0.contains("job accepted") }
        let id = try #require(try await d.store().jobs(limit: 1).first).id
        let w = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 80)
        #expect(w.code != 0, "the job fails: an output is missing\n\(w.out)")
        let task = try #require(try await d.store().tasks(id).first)
        #expect(task.outcome == .outputsFailed, "\(task)")
        #expect(task.detail?.contains("output 'out-b.txt' (pattern 'out-*.txt') is on the node but not in the output container") == true,
                "\(task.detail ?? "")")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
