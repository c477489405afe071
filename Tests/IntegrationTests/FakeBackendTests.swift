import BatchCore
import BatchStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The backend port with a third backend that lives only in the tests
/// (Tests/TestDaemon: its own files and one registration in batchd-testd):
/// the whole lifecycle, a cancel and a restart in the middle of a job.
@Suite("a fake backend behind the port", .serialized)
struct FakeBackendTests {
    func daemon(extra: String = "") async throws -> DaemonHarness {
        let d = try DaemonHarness(extra: extra)
        d.executable = "batchd-testd"
        try await d.start()
        return d
    }

    /// Drops a fake job whose tasks run `command` (`{i}` is the index); its id.
    func submit(_ d: DaemonHarness, _ name: String, command: String, tasks: Int = 3) async throws -> String {
        let from = d.log.mark
        try write("""
            name: \(name)
            backend: fake
            baseDirectory: \(d.root)/\(name)
            tasks: {forEachInteger: {from: 1, to: \(tasks)}}
            command: "\(command)"
            outputs: {patterns: ["*.out"], destination: output}
            """, d.inbox, "\(name).yaml")
        try await d.log.wait(from: from, timeout: 60, "the job accepted") { $0.contains("job accepted") && $0.contains(name) }
        return try #require(try await d.store().jobs(limit: 1).first?.id)
    }

    @Test("a fake job stages, provisions, submits in batches, collects each output and leaves nothing on the remote")
    func lifecycle() async throws {
        let d = try await daemon()
        try FileManager.default.createDirectory(atPath: "\(d.root)/life", withIntermediateDirectories: true)
        let id = try await submit(d, "life", command: "echo {i}", tasks: 5)
        let w = try await d.batchctl(["wait", id, "--timeout", "60"])
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let outputs = tree("\(d.root)/life/output")
        #expect(outputs.count == 5)
        #expect(outputs.values.map { String(decoding: $0, as: UTF8.self) }.sorted() == (1...5).map { "echo \($0)\n" })
        let remote = try FakeRemoteView(d)
        #expect(remote.pools.isEmpty && remote.tasks.isEmpty)
        #expect(remote.submissions.filter { $0.key.hasPrefix(id) }.values.sorted() == [1, 1, 1, 1, 1])
        let pools = try await d.json(["pools"])
        #expect(pools["owner"] as? String == "batchd-testd")
        #expect((pools["items"] as? [Any])?.count == 0, "\(pools)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a plugin's own config section and pool option: batchctl checks the option from what the daemon published, the backend reads both")
    func ownSectionAndPoolOption() async throws {
        let d = try await daemon(extra: "fake:\n  owner: lab-7\n  batchSize: 4\n")
        let dir = "\(d.root)/sized"
        let bad = try write("name: bad\nbackend: fake\npool: {batchSize: 0}\ntasks: [{command: 'true'}]\n", dir, "bad.yaml")
        let refused = try await d.batchctl(["submit", bad])
        #expect(refused.code == 2 && refused.err.contains("pool.batchSize") && refused.err.contains("between 1 and 100"), "\(refused.err)")
        let good = try write("""
            name: sized
            backend: fake
            pool: {batchSize: 3}
            tasks: {forEachInteger: {from: 1, to: 7}}
            command: "echo {i}"
            outputs: {patterns: ["*.out"], destination: output}
            """, dir, "job.yaml")
        let r = try await d.batchctl(["submit", "--wait", "--timeout", "60", good])
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let plain = try write("name: plain\nbackend: fake\ntasks: {forEachInteger: {from: 1, to: 5}}\ncommand: 'true'\n", dir, "plain.yaml")
        #expect(try await d.batchctl(["submit", "--wait", "--timeout", "60", plain]).code == 0)
        let jobs = try await d.store().jobs(limit: 2)
        let remote = try FakeRemoteView(d)
        #expect(remote.batches[jobs.first { $0.name == "sized" }?.id ?? ""] == [3, 3, 1], "the job's pool.batchSize: \(remote.batches)")
        #expect(remote.batches[jobs.first { $0.name == "plain" }?.id ?? ""] == [4, 1], "the config's fake.batchSize: \(remote.batches)")
        #expect(try await d.json(["pools"])["owner"] as? String == "lab-7")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("cancel in the middle of a fake job stops its tasks on the remote and deletes its pool")
    func cancel() async throws {
        let d = try await daemon()
        try FileManager.default.createDirectory(atPath: "\(d.root)/held", withIntermediateDirectories: true)
        let from = d.log.mark
        let id = try await submit(d, "held", command: "wait-for \(d.root)/never")
        try await d.log.wait(from: from, timeout: 60, "the job running") { $0.contains("job.phase=running") }
        #expect(try FakeRemoteView(d).pools.count == 1)
        let held = try await d.json(["pools"])
        #expect((held["items"] as? [[String: Any]])?.map { $0["id"] as? String } == ["fake-\(id)"], "\(held)")
        #expect(try await d.batchctl(["cancel", id]).code == 0)
        let w = try await d.batchctl(["wait", id, "--timeout", "60"])
        #expect(w.code != 0)
        #expect(try await d.store().job(id)?.phase == .cancelled)
        #expect(try await d.store().counts(id).cancelled == 3)
        let remote = try FakeRemoteView(d)
        #expect(remote.pools.isEmpty && remote.tasks.isEmpty)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a fake job running when the daemon stops resumes after the restart, with nothing submitted twice")
    func restartMidJob() async throws {
        let d = try await daemon()
        try FileManager.default.createDirectory(atPath: "\(d.root)/resume", withIntermediateDirectories: true)
        let from = d.log.mark
        let id = try await submit(d, "resume", command: "wait-for \(d.root)/go")
        try await d.log.wait(from: from, timeout: 60, "the job running") { $0.contains("job.phase=running") }
        #expect(await d.signal(SIGTERM) == 0)
        #expect(try await d.store().job(id)?.phase == .running, "saved in its phase")
        try await d.start()
        try write("", d.root, "go")
        let w = try await d.batchctl(["wait", id, "--timeout", "60"])
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(tree("\(d.root)/resume/output").count == 3)
        let remote = try FakeRemoteView(d)
        #expect(remote.submissions.filter { $0.key.hasPrefix(id) }.values.sorted() == [1, 1, 1])
        #expect(remote.pools.isEmpty && remote.tasks.isEmpty)
        #expect(await d.signal(SIGTERM) == 0)
    }
}
