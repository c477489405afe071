import BatchCore
import Testing

@Suite("Manifest validation")
struct ManifestParserTests {
    func issues(_ text: String, file: String = "job.yaml") -> [ManifestIssue] {
        do {
            _ = try ManifestParser.parse(text, file: file)
            return []
        } catch {
            return error.issues
        }
    }

    @Test func fullManifest() throws {
        let m = try ManifestParser.parse("""
            version: 1
            name: sweep
            backend: azure
            pool: {id: mypool, vmSize: STANDARD_D2S_V3, dedicatedNodes: 2, spotNodes: 4, slotsPerNode: 4,
                   image: "canonical:ubuntu:22_04-lts", idleTimeout: 10m}
            inputs: {shared: [common/*.dat]}
            tasks:
              forEachInteger: {from: 1, to: 10, step: 3}
              id: "p{i}"
            command: ./run --param {i}
            env: {MODE: fast}
            retries: 2
            timeout: 1h30m
            outputs: {patterns: ["*.out"], destination: results}
            cleanup: always
            limits: {wallClock: 2h, coreHours: 10}
            """, file: "job.yaml")
        #expect(m.name == "sweep")
        #expect(m.backend == "azure")
        #expect(m.pool.id == "mypool")
        #expect(m.pool.spotNodes == 4)
        #expect(m.pool.idleTimeoutSeconds == 600)
        #expect(m.tasks == .forEachInteger(from: 1, to: 10, step: 3, id: "p{i}"))
        #expect(m.timeoutSeconds == 5400)
        #expect(m.outputs.destination == "results")
        #expect(m.cleanup == .always)
        #expect(m.limits.wallClockSeconds == 7200)
        #expect(m.sharedInputs == ["common/*.dat"])
    }

    @Test("outputs.merge: the format follows into's extension unless named; into must be a plain relative path no pattern matches")
    func merge() throws {
        func merge(_ m: String) throws -> MergeSpec? {
            try ManifestParser.parse("name: m\ntasks: [{command: 'true'}]\noutputs: {patterns: ['r-*.csv', 'x/*.json'], merge: \(m)}\n", file: "job.yaml").outputs.merge
        }
        #expect(try merge("{from: 'r-*.csv', into: all.csv}") == MergeSpec(from: "r-*.csv", into: "all.csv", format: .csv))
        #expect(try merge("{from: 'x/*.json', into: merged/all.ndjson}")?.format == .jsonl)
        #expect(try merge("{from: 'x/*.json', into: all.txt, format: concat}")?.format == .concat)
        let text = { (m: String) in "name: m\ntasks: [{command: 'true'}]\noutputs: {patterns: ['r-*.csv'], merge: \(m)}\n" }
        #expect(issues(text("{from: 'r-*.csv', into: r-all.csv}")).first?.message.contains("matches 'r-*.csv'") == true)
        #expect(issues(text("{from: 'r-*.csv', into: /tmp/x.csv}")).first?.message.contains("not a plain path") == true)
        #expect(issues(text("{from: 'r-*.csv', into: a/../b.csv}")).first?.message.contains("not a plain path") == true)
        #expect(issues(text("{from: 'r-*.csv', into: all.csv, format: cvs}")).first?.hint == "did you mean 'csv'?")
        #expect(issues(text("{from: 'r-*.csv', into: all.out}")).first?.field == "outputs.merge.format")
        #expect(issues(text("{from: 'r-*.csv'}")).first?.field == "outputs.merge.into")
        #expect(issues("name: m\ntasks: [{command: 'true'}]\noutputs: {merge: {from: a, into: b.csv}}\n").first?.message.contains("outputs.patterns is empty") == true)
    }

    @Test("a typo'd key names the line, the column, the field and the nearest valid key")
    func typo() {
        let found = issues("""
            name: x
            tasks:
              - id: a
                comand: echo hi
            command: echo
            """)
        #expect(found.count == 1)
        #expect(found[0].line == 4)
        #expect(found[0].column == 5)
        #expect(found[0].field == "tasks[0].comand")
        #expect(found[0].hint == "did you mean 'command'?")
    }

    @Test("every problem is reported, in file order")
    func several() {
        let found = issues("""
            name: "bad name!"
            retrys: 2
            tasks: {forEachFile: "*.txt"}
            command: run {fiel}
            cleanup: sometimes
            """)
        #expect(found.map(\.line) == [1, 2, 4, 5])
        #expect(found[1].hint == "did you mean 'retries'?")
        #expect(found[2].hint == "did you mean {file}?")
        #expect(found[3].message.contains("sometimes"))
    }

    @Test func missingRequired() {
        let found = issues("backend: local\n")
        #expect(found.contains { $0.field == "name" })
        #expect(found.contains { $0.field == "tasks" })
    }

    @Test func unknownBackendSuggests() {
        let found = issues("name: a\nbackend: azur\ntasks: [{command: x}]\n")
        #expect(found.first?.hint == "did you mean 'azure'?")
    }

    @Test("JSON is accepted, tabs and all")
    func json() throws {
        let m = try ManifestParser.parse("{\n\t\"name\": \"j\",\n\t\"tasks\": [{\"id\": \"a\", \"command\": \"true\"}]\n}\n", file: "job.json")
        #expect(m.tasks == .list([TaskEntry(id: "a", command: "true")]))
    }

    @Test func yamlSyntaxErrorHasAPlace() {
        let found = issues("name: a\ntasks: [\n  {command: x\n")
        #expect(found.count == 1)
        #expect(found[0].line != nil)
        #expect(found[0].message.contains("not valid YAML"))
    }

    @Test func duplicateKeys() {
        let found = issues("name: a\nname: b\ntasks: [{command: x}]\n")
        #expect(found.first?.message.contains("more than once") == true)
    }

    @Test func factoryRules() {
        #expect(issues("name: a\ntasks: {forEachFile: '*.txt', forEachInteger: {from: 1, to: 2}}\ncommand: x\n")
            .contains { $0.message.contains("more than one task factory") })
        #expect(issues("name: a\ntasks: {forEachInteger: {from: 5, to: 2}}\ncommand: x\n")
            .contains { $0.message.contains("less than") })
        #expect(issues("name: a\ntasks: {forEachRow: data.txt}\ncommand: x\n")
            .contains { $0.hint?.contains("format") == true })
        #expect(issues("name: a\ntasks: {forEachFile: '*.txt'}\n").contains { $0.field == "command" })
    }

    @Test func outputsMayNotEscape() {
        let found = issues("name: a\ntasks: [{command: x}]\noutputs: {patterns: ['../x', '/etc/*']}\n")
        #expect(found.count == 2)
    }

    @Test func reservedEnvironment() {
        let found = issues("name: a\ntasks: [{command: x}]\nenv: {BATCHD_JOB_ID: x, 1BAD: y}\n")
        #expect(found.count == 2)
    }

    @Test func errorTextIsCompilerStyle() {
        let e = ManifestError(file: "j.yaml", issues: [ManifestIssue(line: 3, column: 2, field: "tasks", message: "bad", hint: "fix it")])
        #expect(e.description == "j.yaml:3:2: tasks: bad (fix it)")
    }

    @Test("an alias as a mapping key, or inside one, is refused before it is expanded; an alias as a value is fine")
    func aliasKeys() throws {
        let base = "name: x\ntasks: [{command: 'true'}]\n"
        for (text, line) in [("a: &a [1, 2]\n*a : 3\n", 2), ("a: &a [1]\nb: {*a : 1}\n", 2), ("a: &a [1]\nb:\n  ? [*a]\n  : 1\n", 3),
                             ("a: &a [1]\nb: [{*a : 1}]\n", 2)] {
            #expect {
                try ManifestParser.parse(base + text, file: "j.yaml")
            } throws: { "\($0)".contains("j.yaml:\(line + 2):") && "\($0)".contains("a YAML alias is used as a mapping key") }
        }
        // As values, aliases pass this check (the manifest's own keys decide the rest).
        let shared = "name: x\nenv: &e {A: '1'}\ntasks: [{command: 'true', env: *e}]\n"
        #expect(try ManifestParser.parse(shared, file: "j.yaml").tasks == .list([TaskEntry(command: "true", env: ["A": "1"])]))
    }
}
