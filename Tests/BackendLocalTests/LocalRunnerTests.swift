import BatchAccess
import BackendLocal
import BatchBackend
import BatchCore
import BatchSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Local runner: real processes under batchd-exec")
struct LocalRunnerTests {
    let dir: String
    let runner: LocalRunner

    init() throws {
        dir = try tempDirectory("runner")
        runner = LocalRunner(execPath: "\(binDirectory())/batchd-exec", contents: ContentStore(root: "\(dir)/store"), killGrace: 2)
    }

    func spec(_ command: String, timeout: Double? = nil, name: String = "a1") -> AttemptSpec {
        AttemptSpec(directory: "\(dir)/\(name)", command: command, env: ["PATH": "/usr/bin:/bin", "GREETING": "hi"], inputs: [], timeout: timeout)
    }

    func run(_ s: AttemptSpec, stop: AsyncEvent<StopReason> = AsyncEvent()) async throws -> TaskOutcome {
        try runner.prepare(s)
        let pid = try runner.start(s)
        return await runner.wait(pid: pid, spec: s, remaining: s.timeout, stop: stop)
    }

    func read(_ path: String) -> String {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    @Test func exitCodeOutputAndEnvironment() async throws {
        let s = spec("echo $GREETING from $(pwd); echo oops >&2; exit 3")
        #expect(try await run(s) == .exited(code: 3))
        #expect(read("\(s.directory)/stdout") == "hi from \(s.directory)/work\n")
        #expect(read("\(s.directory)/stderr") == "oops\n")
        #expect(LocalRunner.recordedOutcome(s.directory) == .exited(code: 3))
    }

    @Test("a log the command leaves empty is no file; a large one is kept whole; the finished attempt's leftovers go")
    func logFiles() async throws {
        let quiet = spec("true", name: "quiet")
        #expect(try await run(quiet) == .exited(code: 0))
        let left = try FileManager.default.contentsOfDirectory(atPath: quiet.directory).sorted()
        #expect(left == ["status", "work"])
        AttemptFiles.discardFinished(quiet.directory)
        #expect(!FileManager.default.fileExists(atPath: quiet.directory))

        let loud = spec("head -c 3000000 /dev/zero; echo done >&2", name: "loud")
        #expect(try await run(loud) == .exited(code: 0))
        let size = try FileManager.default.attributesOfItem(atPath: "\(loud.directory)/stdout")[.size] as? Int
        #expect(size == 3_000_000)
        #expect(read("\(loud.directory)/stderr") == "done\n")
        AttemptFiles.discardFinished(loud.directory)
        // Logs stay for `batchctl logs`; the status file (in the database now) goes.
        #expect(try FileManager.default.contentsOfDirectory(atPath: loud.directory).sorted() == ["stderr", "stdout"])
    }

    @Test func killedBySignal() async throws {
        #expect(try await run(spec("kill -9 $$")) == .signaled(signal: 9))
    }

    @Test("a timeout stops the whole process group, children included")
    func timeoutKillsGroup() async throws {
        let s = spec("sleep 300 & echo $! > child.pid; sleep 300", timeout: 0.5)
        #expect(try await run(s) == .timedOut(seconds: 0.5))
        let child = pid_t(read("\(s.directory)/work/child.pid").trimmingCharacters(in: .whitespacesAndNewlines))!
        // SIGKILL is delivered asynchronously: on a loaded machine the child
        // may still be dying when the attempt is over. It must be gone soon.
        _ = await ProcessControl.exitEvent(child).wait(timeout: 10)
        #expect(!ProcessControl.isAlive(child))
    }

    @Test("a command that ignores SIGTERM is killed after the grace period")
    func ignoresTerm() async throws {
        let r = LocalRunner(execPath: runner.execPath, contents: runner.contents, killGrace: 0.3)
        let s = spec("trap '' TERM; sleep 300", timeout: 0.3)
        try r.prepare(s)
        let pid = try r.start(s)
        #expect(await r.wait(pid: pid, spec: s, remaining: 0.3, stop: AsyncEvent()) == .timedOut(seconds: 0.3))
        #expect(!ProcessControl.isAlive(pid))
    }

    @Test func stopForCancelAndShutdown() async throws {
        let stop = AsyncEvent<StopReason>()
        let s = spec("sleep 300")
        try runner.prepare(s)
        let pid = try runner.start(s)
        stop.fire(.cancel)
        #expect(await runner.wait(pid: pid, spec: s, remaining: nil, stop: stop) == .cancelled)
        let stop2 = AsyncEvent<StopReason>()
        stop2.fire(.shutdown)
        let s2 = spec("sleep 300", name: "a2")
        try runner.prepare(s2)
        let pid2 = try runner.start(s2)
        #expect(await runner.wait(pid: pid2, spec: s2, remaining: nil, stop: stop2) == .interrupted)
    }

    @Test("an attempt outlives its starter and is found again by its directory")
    func adoption() async throws {
        let s = spec("read line < fifo; exit 7")
        try runner.prepare(s)
        mkfifo("\(s.directory)/work/fifo", 0o600)
        let pid = try runner.start(s)
        // Opening the FIFO for writing returns once the command has opened it
        // for reading, so batchd-exec has written its pid file by then.
        let fd = open("\(s.directory)/work/fifo", O_WRONLY)
        defer { close(fd) }
        // A restarted daemon knows only the directory: it finds the live supervisor by its pid file.
        let found = LocalRunner.livePid(s.directory, recorded: nil)
        #expect(found == pid)
        #expect(LocalRunner.recordedOutcome(s.directory) == nil)
        let waiting = Task { await runner.wait(pid: found!, spec: s, remaining: nil, stop: AsyncEvent()) }
        _ = write(fd, "go\n", 3)
        #expect(await waiting.value == .exited(code: 7))
        #expect(LocalRunner.livePid(s.directory, recorded: Int(pid)) == nil)
    }

    @Test func missingProgramIsRecorded() async throws {
        #expect(try await run(spec("exec /nonexistent/program")) == .exited(code: 127))
    }

    @Test("inputs are stored once and hard-linked into each task")
    func contentStore() throws {
        let src = "\(dir)/input.txt"
        try "data".write(toFile: src, atomically: true, encoding: .utf8)
        let first = try runner.contents.put(src)
        let second = try runner.contents.put(src)
        #expect(first.copied && !second.copied)
        #expect(first.sha256 == "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7")
        try runner.contents.place(first.sha256, at: "\(dir)/t1/work/sub/input.txt")
        try runner.contents.place(first.sha256, at: "\(dir)/t2/work/input.txt")
        var a = stat(), b = stat()
        stat("\(dir)/t1/work/sub/input.txt", &a)
        stat("\(dir)/t2/work/input.txt", &b)
        #expect(a.st_ino == b.st_ino)
        #expect(a.st_mode & 0o222 == 0)  // read-only: a task cannot corrupt the store
    }
}

@Suite("Output collection never leaves the task's directory or the destination")
struct OutputCollectorTests {
    /// The root policy: every permission check passes, the refusals still apply.
    let policy = AccessPolicy(submitter: Submitter(uid: 0, gid: 0, groups: [0], name: "root"), protected: [])

    func collect(_ dir: String, _ patterns: [String], to dest: String) throws -> OutputCollector.Found {
        let work = try OutputCollector.openDirectory(dir, "work")
        defer { close(work) }
        let found = try OutputCollector.find(in: work, patterns: patterns)
        let destination = try Destination(path: dest, policy: policy, jobID: "J1")
        for f in found.files {
            let fd = try OutputCollector.open(f, in: work)
            defer { close(fd) }
            _ = try destination.write(f, from: fd)
        }
        return found
    }

    @Test func collectsMatchesAtomically() throws {
        let dir = try tempDirectory("out")
        let work = "\(dir)/work"
        try FileManager.default.createDirectory(atPath: "\(work)/sub", withIntermediateDirectories: true)
        try "1".write(toFile: "\(work)/a.out", atomically: true, encoding: .utf8)
        try "2".write(toFile: "\(work)/sub/b.out", atomically: true, encoding: .utf8)
        try "3".write(toFile: "\(work)/c.log", atomically: true, encoding: .utf8)
        let found = try collect(dir, ["*.out", "sub/*.out"], to: "\(dir)/dest")
        #expect(found.files == ["a.out", "sub/b.out"])
        #expect(FileManager.default.contents(atPath: "\(dir)/dest/sub/b.out") == Data("2".utf8))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/dest").filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)
    }

    @Test func symlinksAreNeverFollowed() throws {
        let dir = try tempDirectory("out")
        let work = "\(dir)/work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try "mine".write(toFile: "\(work)/real.out", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: "\(work)/secret.out", withDestinationPath: "/etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: "\(work)/inside.out", withDestinationPath: "real.out")
        try FileManager.default.createSymbolicLink(atPath: "\(work)/etc", withDestinationPath: "/etc")
        let found = try collect(dir, ["*.out", "etc/passwd", "**/*"], to: "\(dir)/dest")
        #expect(found.files == ["real.out"])
        #expect(Set(found.symlinks) == ["secret.out", "inside.out", "etc"])
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/dest/secret.out"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/dest/etc"))
    }

    @Test func aWorkingDirectorySwappedForASymlinkGivesNothing() throws {
        let dir = try tempDirectory("out")
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/work", withDestinationPath: "/etc")
        #expect(throws: FileOpError.self) { try collect(dir, ["passwd", "*"], to: "\(dir)/dest") }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/dest/passwd"))
    }

    @Test func aSymlinkedDirectoryInTheDestinationIsRefusedBeforeAnythingIsMade() throws {
        let dir = try tempDirectory("out")
        let work = "\(dir)/work"
        try FileManager.default.createDirectory(atPath: "\(work)/sub/deeper", withIntermediateDirectories: true)
        try "x".write(toFile: "\(work)/sub/deeper/f.out", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "\(dir)/dest", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(dir)/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/dest/sub", withDestinationPath: "\(dir)/elsewhere")
        #expect(throws: AccessError.self) { try collect(dir, ["**/*.out"], to: "\(dir)/dest") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/elsewhere").isEmpty)
        let destination = try Destination(path: "\(dir)/dest", policy: policy, jobID: "J1")
        let fd = open("/dev/null", O_RDONLY)
        defer { close(fd) }
        #expect(throws: AccessError.self) { try destination.write("../f.out", from: fd) }
    }

    @Test func tempFilesOfAJobAreSweptAndOnlyThose() throws {
        let dir = try tempDirectory("out")
        try FileManager.default.createDirectory(atPath: "\(dir)/dest/a/b", withIntermediateDirectories: true)
        let mine = Destination.tempName(jobID: "J1", relative: "a/b/x.txt")
        let other = Destination.tempName(jobID: "J2", relative: "x.txt")
        for path in ["\(dir)/dest/a/b/\(mine)", "\(dir)/dest/\(other)", "\(dir)/dest/keep.txt"] {
            try "t".write(toFile: path, atomically: false, encoding: .utf8)
        }
        #expect(Destination.sweep("\(dir)/dest", jobID: "J1", as: .current()) == 1)
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/dest/a/b/\(mine)"))
        #expect(FileManager.default.fileExists(atPath: "\(dir)/dest/\(other)"))
        #expect(FileManager.default.fileExists(atPath: "\(dir)/dest/keep.txt"))
    }
}
