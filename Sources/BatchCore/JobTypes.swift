import Foundation
import Yams

/// Job types: partial manifests the administrator keeps in the types
/// directory (`types/NAME.yaml` beside the daemon's config), each with
/// `parameters:` and their defaults; one may say `default: true`. A manifest
/// says `type: NAME` (or gets the default type) and overrides any field or
/// parameter; `batchctl submit --set NAME=VALUE` overrides a parameter again.
///
/// Mappings that describe one thing (`pool`, `env`, `limits`, `outputs`,
/// `parameters`) are merged key by key, the manifest's keys winning; any
/// other field the manifest gives replaces the type's whole. A problem in a
/// field the manifest took from its type is reported with the type's file
/// and line.
public struct JobTypes: Sendable {
    /// Where the type files are.
    public let directory: String

    /// The types in `directory`.
    public init(directory: String) { self.directory = directory }

    /// `type: none` in a manifest: no type, not even the default one.
    public static let none = "none"

    /// Fields merged key by key rather than replaced.
    static let merged: Set<String> = ["pool", "env", "limits", "outputs", "parameters", "container"]

    /// One type, as `batchctl types` lists it.
    public struct Summary: Sendable, Equatable {
        /// The type's name (its file's name without `.yaml`).
        public var name: String
        /// Whether manifests without `type:` get it.
        public var isDefault: Bool
        /// Its parameters and their defaults.
        public var parameters: [String: String]
        /// Why the file cannot be used, if it cannot.
        public var problem: String?
    }

    /// The names of the type files, sorted (at most `Bounds.jobTypes`).
    public func names() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return entries.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }
            .filter { Template.isIdentifier($0, max: 64) && $0 != Self.none }.sorted().prefix(Bounds.jobTypes).map { $0 }
    }

    /// The path of type `name`'s file.
    public func path(_ name: String) -> String { "\(directory)/\(name).yaml" }

    /// Every type with its parameters (or why it cannot be used).
    public func list() -> [Summary] {
        names().map { name in
            do {
                let root = try load(name)
                let map = root.mapping!
                let isDefault = map["default"]?.bool ?? false
                var params: [String: String] = [:]
                for (k, v) in map["parameters"]?.mapping ?? [:] { if let k = k.string, let v = v.scalar?.string { params[k] = v } }
                return Summary(name: name, isDefault: isDefault, parameters: params, problem: nil)
            } catch {
                return Summary(name: name, isDefault: false, parameters: [:], problem: "\(error)")
            }
        }
    }

    /// Reads and checks type `name`'s file: a mapping of manifest keys
    /// (without `type`), plus `default`.
    func load(_ name: String) throws(ManifestError) -> Node {
        let file = path(name)
        let shown = "types/\(name).yaml"
        func refuse(_ message: String, _ node: Node? = nil, field: String = "", hint: String? = nil) -> ManifestError {
            ManifestError(file: shown, issues: [ManifestIssue(line: node?.mark?.line, column: node?.mark?.column, field: field,
                                                               message: message, hint: hint)])
        }
        guard let handle = FileHandle(forReadingAtPath: file) else { throw refuse("cannot read \(file)") }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: Bounds.jobTypeBytes + 1)) ?? Data()
        if data.count > Bounds.jobTypeBytes { throw refuse("the file is larger than \(Bounds.jobTypeBytes) bytes") }
        let text = try ManifestParser.text(of: [UInt8](data), file: shown)
        try ManifestParser.checkLines(text, file: shown)
        try ManifestParser.refuseAliasKeys(text, file: shown)
        let root: Node
        do {
            guard let node = try ManifestParser.compose(text) else { throw refuse("the job type is empty") }
            root = node
        } catch let e as ManifestError {
            throw e
        } catch {
            throw ManifestError(file: shown, issues: [ManifestParser.syntaxIssue(error)])
        }
        if ManifestParser.shapeProblem(root, budget: 2 * text.utf8.count + 1000) != nil {
            throw refuse("nested too deep, or its aliases expand to far more than the file holds")
        }
        guard let map = root.mapping else { throw refuse("expected a mapping of manifest keys", root) }
        let allowed = ManifestKeys.top.filter { $0 != "type" } + ManifestKeys.typeOnly
        for (key, _) in map {
            guard let k = key.string else { throw refuse("a key is not text", key) }
            if k == "type" { throw refuse("a job type cannot name another type", key, field: "type", hint: "copy the fields it needs instead") }
            if !allowed.contains(k) {
                let hint = Suggest.nearest(to: k, in: allowed).map { "did you mean '\($0)'?" } ?? "valid keys: \(allowed.joined(separator: ", "))"
                throw refuse("unknown key \(Printable.quote(k))", key, field: Printable.escape(String(k.prefix(80))), hint: hint)
            }
        }
        if let d = map["default"], d.bool == nil { throw refuse("expected true or false", d, field: "default") }
        return root
    }

    /// The type a manifest without `type:` gets: the one marked `default: true`.
    func defaultType() throws(ManifestError) -> String? {
        var found: [String] = []
        for name in names() {
            guard let root = try? load(name) else { continue }   // a broken type is reported when it is used
            if root.mapping?["default"]?.bool == true { found.append(name) }
        }
        if found.count > 1 {
            throw ManifestError(file: "types/", issues: [ManifestIssue(line: nil, column: nil, field: "default",
                message: "several job types say default: true (\(found.joined(separator: ", ")))", hint: "keep it on one")])
        }
        return found.first
    }

    /// What `resolve` made: the merged manifest, the type's file as shown in
    /// messages, and the fields (dotted paths) whose values the type gave.
    struct Resolved {
        var root: Node
        var typeFile: String?
        var fromType: [String]
    }

    /// Merges the manifest's type into it, and `set` into its parameters.
    func resolve(_ manifest: Node, file: String, set: [String: String]) throws(ManifestError) -> Resolved {
        guard let map = manifest.mapping else { return Resolved(root: manifest, typeFile: nil, fromType: []) }
        var name: String?
        if let node = map["type"] {
            if let t = node.string, Template.isIdentifier(t, max: 64) {
                if t != Self.none {
                    guard FileManager.default.fileExists(atPath: path(t)) else {
                        let all = names()
                        let hint = Suggest.nearest(to: t, in: all).map { "did you mean '\($0)'?" }
                            ?? (all.isEmpty ? "no job types are defined in \(directory)" : "job types: \(all.joined(separator: ", "))")
                        throw ManifestError(file: file, issues: [ManifestIssue(line: node.mark?.line, column: node.mark?.column, field: "type",
                                                                                message: "no job type \(Printable.quote(t))", hint: hint)])
                    }
                    name = t
                }
            } else {
                // Not a name: the manifest's own check says so.
                return try Self.applySet(Resolved(root: manifest, typeFile: nil, fromType: []), set: set, file: file)
            }
        } else {
            name = try defaultType()
        }
        guard let name else { return try Self.applySet(Resolved(root: manifest, typeFile: nil, fromType: []), set: set, file: file) }
        let type = try load(name)
        var fromType: [String] = []
        var pairs: [(Node, Node)] = []
        let typeMap = type.mapping!
        for (k, v) in typeMap where k.string != "default" {
            let key = k.string!
            if let mine = map[key] {
                if Self.merged.contains(key), let a = v.mapping, let b = mine.mapping {
                    var inner: [(Node, Node)] = []
                    for (ik, iv) in a where b[ik] == nil {
                        inner.append((ik, iv))
                        fromType.append("\(key).\(ik.string ?? "")")
                    }
                    inner += b.map { ($0.key, $0.value) }
                    pairs.append((mapKey(map, key) ?? k, .mapping(Node.Mapping(inner, b.tag, b.style, b.mark))))
                } else {
                    pairs.append((mapKey(map, key) ?? k, mine))
                }
            } else {
                pairs.append((k, v))
                fromType.append(key)
            }
        }
        for (k, v) in map where k.string.map({ typeMap[$0] == nil }) ?? true { pairs.append((k, v)) }
        let root = Node.mapping(Node.Mapping(pairs, map.tag, map.style, map.mark))
        return try Self.applySet(Resolved(root: root, typeFile: "types/\(name).yaml", fromType: fromType), set: set, file: file)
    }

    func mapKey(_ map: Node.Mapping, _ key: String) -> Node? { map.first { $0.key.string == key }?.key }

    /// Overrides parameters the job declares with `set`; a name it does not
    /// declare is refused, with the nearest one.
    static func applySet(_ r: Resolved, set: [String: String], file: String) throws(ManifestError) -> Resolved {
        guard !set.isEmpty, let map = r.root.mapping else { return r }
        let declared = map["parameters"]?.mapping
        let known = (declared ?? [:]).compactMap { $0.key.string }
        var issues: [ManifestIssue] = []
        for name in set.keys.sorted() where !known.contains(name) {
            let hint = Suggest.nearest(to: name, in: known).map { "did you mean '\($0)'?" }
                ?? (known.isEmpty ? "the job declares no parameters" : "its parameters: \(known.sorted().joined(separator: ", "))")
            issues.append(ManifestIssue(line: nil, column: nil, field: "parameters.\(Printable.escape(String(name.prefix(80))))",
                                        message: "--set \(Printable.escape(String(name.prefix(80)))): the job has no such parameter", hint: hint))
        }
        if !issues.isEmpty { throw ManifestError(file: file, issues: issues) }
        var params: [(Node, Node)] = []
        var fromType = r.fromType
        for (k, v) in declared ?? [:] {
            if let name = k.string, let value = set[name] {
                params.append((k, .scalar(Node.Scalar(value, .init(.str), .doubleQuoted, v.mark))))
                fromType.removeAll { $0 == "parameters.\(name)" }
            } else {
                params.append((k, v))
            }
        }
        var pairs = map.map { ($0.key, $0.value) }
        if let i = pairs.firstIndex(where: { $0.0.string == "parameters" }), let d = declared {
            pairs[i].1 = .mapping(Node.Mapping(params, d.tag, d.style, d.mark))
        }
        return Resolved(root: .mapping(Node.Mapping(pairs, map.tag, map.style, map.mark)), typeFile: r.typeFile, fromType: fromType)
    }
}
