import BatchStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The inbox never goes silent: every entry is taken, or answered with a
/// `.error` (or a journal warning and a line in `batchctl list`), and
/// `batchctl submit --wait` always returns.
@Suite("The inbox never goes silent", .serialized)
struct InboxTests {
    @Test("inbox on a tmpfs, state on disk: claims work across file systems; a long name and a FIFO are answered; --wait returns",
          .timeLimit(.minutes(5)))
    func acrossFileSystems() async throws {
        let shm = "/dev/shm/batchd-it-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let d = try DaemonHarness(inbox: "\(shm)/inbox")
        var inboxFS = stat(), stateFS = stat()
        try FileManager.default.createDirectory(atPath: d.inbox, withIntermediateDirectories: true)
        try #require(stat(d.inbox, &inboxFS) == 0 && stat(d.root, &stateFS) == 0)
        try #require(inboxFS.st_dev != stateFS.st_dev, "the inbox and the state directory are on one file system")
        try await d.start()

        // batchctl submit --wait: claimed by copy, run, done.
        try write("name: across\ntasks: [{command: 'echo hi > hi.txt'}]\noutputs: [hi.txt]\n", d.root, "across.yaml")
        let r = try await d.batchctl(["submit", "\(d.root)/across.yaml", "--wait", "--timeout", "60"])
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        #expect(read("\(d.root)/output/hi.txt") == "hi\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: d.inbox).filter { $0.hasPrefix(".claiming-") }.isEmpty)

        // A name that fills the directory entry: taken, and the job runs.
        let long = String(repeating: "a", count: 245) + ".yaml"
        try write("name: longname\ntasks: [{command: 'true'}]\n", d.inbox, ".tmp-long")
        rename("\(d.inbox)/.tmp-long", "\(d.inbox)/\(long)")
        try await d.log.wait("the long name accepted") { $0.contains("job accepted") && $0.contains("job.name=longname") }
        #expect(try await d.batchctl(["wait", "longname", "--timeout", "60"]).code == 0)
        let job = try #require(try await d.store().job("longname"))
        #expect(job.sourceFile == long)

        // A FIFO named like a manifest: answered, not waited on.
        mkfifo("\(d.inbox)/job.yaml", 0o644)
        try await d.log.wait("the FIFO refused") { $0.contains("inbox entry refused") && $0.contains("file=job.yaml") }
        #expect(read("\(d.inbox)/rejected/job.yaml.error")?.contains("a FIFO (named pipe), not a regular file") == true)

        // A manifest batchctl finds fine but the daemon refuses: --wait says why and returns.
        try write("name: noazure\nbackend: azure\ntasks: [{command: 'true'}]\n", d.root, "noazure.yaml")
        let refused = try await d.batchctl(["submit", "\(d.root)/noazure.yaml", "--wait", "--timeout", "60"])
        #expect(refused.code == 2)
        #expect(refused.err.contains("backend 'azure' is not configured in this daemon"))
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }

    @Test("a claim cut short by a crash is finished at the next start, and the job runs once")
    func claimAcrossAfterACrash() async throws {
        let shm = "/dev/shm/batchd-it-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let d = try DaemonHarness(inbox: "\(shm)/inbox")
        try FileManager.default.createDirectory(atPath: d.inbox, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(d.state)/claimed", withIntermediateDirectories: true)
        // What a daemon killed between renaming and copying leaves behind.
        let held = ".claiming-20261202-000000-0000abcd--held.yaml"
        try write("name: held\ntasks: [{command: 'true'}]\n", d.inbox, held)
        try await d.start()
        #expect(try await d.batchctl(["wait", "held", "--timeout", "60"]).code == 0)
        #expect(!FileManager.default.fileExists(atPath: "\(d.inbox)/\(held)"))
        #expect(try await d.store().jobs().filter { $0.name == "held" }.count == 1)
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }
}
