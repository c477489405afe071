import BatchCore
import Foundation
import Testing

/// Placeholders are data: whatever a value holds, the real shell sees it as
/// literal text. Checked by running /bin/sh (dash) and bash on the rendered
/// commands and comparing what they print with the value.
@Suite("Shell templates: values reach the shell as literal text")
struct ShellTemplateTests {
    static let hostile = [
        "a;echo INJECTED >x;.txt", "x; touch PWNED", "$(touch PWNED)", "`touch PWNED`", "'", "\"", "\\", "\\'", "'\"'\"'",
        "line1\nline2", "$HOME", "${HOME}", "*", "~", "~root", "a b", "-n", "", "}", "{", "{{", "日本語", "\\\n", "$'x'", "!",
        "#not a comment", "tab\there", "cr\rhere", "&& touch PWNED", "| touch PWNED", "> PWNED", "<(touch PWNED)", "\"; touch PWNED; \"",
        "'; touch PWNED; '", "$((1+1))", "\\$HOME", "a=b", "IFS=x", "--", "%s%n",
    ]

    /// Random values over shell-special characters (seeded, so a failure repeats).
    static func randomValues(_ n: Int) -> [String] {
        var rng = SplitMix(seed: 42)
        let alphabet = Array("ab ;'\"\\$`(){}|&<>*?~#!\n\t=-%")
        return (0..<n).map { _ in String((0..<Int(rng.next() % 12)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }) }
    }

    /// Templates whose output must be exactly the value and a newline.
    static let templates = [
        "printf '%s\\n' {v}",
        "printf '%s\\n' \"{v}\"",
        "printf '%s\\n' '{v}'",
        "printf '%s\\n' x{v}y",
        "printf '%s\\n' \"a{v}b\"",
        "printf '%s\\n' 'a{v}b'",
        "f() { printf '%s\\n' \"$1\"; }; f {v}",
        "printf '%s\\n' \"$(printf '%s|' {v})\"",
        "printf '%s\\n' $(printf '%s' \"{v}\" | od -An -tx1 | tr -d ' \\n')",
    ]

    func expected(_ template: String, _ value: String) -> String {
        switch template {
        case "printf '%s\\n' x{v}y": return "x\(value)y\n"
        case "printf '%s\\n' \"a{v}b\"", "printf '%s\\n' 'a{v}b'": return "a\(value)b\n"
        case "printf '%s\\n' \"$(printf '%s|' {v})\"": return "\(value)|\n"
        case "printf '%s\\n' $(printf '%s' \"{v}\" | od -An -tx1 | tr -d ' \\n')":
            return Array(value.utf8).map { String(format: "%02x", $0) }.joined() + "\n"
        default: return "\(value)\n"
        }
    }

    func run(_ shell: String, _ command: String, in dir: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: shell)
        p.arguments = ["-c", command]
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        p.environment = ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test("every hostile value is printed back exactly, by dash and by bash, and runs nothing",
          .timeLimit(.minutes(5)))
    func literalInEveryContext() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shell-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shells = ["/bin/sh", "/bin/bash"].filter { FileManager.default.isExecutableFile(atPath: $0) }
        var checked = 0
        for template in Self.templates {
            let t = try ShellTemplate(template)
            for value in Self.hostile + Self.randomValues(40) {
                // Command substitution drops trailing newlines; those values are for the other templates.
                if template.contains("$(printf '%s|'") && value.hasSuffix("\n") { continue }
                let command = try t.render(["v": value])
                for shell in shells {
                    let printed = try run(shell, command, in: dir)
                    #expect(printed == expected(template, value), "\(shell) -c \(command.debugDescription)")
                    checked += 1
                }
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "a value ran as a command")
        #expect(checked > 500)
    }

    @Test("each placeholder's context is read from the shell text around it")
    func contexts() throws {
        let t = try ShellTemplate("a {x} \"b {y}\" 'c {z}' $(d \"{w}\" {u}) \"$(e {v})\"")
        #expect(t.placeholders.map(\.name) == ["x", "y", "z", "w", "u", "v"])
        #expect(t.placeholders.map(\.context) == [.bare, .doubleQuoted, .singleQuoted, .doubleQuoted, .bare, .bare])
        // Plain values stay readable; anything else is quoted.
        #expect(try ShellTemplate("wc -l {f}").render(["f": "data/in-01.txt"]) == "wc -l data/in-01.txt")
        #expect(try ShellTemplate("wc -l {f}").render(["f": "a b"]) == "wc -l 'a b'")
        #expect(try ShellTemplate("wc -l {f}").render(["f": "it's"]) == "wc -l 'it'\\''s'")
    }

    @Test("a placeholder where no quoting can be trusted is refused with the fix", arguments: [
        ("echo ${X:-{v}}", "inside ${…}"),
        ("echo $(( {i} + 1 ))", "inside $((…))"),
        ("echo `cat {v}`", "inside backquotes"),
        ("echo hi # {v}", "inside a comment"),
        ("cat <<EOF\n{v}\nEOF", "inside a here-document"),
        ("cat <<'EOF'\nx {v}\nEOF", "inside a here-document"),
        ("echo \\{v}", "after a backslash"),
        ("echo $'a\\'b' {v}", "after $'…'"),
        ("x=$(case a in a) echo 1;; esac) {v}", "after a 'case'"),
        ("\"$(case $x in a) echo {v};; esac)\"", "after a 'case'"),
    ])
    func refusals(_ template: String, _ place: String) throws {
        do {
            _ = try ShellTemplate(template)
            Issue.record("accepted \(template.debugDescription)")
        } catch {
            #expect(error.message.contains(place), "\(error.message)")
            #expect(error.hint != nil)
        }
    }

    @Test("text after a here-document, a comment or backquotes is read normally again")
    func contextsResume() throws {
        let t = try ShellTemplate("cat <<EOF\nbody\nEOF\necho {a} # note\necho `date` {b} \"{c}\"")
        #expect(t.placeholders.map(\.context) == [.bare, .bare, .doubleQuoted])
        #expect(try ShellTemplate("echo $((1+2)) {a}").placeholders.map(\.context) == [.bare])
        #expect(try ShellTemplate("echo ${HOME} {a}").placeholders.map(\.context) == [.bare])
    }

    @Test("a NUL byte in a value is refused, not cut short")
    func nul() throws {
        #expect(throws: TemplateError.self) { try ShellTemplate("echo {v}").render(["v": "a\u{0}b"]) }
    }

    @Test("templates of a million braces are read in linear time", .timeLimit(.minutes(1)))
    func linear() throws {
        let braces = String(repeating: "{a", count: 500_000)
        #expect(Template.placeholders(in: braces).isEmpty)
        let almost = String(repeating: "{abc ", count: 200_000) + "}"
        #expect(Template.placeholders(in: almost).isEmpty)
        _ = try ShellTemplate(String(repeating: "$(", count: 100_000) + "{v}")
    }
}

/// A small seeded generator, so random cases repeat exactly.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
