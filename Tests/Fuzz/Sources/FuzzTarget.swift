// The fuzz target for manifest intake: parsing, validation, task expansion
// and template rendering, everything the daemon does with a manifest before
// a task runs. Built two ways (scripts/fuzz.sh, docs/testing.md):
//
// - with `-sanitize=fuzzer,address -D FUZZING`: a libFuzzer binary
//   (`make fuzz`, and a short run in `make test`);
// - plainly: `batchd-fuzz FILE|DIR...` replays inputs through the same code,
//   so the corpus and every input that once crashed (FailCases/) are
//   regression tests in `make test`.
import BatchCore
import Foundation

/// One input: a manifest, optionally followed by `\n---ROWS---\n` and the
/// text of its row file (served at /w/rows.csv and /w/rows.jsonl). The first
/// byte's low bit picks YAML or JSON naming.
enum FuzzCase {
    static let separator = Array("\n---ROWS---\n".utf8)

    static func run(_ bytes: [UInt8]) {
        var manifest = bytes[...]
        var rows = ArraySlice<UInt8>()
        if let at = find(separator, in: bytes) {
            manifest = bytes[..<at]
            rows = bytes[(at + separator.count)...]
        }
        let file = (bytes.first ?? 0) & 1 == 0 ? "job.yaml" : "job.json"
        let rowText = String(decoding: rows, as: UTF8.self)

        // Templates on their own: any text as a command template, the row
        // text as a value. Nothing may crash; a rendered value keeps no NUL.
        let text = String(decoding: manifest, as: UTF8.self)
        _ = Template.placeholders(in: text)
        if let t = try? ShellTemplate(text), let out = try? t.render(Dictionary(t.placeholders.map { ($0.name, rowText) }, uniquingKeysWith: { a, _ in a })) {
            // (The parser refuses a NUL in a template's own text; a value's never gets through.)
            precondition(text.utf8.contains(0) || !out.utf8.contains(0), "a value's NUL reached a rendered command")
        }

        guard let m = try? ManifestParser.parse(bytes: Array(manifest), file: file, catalog: fuzzCatalog) else { return }
        // A range of up to a million tasks is valid and costs its size to
        // expand (seconds): the fuzzer would report it as a hang and learn
        // nothing. Ranges are expanded up to 20,000 tasks here.
        if case .forEachInteger(let from, let to, let step, _) = m.tasks, (to - from) / step >= 20_000 { return }
        let fs = MemoryFS(files: [
            "/w/a.txt": "a", "/w/b/c.txt": "c", "/w/b/d e;f.txt": "x", "/w/.hidden": "h",
            "/w/rows.csv": rowText, "/w/rows.jsonl": rowText,
        ])
        guard let job = try? TaskExpander(fs: fs).expand(m, base: "/w", jobID: "J1", file: file) else { return }
        // What expansion promises, whatever the input.
        precondition(!job.tasks.isEmpty && job.tasks.count <= Bounds.tasks)
        var ids = Set<String>()
        for task in job.tasks {
            precondition(Template.isIdentifier(task.id, max: 64), "an invalid task id")
            precondition(ids.insert(task.id).inserted, "two tasks with one id")
            precondition(task.command.utf8.count <= Bounds.commandBytes, "a command longer than exec allows")
            precondition(!task.command.utf8.contains(0), "a NUL in a command")
            for (k, v) in task.env {
                precondition(!v.utf8.contains(0) && k.utf8.count + v.utf8.count < Bounds.envEntryBytes, "an environment entry exec refuses")
            }
            for input in task.inputs {
                let parts = input.target.split(separator: "/")
                precondition(!input.target.hasPrefix("/") && !parts.contains("..") && !parts.contains("."), "an input placed outside the task")
            }
        }
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }
}

/// A fixed file tree: expansion never touches the disk while fuzzing.
struct MemoryFS: ManifestFileSystem {
    let files: [String: String]

    func glob(_ pattern: String, base: String) throws -> [String] {
        let g = Glob(pattern)
        let root = pattern.hasPrefix("/") ? "" : base
        return files.keys.filter { path in
            guard root.isEmpty || path.hasPrefix(root + "/") else { return false }
            let rel = root.isEmpty ? path : String(path.dropFirst(root.count + 1))
            return g.matches(rel.split(separator: "/").map(String.init))
        }.sorted()
    }

    func readText(_ path: String, maxBytes: Int) throws -> String {
        guard let text = files[path], text.utf8.count <= maxBytes else { throw ManifestError(file: path, issues: [ManifestIssue(line: nil, column: nil, field: "", message: "cannot be read")]) }
        return text
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzCase.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
               _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point under the module's name; it
/// hands over to libFuzzer's driver.
@_cdecl("batchd_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var vector = argv
    return runDriver(&count, &vector, fuzz)
}
#else
/// `batchd-fuzz [-v] FILE|DIR...`: replays each input (every file of a
/// directory) through the fuzz target; with -v it names each input first, so
/// a crash shows which one.
@main
struct Replay {
    static func main() {
        var count = 0
        let args = CommandLine.arguments.dropFirst()
        let verbose = args.contains("-v")
        for arg in args where arg != "-v" {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: arg, isDirectory: &isDir) else {
                FileHandle.standardError.write(Data("batchd-fuzz: \(arg): no such file\n".utf8))
                exit(2)
            }
            let paths = isDir.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: arg)) ?? []).filter { !$0.hasPrefix("README") }.sorted().map { "\(arg)/\($0)" }
                : [arg]
            for path in paths {
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                if verbose { FileHandle.standardError.write(Data("batchd-fuzz: \(path)\n".utf8)) }
                FuzzCase.run(Array(data))
                count += 1
            }
        }
        print("batchd-fuzz: replayed \(count) inputs, no crash")
    }
}
#endif

/// Backends as the parser sees them, with a pool option of every kind
/// (the corpus uses the shipped backends' keys), so each kind's checks are
/// fuzzed without linking a backend.
let fuzzCatalog = BackendCatalog([
    .init(name: "local", available: true, poolOptions: []),
    .init(name: "azure", available: true, poolOptions: [
        PoolOption("vmSize", .name(max: 64, extra: "-_"), what: "a VM size", hint: "", help: ""),
        PoolOption("dedicatedNodes", .integer(min: 0, max: 10_000), what: "a node count", hint: "", help: ""),
        PoolOption("image", .text(maxBytes: 256, multiline: false, separator: ":", parts: 3...4), what: "an image", hint: "", help: ""),
        PoolOption("startTask", .text(maxBytes: 8192, multiline: true, separator: nil, parts: nil), what: "a start task", hint: "", help: ""),
        PoolOption("idleTimeout", .duration, what: "a duration", hint: "", help: ""),
    ]),
    .init(name: "slurm", available: true, poolOptions: [
        PoolOption("partition", .name(max: 64, extra: "-_."), what: "a partition name", hint: "", help: ""),
        PoolOption("memory", .memory(maxMiB: 16 << 20), what: "a memory size", hint: "", help: ""),
    ]),
])
