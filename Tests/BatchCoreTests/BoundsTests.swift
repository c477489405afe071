import BatchCore
import Foundation
import Testing

/// Every number and size a manifest carries is bounded and checked; at the
/// bound it is accepted, past it refused with the field and the limit.
@Suite("Manifest bounds")
struct BoundsTests {
    func parse(_ yaml: String) throws(ManifestError) -> Manifest { try ManifestParser.parse(yaml, file: "job.yaml") }

    func refused(_ yaml: String, _ needle: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try parse(yaml)
            Issue.record("accepted: \(yaml.prefix(200))", sourceLocation: sourceLocation)
        } catch {
            #expect(error.description.contains(needle), "\(error.description.prefix(400))", sourceLocation: sourceLocation)
        }
    }

    func range(_ from: String, _ to: String, _ step: String? = nil) -> String {
        "name: r\ncommand: echo {i}\ntasks:\n  forEachInteger: {from: \(from), to: \(to)\(step.map { ", step: \($0)" } ?? "")}\n"
    }

    @Test("the poison pill range is refused, not overflowed")
    func integerRange() throws {
        refused(range("-9223372036854775808", "9223372036854775807"), "tasks.forEachInteger.from: must be between")
        refused(range("0", "9007199254740992"), "tasks.forEachInteger.to: must be between -9007199254740991 and 9007199254740991")
        refused(range("-9007199254740991", "9007199254740991"), "at most 1000000 are allowed")
        refused(range("1", "10", "0"), "step: must be between 1 and")
        refused(range("1", "10", "99999999999999999999"), "step: must be between")
        refused(range("1", "10", "1.5"), "expected a whole number")
        let atBound = try parse(range("-9007199254740991", "9007199254740991", "9007199254740991"))
        #expect(atBound.tasks == .forEachInteger(from: -9007199254740991, to: 9007199254740991, step: 9007199254740991, id: nil))
        #expect(try parse(range("1", "1000000")).tasks == .forEachInteger(from: 1, to: 1_000_000, step: 1, id: nil))
        refused(range("0", "1000000"), "makes 1000001 tasks")
    }

    @Test("durations are plain, finite and at most a year", arguments: [
        "1e308", "1e3", String(repeating: "9", count: 310), "inf", "nan", "0x10", "-5", "1h-5m", "366d", "31536001",
        "1.0000000001s", "0", "0ms", "1s1s1s1s1s1s1s1s1s",
    ])
    func durations(_ text: String) {
        refused("name: d\ntimeout: \(text)\ntasks: [{command: 'true'}]\n", "timeout:")
    }

    @Test func durationsAtTheBound() throws {
        #expect(try parse("name: d\ntimeout: 365d\ntasks: [{command: 'true'}]\n").timeoutSeconds == 365 * 86400)
        #expect(try parse("name: d\ntimeout: 1ms\ntasks: [{command: 'true'}]\n").timeoutSeconds == 0.001)
        #expect(try parse("name: d\ntimeout: 1h30m\ntasks: [{command: 'true'}]\n").timeoutSeconds == 5400)
        #expect(HumanDuration.format(1e308) == "1e+308s")
    }

    @Test func numbersOfThePoolAndLimits() throws {
        let base = "name: p\ntasks: [{command: 'true'}]\n"
        refused(base + "retries: 101\n", "retries: must be between 0 and 100")
        refused(base + "retries: -1\n", "retries: must be between 0 and 100")
        refused(base + "pool: {slotsPerNode: 257}\n", "pool.slotsPerNode: must be between 1 and 256")
        refused(base + "pool: {dedicatedNodes: 10001}\n", "pool.dedicatedNodes: must be between 0 and 10000")
        refused(base + "pool: {spotNodes: 99999999999999999999999}\n", "pool.spotNodes: must be between 0 and 10000")
        refused(base + "limits: {coreHours: 1e9}\n", "limits.coreHours: expected a number")
        refused(base + "limits: {coreHours: 1000000001}\n", "limits.coreHours: must be at most")
        refused(base + "version: 99999999999999999999\n", "version: must be between")
        let ok = try parse(base + "retries: 100\npool: {slotsPerNode: 256, dedicatedNodes: 10000}\nlimits: {coreHours: 1000000000}\n")
        #expect(ok.retries == 100 && ok.pool.slotsPerNode == 256 && ok.limits.coreHours == 1e9)
    }

    @Test("the Slurm fields of pool: names that never read as options, CPUs, memory and the throttle at and past their bounds")
    func slurmPoolFields() throws {
        let base = "name: p\ntasks: [{command: 'true'}]\n"
        refused(base + "pool: {cpusPerTask: 1025}\n", "pool.cpusPerTask: must be between 1 and 1024")
        refused(base + "pool: {maxRunning: 1000001}\n", "pool.maxRunning: must be between 1 and 1000000")
        refused(base + "pool: {memory: 16385G}\n", "pool.memory")
        refused(base + "pool: {memory: 0M}\n", "pool.memory")
        refused(base + "pool: {memory: 1.5G}\n", "pool.memory")
        refused(base + "pool: {memory: 4GB}\n", "pool.memory")
        refused(base + "pool: {memory: 1234567890M}\n", "pool.memory")
        refused(base + "pool: {partition: '--wrap=x'}\n", "is not a Slurm partition name")
        refused(base + "pool: {qos: 'a b'}\n", "is not a Slurm qos name")
        refused(base + "pool: {account: \"\(String(repeating: "a", count: 65))\"}\n", "is not a Slurm account name")
        let ok = try parse(base + "pool: {partition: gpu.long-1, account: lab_x, qos: normal, cpusPerTask: 1024, memory: 16T, maxRunning: 1000000}\n")
        #expect(ok.pool.partition == "gpu.long-1" && ok.pool.account == "lab_x" && ok.pool.qos == "normal")
        #expect(ok.pool.cpusPerTask == 1024 && ok.pool.memoryMiB == 16 << 20 && ok.pool.maxRunning == 1_000_000)
        #expect(try parse(base + "pool: {memory: 512m}\n").pool.memoryMiB == 512)
        #expect(try parse(base + "pool: {memory: 4G}\n").pool.memoryMiB == 4096)
    }

    @Test func sizesOfTheFileLinesKeysAndNesting() throws {
        let big = [UInt8](repeating: UInt8(ascii: "#"), count: Bounds.manifestBytes + 1)
        #expect(throws: ManifestError.self) { try ManifestParser.parse(bytes: big, file: "big.yaml") }
        refused("name: l\n# " + String(repeating: "x", count: Bounds.lineBytes) + "\ntasks: [{command: 'true'}]\n", "longer than")
        refused("name: k\n" + String(repeating: "k", count: 257) + ": 1\ntasks: [{command: 'true'}]\n", "keys may have at most 256")
        refused("name: n\ntasks: [{command: 'true'}]\nenv: " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "\n",
                "nested more than 32 levels")
        refused("name: n\nx: " + String(repeating: "[", count: 2000) + String(repeating: "]", count: 2000) + "\n", "nested")
        // Many problems: the first 50 are listed, the rest counted.
        let many = "name: m\ntasks: [{command: 'true'}]\n" + (0..<80).map { "bad\($0): 1\n" }.joined()
        do { _ = try parse(many) } catch {
            #expect(error.issues.count == 51)
            #expect(error.description.contains("and 30 more problems"))
        }
    }

    @Test func encodingsAndControlCharacters() throws {
        let utf16: [UInt8] = [0xFF, 0xFE] + Array("name: x\n".utf8).flatMap { [$0, 0] }
        #expect(throws: ManifestError.self) { try ManifestParser.parse(bytes: utf16, file: "u.yaml") }
        let bad: [UInt8] = Array("name: x\ncommand: echo ".utf8) + [0xC3, 0x28] + Array("\ntasks: [{}]\n".utf8)
        do { _ = try ManifestParser.parse(bytes: bad, file: "b.yaml") } catch {
            #expect(error.description == "b.yaml:2:1: the file is not valid UTF-8 text (save it as UTF-8)")
        }
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("name: bom\ntasks: [{command: 'true'}]\n".utf8)
        #expect(try ManifestParser.parse(bytes: bom, file: "bom.yaml").name == "bom")
        refused("name: c\ncommand: \"echo \\0 hi\"\ntasks:\n  forEachInteger: {from: 1, to: 2}\n", "contains a NUL byte")
        refused("name: c\ncommand: \"echo \\e[31m red\"\ntasks:\n  forEachInteger: {from: 1, to: 2}\n", "control character \\u{1b}")
        refused("name: c\ncommand: \"echo \\u202E txt.exe\"\ntasks:\n  forEachInteger: {from: 1, to: 2}\n", "control character")
        refused("name: c\ntasks: [{command: 'true'}]\noutputs: {destination: \"out\\tput\"}\n", "outputs.destination: contains the control character \\t")
        // Newlines and tabs are fine in a command.
        #expect(try parse("name: c\ncommand: \"a\\n\\tb\"\ntasks:\n  forEachInteger: {from: 1, to: 2}\n").command == "a\n\tb")
        // What a message quotes is escaped: the ESC of a bad key never reaches a terminal raw.
        do { _ = try parse("name: c\n\"k\\e[2J\": 1\ntasks: [{command: 'true'}]\n") } catch {
            #expect(!error.description.unicodeScalars.contains("\u{1b}"))
        }
    }

    @Test func commandAndEnvironmentSizes() throws {
        let long = String(repeating: "x", count: Bounds.commandBytes + 1)
        refused("name: c\ncommand: \(long)\ntasks:\n  forEachInteger: {from: 1, to: 2}\n", "command:")
        let env = (0..<9).map { "  V\($0): " + String(repeating: "y", count: 120_000) }.joined(separator: "\n")
        refused("name: e\ncommand: 'true'\nenv:\n\(env)\ntasks:\n  forEachInteger: {from: 1, to: 2}\n", "at most 1048576 (1 MiB) fit")
    }

    @Test func pathsAndPatterns() throws {
        let base = "name: p\ncommand: 'true'\ntasks:\n  forEachInteger: {from: 1, to: 2}\n"
        refused(base + "inputs: [\"" + String(repeating: "a/", count: 600) + "\"]\n", "at most 1024 are allowed")
        refused(base + "inputs: [\"**/x/**/y/**/z/**/w\"]\n", "more than 3 '**'")
        refused(base + "inputs: [\"" + String(repeating: "n", count: 300) + "\"]\n", "longer than 255 bytes")
        refused(base + "outputs: [\"../x\"]\n", "reaches outside the task's directory")
        // `**/**` is one `**`.
        #expect(Glob("a/**/**/**/**/b").components == ["a", "**", "b"])
    }

    @Test("expansion refuses a job whose commands come to more than the job limit")
    func expandedSize() throws {
        let m = try parse("name: big\ncommand: echo {i} " + String(repeating: "z", count: 100_000) + "\ntasks:\n  forEachInteger: {from: 1, to: 3000}\n")
        #expect(throws: ManifestError.self) { try TaskExpander(fs: FakeFS(files: [:])).expand(m, base: "/w", jobID: "J", file: "job.yaml") }
    }
}
