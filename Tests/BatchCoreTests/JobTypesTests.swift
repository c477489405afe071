import BatchCore
import Foundation
import Testing

@Suite("Job types and parameters")
struct JobTypesTests {
    let dir: String
    let types: JobTypes

    init() throws {
        dir = NSTemporaryDirectory() + "batchd-types-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        types = JobTypes(directory: dir)
        try """
            # A render job: two parameters with their defaults.
            parameters:
              quality: 10
              scene: main
            command: render --quality {param.quality} --scene {param.scene} --frame {i}
            pool: {vmSize: STANDARD_D4S_V3, dedicatedNodes: 2}
            retries: 2
            """.write(toFile: "\(dir)/render.yaml", atomically: true, encoding: .utf8)
    }

    func parse(_ text: String, set: [String: String] = [:]) throws -> Manifest {
        try ManifestParser.parse(text, file: "job.yaml", types: types, set: set)
    }

    func commands(_ m: Manifest) throws -> [String] {
        try TaskExpander(fs: FakeFS(files: [:])).expand(m, base: "/w", jobID: "J", file: "job.yaml").tasks.map(\.command)
    }

    @Test("the type's fields and defaults, the manifest over them, --set over both")
    func precedence() throws {
        let m = try parse("""
            name: hall
            type: render
            parameters: {scene: hall}
            tasks: {forEachInteger: {from: 1, to: 2}}
            pool: {dedicatedNodes: 5}
            """, set: ["quality": "20"])
        #expect(m.type == "render")
        #expect(m.parameters == ["quality": "20", "scene": "hall"])
        #expect(m.retries == 2, "a field the manifest leaves out comes from the type")
        #expect(m.pool.vmSize == "STANDARD_D4S_V3" && m.pool.dedicatedNodes == 5, "pool is merged key by key, the manifest's keys winning")
        #expect(try commands(m) == ["render --quality 20 --scene hall --frame 1", "render --quality 20 --scene hall --frame 2"])
    }

    @Test("a parameter's value is data: quoted in the command whatever it holds")
    func valuesAreQuoted() throws {
        let m = try parse("name: x\ntype: render\ntasks: {forEachInteger: {from: 1, to: 1}}\n", set: ["scene": "a; rm -rf ~ $(id)"])
        let got = try commands(m)
        #expect(got == ["render --quality 10 --scene 'a; rm -rf ~ $(id)' --frame 1"], "\(got)")
    }

    @Test("a typo in the type file is reported with the type file's name and line")
    func typoInType() throws {
        try "parameters: {q: 1}\ncommand: run {param.q}\nretires: 2\n".write(toFile: "\(dir)/typo.yaml", atomically: true, encoding: .utf8)
        #expect {
            try parse("name: x\ntype: typo\ntasks: [{id: a}]\n")
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("types/typo.yaml:3:1: retires: unknown key 'retires'") && text.contains("did you mean 'retries'?")
        }
        try "command: run\npool: {dedicatedNodes: -1}\n".write(toFile: "\(dir)/bad.yaml", atomically: true, encoding: .utf8)
        #expect {
            try parse("name: x\ntype: bad\ntasks: [{id: a}]\n")
        } throws: { "\($0)".hasPrefix("types/bad.yaml:2:") && "\($0)".contains("pool.dedicatedNodes") }
    }

    @Test("unknown names get the nearest one: a type, a parameter in --set, a {param.X} placeholder")
    func unknownNames() throws {
        #expect { try parse("name: x\ntype: rendr\ntasks: [{id: a}]\n") } throws: { "\($0)".contains("no job type 'rendr'") && "\($0)".contains("did you mean 'render'?") }
        #expect { try parse("name: x\ntype: render\ntasks: {forEachInteger: {from: 1, to: 1}}\n", set: ["qualty": "1"]) } throws: {
            "\($0)".contains("--set qualty: the job has no such parameter") && "\($0)".contains("did you mean 'quality'?")
        }
        #expect {
            try parse("name: x\ntype: render\ntasks: {forEachInteger: {from: 1, to: 1}}\ncommand: echo {param.scne}\n")
        } throws: { "\($0)".contains("unknown parameter {param.scne}") && "\($0)".contains("did you mean {param.scene}?") }
    }

    @Test("a type marked default applies to a manifest that names none; type: none opts out")
    func defaultType() throws {
        try "default: true\nretries: 3\nparameters: {who: world}\n".write(toFile: "\(dir)/site.yaml", atomically: true, encoding: .utf8)
        let m = try parse("name: x\ntasks: [{id: a, command: 'echo {param.who}'}]\n")
        #expect(m.type == nil && m.retries == 3 && m.parameters == ["who": "world"])
        let plain = try parse("name: x\ntype: none\ntasks: [{id: a, command: 'echo hi'}]\n")
        #expect(plain.retries == 0 && plain.parameters.isEmpty)
        #expect(types.list().map(\.name) == ["render", "site"] && types.list().last?.isDefault == true)
        #expect(types.list().first?.parameters == ["quality": "10", "scene": "main"])
    }
}
