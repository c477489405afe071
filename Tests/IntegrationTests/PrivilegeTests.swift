import BatchStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// docs/security.md, proved as the system unit runs batchd: the daemon as a
/// service user of its own, submitters in its group. A submitter can never
/// make the daemon read or write for them what they could not themselves;
/// tasks cannot reach the daemon's state or secrets; rejections are private.
/// Needs root (to make the users and run as them): CI has it; elsewhere the
/// test says it is skipped.
@Suite("The daemon reads and writes for a submitter only what they could", .serialized)
struct PrivilegeTests {
    @Test("as an ordinary submitter: refused inputs, no secret in any task, no file from outside collected, data stays data, private rejections",
          .timeLimit(.minutes(5)))
    func submitterCannotReachMore() async throws {
        guard let users = TestUsers.all else {
            print("privilege tests: skipped (they need root to make test users)")
            return
        }
        let (svc, alice, bob, eve) = (users.service, users.alice, users.bob, users.eve)
        let d = try DaemonHarness(slots: 2)
        d.user = svc
        chmod(d.root, 0o755)
        for dir in [d.state, "\(d.root)/run"] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            chmod(dir, 0o750)  // as the unit's StateDirectoryMode= makes it: the group may read
            TestUsers.give(dir, to: svc)
        }
        // Files only root may read, and only the daemon's user may read.
        try write("root only\n", d.root, "root-only.txt")
        chmod("\(d.root)/root-only.txt", 0o600)
        try write("service only\n", d.root, "svc-only.txt")
        chmod("\(d.root)/svc-only.txt", 0o600)
        TestUsers.give("\(d.root)/svc-only.txt", to: svc)
        try FileManager.default.createDirectory(atPath: "\(d.root)/svc-dir", withIntermediateDirectories: true)
        TestUsers.give("\(d.root)/svc-dir", to: svc)
        // Alice's own directory, shared with the daemon's group as the docs say.
        let home = "\(d.root)/alice"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try "v\nx; touch PWNED\n".write(toFile: "\(home)/rows.csv", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: "\(home)/link-root", withDestinationPath: "\(d.root)/root-only.txt")
        try FileManager.default.createSymbolicLink(atPath: "\(home)/link-db", withDestinationPath: "\(d.state)/batchd.db")
        TestUsers.give(home, to: alice, recursive: true)
        chmod(home, 0o2770)
        lchown(home, alice.uid, svc.gid)

        let secret = "SECRET-\(UUID().uuidString)"
        try await d.start(environment: ["AZURE_STORAGE_KEY": secret, "BATCHD_IT_SECRET": secret])

        /// Drops a manifest owned by alice straight into the inbox.
        func drop(_ name: String, _ text: String) throws {
            try write(text, d.inbox, ".\(name).tmp")
            TestUsers.give("\(d.inbox)/.\(name).tmp", to: alice)
            rename("\(d.inbox)/.\(name).tmp", "\(d.inbox)/\(name)")
        }
        let refusals: [(String, String, String)] = [
            ("a1.yaml", "inputs: [\(d.root)/root-only.txt]", "permission denied: batchd-it-alice (uid \(alice.uid)) may not read"),
            ("a2.yaml", "inputs: [\(d.root)/svc-only.txt]", "permission denied: batchd-it-alice (uid \(alice.uid)) may not read"),
            ("a3.yaml", "inputs: [/proc/self/environ]", "inside /proc"),
            ("a4.yaml", "inputs: [\(d.state)/batchd.db]", "the daemon's state directory"),
            ("a5.yaml", "inputs: [\(home)/link-root]", "permission denied"),
            ("a6.yaml", "inputs: [\(home)/link-db]", "the daemon's state directory"),
            ("a7.yaml", "outputs: {patterns: ['*'], destination: \(d.root)/svc-dir}", "may not write into"),
            ("a8.yaml", "comand: typo", "unknown key 'comand'"),
        ]
        for (name, line, _) in refusals { try drop(name, "name: \(name.dropLast(5))\n\(line)\ntasks: [{command: 'true'}]\n") }
        for (name, _, needle) in refusals {
            try await d.log.wait("\(name) rejected") { $0.contains("manifest rejected") && $0.contains("file=\(name)") }
            let error = "\(d.inbox)/rejected/\(name).error"
            #expect(read(error)?.contains(needle) == true, "\(name): \(read(error) ?? "no .error")")
            // Private: the submitter may read it, another submitter may not, nor may anyone else.
            #expect(try await canRead(error, as: alice), "alice cannot read her own \(name).error")
            #expect(try await canRead("\(d.inbox)/rejected/\(name)", as: alice))
            #expect(!(try await canRead(error, as: bob)), "bob can read alice's \(name).error")
            #expect(!(try await canRead("\(d.inbox)/rejected/\(name)", as: bob)), "bob can read alice's rejected \(name)")
            #expect(!(try await canRead(error, as: eve)))
        }
        // batchctl, run by alice, refuses the same before the daemon sees it.
        try write("name: viactl\ninputs: [\(d.root)/svc-only.txt]\ntasks: [{command: 'true'}]\n", home, "viactl.yaml")
        TestUsers.give("\(home)/viactl.yaml", to: alice)
        let viactl = try await d.batchctl(["submit", "\(home)/viactl.yaml"], as: alice)
        #expect(viactl.code == 2 && viactl.err.contains("permission denied"), "\(viactl.err)")

        // A task that goes looking for the daemon's secrets and state.
        let snoop = """
            name: snoop
            command: |
              env > env.txt
              cat /proc/[0-9]*/environ > procenv.txt 2>/dev/null
              cat \(d.state)/batchd.db > db.txt 2> db-error.txt
              ls \(d.state) > ls.txt 2> ls-error.txt
              kill -0 \(d.pid) 2> kill.txt; echo "kill $?" >> kill.txt
              true
            tasks: [{}]
            outputs: {patterns: ["*.txt"], destination: out-snoop}
            """
        let swap = "name: swap\ncommand: cd .. && mv work gone && ln -s /etc work\ntasks: [{}]\noutputs: {patterns: [passwd, '*'], destination: out-swap}\n"
        let inject = "name: inject\ncommand: printf '%s\\n' {row.v} > row-{index}.txt\ntasks:\n  forEachRow: rows.csv\noutputs: {patterns: ['*.txt'], destination: out-inject}\n"
        for (name, text) in [("snoop", snoop), ("swap", swap), ("inject", inject)] {
            try write(text, home, "\(name).yaml")
            TestUsers.give("\(home)/\(name).yaml", to: alice)
            let r = try await d.batchctl(["submit", "\(home)/\(name).yaml", "--wait", "--timeout", "60"], as: alice)
            #expect(r.code == (name == "swap" ? 1 : 0), "\(name): \(r.out)\n\(r.err)")
        }
        // No secret anywhere a task could leave it: outputs, attempt directories, logs.
        for dir in ["\(home)/out-snoop", "\(d.state)/jobs"] {
            for file in HostileTests.files(under: dir) {
                if let text = FileManager.default.contents(atPath: "\(dir)/\(file)") {
                    #expect(!String(decoding: text, as: UTF8.self).contains(secret), "the secret is in \(dir)/\(file)")
                }
            }
        }
        #expect(read("\(home)/out-snoop/db.txt") == "", "a task read the daemon's database")
        #expect(read("\(home)/out-snoop/db-error.txt")?.contains("Permission denied") == true)
        #expect(read("\(home)/out-snoop/ls-error.txt")?.contains("Permission denied") == true)
        #expect(read("\(home)/out-snoop/kill.txt")?.contains("kill 1") == true, "a task could signal the daemon")
        #expect(read("\(home)/out-snoop/env.txt")?.contains("BATCHD_TASK_ID=0") == true)
        // Outputs are the submitter's to read, and nothing came from outside the task.
        #expect(!FileManager.default.fileExists(atPath: "\(home)/out-swap/passwd"))
        let swapped = try #require(try await d.store().job("swap"))
        // The task runs as alice, who may not rename her attempt's
        // directories: the swap itself is refused (the collector's own
        // refusal of a swapped directory, for a task of the daemon's own
        // user, is LocalRunnerTests').
        let swapLog = try await d.batchctl(["logs", swapped.id, "0"], as: alice)
        #expect((swapLog.out + swapLog.err).contains("Permission denied"), "\(swapLog.out)\n\(swapLog.err)")
        // Outputs are alice's own files.
        var owner = stat()
        #expect(stat("\(home)/out-inject/row-0.txt", &owner) == 0 && owner.st_uid == alice.uid, "owned by uid \(owner.st_uid)")
        // Data stayed data.
        #expect(read("\(home)/out-inject/row-0.txt") == "x; touch PWNED\n")
        #expect(!HostileTests.files(under: d.root).contains { $0.hasSuffix("PWNED") })
        // files put reads as whoever asks: a file alice may not read is refused,
        // one only the daemon's user may read is refused too, and nothing was stored.
        for path in ["\(d.root)/root-only.txt", "\(d.root)/svc-only.txt", "\(home)/link-root"] {
            let put = try await d.batchctl(["files", "put", path], as: alice)
            #expect(put.code == 1 && put.err.contains("permission denied: batchd-it-alice"), "\(path): \(put.err)")
        }
        #expect(try await d.store().storedFiles().allSatisfy { !$0.names.contains { $0.hasSuffix("-only.txt") } })
        let mine = try await d.batchctl(["files", "put", "\(home)/rows.csv", "--json"], as: alice)
        #expect(mine.code == 0, "\(mine.err)")
        // Reading the job list needs the daemon's group, and says so.
        let denied = try await d.batchctl(["list"], as: eve)
        #expect(denied.code == 3 && denied.err.contains("permission denied reading the database"), "\(denied.err)")
        #expect(try await d.batchctl(["list"], as: bob).code == 0)
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }
}
