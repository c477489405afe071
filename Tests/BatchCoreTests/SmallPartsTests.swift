import BatchCore
import Testing

@Suite("Templates, globs, CSV, durations, suggestions")
struct SmallPartsTests {
    @Test func templates() throws {
        let scope = TemplateScope(names: ["file", "i"], rowColumns: false)
        try Template.validate("run {file} ${HOME} awk '{print $1}' {{literal}}", scope: scope)
        #expect(throws: TemplateError.self) { try Template.validate("run {fil}", scope: scope) }
        #expect(throws: TemplateError.self) { try Template.validate("run {row.x}", scope: scope) }
        let out = try Template.render("a {i} ${HOME} {{i}} {print $1}", values: ["i": "7"])
        #expect(out == "a 7 ${HOME} {i} {print $1}")
        #expect(Template.placeholders(in: "{row.name} and {i}") == ["row.name", "i"])
    }

    @Test func globs() {
        let g = Glob("texts/*.txt")
        #expect(g.matches(["texts", "a.txt"]))
        #expect(!g.matches(["texts", ".hidden.txt"]))
        #expect(!g.matches(["texts", "sub", "a.txt"]))
        let deep = Glob("**/*.csv")
        #expect(deep.matches(["a.csv"]))
        #expect(deep.matches(["x", "y", "a.csv"]))
        #expect(Glob.component("data[0-9].?", "data7.x"))
        #expect(!Glob.component("data[!0-9]", "data7"))
        #expect(Glob.component("*_OUTPUT.txt", "taskdata0_OUTPUT.txt"))
        #expect(Glob.component("a*b*c", "aXXbYYc"))
        #expect(!Glob.component("a*b*c", "aXXbYY"))
    }

    @Test func csv() throws {
        let rows = try CSV.parse("id,text\n1,\"hello, world\"\n2,\"say \"\"hi\"\"\"\n3,\"two\nlines\"\n")
        #expect(rows == [["id", "text"], ["1", "hello, world"], ["2", "say \"hi\""], ["3", "two\nlines"]])
        #expect(throws: CSV.ParseError.self) { try CSV.parse("a,\"b\n") }
    }

    @Test func durations() {
        #expect(HumanDuration.seconds(from: "90") == 90)
        #expect(HumanDuration.seconds(from: "1h30m") == 5400)
        #expect(HumanDuration.seconds(from: "250ms") == 0.25)
        #expect(HumanDuration.seconds(from: "2d") == 172_800)
        #expect(HumanDuration.seconds(from: "10 parsecs") == nil)
        #expect(HumanDuration.seconds(from: "-5") == nil)
        #expect(HumanDuration.format(5400) == "1h30m")
    }

    @Test func suggestions() {
        #expect(Suggest.nearest(to: "comand", in: ManifestKeys.top) == "command")
        #expect(Suggest.nearest(to: "ouptuts", in: ManifestKeys.top) == "outputs")
        #expect(Suggest.nearest(to: "zzzzzzzz", in: ManifestKeys.top) == nil)
    }
}

@Suite("Task environment")
struct TaskEnvironmentTests {
    @Test("the same variables on every backend; the manifest cannot override batchd's; the attempt where it is known")
    func variables() {
        let local = TaskEnvironment.variables(base: ["PATH": "/bin", "X": "base"], task: ["X": "task", "Y": "y"], job: "J", name: "n",
                                              taskID: "t1", index: 3, attempt: 2)
        #expect(local == ["PATH": "/bin", "X": "task", "Y": "y", "BATCHD_JOB_ID": "J", "BATCHD_JOB_NAME": "n",
                          "BATCHD_TASK_ID": "t1", "BATCHD_TASK_INDEX": "3", "BATCHD_ATTEMPT": "2"])
        let remote = TaskEnvironment.variables(task: ["BATCHD_TASK_ID": "forged"], job: "J", name: "n", taskID: "t1", index: 3, attempt: nil)
        #expect(remote["BATCHD_TASK_ID"] == "t1" && remote["BATCHD_ATTEMPT"] == nil)
    }
}
