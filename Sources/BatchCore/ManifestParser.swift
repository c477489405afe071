import Foundation
import Yams

/// Turns manifest text (YAML, or JSON, which YAML reads too) into a `Manifest`,
/// or a `ManifestError` listing every problem with its line, column and field.
/// Pure: it reads no files; checks that need the file system (globs that match
/// nothing, a CSV's columns) happen when tasks are expanded.
public enum ManifestParser {
    /// Parses and validates a manifest.
    /// - Parameters:
    ///   - text: the file's contents.
    ///   - file: the name to put in error messages.
    public static func parse(_ text: String, file: String) throws(ManifestError) -> Manifest {
        // JSON allows tabs between tokens where YAML does not; outside strings
        // (where JSON forbids raw tabs) a space means the same.
        let isJSON = file.lowercased().hasSuffix(".json")
        let source = isJSON ? text.replacingOccurrences(of: "\t", with: " ") : text
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: source) else {
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
        let reader = NodeReader()
        let manifest = reader.manifest(root)
        if !reader.issues.isEmpty || manifest == nil {
            let sorted = reader.issues.sorted { ($0.line ?? 0, $0.column ?? 0) < ($1.line ?? 0, $1.column ?? 0) }
            throw ManifestError(file: file, issues: sorted)
        }
        return manifest!
    }

    static func syntaxIssue(_ error: Error) -> ManifestIssue {
        if let yaml = error as? YamlError {
            switch yaml {
            case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
                 let .composer(context, problem, mark, _):
                let ctx = context.map { " \($0.text)" } ?? ""
                return ManifestIssue(line: mark.line, column: mark.column, field: "",
                                     message: "not valid YAML: \(problem)\(ctx)",
                                     hint: "check indentation and quoting near this place")
            case let .duplicatedKeysInMapping(duplicates, context):
                return ManifestIssue(line: context.mark.line, column: context.mark.column,
                                     field: duplicates.joined(separator: ", "),
                                     message: "key given more than once", hint: "keep one of them")
            default:
                break
            }
        }
        return ManifestIssue(line: nil, column: nil, field: "", message: "not valid YAML or JSON: \(error)")
    }
}

/// Walks the YAML node tree, collecting every issue instead of stopping at the first.
final class NodeReader {
    var issues: [ManifestIssue] = []

    func fail(_ node: Node?, _ field: String, _ message: String, hint: String? = nil) {
        issues.append(ManifestIssue(line: node?.mark?.line, column: node?.mark?.column,
                                    field: field, message: message, hint: hint))
    }

    /// The mapping's pairs by key, after reporting unknown keys with a suggestion.
    func mapping(_ node: Node, _ field: String, allowed: [String]) -> [String: Node]? {
        guard let map = node.mapping else {
            fail(node, field, "expected a mapping of keys to values, found \(kind(node))")
            return nil
        }
        var out: [String: Node] = [:]
        for (key, value) in map {
            guard let name = key.string else { continue }
            if allowed.contains(name) {
                out[name] = value
            } else {
                let place = field.isEmpty ? "" : " in \(field)"
                let hint = Suggest.nearest(to: name, in: allowed).map { "did you mean '\($0)'?" }
                    ?? "valid keys\(place): \(allowed.joined(separator: ", "))"
                fail(key, join(field, name), "unknown key '\(name)'\(place)", hint: hint)
            }
        }
        return out
    }

    func kind(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return s.string.isEmpty ? "nothing" : "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func join(_ parent: String, _ key: String) -> String { parent.isEmpty ? key : "\(parent).\(key)" }

    func string(_ node: Node?, _ field: String, required: Bool = false) -> String? {
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
        return s.string
    }

    func int(_ node: Node?, _ field: String, min: Int? = nil) -> Int? {
        guard let node else { return nil }
        guard case .scalar(let s) = node, let value = Int(s.string) else {
            fail(node, field, "expected a whole number, found \(kind(node))")
            return nil
        }
        if let min, value < min {
            fail(node, field, "must be at least \(min), found \(value)")
            return nil
        }
        return value
    }

    func number(_ node: Node?, _ field: String) -> Double? {
        guard let node else { return nil }
        guard case .scalar(let s) = node, let value = Double(s.string), value >= 0 else {
            fail(node, field, "expected a number of zero or more, found \(kind(node))")
            return nil
        }
        return value
    }

    func duration(_ node: Node?, _ field: String) -> Double? {
        guard let node else { return nil }
        guard case .scalar(let s) = node, let value = HumanDuration.seconds(from: s.string) else {
            fail(node, field, "expected a duration, found \(kind(node))", hint: "write e.g. 90s, 10m, 1h30m")
            return nil
        }
        if value <= 0 { fail(node, field, "must be longer than zero"); return nil }
        return value
    }

    func stringList(_ node: Node?, _ field: String) -> [String] {
        guard let node else { return [] }
        if case .scalar = node, let one = string(node, field) { return [one] }
        guard let seq = node.sequence else {
            fail(node, field, "expected a list of text, found \(kind(node))")
            return []
        }
        return seq.enumerated().compactMap { string($0.element, "\(field)[\($0.offset)]", required: true) }
    }

    func env(_ node: Node?, _ field: String, templates: TemplateScope) -> [String: String] {
        guard let node else { return [:] }
        guard let map = node.mapping else {
            fail(node, field, "expected a mapping of variable names to values, found \(kind(node))")
            return [:]
        }
        var out: [String: String] = [:]
        for (key, value) in map {
            guard let name = key.string else { continue }
            let path = "\(field).\(name)"
            if !Self.isEnvName(name) {
                fail(key, path, "'\(name)' is not a valid environment variable name",
                     hint: "use letters, digits and _, not starting with a digit")
                continue
            }
            if name.hasPrefix("BATCHD_") || name.hasPrefix("AZ_BATCH_") {
                fail(key, path, "'\(name)' is reserved: the backend sets it", hint: "choose another name")
                continue
            }
            guard case .scalar(let s) = value else {
                fail(value, path, "expected text, found \(kind(value))")
                continue
            }
            template(s.string, value, path, scope: templates)
            out[name] = s.string
        }
        return out
    }

    static func isEnvName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return s.unicodeScalars.allSatisfy { $0 == "_" || ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) }
    }

    func template(_ text: String, _ node: Node, _ field: String, scope: TemplateScope) {
        do {
            try Template.validate(text, scope: scope)
        } catch {
            fail(node, field, error.message, hint: error.hint)
        }
    }

    /// A path the user gives for inputs: relative to the base directory or absolute.
    func checkPath(_ path: String, _ node: Node?, _ field: String) {
        if path.contains("\0") { fail(node, field, "path contains a NUL byte") }
    }
}
