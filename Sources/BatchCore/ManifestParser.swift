import Foundation
import Yams

/// Turns manifest text (YAML, or JSON, which YAML reads too) into a `Manifest`,
/// or a `ManifestError` listing every problem with its line, column and field.
/// Pure: it reads no files; checks that need the file system (globs that match
/// nothing, a CSV's columns) happen when tasks are expanded.
public enum ManifestParser {
    /// Parses and validates a manifest file's bytes. Checks the limits that
    /// need no parsing first (size, encoding, NUL bytes, line length), so a
    /// hostile file costs at most one linear pass before it is refused.
    /// - Parameters:
    ///   - bytes: the file's contents.
    ///   - file: the name to put in error messages.
    /// `catalog`: the backends a manifest may name and their pool options
    /// (a daemon passes its registered ones; `.open` takes them on trust).
    /// `types`: where `type:` names are looked up (nil: no job types);
    /// `set`: parameter values that override the manifest's and its type's.
    public static func parse(bytes: [UInt8], file: String, catalog: BackendCatalog,
                             types: JobTypes? = nil, set: [String: String] = [:]) throws(ManifestError) -> Manifest {
        try parse(try text(of: bytes, file: file), file: file, catalog: catalog, types: types, set: set)
    }

    /// The text of a manifest file: UTF-8 (a byte-order mark is dropped;
    /// UTF-16 and UTF-32 are refused). Its size and bytes are checked by `parse`.
    public static func text(of bytes: [UInt8], file: String) throws(ManifestError) -> String {
        func refuse(_ message: String, _ hint: String?) -> ManifestError {
            ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: "", message: message, hint: hint)])
        }
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        if body.starts(with: [0xFF, 0xFE]) || body.starts(with: [0xFE, 0xFF]) || body.starts(with: [0, 0, 0xFE, 0xFF]) {
            throw refuse("the file is UTF-16 or UTF-32 text", "save it as UTF-8")
        }
        guard let text = String(validating: body, as: UTF8.self) else {
            // The line of the first byte that is not UTF-8, found in one pass.
            var line = 1
            var it = body.makeIterator()
            var parser = Unicode.UTF8.ForwardParser()
            loop: while true {
                switch parser.parseScalar(from: &it) {
                case .valid(let s): if s.count == 1 && s.first == 0x0A { line += 1 }
                case .emptyInput, .error: break loop
                }
            }
            throw ManifestError(file: file, issues: [ManifestIssue(line: line, column: nil, field: "",
                message: "the file is not valid UTF-8 text", hint: "save it as UTF-8")])
        }
        return text
    }

    /// Parses and validates a manifest.
    /// - Parameters:
    ///   - text: the file's contents.
    ///   - file: the name to put in error messages.
    ///   - catalog: the backends and their pool options (see above).
    ///   - types: where `type:` names are looked up (nil: no job types).
    ///   - set: parameter values that override the manifest's and its type's.
    public static func parse(_ text: String, file: String, catalog: BackendCatalog,
                             types: JobTypes? = nil, set: [String: String] = [:]) throws(ManifestError) -> Manifest {
        try checkLines(text, file: file)
        // JSON allows tabs between tokens where YAML does not; outside strings
        // (where JSON forbids raw tabs) a space means the same.
        let isJSON = file.lowercased().hasSuffix(".json")
        let source = isJSON ? text.replacingOccurrences(of: "\t", with: " ") : text
        try refuseAliasKeys(source, file: file)
        let root: Node
        do {
            guard let node = try Self.compose(source) else {
                throw ManifestError(file: file, issues: [ManifestIssue(
                    line: nil, column: nil, field: "", message: "the manifest is empty",
                    hint: "see docs/manifest.md or examples/wordcount/job.yaml")])
            }
            root = node
        } catch let error as ManifestError {
            throw error
        } catch {
            throw ManifestError(file: file, issues: [syntaxIssue(error)])
        }
        switch shapeProblem(root, budget: 2 * text.utf8.count + 1000) {
        case .tooDeep(let deep)?:
            throw ManifestError(file: file, issues: [ManifestIssue(line: deep.mark?.line, column: deep.mark?.column, field: "",
                message: "nested more than \(Bounds.depth) levels deep", hint: "a manifest needs at most 5 levels")])
        case .tooMany?:
            throw ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: "",
                message: "the manifest's aliases expand to far more values than the file holds",
                hint: "YAML anchors and aliases may be used, but not to multiply the manifest")])
        case nil:
            break
        }
        var resolved = JobTypes.Resolved(root: root, typeFile: nil, fromType: [])
        if let types {
            resolved = try types.resolve(root, file: file, set: set)
        } else if !set.isEmpty {
            resolved = try JobTypes.applySet(resolved, set: set, file: file)
        }
        let reader = NodeReader()
        reader.catalog = catalog
        let manifest = reader.manifest(resolved.root)
        if !reader.issues.isEmpty || manifest == nil {
            // A problem in a field the type gave is the type file's.
            if let typeFile = resolved.typeFile {
                for i in reader.issues.indices {
                    let f = reader.issues[i].field
                    if resolved.fromType.contains(where: { f == $0 || f.hasPrefix($0 + ".") || f.hasPrefix($0 + "[") }) {
                        reader.issues[i].file = typeFile
                    }
                }
            }
            var sorted = reader.issues.sorted { ($0.file ?? "", $0.line ?? 0, $0.column ?? 0) < ($1.file ?? "", $1.line ?? 0, $1.column ?? 0) }
            if sorted.count > Bounds.reportedIssues {
                let more = sorted.count - Bounds.reportedIssues
                sorted = Array(sorted.prefix(Bounds.reportedIssues))
                sorted.append(ManifestIssue(line: nil, column: nil, field: "", message: "and \(more) more problems"))
            }
            throw ManifestError(file: file, issues: sorted)
        }
        return manifest!
    }

    /// Refuses an alias used as a mapping key before the text is composed
    /// (composing it would expand the alias: YAMLAliasKeys).
    static func refuseAliasKeys(_ text: String, file: String) throws(ManifestError) {
        if let at = YAMLAliasKeys.find(in: text) {
            throw ManifestError(file: file, issues: [ManifestIssue(line: at.line, column: at.column, field: "",
                message: "a YAML alias is used as a mapping key", hint: "aliases (*name) may stand for values, not keys")])
        }
    }

    /// Refuses NUL bytes (they would cut text short), other raw control
    /// characters (they would mislead whoever reads the text) and over-long lines.
    static func checkLines(_ text: String, file: String) throws(ManifestError) {
        if text.utf8.count > Bounds.manifestBytes {
            throw ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: "",
                message: "the file is \(text.utf8.count) bytes; a manifest may have at most \(Bounds.manifestBytes) (4 MiB)",
                hint: "list many tasks in a row file (tasks.forEachRow) instead of in the manifest")])
        }
        var line = 1, column = 1, length = 0
        for b in text.utf8 {
            if b == 0 {
                throw ManifestError(file: file, issues: [ManifestIssue(line: line, column: column, field: "",
                    message: "the file contains a NUL byte", hint: "a manifest is text; remove it")])
            }
            if b == 0x0A { line += 1; column = 1; length = 0; continue }
            if (b < 0x20 && b != 0x09 && b != 0x0D) || b == 0x7F {
                throw ManifestError(file: file, issues: [ManifestIssue(line: line, column: column, field: "",
                    message: "the file contains the control character \(Printable.escape(String(UnicodeScalar(b))))",
                    hint: "remove it; inside a double-quoted string it can be written as an escape such as \\e or \\t")])
            }
            length += 1
            if b & 0xC0 != 0x80 { column += 1 }
            if length > Bounds.lineBytes {
                throw ManifestError(file: file, issues: [ManifestIssue(line: line, column: nil, field: "",
                    message: "line \(line) is longer than \(Bounds.lineBytes) bytes (1 MiB)", hint: "break it into several lines")])
            }
        }
    }

    enum ShapeProblem { case tooDeep(Node), tooMany }

    /// A node nested deeper than `Bounds.depth`, or more nodes than `budget`
    /// once aliases are expanded (an alias bomb), if any. Iterative, and it
    /// stops at the budget: a hostile tree can neither overflow the stack
    /// nor keep it busy.
    static func shapeProblem(_ root: Node, budget: Int) -> ShapeProblem? {
        var stack: [(Node, Int)] = [(root, 1)]
        var visited = 0
        while let (node, depth) = stack.popLast() {
            visited += 1
            if visited > budget { return .tooMany }
            if depth > Bounds.depth { return .tooDeep(node) }
            switch node {
            case .mapping(let m): for (k, v) in m { stack.append((k, depth + 1)); stack.append((v, depth + 1)) }
            case .sequence(let s): for v in s { stack.append((v, depth + 1)) }
            case .scalar, .alias: break
            }
        }
        return nil
    }

    static func syntaxIssue(_ error: Error) -> ManifestIssue {
        if let yaml = error as? YamlError {
            switch yaml {
            case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
                 let .composer(context, problem, mark, _):
                if problem.contains("nest") || (context?.text.contains("nest") ?? false) {
                    return ManifestIssue(line: mark.line, column: mark.column, field: "",
                                         message: "nested too deeply (more than \(Bounds.depth) levels)",
                                         hint: "a manifest needs at most 5 levels")
                }
                let ctx = context.map { " \(Printable.escape($0.text))" } ?? ""
                return ManifestIssue(line: mark.line, column: mark.column, field: "",
                                     message: "not valid YAML: \(Printable.escape(problem))\(ctx)",
                                     hint: "check indentation and quoting near this place")
            case let .duplicatedKeysInMapping(duplicates, context):
                return ManifestIssue(line: context.mark.line, column: context.mark.column,
                                     field: Printable.escape(duplicates.joined(separator: ", ")),
                                     message: "key given more than once", hint: "keep one of them")
            case .reader(let problem, _, _, _):
                return ManifestIssue(line: nil, column: nil, field: "", message: "not readable as YAML: \(Printable.escape(problem))",
                                     hint: "save the file as UTF-8 text")
            default:
                break
            }
        }
        return ManifestIssue(line: nil, column: nil, field: "", message: "not valid YAML or JSON",
                             hint: "check the file with a YAML or JSON linter")
    }
}

/// Walks the YAML node tree, collecting every issue instead of stopping at the first.
final class NodeReader {
    var issues: [ManifestIssue] = []
    /// The backends: the names a manifest may give, their pool options.
    var catalog = BackendCatalog.open
    var backends: [String] { catalog.names }
    /// The job's parameter names, once read: `{param.NAME}` may use them.
    var params: [String] = []

    func fail(_ node: Node?, _ field: String, _ message: String, hint: String? = nil) {
        issues.append(ManifestIssue(line: node?.mark?.line, column: node?.mark?.column,
                                    field: field, message: message, hint: hint))
    }

    /// The mapping's pairs by key, after reporting unknown, non-text and
    /// over-long keys (unknown ones with a suggestion).
    /// `allowed` nil takes every key (checked by the caller).
    func mapping(_ node: Node, _ field: String, allowed: [String]?) -> [String: Node]? {
        guard let map = node.mapping else {
            fail(node, field, "expected a mapping of keys to values, found \(kind(node))")
            return nil
        }
        var out: [String: Node] = [:]
        for (key, value) in map {
            guard let name = keyName(key, field) else { continue }
            guard let allowed else { out[name] = value; continue }
            if allowed.contains(name) {
                out[name] = value
            } else {
                let place = field.isEmpty ? "" : " in \(field)"
                let hint = Suggest.nearest(to: name, in: allowed).map { "did you mean '\($0)'?" }
                    ?? "valid keys\(place): \(allowed.joined(separator: ", "))"
                fail(key, join(field, Printable.escape(String(name.prefix(80)))), "unknown key \(Printable.quote(name))\(place)", hint: hint)
            }
        }
        return out
    }

    /// A key's text; nil (with an issue) when it is not plain text or too long.
    func keyName(_ key: Node, _ field: String) -> String? {
        guard case .scalar(let s) = key else {
            fail(key, field, "keys must be text, found \(kind(key))")
            return nil
        }
        if s.string.utf8.count > Bounds.keyBytes {
            fail(key, field, "a key of \(s.string.utf8.count) bytes; keys may have at most \(Bounds.keyBytes)")
            return nil
        }
        if s.string.unicodeScalars.contains(where: Printable.isUnsafe) {
            fail(key, field, "the key \(Printable.quote(s.string)) contains a control character")
            return nil
        }
        return s.string
    }

    func kind(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return s.string.isEmpty ? "nothing" : Printable.quote(s.string)
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func join(_ parent: String, _ key: String) -> String { parent.isEmpty ? key : "\(parent).\(key)" }

    /// Text of a scalar. `multiline` text (commands, environment values) may
    /// hold newlines and tabs; no text may hold other control characters or
    /// the bidirectional overrides that make text read differently from how
    /// it runs. At most `max` bytes.
    func string(_ node: Node?, _ field: String, required: Bool = false, multiline: Bool = false, max: Int = Bounds.shortText) -> String? {
        guard let node else {
            if required { fail(nil, field, "missing", hint: "add '\(field.split(separator: ".").last!): ...'") }
            return nil
        }
        guard case .scalar(let s) = node, s.tag.rawValue != Tag.Name.null.rawValue || !s.string.isEmpty else {
            fail(node, field, "expected text, found \(kind(node))")
            return nil
        }
        if s.string.isEmpty && required {
            fail(node, field, "must not be empty")
            return nil
        }
        if s.string.utf8.count > max {
            fail(node, field, "\(s.string.utf8.count) bytes of text; at most \(max) are allowed here")
            return nil
        }
        if let bad = s.string.unicodeScalars.first(where: { Printable.isUnsafe($0) && !(multiline && ($0 == "\n" || $0 == "\t")) }) {
            let what = bad.value == 0 ? "a NUL byte" : "the control character \(Printable.escape(String(bad)))"
            fail(node, field, "contains \(what)", hint: multiline ? "only newlines and tabs may appear in it" : "remove it")
            return nil
        }
        return s.string
    }

    /// A whole number in `range`, written as plain digits with an optional sign.
    func int(_ node: Node?, _ field: String, range: ClosedRange<Int>) -> Int? {
        guard let node else { return nil }
        guard case .scalar(let s) = node else {
            fail(node, field, "expected a whole number, found \(kind(node))")
            return nil
        }
        let text = s.string
        let digits = text.hasPrefix("-") || text.hasPrefix("+") ? text.dropFirst() : Substring(text)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            fail(node, field, "expected a whole number, found \(kind(node))")
            return nil
        }
        guard digits.count <= 18, let value = Int(text), range.contains(value) else {
            fail(node, field, "must be between \(range.lowerBound) and \(range.upperBound), found \(Printable.quote(text, max: 24))")
            return nil
        }
        return value
    }

    /// A plain decimal number in `0...max` (no exponent, sign or infinity).
    func number(_ node: Node?, _ field: String, max: Double) -> Double? {
        guard let node else { return nil }
        guard case .scalar(let s) = node, let value = HumanDuration.decimal(Substring(s.string)) else {
            fail(node, field, "expected a number of zero or more, such as 12 or 0.5, found \(kind(node))")
            return nil
        }
        if value > max {
            fail(node, field, "must be at most \(Int(max)), found \(Printable.quote(s.string, max: 24))")
            return nil
        }
        return value
    }

    /// A duration between `Bounds.minDurationSeconds` and `Bounds.durationSeconds`.
    func duration(_ node: Node?, _ field: String) -> Double? {
        guard let node else { return nil }
        guard case .scalar(let s) = node, let value = HumanDuration.seconds(from: s.string) else {
            fail(node, field, "expected a duration, found \(kind(node))", hint: "write e.g. 90s, 10m, 1h30m")
            return nil
        }
        if value < Bounds.minDurationSeconds { fail(node, field, "must be at least 1ms"); return nil }
        if value > Bounds.durationSeconds {
            fail(node, field, "must be at most 365d, found \(Printable.quote(s.string, max: 24))")
            return nil
        }
        return value
    }

    func stringList(_ node: Node?, _ field: String, max: Int, itemBytes: Int = Bounds.pathBytes) -> [String] {
        guard let node else { return [] }
        if case .scalar = node, let one = string(node, field, max: itemBytes) { return [one] }
        guard let seq = node.sequence else {
            if node.scalar == nil { fail(node, field, "expected a list of text, found \(kind(node))") }
            return []
        }
        if seq.count > max {
            fail(node, field, "\(seq.count) entries; at most \(max) are allowed")
            return []
        }
        return seq.enumerated().compactMap { string($0.element, "\(field)[\($0.offset)]", required: true, max: itemBytes) }
    }

    func env(_ node: Node?, _ field: String, templates: TemplateScope) -> [String: String] {
        guard let node else { return [:] }
        guard let map = node.mapping else {
            fail(node, field, "expected a mapping of variable names to values, found \(kind(node))")
            return [:]
        }
        var out: [String: String] = [:]
        for (key, value) in map {
            guard let name = keyName(key, field) else { continue }
            let path = "\(field).\(name)"
            guard checkEnvName(name, key, field) else { continue }
            guard case .scalar = value else {
                fail(value, path, "expected text, found \(kind(value))")
                continue
            }
            guard let text = string(value, path, multiline: true, max: Bounds.envEntryBytes - name.utf8.count - 1) else { continue }
            template(text, value, path, scope: templates)
            out[name] = text
        }
        return out
    }

    /// Whether `name` (a key of `field`: env, secrets) may name a task's
    /// environment variable; a problem is reported when not.
    func checkEnvName(_ name: String, _ key: Node, _ field: String) -> Bool {
        if !Self.isEnvName(name) {
            fail(key, "\(field).\(Printable.escape(String(name.prefix(80))))", "\(Printable.quote(name)) is not a valid environment variable name",
                 hint: "use letters, digits and _, not starting with a digit")
            return false
        }
        if name.hasPrefix("BATCHD_") || name.hasPrefix("AZ_BATCH_") {
            fail(key, "\(field).\(name)", "'\(name)' is reserved: the backend sets it", hint: "choose another name")
            return false
        }
        return true
    }

    static func isEnvName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return s.unicodeScalars.allSatisfy { $0 == "_" || ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) }
    }

    /// Checks a template's placeholders (and, for a command, where each
    /// stands in the shell text: see `ShellTemplate`).
    func template(_ text: String, _ node: Node, _ field: String, scope: TemplateScope, shell: Bool = false) {
        do {
            try Template.validate(text, scope: scope)
            if shell { _ = try ShellTemplate(text) }
        } catch {
            fail(node, field, error.message, hint: error.hint)
        }
    }

    /// A path the user gives: bounded, and each name in it too.
    func checkPath(_ path: String, _ node: Node?, _ field: String) {
        if path.utf8.count > Bounds.pathBytes {
            fail(node, field, "a path of \(path.utf8.count) bytes; at most \(Bounds.pathBytes) are allowed")
        } else if let long = path.split(separator: "/").first(where: { $0.utf8.count > Bounds.nameBytes }) {
            fail(node, field, "the name \(Printable.quote(String(long), max: 40)) in the path is longer than \(Bounds.nameBytes) bytes")
        }
    }

    /// A glob pattern: a path, shorter, with at most `Bounds.globStars` `**`.
    func checkPattern(_ pattern: String, _ node: Node?, _ field: String) {
        if pattern.utf8.count > Bounds.patternBytes {
            fail(node, field, "a pattern of \(pattern.utf8.count) bytes; at most \(Bounds.patternBytes) are allowed")
        } else if Glob(pattern).components.filter({ $0 == "**" }).count > Bounds.globStars {
            fail(node, field, "more than \(Bounds.globStars) '**' in one pattern", hint: "one '**' matches any number of directories")
        } else {
            checkPath(pattern, node, field)
        }
    }
}

extension ManifestParser {
    /// The node tree of a YAML text, with no tags resolved from the text.
    /// Yams' default resolver compiles seven regular expressions the first
    /// time it is used, which pages ICU into the daemon (2.7 MiB of RSS);
    /// every reader here asks a scalar for the type it wants instead
    /// (`.int`, `.bool`, `.null`), so no tag is needed.
    public static func compose(_ text: String) throws -> Node? {
        try Yams.compose(yaml: text, .basic)
    }

    /// Whether `s` may name an environment variable: letters, digits and
    /// `_`, not starting with a digit (as a manifest's `env:` keys).
    public static func isEnvName(_ s: String) -> Bool { NodeReader.isEnvName(s) }
}
