import BatchCore
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// On Slurm, a job's arrays are its submitter's (issue 24): sbatch runs as
/// them, so munge vouches for them and the cluster's accounting, fair share
/// and limits see them; their attempt directories and outputs are theirs.
@Suite("Slurm: arrays run as their submitter", .serialized)
struct SlurmUsersTests {
    @Test("alice's array is alice's on the cluster (squeue), her task says alice, her attempt directories and outputs are hers; cancel reaches her array",
          .timeLimit(.minutes(4)))
    func arraysAsTheSubmitter() async throws {
        guard let alice = TestUsers.all?.alice else {
            print("slurm users tests: skipped (they need root to make test users)")
            return
        }
        let (cluster, d, shims) = try await SlurmTests().started()
        chmod(d.root, 0o755)
        // Hers alone: the daemon reads and writes here as her.
        let home = "\(d.root)/alice-home"
        try FileManager.default.createDirectory(atPath: "\(home)/out", withIntermediateDirectories: true)
        let value = "tok-\(UUID().uuidString)"
        try write("\(value)\n", home, "token.txt")
        TestUsers.give(home, to: alice, recursive: true)
        chmod(home, 0o700)
        chmod("\(home)/token.txt", 0o600)

        func drop(_ name: String, _ text: String) async throws -> String {
            let from = d.log.mark
            try write(text, d.inbox, ".\(name).tmp")
            TestUsers.give("\(d.inbox)/.\(name).tmp", to: alice)
            rename("\(d.inbox)/.\(name).tmp", "\(d.inbox)/\(name).yaml")
            try await d.log.wait(from: from, timeout: 60, "\(name) accepted") { $0.contains("job accepted") && $0.contains(name) }
            try await d.log.wait(from: from, timeout: 60, "\(name) running") { $0.contains("job.phase=running") }
            return try #require(try await d.store().jobs(limit: 1).first?.id)
        }

        let id = try await drop("who", """
            name: who
            backend: slurm
            baseDirectory: \(home)
            secrets: {TOKEN: token.txt}
            tasks: {forEachInteger: {from: 1, to: 2}}
            command: "while [ ! -e \(home)/go ]; do sleep 0.1; done; id -un > who-{i}.txt; printf %s \\"$TOKEN\\" | sha256sum | cut -c1-64 > seen-{i}.txt"
            outputs: {patterns: ["who-*.txt", "seen-*.txt"], destination: out}
            """)
        // While it runs: Slurm sees alice, and her attempt directories are hers.
        let queue = try cluster.command("squeue", ["--noheader", "--format=%u|%j"]).output
        #expect(queue.contains("\(alice.name)|batchd-\(id)"), "squeue: \(queue)")
        let tasks = "\(d.root)/shared/jobs/\(id)/tasks"
        let attempts = try FileManager.default.contentsOfDirectory(atPath: tasks).map { "\(tasks)/\($0)/attempt-1" }
        #expect(attempts.count == 2)
        for dir in attempts {
            var st = stat()
            #expect(stat(dir, &st) == 0 && st.st_uid == alice.uid, "\(dir) is uid \(st.st_uid)'s")
            // Her secrets reach the node only here: her file, mode 0600.
            #expect(stat("\(dir)/secrets", &st) == 0 && st.st_uid == alice.uid && st.st_mode & 0o777 == 0o600, "secrets: mode \(String(st.st_mode & 0o777, radix: 8))")
        }
        #expect(shims.callers("sbatch").allSatisfy { $0 == alice.name } && !shims.callers("sbatch").isEmpty,
                "sbatch ran as \(shims.callers("sbatch"))")
        FileManager.default.createFile(atPath: "\(home)/go", contents: nil)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        let hash = try await runProcess("/bin/sh", ["-c", "printf %s '\(value)' | sha256sum | cut -c1-64"])
        for dir in attempts { #expect(!FileManager.default.fileExists(atPath: "\(dir)/secrets"), "the secrets file outlived the attempt") }
        for file in HostileTests.files(under: "\(d.root)/shared") + HostileTests.files(under: d.state) {
            for root in ["\(d.root)/shared", d.state] {
                if let data = FileManager.default.contents(atPath: "\(root)/\(file)") { #expect(data.range(of: Data(value.utf8)) == nil, "the secret is in \(file)") }
            }
        }
        for i in 1...2 {
            #expect(read("\(home)/out/seen-\(i).txt") == hash.out)
            #expect(read("\(home)/out/who-\(i).txt") == "\(alice.name)\n")
            var st = stat()
            #expect(stat("\(home)/out/who-\(i).txt", &st) == 0 && st.st_uid == alice.uid)
        }

        // A cancel reaches her array: scancel runs as her too.
        let held = try await drop("held", "name: held\nbackend: slurm\ntasks: {forEachInteger: {from: 1, to: 2}}\ncommand: \"sleep 300\"\n")
        #expect(try await d.batchctl(["cancel", held]).code == 0)
        _ = try await d.batchctl(["wait", held, "--timeout", "120"], timeout: 140)
        #expect(try await d.store().job(held)?.phase == .cancelled)
        let live = try cluster.command("squeue", ["--noheader", "--format=%j|%T"]).output
        #expect(!live.contains("batchd-\(held)"), "squeue still shows: \(live)")
        #expect(shims.callers("scancel").contains(alice.name), "scancel ran as \(shims.callers("scancel"))")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
