import BackendLocal
import BatchAccess
import BatchStore
import BatchSupport
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The whole path through the real binaries: batchctl submit → inbox →
/// batchd → tasks → outputs → SQLite → batchctl show/logs.
@Suite("batchd end to end", .serialized)
struct DaemonTests {
    /// The wordcount spec, computed independently of the example's script:
    /// words are runs of [a-z0-9'] after lower-casing, with apostrophes trimmed;
    /// the top 3 by count descending, then word ascending.
    static func expectedTop3(_ text: String) -> String {
        var counts: [String: Int] = [:]
        var word = ""
        func flush() {
            let w = word.trimmingCharacters(in: CharacterSet(charactersIn: "'"))
            if !w.isEmpty { counts[w, default: 0] += 1 }
            word = ""
        }
        for ch in text.lowercased().unicodeScalars {
            if ("a"..."z").contains(ch) || ("0"..."9").contains(ch) || ch == "'" { word.unicodeScalars.append(ch) } else { flush() }
        }
        flush()
        return counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(3).map { "\($0.key)\t\($0.value)\n" }.joined()
    }

    @Test("the wordcount example succeeds and its outputs hold the right words")
    func wordcount() async throws {
        let d = try DaemonHarness()
        try await d.start()
        let example = "\(d.root)/wordcount"
        try FileManager.default.copyItem(atPath: "\(repoRoot)/examples/wordcount", toPath: example)
        try? FileManager.default.removeItem(atPath: "\(example)/output")
        let r = try await d.batchctl(["submit", "\(example)/job.yaml", "--wait"], timeout: 60)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let show = try await d.json(["show", "wordcount"])
        #expect(show["state"] as? String == "succeeded")
        let outputs = try #require(show["outputs"] as? [String: Any])
        #expect(outputs["destination"] as? String == "\(example)/output")
        let files = (outputs["files"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
        #expect(files == ["taskdata0_OUTPUT.txt", "taskdata1_OUTPUT.txt", "taskdata2_OUTPUT.txt"])
        for i in 0..<3 {
            let text = try #require(read("\(example)/texts/taskdata\(i).txt"))
            #expect(read("\(example)/output/taskdata\(i)_OUTPUT.txt") == Self.expectedTop3(text))
        }
        // The input store, by content: each staged file with the job that used it.
        let job = try #require(show["id"] as? String)
        let stored = try await d.json(["files", "list", "--json"])["files"] as? [[String: Any]] ?? []
        #expect(stored.count == 4, "three texts and wordcount.py: \(stored)")
        #expect(stored.allSatisfy { ($0["jobs"] as? [String]) == [job] && ($0["backends"] as? [String]) == ["local"] })
        let found = try await d.json(["files", "find", "taskdata1.txt", "--json"])["files"] as? [[String: Any]] ?? []
        #expect(found.count == 1 && (found.first?["names"] as? [String]) == ["\(example)/texts/taskdata1.txt"])
        #expect((try await d.json(["files", "find", "texts/*.txt", "--json"])["files"] as? [Any])?.isEmpty == true, "a pattern with / matches whole paths")
        #expect((try await d.json(["files", "find", "**/texts/*.txt", "--json"])["files"] as? [Any])?.count == 3)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("files put stages a directory ahead of a job, which then copies nothing; prune --dry-run keeps it, --unused-for 0s removes it")
    func filesPutAndPrune() async throws {
        let d = try DaemonHarness()
        try await d.start()
        let example = "\(d.root)/wordcount"
        try FileManager.default.copyItem(atPath: "\(repoRoot)/examples/wordcount", toPath: example)
        try? FileManager.default.removeItem(atPath: "\(example)/output")
        // The whole directory: job.yaml, wordcount.py and the three texts.
        let put = try await d.json(["files", "put", example])
        #expect(put["count"] as? Int == 5 && (put["sent"] as? Int ?? 0) > 0, "\(put)")
        let again = try await d.json(["files", "put", "\(example)/texts"])
        #expect(again["count"] as? Int == 3 && again["sent"] as? Int == 0, "a second put sends nothing: \(again)")
        let listed = try await d.json(["files", "list"])["files"] as? [[String: Any]] ?? []
        #expect(listed.count == 5 && listed.allSatisfy { ($0["jobs"] as? [String]) == [] }, "put, no job yet: \(listed)")

        let from = d.log.mark
        let r = try await d.batchctl(["submit", "\(example)/job.yaml", "--wait"], timeout: 60)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        try await d.log.wait(from: from, "inputs staged") { $0.contains("inputs staged") }
        #expect(d.log.lines[from...].contains { $0.contains("inputs staged") && $0.contains("inputs=4") && $0.contains("copied=0") },
                "the job copied nothing: \(d.log.lines[from...].filter { $0.contains("inputs staged") })")
        let job = try #require(try await d.json(["show", "wordcount"])["id"] as? String)
        let found = try await d.json(["files", "find", "taskdata1.txt"])["files"] as? [[String: Any]] ?? []
        #expect(found.count == 1 && (found.first?["jobs"] as? [String]) == [job], "\(found)")
        let stored = try await d.json(["files", "list"])["files"] as? [[String: Any]] ?? []
        #expect(stored.filter { ($0["jobs"] as? [String]) == [job] }.count == 4, "the texts and wordcount.py, with the job: \(stored)")
        let blobs = stored.compactMap { $0["sha256"] as? String }.map { ContentStore(root: "\(d.state)/store").path(for: $0) }
        #expect(blobs.count == 5 && blobs.allSatisfy { FileManager.default.fileExists(atPath: $0) })

        // Not old enough, and a dry run: nothing goes.
        let young = try await d.json(["files", "prune", "--unused-for", "1h"])
        #expect(young["count"] as? Int == 0, "\(young)")
        let dry = try await d.json(["files", "prune", "--unused-for", "0s", "--dry-run"])
        #expect(dry["count"] as? Int == 5 && dry["freed"] as? Int == 0, "\(dry)")
        let bare = try await d.json(["files", "prune"])
        #expect(bare["freed"] as? Int == 0)
        #expect(blobs.allSatisfy { FileManager.default.fileExists(atPath: $0) }, "a dry run removes nothing")

        let pruned = try await d.json(["files", "prune", "--unused-for", "0s"])
        #expect(pruned["count"] as? Int == 5 && (pruned["freed"] as? Int ?? 0) > 0, "\(pruned)")
        #expect(blobs.allSatisfy { !FileManager.default.fileExists(atPath: $0) }, "pruned from the store")
        #expect((try await d.json(["files", "list"])["files"] as? [Any])?.isEmpty == true)
        // The job's history keeps its inputs; a new job stages them again.
        try? FileManager.default.removeItem(atPath: "\(example)/output")
        let rerun = try await d.batchctl(["submit", "\(example)/job.yaml", "--wait"], timeout: 60)
        #expect(rerun.code == 0, "\(rerun.out)\n\(rerun.err)")
        #expect((try await d.json(["files", "list"])["files"] as? [Any])?.count == 4)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("outputs.merge of a 200-row forEachRow job: one header and 200 rows in row order; read as it grows, always a valid prefix")
    func mergedResults() async throws {
        let d = try DaemonHarness(slots: 4)
        try await d.start()
        let dir = "\(d.root)/scoring"
        try FileManager.default.createDirectory(atPath: "\(dir)/out", withIntermediateDirectories: true)
        try ("customer,segment\n" + (0..<200).map { "c\($0),s\($0 % 3)\n" }.joined()).write(toFile: "\(dir)/customers.csv", atomically: true, encoding: .utf8)
        // Tasks end out of row order (sleeps of 0 to 40 ms over 4 slots);
        // tasks from row 100 on wait until the test has read a partial merge.
        let go = "\(dir)/go"
        try """
            name: scoring
            tasks:
              forEachRow: customers.csv
            command: if [ $BATCHD_TASK_INDEX -ge 100 ]; then while [ ! -e \(go) ]; do sleep 0.02; done; fi; sleep 0.0$((BATCHD_TASK_INDEX % 5)); printf 'customer,score\\n%s,%s\\n' {row.customer} "$BATCHD_TASK_INDEX" > score-{index}.csv
            outputs:
              patterns: ['score-*.csv']
              destination: out
              merge: {from: 'score-*.csv', into: scores.csv}
            """.write(toFile: "\(dir)/job.yaml", atomically: true, encoding: .utf8)
        let expected = ["customer,score"] + (0..<200).map { "c\($0),\($0)" }
        // A reader woken by each rename into the destination checks every version it sees.
        let merged = "\(dir)/out/scores.csv"
        let seen = Mutex<[Int]>([]), bad = Mutex<[String]>([]), stop = Mutex(false)
        let partial = AsyncEvent<Void>()
        let fd = inotify_init1(Int32(IN_CLOEXEC))
        #expect(inotify_add_watch(fd, "\(dir)/out", UInt32(IN_MOVED_TO)) >= 0)
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !stop.withLock({ $0 }) {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) > 0 else { continue }
                _ = read(fd, &buffer, buffer.count)
                // (The test's own write into the file below is not batchd's version.)
                guard let text = try? String(contentsOfFile: merged, encoding: .utf8), !text.hasSuffix("tampered\n") else { continue }
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                // A valid prefix: the header, then rows 0..<k, and the file ends with a newline.
                guard lines.last == "", Array(lines.dropLast()) == Array(expected.prefix(lines.count - 1)) else {
                    bad.withLock { $0.append(String(text.suffix(200))) }
                    continue
                }
                seen.withLock { $0.append(lines.count - 2) }
                if lines.count - 2 > 0 && lines.count - 2 < 200 { partial.fire(()) }
            }
            close(fd)
        }
        reader.start()
        let sub = try await d.batchctl(["submit", "\(dir)/job.yaml"])
        #expect(sub.code == 0, "\(sub.err)")
        #expect(await partial.wait(timeout: 60) != nil, "a partial merge was published while the job ran")
        // Someone writes into the merged file behind batchd's back: the next
        // pass finds it changed and merges again from the first task.
        let h = try #require(FileHandle(forWritingAtPath: merged))
        try h.seekToEnd()
        try h.write(contentsOf: Data("tampered\n".utf8))
        try h.close()
        try "".write(toFile: go, atomically: true, encoding: .utf8)
        let r = try await d.batchctl(["wait", "scoring", "--timeout", "120"], timeout: 150)
        stop.withLock { $0 = true }
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let text = try #require(read(merged))
        #expect(text == expected.joined(separator: "\n") + "\n")
        #expect(bad.withLock { $0 }.isEmpty, "every version read was a valid prefix: \(bad.withLock { $0 }.prefix(3))")
        let counts = seen.withLock { $0 }
        #expect(counts == counts.sorted(), "each version holds at least the rows of the one before")
        #expect(d.log.lines.contains { $0.contains("merging again from the first task") }, "the change behind its back was noticed")
        let shown = try await d.json(["show", "scoring"])["outputs"] as? [String: Any]
        let progress = shown?["merged"] as? [String: Any]
        #expect(progress?["path"] as? String == "scores.csv" && progress?["tasks"] as? Int == 200 && progress?["leftOut"] as? Int == 0,
                "\(String(describing: progress))")
        #expect(progress?["bytes"] as? Int == text.utf8.count)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a typo'd key is rejected with its line and a suggestion; the daemon keeps running")
    func rejected() async throws {
        let d = try DaemonHarness()
        try await d.start()
        let from = d.log.mark
        try write("version: 1\nname: typo\ntasks:\n  forEachInteger: {from: 1, to: 3}\ncomand: echo {i}\n", d.inbox, ".typo.yaml.tmp")
        rename("\(d.inbox)/.typo.yaml.tmp", "\(d.inbox)/typo.yaml")
        try await d.log.wait(from: from, "the rejection") { $0.contains("manifest rejected") }
        let error = try #require(read("\(d.inbox)/rejected/typo.yaml.error"))
        #expect(error.contains("typo.yaml:5:1: comand: unknown key 'comand'"))
        #expect(error.contains("did you mean 'command'?"))
        #expect(read("\(d.inbox)/rejected/typo.yaml")?.contains("comand") == true)
        #expect(!FileManager.default.fileExists(atPath: "\(d.inbox)/typo.yaml"))
        // Still serving: a good manifest dropped the same way runs.
        try write("name: fine\ntasks: [{command: 'true'}]\n", d.inbox, ".fine.tmp")
        rename("\(d.inbox)/.fine.tmp", "\(d.inbox)/fine.yaml")
        try await d.log.wait(from: from, "job fine accepted") { $0.contains("job accepted") && $0.contains("job.name=fine") }
        let w = try await d.batchctl(["wait", "fine", "--timeout", "60"])
        #expect(w.code == 0, "\(w.err)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("kill -9 in the middle of a 200-task job: after a restart every task has exactly one successful attempt")
    func crashAndResume() async throws {
        let d = try DaemonHarness(slots: 8)
        try await d.start()
        let work = "\(d.root)/sweep"
        try write("""
            name: sweep
            tasks: {forEachInteger: {from: 1, to: 200}}
            command: sleep 0.2; echo {i} >> \(work)/runs.log; echo "task {i}" > out_{i}.txt
            outputs: {patterns: ["out_*.txt"], destination: results}
            """, work, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(work)/job.yaml"]).code == 0)
        try await d.log.wait(from: from, count: 60, "60 tasks finished") { $0.contains("task finished") }
        await d.signal(SIGKILL)
        let before = try await d.store().job("sweep")
        #expect(before?.phase == .running)

        let restart = d.log.mark
        try await d.start()
        let r = try await d.batchctl(["wait", "sweep", "--timeout", "120"], timeout: 150)
        let after = d.log.lines[restart...]
        print("crash test: adopted \(after.filter { $0.contains("adopted a running task") }.count), lost \(after.filter { $0.contains("outcome=lost") }.count)")
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let store = try d.store()
        let job = try #require(try await store.job("sweep"))
        #expect(job.phase == .succeeded)
        let attempts = try await store.attempts(job.id)
        let successes = Dictionary(grouping: attempts.filter { $0.outcome == .exited && $0.exitCode == 0 }, by: \.idx)
        #expect(successes.count == 200)
        #expect(successes.values.allSatisfy { $0.count == 1 })
        // The side effect of each task happened once: nothing ran twice.
        let runs = (read("\(work)/runs.log") ?? "").split(separator: "\n").map(String.init)
        #expect(runs.count == 200)
        #expect(Set(runs).count == 200)
        let results = try FileManager.default.contentsOfDirectory(atPath: "\(work)/results").filter { !$0.hasPrefix(".") }
        #expect(results.count == 200)
        for i in [1, 77, 200] { #expect(read("\(work)/results/out_\(i).txt") == "task \(i)\n") }
        #expect(try await store.outputs(job.id).count == 200)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("tasks whose processes vanished with the daemon (a reboot) run again without using a retry")
    func lostTasks() async throws {
        let d = try DaemonHarness(slots: 2)
        try await d.start()
        let work = "\(d.root)/reboot"
        try write("""
            name: reboot
            tasks: {forEachInteger: {from: 1, to: 2}}
            command: if [ "$BATCHD_ATTEMPT" -gt 1 ]; then exit 0; fi; sleep 300
            retries: 0
            """, work, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(work)/job.yaml"]).code == 0)
        try await d.log.wait(from: from, count: 2, "two tasks started") { $0.contains("task started") }
        await d.signal(SIGKILL)
        // What a reboot does to the tasks: gone, with no status written.
        let job = try #require(try await d.store().job("reboot"))
        for a in try await d.store().attempts(job.id) {
            if let pid = a.pid { kill(-pid_t(pid), SIGKILL) }
        }
        let restart = d.log.mark
        try await d.start()
        #expect(try await d.batchctl(["wait", "reboot", "--timeout", "60"]).code == 0)
        #expect(d.log.lines[restart...].filter { $0.contains("outcome=\"lost") }.count == 2)
        let attempts = try await d.store().attempts(job.id)
        #expect(attempts.map(\.outcome) == [.lost, .exited, .lost, .exited])
        #expect(attempts.filter { $0.counted == true }.count == 2)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a task that fails after its retries fails the job; its exit code and stderr are in batchctl logs")
    func failingTask() async throws {
        let d = try DaemonHarness()
        try await d.start()
        let work = "\(d.root)/bad"
        try write("""
            name: bad
            tasks:
              - {id: good, command: "echo fine"}
              - {id: broken, command: "echo 'no such input: data.csv' >&2; exit 3"}
            retries: 1
            """, work, "job.yaml")
        let r = try await d.batchctl(["submit", "\(work)/job.yaml", "--wait"], timeout: 60)
        #expect(r.code == 1)
        let show = try await d.json(["show", "bad"])
        #expect(show["state"] as? String == "failed")
        let failed = try #require((show["failedTasks"] as? [[String: Any]])?.first)
        #expect(failed["id"] as? String == "broken")
        #expect(failed["exitCode"] as? Int == 3)
        #expect(failed["attempts"] as? Int == 2)
        let logs = try await d.json(["logs", "bad", "broken"])
        #expect(logs["exitCode"] as? Int == 3)
        #expect(logs["stderr"] as? String == "no such input: data.csv\n")
        #expect(logs["attempt"] as? Int == 2)
        let text = try await d.batchctl(["logs", "bad"])
        #expect(text.out.contains("task broken failed (exit code 3)"))
        #expect(text.out.contains("no such input: data.csv"))
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("batchctl cancel stops running tasks and the job ends cancelled")
    func cancel() async throws {
        let d = try DaemonHarness(slots: 2)
        try await d.start()
        let work = "\(d.root)/long"
        try write("name: long\ntasks: {forEachInteger: {from: 1, to: 6}}\ncommand: echo $$ > pid; sleep 300\n", work, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(work)/job.yaml"]).code == 0)
        try await d.log.wait(from: from, count: 2, "two tasks started") { $0.contains("task started") }
        let c = try await d.batchctl(["cancel", "long"])
        #expect(c.code == 0, "\(c.err)")
        let w = try await d.batchctl(["wait", "long", "--timeout", "60"])
        #expect(w.code == 1)
        let store = try d.store()
        let job = try #require(try await store.job("long"))
        #expect(job.phase == .cancelled)
        #expect(try await store.counts(job.id).cancelled == 6)
        for a in try await store.attempts(job.id) {
            #expect(a.outcome == .cancelled)
            if let pid = read("\(a.directory)/work/pid").flatMap({ pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
                #expect(!ProcessControl.isAlive(pid))
            }
        }
        #expect(try await d.batchctl(["cancel", "long"]).code == 1)  // already over
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a job type with two parameters: one set by --set, one by the manifest; a typo in a type is reported with the type file's line")
    func jobTypes() async throws {
        let d = try DaemonHarness()
        try await d.start()
        try write("""
            # Renders frames; the defaults below apply unless a job says otherwise.
            parameters:
              quality: 10
              scene: main
            command: echo quality={param.quality} scene={param.scene} frame={i} > frame-{i}.txt
            outputs: [frame-*.txt]
            """, "\(d.root)/types", "render.yaml")
        try write("parameters: {q: 1}\ncommand: run {param.q}\nretires: 2\n", "\(d.root)/types", "typo.yaml")
        let listed = try await d.batchctl(["types"])
        #expect(listed.out.contains("render\n  {param.quality} = '10'\n  {param.scene} = 'main'"), "\(listed.out)")
        #expect(listed.out.contains("typo\n  cannot be used: types/typo.yaml:3:1: retires: unknown key 'retires'"), "\(listed.out)")

        let work = "\(d.root)/hall"
        try write("name: hall\ntype: render\nparameters: {scene: hall}\ntasks: {forEachInteger: {from: 1, to: 2}}\n", work, "job.yaml")
        let r = try await d.batchctl(["submit", "\(work)/job.yaml", "--set", "quality=20", "--wait", "--timeout", "60"])
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let job = try #require(try await d.store().job("hall"))
        #expect(try await d.store().tasks(job.id).map(\.command) == ["echo quality=20 scene=hall frame=1 > frame-1.txt",
                                                                     "echo quality=20 scene=hall frame=2 > frame-2.txt"])
        #expect(read("\(work)/output/frame-2.txt") == "quality=20 scene=hall frame=2\n")
        // Each task's collected files, in task order, or one task's.
        let all = try await d.batchctl(["outputs", "hall"])
        #expect(all.out.contains("task 0 (index 0):\n  frame-1.txt  ") && all.out.contains("task 1 (index 1):\n  frame-2.txt  "), "\(all.out)")
        let one = try JSONSerialization.jsonObject(with: Data(try await d.batchctl(["outputs", "hall", "1", "--json"]).out.utf8)) as? [String: Any]
        let files = (one?["tasks"] as? [[String: Any]])?.flatMap { ($0["files"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String } }
        #expect(files == ["frame-2.txt"] && one?["count"] as? Int == 2)
        #expect(try await d.batchctl(["outputs", "hall", "nosuch"]).code == 4)

        try write("name: broken\ntype: typo\ntasks: [{id: a}]\n", "\(d.root)/broken", "job.yaml")
        let bad = try await d.batchctl(["submit", "\(d.root)/broken/job.yaml"])
        #expect(bad.code == 2 && bad.err.contains("types/typo.yaml:3:1: retires: unknown key 'retires'") && bad.err.contains("did you mean 'retries'?"),
                "\(bad.err)")
        let unknown = try await d.batchctl(["submit", "\(work)/job.yaml", "--set", "qualty=1"])
        #expect(unknown.code == 2 && unknown.err.contains("did you mean 'quality'?"), "\(unknown.err)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("limits.wallClock stops a local job, running tasks included, and it fails with that reason")
    func wallClockLimit() async throws {
        let d = try DaemonHarness(slots: 2)
        try await d.start()
        let work = "\(d.root)/walled"
        try write("name: walled\ntasks: {forEachInteger: {from: 1, to: 6}}\ncommand: sleep 300\nlimits: {wallClock: 3s}\n", work, "job.yaml")
        let w = try await d.batchctl(["submit", "\(work)/job.yaml", "--wait", "--timeout", "120"])
        #expect(w.code == 1, "\(w.out)\n\(w.err)")
        let store = try d.store()
        let job = try #require(try await store.job("walled"))
        #expect(job.phase == .failed && job.reason == "limits.wallClock (3s) reached: the job was stopped", "\(job.reason ?? "")")
        let counts = try await store.counts(job.id)
        #expect(counts.cancelled == 6 && counts.succeeded == 0, "\(counts)")
        let attempts = try await store.attempts(job.id)
        #expect(attempts.count == 2 && attempts.allSatisfy { $0.outcome == .cancelled }, "the two running were stopped, no other started")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("limits.coreHours: once the job's core time is used up no task starts; those running finish; the job fails with that reason")
    func coreHoursLimit() async throws {
        let d = try DaemonHarness(slots: 1)
        try await d.start()
        let work = "\(d.root)/budget"
        // 0.0003 core-hours = 1.08 core-seconds: two or three tasks of 0.5 s on one slot.
        try write("name: budget\ntasks: {forEachInteger: {from: 1, to: 10}}\ncommand: sleep 0.5\nlimits: {coreHours: 0.0003}\n", work, "job.yaml")
        let w = try await d.batchctl(["submit", "\(work)/job.yaml", "--wait", "--timeout", "120"])
        #expect(w.code == 1, "\(w.out)\n\(w.err)")
        let store = try d.store()
        let job = try #require(try await store.job("budget"))
        #expect(job.phase == .failed && job.reason?.hasPrefix("limits.coreHours (0.0003 h) used up") == true, "\(job.reason ?? "")")
        let counts = try await store.counts(job.id)
        #expect(counts.succeeded >= 2 && counts.succeeded <= 4 && counts.succeeded + counts.cancelled == 10, "\(counts)")
        let attempts = try await store.attempts(job.id)
        #expect(attempts.allSatisfy { $0.outcome == .exited && $0.exitCode == 0 }, "what started ran to its end")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("submit works while the daemon is down; the job runs when it starts, and the name submit printed finds it")
    func submitWhileDown() async throws {
        let d = try DaemonHarness()
        try await d.start()
        await d.signal(SIGTERM)
        let work = "\(d.root)/later"
        try write("name: later\ntasks: [{command: 'echo hello > hello.txt'}]\noutputs: [hello.txt]\n", work, "job.yaml")
        // --json names the submission in a way every command takes, before
        // the job has an id and after.
        let submitted = try await d.batchctl(["submit", "--json", "\(work)/job.yaml"])
        #expect(submitted.code == 0)
        let ref = try #require((try JSONSerialization.jsonObject(with: Data(submitted.out.utf8)) as? [String: Any])?["job"] as? String)
        let early = try await d.batchctl(["show", ref])
        #expect(early.code == 4 && early.err.contains("still in the inbox"), "\(early.err)")
        let from = d.log.mark
        try await d.start()
        // The inbox's backlog is read once the daemon is ready: wait for the job to exist.
        try await d.log.wait(from: from, "job later accepted") { $0.contains("job accepted") && $0.contains("job.name=later") }
        #expect(try await d.batchctl(["wait", ref, "--timeout", "60"]).code == 0)
        #expect(read("\(work)/output/hello.txt") == "hello\n")
        let shown = try await d.batchctl(["show", ref, "--json"])
        let job = try #require(try await d.store().jobs(limit: 1).first)
        #expect((try JSONSerialization.jsonObject(with: Data(shown.out.utf8)) as? [String: Any])?["id"] as? String == job.id)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("SIGTERM interrupts tasks after the grace period; they run again after a restart without using a retry")
    func gracefulShutdown() async throws {
        let d = try DaemonHarness(slots: 2, shutdownGrace: "200ms", killGrace: "1s")
        try await d.start()
        let work = "\(d.root)/slow"
        try write("""
            name: slow
            tasks: {forEachInteger: {from: 1, to: 2}}
            command: sleep 300
            retries: 0
            """, work, "job.yaml")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(work)/job.yaml"]).code == 0)
        try await d.log.wait(from: from, count: 2, "two tasks started") { $0.contains("task started") }
        #expect(await d.signal(SIGTERM) == 0)
        let store = try d.store()
        let job = try #require(try await store.job("slow"))
        let interrupted = try await store.attempts(job.id).filter { $0.outcome == .interrupted }
        #expect(interrupted.count == 2)
        #expect(interrupted.allSatisfy { $0.counted == false })
        #expect(try await store.counts(job.id).pending == 2)
        // With retries: 0 the tasks still run again: an interruption is not the task's fault.
        // Marked before the start: the tasks may start before start() returns.
        let from2 = d.log.mark
        try await d.start()
        try await d.log.wait(from: from2, count: 2, "two tasks restarted") { $0.contains("task started") }
        #expect(try await d.batchctl(["cancel", "slow"]).code == 0)
        #expect(try await d.batchctl(["wait", "slow", "--timeout", "60"]).code == 1)
        #expect(await d.signal(SIGTERM) == 0)
    }
}
