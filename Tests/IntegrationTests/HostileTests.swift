import BatchStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Hostile input is normal input: the corpus in Tests/Fixtures/hostile (and
/// the cases too big or too special to keep as files) dropped into a real
/// daemon, which stays up, answers each with its reason, and still runs the
/// next good job.
@Suite("Hostile input", .serialized)
struct HostileTests {
    enum Outcome: String { case rejected, succeeded, failed, refused }

    struct Case {
        var name: String
        var bytes: [UInt8]
        var outcome: Outcome
        var needle: String
        /// Made in the inbox as something other than a dropped file.
        var special: Special? = nil
    }

    enum Special { case fifo, symlink(String), directory, hardlink(String) }

    /// The corpus's files, with @WORK@ and @STATE@ filled in.
    static func fixtureCases(work: String, state: String) throws -> [Case] {
        let dir = "\(repoRoot)/Tests/Fixtures/hostile"
        let expected = try #require(read("\(dir)/EXPECTED"))
        return try expected.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            let text = try #require(FileManager.default.contents(atPath: "\(dir)/\(f[0])"))
            let filled = String(decoding: text, as: UTF8.self).replacingOccurrences(of: "@WORK@", with: work)
                .replacingOccurrences(of: "@STATE@", with: state)
            return Case(name: f[0], bytes: Array(filled.utf8), outcome: try #require(Outcome(rawValue: f[1])), needle: f[2])
        }
    }

    /// Cases made here: too big, too binary, or not files at all.
    static func generatedCases(work: String) -> [Case] {
        let one = Array("tasks: [{command: \"true\"}]\n".utf8)
        let longName = String(repeating: "l", count: 245) + ".yaml"
        let longBad = String(repeating: "m", count: 245) + ".yaml"
        var fourMiB = Array("name: g16\n".utf8) + one
        let comment = Array(("#" + String(repeating: " ", count: 1022) + "\n").utf8)
        while fourMiB.count + comment.count <= 4 << 20 { fourMiB += comment }
        fourMiB += [UInt8](repeating: UInt8(ascii: "#"), count: (4 << 20) - fourMiB.count)
        return [
            Case(name: "g01-50MB.yaml", bytes: Array("name: g01\n".utf8) + [UInt8](repeating: UInt8(ascii: "#"), count: 50 << 20),
                 outcome: .rejected, needle: "a manifest may have at most 4194304"),
            Case(name: "g02-1MB-key.yaml", bytes: Array("name: g02\n".utf8) + [UInt8](repeating: UInt8(ascii: "k"), count: 1_000_000) + Array(": 1\n".utf8) + one,
                 outcome: .rejected, needle: "not valid YAML"),
            Case(name: "g03-deep.yaml", bytes: Array("name: g03\nx: ".utf8) + [UInt8](repeating: UInt8(ascii: "["), count: 100_000) + [0x0A],
                 outcome: .rejected, needle: "nested"),
            Case(name: "g04-utf16.yaml", bytes: [0xFF, 0xFE] + Array("name: g04\n".utf8).flatMap { [$0, 0] }, outcome: .rejected, needle: "UTF-16"),
            Case(name: "g05-latin1.yaml", bytes: Array("name: g05\ncommand: echo caf".utf8) + [0xE9] + Array("\n".utf8) + one,
                 outcome: .rejected, needle: "not valid UTF-8"),
            Case(name: "g06-2MB-line.yaml", bytes: Array("name: g06\n# ".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 2 << 20) + [0x0A] + one,
                 outcome: .rejected, needle: "longer than 1048576 bytes"),
            Case(name: "g07-raw-nul.yaml", bytes: Array("name: g07\ncommand: echo a".utf8) + [0] + Array("b\n".utf8) + one,
                 outcome: .rejected, needle: "NUL byte"),
            Case(name: "g08-fifo.yaml", bytes: [], outcome: .refused, needle: "FIFO", special: .fifo),
            Case(name: "g09-link.yaml", bytes: [], outcome: .refused, needle: "symbolic link", special: .symlink("/etc/shadow")),
            Case(name: "g10-dir.yaml", bytes: [], outcome: .refused, needle: "directory", special: .directory),
            Case(name: "g11-hardlink.yaml", bytes: [], outcome: .refused, needle: "hard links", special: .hardlink("\(work)/valid.yaml")),
            Case(name: longName, bytes: Array("name: g12\n".utf8) + one, outcome: .succeeded, needle: ""),
            Case(name: longBad, bytes: Array("name: g13\ncomand: x\n".utf8) + one, outcome: .rejected, needle: "unknown key 'comand'"),
            Case(name: "g14-\u{1b}[2J\u{7}.yaml", bytes: Array("name: g14\n".utf8) + one, outcome: .succeeded, needle: ""),
            Case(name: "g15-many-problems.yaml", bytes: Array(("name: g15\n" + (0..<60).map { "k\($0): 1\n" }.joined()).utf8) + one,
                 outcome: .rejected, needle: "and 10 more problems"),
            Case(name: "g16-exactly-4MiB.yaml", bytes: fourMiB, outcome: .succeeded, needle: ""),
        ]
    }

    /// The files the corpus names under @WORK@.
    static func makeWork(_ root: String, state: String) throws -> String {
        let work = "\(root)/work"
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(work)/files", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(work)/adir", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(work)/readonly", withIntermediateDirectories: true)
        try "secretcolumn\nx; touch PWNED\n$(touch PWNED2)\n`touch PWNED3`\n".write(toFile: "\(work)/rows-inject.csv", atomically: true, encoding: .utf8)
        try "{\"a\": \"x\\u0000y\"}\n".write(toFile: "\(work)/rows-nul.jsonl", atomically: true, encoding: .utf8)
        try ("a\n" + String(repeating: "v", count: 70_000) + "\n").write(toFile: "\(work)/rows-long.csv", atomically: true, encoding: .utf8)
        try "{\"h\": \"id,v\", \"v\": \"0,a\"}\n{\"h\": \"other,header\", \"v\": \"1,b\"}\n{\"h\": \"id,v\", \"v\": \"2,c\"}\n"
            .write(toFile: "\(work)/m05-rows.jsonl", atomically: true, encoding: .utf8)
        try "hello\n".write(toFile: "\(work)/files/a;echo INJECTED >x;.txt", atomically: true, encoding: .utf8)
        try "plain\n".write(toFile: "\(work)/files/normal.txt", atomically: true, encoding: .utf8)
        try "name: valid\ntasks: [{command: \"true\"}]\n".write(toFile: "\(work)/valid.yaml", atomically: true, encoding: .utf8)
        // Secrets: one at the size bound, one past it, one with a NUL byte.
        try String(repeating: "a", count: 65536).write(toFile: "\(work)/secret-64k", atomically: true, encoding: .utf8)
        try String(repeating: "a", count: 65537).write(toFile: "\(work)/secret-big", atomically: true, encoding: .utf8)
        try "x\u{0}y".write(toFile: "\(work)/secret-nul", atomically: true, encoding: .utf8)
        mkfifo("\(work)/fifo", 0o644)
        try fm.createSymbolicLink(atPath: "\(work)/link-shadow", withDestinationPath: "/etc/shadow")
        try fm.createSymbolicLink(atPath: "\(work)/link-db", withDestinationPath: "\(state)/batchd.db")
        return work
    }

    /// Puts a case into the inbox as its submitter would: written under a
    /// dot-name, owned by them, then renamed (or made in place, when special).
    static func drop(_ c: Case, into inbox: String, owner: TestUser?) throws {
        let path = "\(inbox)/\(c.name)"
        switch c.special {
        case .fifo?: mkfifo(path, 0o644)
        case .symlink(let target)?: symlink(target, path)
        case .directory?: mkdir(path, 0o755)
        case .hardlink(let source)?: link(source, path)
        case nil:
            let tmp = "\(inbox)/.drop-\(UUID().uuidString)"
            guard FileManager.default.createFile(atPath: tmp, contents: Data(c.bytes)) else { throw HarnessError(description: "cannot write \(tmp)") }
            if let owner { TestUsers.give(tmp, to: owner) }
            rename(tmp, path)
        }
        if let owner, c.special != nil { TestUsers.give(path, to: owner) }
    }

    /// How the daemon's log writes a file name.
    static func logged(_ name: String) -> String {
        var out = ""
        for u in name.unicodeScalars {
            if u.value < 0x20 || u.value == 0x7F { out += "\\u{\(String(u.value, radix: 16))}" } else { out.unicodeScalars.append(u) }
        }
        return out
    }

    /// Every file under `dir` (symlinks not followed).
    static func files(under dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String]) ?? []
    }

    @Test("the hostile corpus: each case ends as its fixture says, the daemon stays up and small, a good job runs after",
          .timeLimit(.minutes(10)))
    func corpus() async throws {
        let d = try DaemonHarness(slots: 4)
        try await d.start()
        // When the tests run as root, the cases are dropped by an ordinary
        // user (the manifest's owner is its submitter): the daemon reads for
        // them only what they may.
        let owner = TestUsers.all?.alice
        if owner == nil { print("hostile corpus: not root; cases are dropped as the current user") }
        chmod(d.root, 0o755)
        let work = try Self.makeWork(d.root, state: d.state)
        if let owner {
            TestUsers.give(work, to: owner, recursive: true)
            lchown("\(work)/readonly", 0, 0)
        } else {
            chmod("\(work)/readonly", 0o555)
        }
        let cases = try Self.fixtureCases(work: work, state: d.state) + Self.generatedCases(work: work)
        #expect(cases.count >= 60)
        for c in cases { try Self.drop(c, into: d.inbox, owner: owner) }

        // Each case is answered in the log: accepted, rejected or refused.
        for c in cases {
            let file = "file=\(Self.logged(c.name))"
            try await d.log.wait(timeout: 120, "the answer to \(c.name)") { line in
                line.contains(file) && (line.contains("job accepted") || line.contains("manifest rejected") || line.contains("inbox entry refused"))
            }
        }
        #expect(d.isRunning, "the daemon died")
        let store = try d.store()
        for c in cases {
            let what = "\(c.name) (\(c.outcome))"
            let errorPath = "\(d.inbox)/rejected/\(c.name.utf8.count > 249 ? String(c.name.prefix(243)) + "~.yaml" : c.name).error"
            switch c.outcome {
            case .rejected, .refused:
                let text = try #require(read(errorPath), "no .error for \(what)")
                #expect(text.contains(c.needle), "\(what): \(text)")
                #expect(!text.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{7}" || $0 == "\u{0}" }, "raw control bytes in the .error of \(what)")
                let st = try FileManager.default.attributesOfItem(atPath: errorPath)
                #expect((st[.posixPermissions] as? Int ?? 0) & 0o077 == 0, "\(what): the .error is readable by others")
                if c.outcome == .rejected {
                    #expect(FileManager.default.fileExists(atPath: String(errorPath.dropLast(6))), "\(what): the manifest was not kept")
                }
                #expect(!text.contains("root:"), "\(what): a root-only file's content reached the .error")
                #expect(!text.contains("secretcolumn"), "\(what): a row file's content reached the .error")
            case .succeeded, .failed:
                let job = try #require(try await store.jobs(limit: 500).first { $0.sourceFile == c.name }, "no job for \(what)")
                let w = try await d.batchctl(["wait", job.id, "--timeout", "120"])
                #expect(w.code == (c.outcome == .succeeded ? 0 : 1), "\(what): \(w.out) \(w.err)")
                if c.outcome == .failed {
                    let details = try await store.tasks(job.id).compactMap { $0.detail ?? $0.exitCode.map { "exited with code \($0)" } }
                        .joined(separator: "\n")
                    // "A || B": A when the task runs as another user (the
                    // cases' owner), B when as the daemon's own.
                    let needles = c.needle.components(separatedBy: " || ")
                    let needle = owner != nil || needles.count == 1 ? needles[0] : needles[1]
                    #expect(details.contains(needle), "\(what): \(details)")
                }
            }
        }
        // What the tasks were handed never ran as code.
        let everything = Self.files(under: d.root)
        #expect(!everything.contains { $0.hasSuffix("PWNED") || $0.hasSuffix("PWNED2") || $0.hasSuffix("PWNED3") || $0.hasSuffix("/x") })
        #expect(read("\(work)/out-q06/out-0.txt") == "x; touch PWNED\n")
        #expect(read("\(work)/out-q06/out-1.txt") == "$(touch PWNED2)\n")
        #expect(read("\(work)/out-q07/a;echo INJECTED >x;.count")?.hasPrefix("6 ") == true)
        #expect(read("\(work)/out-t20/out.txt") == "x'; touch PWNED; echo '\n", "a parameter's value reached the task as text")
        #expect(!FileManager.default.fileExists(atPath: "\(work)/out-k01/passwd"))
        #expect(Self.files(under: "\(work)/out-k02") == ["mine.txt"])
        #expect(Self.files(under: "\(work)/out-k03") == ["mine.txt"])
        #expect(read("\(work)/out-m05/merged.csv") == "id,v\n0,a\n2,c\n", "the task whose header differs is left out")
        // No raw control byte from a name or a manifest reached the log.
        #expect(!d.log.lines.contains { $0.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{7}" } })
        // Small, and still serving.
        let peak = try #require(d.peakRSS)
        print("hostile corpus: \(cases.count) cases, daemon peak RSS \(peak >> 20) MiB")
        #expect(peak < 200 << 20, "peak RSS \(peak >> 20) MiB")
        try write("name: after\ntasks: [{command: 'true'}]\n", d.root, "after.yaml")
        let after = try await d.batchctl(["submit", "\(d.root)/after.yaml", "--wait", "--timeout", "60"])
        #expect(after.code == 0, "\(after.out) \(after.err)")
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }
}
