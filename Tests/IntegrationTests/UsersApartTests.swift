import BatchCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A shared service keeps its users apart (issue 24): with real users, made
/// by useradd, and the daemon as a service user of its own.
@Suite("A shared service keeps its users apart", .serialized)
struct UsersApartTests {
    /// A daemon run as the service user `svc`, as the system unit runs it:
    /// its state and runtime directories (and `more`, under its root) made
    /// the service user's, with `mode`.
    static func daemon(as svc: TestUser, slots: Int, operators: Bool = false, switchesUsers: Bool = true, more: [String] = [],
                       mode: mode_t = 0o750) throws -> DaemonHarness {
        let d = try DaemonHarness(slots: slots, extra: operators ? "operators: \(TestUsers.operators)\n" : "")
        d.user = svc
        d.switchesUsers = switchesUsers
        chmod(d.root, 0o755)
        for dir in [d.state, "\(d.root)/run"] + more.map({ "\(d.root)/\($0)" }) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            chmod(dir, mode)
            TestUsers.give(dir, to: svc)
        }
        return d
    }
    @Test("only a job's submitter or an operator may cancel or retry it, and pool commands and files prune are for operators; a refusal says who may, and the journal names who did",
          .timeLimit(.minutes(3)))
    func ownersAndOperators() async throws {
        guard let users = TestUsers.all else {
            print("users-apart tests: skipped (they need root to make test users)")
            return
        }
        let (svc, alice, bob, oper) = (users.service, users.alice, users.bob, users.oper)
        let d = try Self.daemon(as: svc, slots: 2, operators: true)
        let home = "\(d.root)/alice"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        for name in ["one", "two"] {
            try write("name: \(name)\ncommand: sleep 300\ntasks: [{}]\n", home, "\(name).yaml")
        }
        TestUsers.give(home, to: alice, recursive: true)
        chmod(home, 0o2770)
        lchown(home, alice.uid, svc.gid)
        try await d.start()

        func submit(_ name: String) async throws -> String {
            let from = d.log.mark
            let r = try await d.batchctl(["submit", "\(home)/\(name).yaml"], as: alice)
            #expect(r.code == 0, "\(r.err)")
            try await d.log.wait(from: from, timeout: 30, "\(name) accepted") { $0.contains("job accepted") }
            return try #require(try await d.store().jobs(limit: 1).first).id
        }
        let one = try await submit("one")

        // bob may neither cancel nor retry alice's job, and is told who may.
        let who = "only its submitter or an operator (root, the service user \(svc.name), or a member of group \(TestUsers.operators)) may"
        let cancel = try await d.batchctl(["cancel", one], as: bob)
        #expect(cancel.code != 0 && cancel.err.contains("permission denied: job \(one) is \(alice.name) (uid \(alice.uid))'s; \(who) cancel it"),
                "\(cancel.err)")
        let retry = try await d.batchctl(["retry", one], as: bob)
        #expect(retry.code != 0 && retry.err.contains("\(who) retry it"), "\(retry.err)")
        #expect(try await d.store().job(one)?.cancelRequested == false, "alice's job was not touched")
        // Operators' commands are refused to bob, with who may run them.
        for args in [["pools"], ["pool", "delete", "p1"], ["files", "prune", "--unused-for", "1d"]] {
            let r = try await d.batchctl(args, as: bob)
            #expect(r.code != 0 && r.err.contains("is for operators: root, the service user \(svc.name), or a member of group \(TestUsers.operators)"),
                    "\(args): \(r.err)")
        }

        // An operator may; the story names who, by uid and name.
        let from = d.log.mark
        let byOperator = try await d.batchctl(["cancel", one], as: oper)
        #expect(byOperator.code == 0, "\(byOperator.err)")
        try await d.log.wait(from: from, timeout: 30, "the cancel logged") { $0.contains("cancel requested") }
        let line = d.log.lines.last { $0.contains("cancel requested") } ?? ""
        #expect(line.contains("\(oper.uid)") && line.contains(oper.name), "\(line)")
        #expect(try await d.batchctl(["files", "prune", "--unused-for", "1d"], as: oper).code == 0)

        // alice may cancel her own.
        let two = try await submit("two")
        let own = try await d.batchctl(["cancel", two], as: alice)
        #expect(own.code == 0, "\(own.err)")
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }

    @Test("a submitter who may not read the database submits and waits through the daemon; with the daemon away, show says why at once and wait after a short grace")
    func waitingOnWhatOneMayNotRead() async throws {
        guard let users = TestUsers.all else {
            print("users-apart tests: skipped (they need root to make test users)")
            return
        }
        let (svc, alice) = (users.service, users.alice)
        // The inbox the group's, the state directory the service user's alone.
        let d = try DaemonHarness(slots: 1, inbox: "inbox")
        d.user = svc
        chmod(d.root, 0o755)
        for dir in [d.state, "\(d.root)/run", "\(d.root)/inbox"] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            TestUsers.give(dir, to: svc)
        }
        chmod(d.state, 0o700)
        chmod("\(d.root)/run", 0o750)
        chmod("\(d.root)/inbox", 0o1770)
        let home = "\(d.root)/alice"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try write("name: quick\ncommand: true\ntasks: [{}]\n", home, "quick.yaml")
        TestUsers.give(home, to: alice, recursive: true)
        chmod(home, 0o2770)
        lchown(home, alice.uid, svc.gid)
        try await d.start()
        // The daemon answers her, on its events: she needs no access to the database.
        let r = try await d.batchctl(["submit", "\(home)/quick.yaml", "--wait", "--timeout", "30"], timeout: 60, as: alice)
        #expect(r.code == 0, "exit \(r.code): \(r.err)")
        #expect(!(try await canRead("\(d.state)/batchd.db", as: alice)))
        let id = try #require(try await d.store().job("quick")).id
        #expect(await d.signal(SIGTERM) == 0)
        // The daemon away: nothing she may read to fall back on.
        let show = try await d.batchctl(["show", id], as: alice)
        #expect(show.code == 3 && show.err.contains("permission denied reading the database"), "exit \(show.code): \(show.err)")
        let t0 = ContinuousClock.now
        let wait = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 60, as: alice)
        #expect(wait.code == 3 && wait.err.contains("cannot reach batchd") && wait.err.contains("not yours to read"), "exit \(wait.code): \(wait.err)")
        #expect(ContinuousClock.now - t0 < .seconds(30), "wait gave up after the grace, not the timeout")
        try? FileManager.default.removeItem(atPath: d.root)
    }
    @Test("alice's task runs as alice (uid, groups, HOME and USER, no capability) and writes her own outputs where only she may write; bob's task cannot cancel her job",
          .timeLimit(.minutes(3)))
    func tasksRunAsTheirSubmitter() async throws {
        guard let users = TestUsers.all else {
            print("users-apart tests: skipped (they need root to make test users)")
            return
        }
        let (svc, alice, bob) = (users.service, users.alice, users.bob)
        let d = try Self.daemon(as: svc, slots: 2)
        func home(_ user: TestUser) throws -> String {
            let home = "\(d.root)/\(user.name)"
            try FileManager.default.createDirectory(atPath: "\(home)/out", withIntermediateDirectories: true)
            TestUsers.give(home, to: user, recursive: true)
            // Theirs alone: the service user may not even look in. batchd
            // checks, reads and writes here as the submitter.
            chmod(home, 0o700)
            chmod("\(home)/out", 0o700)
            return home
        }
        let (homeA, homeB) = (try home(alice), try home(bob))
        try write("""
            name: who
            command: |
              id -u > who.txt; id -G >> who.txt; grep CapEff /proc/self/status >> who.txt; echo "$USER $HOME" >> who.txt
            tasks: [{}]
            outputs: {patterns: ['*.txt'], destination: out}
            """, homeA, "who.yaml")
        try write("name: long\ncommand: sleep 300\ntasks: [{}]\n", homeA, "long.yaml")
        TestUsers.give(homeA, to: alice, recursive: true)
        try await d.start()

        let who = try await d.batchctl(["submit", "\(homeA)/who.yaml", "--wait", "--timeout", "60"], as: alice)
        let whoTasks = try await d.store().tasks(try #require(try await d.store().job("who")).id)
        #expect(who.code == 0, "\(who.out)\n\(who.err)\n\(whoTasks)")
        let lines = (read("\(homeA)/out/who.txt") ?? "").split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(lines)")
        #expect(lines.first == "\(alice.uid)", "the task ran as uid \(lines.first ?? "?"), not alice's \(alice.uid)")
        let groups = Set((lines.dropFirst().first ?? "").split(separator: " ").compactMap { UInt32($0) })
        let svcGroup = try #require(getgrnam("batchd-it")).pointee.gr_gid
        #expect(groups.contains(alice.gid) && groups.contains(svcGroup), "groups \(groups)")
        #expect(lines.dropFirst(2).first == "CapEff:\t0000000000000000", "\(lines)")
        let home = String(cString: try #require(getpwuid(alice.uid)).pointee.pw_dir)
        #expect(lines.last == "\(alice.name) \(home)", "\(lines)")
        var st = stat()
        #expect(stat("\(homeA)/out/who.txt", &st) == 0 && st.st_uid == alice.uid, "who.txt is uid \(st.st_uid)'s")

        // bob's task asks the daemon to cancel alice's job: it acts as bob, and is refused.
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(homeA)/long.yaml"], as: alice).code == 0)
        try await d.log.wait(from: from, timeout: 30, "long accepted") { $0.contains("job accepted") }
        let long = try #require(try await d.store().jobs(limit: 1).first).id
        try write("name: meddle\ncommand: \(binDirectory)/batchctl --config \(d.config) cancel \(long)\ntasks: [{}]\n", homeB, "meddle.yaml")
        TestUsers.give("\(homeB)/meddle.yaml", to: bob)
        let meddle = try await d.batchctl(["submit", "\(homeB)/meddle.yaml", "--wait", "--timeout", "60"], as: bob)
        #expect(meddle.code == 1, "bob's task's cancel should fail: \(meddle.out)\n\(meddle.err)")
        let meddled = try #require(try await d.store().job("meddle"))
        let log = try await d.batchctl(["logs", meddled.id, "0"], as: bob)
        #expect((log.out + log.err).contains("permission denied: job \(long) is \(alice.name)"), "\(log.out)\n\(log.err)")
        #expect(try await d.store().job(long)?.cancelRequested == false, "bob's task cancelled alice's job")
        #expect(try await d.batchctl(["cancel", long], as: alice).code == 0)
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }

    @Test("a daemon that cannot run tasks as their submitter refuses another user's job at intake, saying why")
    func noSwitchNoOthersTasks() async throws {
        guard let users = TestUsers.all else {
            print("users-apart tests: skipped (they need root to make test users)")
            return
        }
        let (svc, alice) = (users.service, users.alice)
        let d = try Self.daemon(as: svc, slots: 1, switchesUsers: false)
        try await d.start()
        try write("name: mine\ncommand: 'true'\ntasks: [{}]\n", d.inbox, ".mine.tmp")
        TestUsers.give("\(d.inbox)/.mine.tmp", to: alice)
        rename("\(d.inbox)/.mine.tmp", "\(d.inbox)/mine.yaml")
        try await d.log.wait(timeout: 30, "mine rejected") { $0.contains("manifest rejected") && $0.contains("file=mine.yaml") }
        let error = read("\(d.inbox)/rejected/mine.yaml.error") ?? ""
        #expect(error.contains("tasks run as their submitter, \(alice.name) (uid \(alice.uid)), and this daemon (running as \(svc.name)") &&
                error.contains("cannot run them as another user"), "\(error)")
        // Through batchctl submit --wait: the rejection is told at once (a
        // rejection changes nothing the daemon's events follow).
        let home = "\(d.root)/alice"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try write("name: waited\ncommand: 'true'\ntasks: [{}]\n", home, "waited.yaml")
        TestUsers.give(home, to: alice, recursive: true)
        let t0 = ContinuousClock.now
        let r = try await d.batchctl(["submit", "\(home)/waited.yaml", "--wait", "--timeout", "60"], timeout: 90, as: alice)
        #expect(r.code == 2 && r.err.contains("the daemon rejected the manifest") && r.err.contains("cannot run them as another user"), "\(r.err)")
        #expect(ContinuousClock.now - t0 < .seconds(10), "the rejection took \(ContinuousClock.now - t0)")
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }
    @Test("alice's secrets: value reaches her task's environment, and nothing else: not the database or its WAL, the logs, the state directory, batchctl's output, nor an environment the service user's own tasks may read",
          .timeLimit(.minutes(3)))
    func secretsNeverLand() async throws {
        guard let users = TestUsers.all else {
            print("users-apart tests: skipped (they need root to make test users)")
            return
        }
        let (svc, alice) = (users.service, users.alice)
        let d = try Self.daemon(as: svc, slots: 2, more: ["svc-out"])
        let home = "\(d.root)/alice"
        try FileManager.default.createDirectory(atPath: "\(home)/out", withIntermediateDirectories: true)
        let value = "tok-\(UUID().uuidString)"
        try write("\(value)\n", home, "token.txt")
        try write("""
            name: sec
            secrets: {TOKEN: token.txt}
            command: "printf %s \\"$TOKEN\\" | sha256sum | cut -c1-64 > seen.txt; while [ ! -e \(home)/go ]; do sleep 0.1; done"
            tasks: [{}]
            outputs: {patterns: [seen.txt], destination: out}
            """, home, "sec.yaml")
        TestUsers.give(home, to: alice, recursive: true)
        chmod(home, 0o700)
        chmod("\(home)/token.txt", 0o600)
        try await d.start()

        var from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(home)/sec.yaml"], as: alice).code == 0)
        try await d.log.wait(from: from, timeout: 30, "alice's task started") { $0.contains("task started") }
        let id = try #require(try await d.store().job("sec")).id
        let tasks = "\(d.state)/jobs/\(id)/tasks"
        let task = try #require(try FileManager.default.contentsOfDirectory(atPath: tasks).first)
        #expect(await waitForFiles(["\(tasks)/\(task)/attempt-1/work/seen.txt"], timeout: 30), "alice's task did not run")

        // While her task runs, a task of the service user's own looks for
        // TOKEN in every environment it may read (batchd-exec's included).
        from = d.log.mark
        let probe = "name: probe\ncommand: \"for f in /proc/[0-9]*/environ; do tr '\\\\0' '\\\\n' < $f 2>/dev/null; done | grep -c '^TOKEN=' > found.txt; true\"\n"
            + "tasks: [{}]\noutputs: {patterns: [found.txt], destination: \(d.root)/svc-out}\n"
        try write(probe, d.inbox, ".probe.tmp")
        TestUsers.give("\(d.inbox)/.probe.tmp", to: svc)
        rename("\(d.inbox)/.probe.tmp", "\(d.inbox)/probe.yaml")
        try await d.log.wait(from: from, timeout: 30, "probe accepted") { $0.contains("job accepted") && $0.contains("probe") }
        let probed = try #require(try await d.store().job("probe")).id
        #expect(try await d.batchctl(["wait", probed, "--timeout", "60"]).code == 0)
        #expect(read("\(d.root)/svc-out/found.txt") == "0\n", "the service user's task found TOKEN: \(read("\(d.root)/svc-out/found.txt") ?? "nothing")")

        FileManager.default.createFile(atPath: "\(home)/go", contents: nil)
        #expect(try await d.batchctl(["wait", id, "--timeout", "60"], as: alice).code == 0)
        let hash = try await runProcess("/bin/sh", ["-c", "printf %s '\(value)' | sha256sum | cut -c1-64"])
        #expect(read("\(home)/out/seen.txt") == hash.out, "her task's TOKEN was not the file's content")

        // Nowhere else: every file of the state directory (the database, its
        // WAL, the task logs, the accepted manifests), the daemon's log,
        // and what batchctl shows alice and root.
        for file in HostileTests.files(under: d.state) {
            if let data = FileManager.default.contents(atPath: "\(d.state)/\(file)") {
                #expect(data.range(of: Data(value.utf8)) == nil, "the secret is in \(file)")
            }
        }
        #expect(!d.log.lines.contains { $0.contains(value) }, "the secret is in the daemon's log")
        for args in [["list"], ["list", "--json"], ["show", id], ["show", id, "--json"], ["logs", id, "0"]] {
            for user in [alice, nil] as [TestUser?] {
                let r = try await d.batchctl(args, as: user)
                #expect(!(r.out + r.err).contains(value), "batchctl \(args) shows the secret")
            }
        }
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }
    @Test("private by default: bob lists only his jobs, cannot see alice's (show, logs, outputs, watch: refused, saying who may), nor read the database, her manifest or her logs; an operator sees all",
          .timeLimit(.minutes(3)))
    func privateByDefault() async throws {
        guard let users = TestUsers.all else {
            print("users-apart tests: skipped (they need root to make test users)")
            return
        }
        let (svc, alice, bob, oper) = (users.service, users.alice, users.bob, users.oper)
        let d = try Self.daemon(as: svc, slots: 2, operators: true, mode: 0o770)
        let home = "\(d.root)/alice"
        try FileManager.default.createDirectory(atPath: "\(home)/out", withIntermediateDirectories: true)
        let mark = "mark-\(UUID().uuidString)"
        try write("name: mine\nenv: {MY_VALUE: \(mark)}\ncommand: echo \"$MY_VALUE\" > o.txt; echo \"$MY_VALUE\"\ntasks: [{}]\n"
                  + "outputs: {patterns: [o.txt], destination: out}\n", home, "mine.yaml")
        TestUsers.give(home, to: alice, recursive: true)
        chmod(home, 0o700)
        try await d.start()
        let r = try await d.batchctl(["submit", "\(home)/mine.yaml", "--wait", "--timeout", "60"], as: alice)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let job = try #require(try await d.store().job("mine"))

        // bob: his list lacks it; her job by id is refused with who may; by name it is not his.
        for args in [["list"], ["list", "--json"]] {
            let l = try await d.batchctl(args, as: bob)
            #expect(l.code == 0 && !l.out.contains(job.id) && !l.out.contains(mark), "bob's \(args): \(l.out)")
        }
        let who = "only its submitter or an operator (root, the service user \(svc.name), or a member of group \(TestUsers.operators)) may see it"
        for args in [["show", job.id], ["show", job.id, "--json"], ["logs", job.id], ["logs", job.id, "0"], ["outputs", job.id], ["wait", job.id]] {
            let b = try await d.batchctl(args, as: bob)
            #expect(b.code == 1 && b.err.contains("permission denied: job \(job.id) is \(alice.name) (uid \(alice.uid))'s; \(who)")
                    && !(b.out + b.err).contains(mark), "bob's \(args): exit \(b.code): \(b.out)\n\(b.err)")
        }
        let byName = try await d.batchctl(["show", "mine"], as: bob)
        #expect(byName.code == 4 && byName.err.contains("no job with id or name 'mine'"), "\(byName.err)")
        let cancelByName = try await d.batchctl(["cancel", "mine"], as: bob)
        #expect(cancelByName.code != 0 && cancelByName.err.contains("no job 'mine'"), "\(cancelByName.err)")
        // Nor by the files: the database, her accepted manifest, her task's log, the jobs' list.
        let attempt = try #require(try await d.store().attempts(job.id).first).directory
        for file in ["\(d.state)/batchd.db", job.manifestPath, "\(attempt)/stdout"] {
            #expect(FileManager.default.fileExists(atPath: file), "\(file) is there")
            #expect(!(try await canRead(file, as: bob)), "bob can read \(file)")
        }
        let ls = try await runProcess("/usr/bin/setpriv", ["--reuid=\(bob.uid)", "--regid=\(bob.gid)", "--init-groups", "--", "/bin/ls", "\(d.state)/jobs"])
        #expect(ls.code != 0, "bob can list the jobs: \(ls.out)")

        // alice sees hers, through the daemon; an operator sees everyone's.
        for user in [alice, oper] {
            let l = try await d.batchctl(["list"], as: user)
            #expect(l.out.contains(job.id), "\(user)'s list: \(l.out)")
            let logs = try await d.batchctl(["logs", job.id, "0"], as: user)
            #expect(logs.code == 0 && logs.out.contains(mark), "\(user)'s logs: \(logs.err)")
            #expect(try await d.batchctl(["show", job.id], as: user).code == 0)
        }
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }
}
