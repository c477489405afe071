import BatchCore
import Testing

/// A fixed file tree, so expansion is tested without touching the disk.
struct FakeFS: ManifestFileSystem {
    var files: [String: String]
    func glob(_ pattern: String, base: String) throws -> [String] {
        let g = Glob(pattern)
        return files.keys.filter { path in
            guard path.hasPrefix(base + "/") else { return false }
            return g.matches(path.dropFirst(base.count + 1).split(separator: "/").map(String.init))
        }.sorted()
    }
    func readText(_ path: String, maxBytes: Int) throws -> String {
        guard let t = files[path] else { throw ManifestError(file: path, issues: [ManifestIssue(line: nil, column: nil, field: "", message: "does not exist")]) }
        return t
    }
}

@Suite("Task expansion")
struct TaskExpansionTests {
    let fs = FakeFS(files: [
        "/w/texts/b.txt": "", "/w/texts/a.txt": "", "/w/texts/notes.md": "", "/w/tool.py": "",
        "/w/rows.csv": "name,size\nalpha,1\nbeta,2\n",
        "/w/rows.jsonl": "{\"name\": \"x\", \"n\": 3}\n\n{\"name\": \"y\", \"n\": null}\n",
    ])

    func expand(_ yaml: String) throws -> ExpandedJob {
        let m = try ManifestParser.parse(yaml, file: "job.yaml")
        return try TaskExpander(fs: fs).expand(m, base: "/w", jobID: "J1", file: "job.yaml")
    }

    @Test func oneTaskPerFileWithTheFileStaged() throws {
        let job = try expand("name: n\ninputs: [tool.py]\ntasks: {forEachFile: 'texts/*.txt', id: '{stem}'}\ncommand: python3 tool.py {file} > {stem}.out\n")
        #expect(job.tasks.map(\.id) == ["a", "b"])
        #expect(job.tasks[0].command == "python3 tool.py texts/a.txt > a.out")
        #expect(job.tasks[0].inputs == [InputFile(source: "/w/texts/a.txt", target: "texts/a.txt")])
        #expect(job.sharedInputs == [InputFile(source: "/w/tool.py", target: "tool.py")])
    }

    @Test("an input can never be placed outside the task's directory")
    func targetsStayInside() {
        #expect(TaskExpander.target(for: "/w/a/b.txt", base: "/w") == "a/b.txt")
        #expect(TaskExpander.target(for: "/w/../x.bin", base: "/w") == "x.bin")
        #expect(TaskExpander.target(for: "/elsewhere/x.bin", base: "/w") == "x.bin")
        #expect(TaskExpander.target(for: "/w/./x.bin", base: "/w") == "x.bin")
    }

    @Test func integersWithDefaultIds() throws {
        let job = try expand("name: n\ntasks: {forEachInteger: {from: 3, to: 7, step: 2}}\ncommand: echo {i} {task} {job}\n")
        #expect(job.tasks.map(\.id) == ["0", "1", "2"])
        #expect(job.tasks.map(\.command) == ["echo 3 0 J1", "echo 5 1 J1", "echo 7 2 J1"])
    }

    @Test func rowsFromCSVAndJSONLines() throws {
        let csv = try expand("name: n\ntasks: {forEachRow: rows.csv, id: '{row.name}'}\ncommand: score {row.name} {row.size}\nenv: {SIZE: '{row.size}'}\n")
        #expect(csv.tasks.map(\.command) == ["score alpha 1", "score beta 2"])
        #expect(csv.tasks.map(\.id) == ["alpha", "beta"])
        #expect(csv.tasks[1].env == ["SIZE": "2"])
        let jl = try expand("name: n\ntasks: {forEachRow: rows.jsonl}\ncommand: run {row.name} {row.n}\n")
        #expect(jl.tasks.map(\.command) == ["run x 3", "run y ''"])
    }

    @Test func missingColumnIsNamed() {
        #expect {
            try expand("name: n\ntasks: {forEachRow: rows.csv}\ncommand: score {row.nmae}\n")
        } throws: { error in
            "\(error)".contains("no column 'nmae'") && "\(error)".contains("did you mean {row.name}?")
        }
    }

    @Test func globMatchingNothingIsAnError() {
        #expect {
            try expand("name: n\ntasks: {forEachFile: 'text/*.txt'}\ncommand: x\n")
        } throws: { error in "\(error)".contains("matches no file") && "\(error)".contains("tasks.forEachFile") }
    }

    @Test func duplicateIdsFromATemplate() {
        #expect {
            try expand("name: n\ntasks: {forEachInteger: {from: 1, to: 3}, id: same}\ncommand: x\n")
        } throws: { error in "\(error)".contains("would both get the id 'same'") }
    }

    @Test func explicitListKeepsIdsAndOverrides() throws {
        let job = try expand("name: n\ncommand: default {task}\nenv: {A: '1'}\ntasks:\n  - id: first\n  - command: own {index}\n    env: {B: '2'}\n    inputs: [tool.py]\n")
        #expect(job.tasks.map(\.id) == ["first", "1"])
        #expect(job.tasks.map(\.command) == ["default first", "own 1"])
        #expect(job.tasks[1].env == ["A": "1", "B": "2"])
        #expect(job.tasks[1].inputs.count == 1)
    }
}
