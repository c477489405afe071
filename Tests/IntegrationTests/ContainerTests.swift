import BatchCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Jobs that name an image (issue 25), on the local backend, with the real
/// podman and an image the tests make (scripts/container-image.sh).
@Suite("Container jobs run in their image", .serialized)
struct ContainerTests {
    static let image = "batchd.test/batchd-test:1"
    static let conf = "\(repoRoot)/etc/batchd/containers.conf"

    /// The engine's own view, with the containers.conf the daemon uses.
    static func podman(_ args: [String]) async throws -> Run {
        try await runProcess("/usr/bin/env", ["CONTAINERS_CONF=\(conf)", "podman"] + args)
    }

    /// A daemon whose engine is podman with the shipped containers.conf,
    /// and the tests' image made if the engine lacks it.
    static func daemon(slots: Int = 2) async throws -> DaemonHarness {
        let made = try await runProcess("/bin/bash", ["\(repoRoot)/scripts/container-image.sh", conf], timeout: 300)
        #expect(made.code == 0, "the test image: \(made.err)")
        return try DaemonHarness(slots: slots, extra: "containers: {environment: {CONTAINERS_CONF: \(conf)}}")
    }

    /// Waits until each running attempt of job `id` has made `started` in
    /// its work directory: its container is up, not only its engine client.
    static func containersUp(_ d: DaemonHarness, _ id: String, count: Int) async throws -> [String] {
        let dirs = try await d.store().attempts(id).map(\.directory)
        #expect(dirs.count == count, "\(dirs)")
        #expect(await waitForFiles(dirs.map { "\($0)/work/started" }, timeout: 60), "the containers did not start")
        return dirs
    }

    /// Submits `manifest` (two of whose tasks run at once, each making
    /// `started` once up) to a started daemon; the job's id and the two
    /// running attempts' directories, once their containers are up.
    static func submitTwoRunning(_ d: DaemonHarness, _ name: String, _ manifest: String) async throws -> (id: String, dirs: [String]) {
        let dir = "\(d.root)/p"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try manifest.write(toFile: "\(dir)/\(name).yaml", atomically: true, encoding: .utf8)
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "\(dir)/\(name).yaml"]).code == 0)
        try await d.log.wait(from: from, count: 2, timeout: 60, "two tasks started") { $0.contains("task started") }
        let id = try #require(try await d.store().jobs(limit: 1).first).id
        return (id, try await containersUp(d, id, count: 2))
    }

    /// Each word and its count, most first, then by word: what the
    /// example's pipeline prints for the top three.
    static func top3(_ text: String) -> String {
        var counts: [String: Int] = [:]
        for word in text.lowercased().split(whereSeparator: { !($0.isASCII && ($0.isLetter || $0.isNumber)) }) { counts[String(word), default: 0] += 1 }
        return counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(3).map { "\($0.key)\t\($0.value)\n" }.joined()
    }

    @Test("the wordcount example in the image: right counts, and the task saw the image's files, not the host's, as its submitter",
          .timeLimit(.minutes(3)))
    func wordcountInTheImage() async throws {
        let d = try await Self.daemon()
        // As root, the job is alice's: a root daemon (a rootful engine) runs it as her.
        let users = TestUsers.all
        let submitter = users?.alice
        if let users {
            d.group = users.service.gid
            chmod(d.root, 0o755)
            // The service's group (alice is in it) reaches the inbox and the socket, as under the system unit.
            for (dir, mode) in [(d.state, 0o750), ("\(d.root)/run", 0o750), (d.inbox, 0o1770), ("\(d.inbox)/rejected", 0o1770)] as [(String, mode_t)] {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                chmod(dir, mode)
                lchown(dir, 0, users.service.gid)
            }
        }
        try await d.start()
        let example = "\(d.root)/wordcount"
        try FileManager.default.copyItem(atPath: "\(repoRoot)/examples/wordcount-container", toPath: example)
        // Proof of where it ran: the image's file, and none of the host's.
        try """
            name: inside
            container: {image: \(Self.image)}
            tasks: [{id: look}]
            command: "cat /etc/batchd-image > seen; id -u >> seen; pwd >> seen; test -e \(d.state)/batchd.db && echo HOST-STATE >> seen; test -e \(repoRoot)/Package.swift && echo HOST-REPO >> seen; true"
            outputs: [seen]
            """.write(toFile: "\(example)/inside.yaml", atomically: true, encoding: .utf8)
        if let submitter { TestUsers.give(example, to: submitter, recursive: true) }
        // plan says which image, and where it would be pulled.
        let plan = try await d.batchctl(["plan", "\(example)/job.yaml"], as: submitter)
        #expect(plan.code == 0 && plan.out.contains("image     \(Self.image) · --network=none --memory=256m")
                && plan.out.contains("pulled on this machine by podman, once, before the job's first task"), "\(plan.out)\(plan.err)")
        for job in ["job.yaml", "inside.yaml"] {
            let r = try await d.batchctl(["submit", "\(example)/\(job)", "--wait"], timeout: 120, as: submitter)
            #expect(r.code == 0, "\(job): \(r.out)\n\(r.err)")
        }
        for i in 0..<3 {
            let text = try #require(read("\(example)/texts/taskdata\(i).txt"))
            #expect(read("\(example)/output/taskdata\(i).top3") == Self.top3(text), "taskdata\(i)")
        }
        let seen = try #require(read("\(example)/output/seen"))
        let uid = submitter?.uid ?? geteuid()
        let lines = seen.split(separator: "\n").map(String.init)
        #expect(lines.first == "batchd-test image", "the image's own file: \(seen)")
        #expect(lines.dropFirst().first == "\(uid)", "as its submitter, uid \(uid): \(seen)")
        #expect(lines.dropFirst(2).first?.hasPrefix(d.state) == true && lines.dropFirst(2).first?.hasSuffix("/work") == true,
                "in its own directory, at its own path: \(seen)")
        #expect(!seen.contains("HOST-"), "the host's files are not there: \(seen)")
        if let submitter {
            var st = stat()
            #expect(stat("\(example)/output/seen", &st) == 0 && st.st_uid == submitter.uid, "the output is the submitter's")
        }
        let show = try await d.batchctl(["show", "inside"], as: submitter)
        #expect(show.out.contains("image") && show.out.contains(Self.image), "\(show.out)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("cancel stops the job's containers, and none is left in podman ps -a", .timeLimit(.minutes(3)))
    func cancelLeavesNoContainer() async throws {
        let d = try await Self.daemon(slots: 2)
        try await d.start()
        let (id, _) = try await Self.submitTwoRunning(d, "long",
            "name: long\ncontainer: {image: \(Self.image)}\ntasks: {forEachInteger: {from: 1, to: 3}}\ncommand: touch started; sleep 300\n")
        let running = try await Self.podman(["ps", "--filter", "label=batchd.job=\(id)", "--format", "{{.Names}}"])
        #expect(running.out.split(separator: "\n").count == 2, "two containers run: \(running.out)")
        #expect(try await d.batchctl(["cancel", id]).code == 0)
        let waited = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 90)
        #expect(waited.code != 0, "a cancelled job is not a success")
        #expect(try await d.store().job(id)?.phase == .cancelled)
        let left = try await Self.podman(["ps", "--all", "--filter", "label=batchd.job=\(id)", "--format", "{{.Names}}"])
        #expect(left.code == 0 && left.out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "left: \(left.out)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a daemon killed while container tasks run adopts them when it comes back: each ran once", .timeLimit(.minutes(3)))
    func killedDaemonAdopts() async throws {
        let d = try await Self.daemon(slots: 2)
        try await d.start()
        // The tasks wait for the test's word, so they are surely running when the daemon dies.
        let (id, dirs) = try await Self.submitTwoRunning(d, "adopt", """
            name: adopt
            container: {image: \(Self.image)}
            tasks: {forEachInteger: {from: 1, to: 2}}
            command: "echo {i} > n{i}.txt; touch started; while [ ! -e go ]; do sleep 0.1; done"
            outputs: ["*.txt"]
            """)
        let dir = "\(d.root)/p"
        await d.signal(SIGKILL)
        let alive = try await Self.podman(["ps", "--filter", "label=batchd.job=\(id)", "--format", "{{.Names}}"])
        #expect(alive.out.split(separator: "\n").count == 2, "the containers outlive the daemon: \(alive.out)")
        let again = d.log.mark
        try await d.start()
        try await d.log.wait(from: again, count: 2, timeout: 60, "both adopted") { $0.contains("adopted a running task") }
        // The word, in each task's work directory (mounted in its container).
        for dir in dirs { _ = FileManager.default.createFile(atPath: "\(dir)/work/go", contents: nil) }
        let waited = try await d.batchctl(["wait", id, "--timeout", "60"], timeout: 90)
        #expect(waited.code == 0, "\(waited.out)\(waited.err)")
        let attempts = try await d.store().attempts(id)
        #expect(attempts.count == 2, "one attempt each: \(attempts.map { ($0.idx, $0.attempt) })")
        #expect(!d.log.lines[again...].contains { $0.contains("task started") }, "nothing started again")
        #expect(read("\(dir)/output/n1.txt") == "1\n" && read("\(dir)/output/n2.txt") == "2\n")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
