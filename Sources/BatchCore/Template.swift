/// Which placeholders a template may use.
public struct TemplateScope: Sendable, Equatable {
    /// Placeholders every task has: its id, its 0-based index, the job id.
    public static let common = ["task", "index", "job"]
    /// Allowed names.
    public var names: [String]
    /// Whether `{row.COLUMN}` is allowed (the columns are checked at expansion).
    public var rowColumns: Bool
    /// The job's parameters, for `{param.NAME}`.
    public var params: [String] = []

    /// A scope of the given names.
    public init(names: [String], rowColumns: Bool, params: [String] = []) {
        self.names = names
        self.rowColumns = rowColumns
        self.params = params
    }

    /// The placeholders a task source provides.
    public init(for source: TaskSource) {
        switch source {
        case .list: self.init(names: Self.common, rowColumns: false)
        case .forEachFile: self.init(names: Self.common + ["file", "name", "stem"], rowColumns: false)
        case .forEachInteger: self.init(names: Self.common + ["i"], rowColumns: false)
        case .forEachRow: self.init(names: Self.common, rowColumns: true)
        }
    }
}

/// A problem with a template: an unknown placeholder.
public struct TemplateError: Error, Sendable, Equatable {
    /// What is wrong.
    public var message: String
    /// How to fix it.
    public var hint: String?
}

/// `{name}` placeholders in commands, environment values and task ids.
///
/// Only `{identifier}`, `{row.identifier}` and `{param.identifier}` are placeholders, so shell text
/// such as `${HOME}` or awk's `{print $1}` passes through unchanged; `{{` and
/// `}}` write a literal brace.
public enum Template {
    enum Piece: Equatable { case text(String), placeholder(String) }

    /// Longest placeholder name (`row.` and a column name).
    static let maxName = 132

    /// Splits a template into text and placeholders in one pass: a `{` looks
    /// at most `maxName` characters ahead for its `}`, so a text of many `{`
    /// costs linear time, not quadratic.
    static func pieces(_ text: String) -> [Piece] {
        var out: [Piece] = []
        var literal = ""
        let chars = Array(text.unicodeScalars)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "{", i + 1 < chars.count, chars[i + 1] == "{" { literal.unicodeScalars.append("{"); i += 2; continue }
            if c == "}", i + 1 < chars.count, chars[i + 1] == "}" { literal.unicodeScalars.append("}"); i += 2; continue }
            if c == "{", i == 0 || chars[i - 1] != "$" {
                var close = i + 1
                let limit = min(chars.count, i + 2 + maxName)
                while close < limit, chars[close] != "}", chars[close] != "{" { close += 1 }
                if close < limit, chars[close] == "}" {
                    var name = ""
                    name.unicodeScalars.append(contentsOf: chars[(i + 1)..<close])
                    if isPlaceholderName(name) {
                        if !literal.isEmpty { out.append(.text(literal)); literal = "" }
                        out.append(.placeholder(name))
                        i = close + 1
                        continue
                    }
                }
            }
            literal.unicodeScalars.append(c)
            i += 1
        }
        if !literal.isEmpty { out.append(.text(literal)) }
        return out
    }

    static func isPlaceholderName(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return false }
        if parts.count == 2, parts[0] != "row", parts[0] != "param" { return false }
        return parts.allSatisfy { part in
            guard let first = part.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
            return part.unicodeScalars.allSatisfy { $0 == "_" || $0 == "-" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
        }
    }

    /// The placeholders a template uses, in order.
    public static func placeholders(in text: String) -> [String] {
        pieces(text).compactMap { if case .placeholder(let n) = $0 { return n } else { return nil } }
    }

    /// Checks that every placeholder is one the scope provides.
    public static func validate(_ text: String, scope: TemplateScope) throws(TemplateError) {
        for name in placeholders(in: text) {
            if name.hasPrefix("row.") {
                if scope.rowColumns { continue }
                throw TemplateError(message: "{\(name)} is only available with tasks.forEachRow", hint: nil)
            }
            if name.hasPrefix("param.") {
                let param = String(name.dropFirst(6))
                if scope.params.contains(param) { continue }
                let hint = Suggest.nearest(to: param, in: scope.params).map { "did you mean {param.\($0)}?" }
                    ?? "declare it under 'parameters:' (in the manifest or its job type)"
                throw TemplateError(message: "unknown parameter {\(name)}", hint: hint)
            }
            if !scope.names.contains(name) {
                let all = scope.names + (scope.rowColumns ? ["row.COLUMN"] : [])
                let hint = Suggest.nearest(to: name, in: scope.names).map { "did you mean {\($0)}?" }
                    ?? "available here: \(all.map { "{\($0)}" }.joined(separator: ", ")); write {{ and }} for literal braces"
                throw TemplateError(message: "unknown placeholder {\(name)}", hint: hint)
            }
        }
    }

    /// Fills the placeholders from `values`; a name missing from `values` is an error.
    public static func render(_ text: String, values: [String: String]) throws(TemplateError) -> String {
        var out = ""
        for piece in pieces(text) {
            switch piece {
            case .text(let t): out += t
            case .placeholder(let name):
                guard let value = values[name] else {
                    throw TemplateError(message: "no value for {\(name)}", hint: nil)
                }
                out += value
            }
        }
        return out
    }

    /// Whether `s` is 1...max letters, digits, `-` and `_`, starting with a
    /// letter or digit: the shape of job names, pool
    /// ids and task ids (what batch services allow in ids).
    public static func isIdentifier(_ s: String, max: Int) -> Bool {
        guard !s.isEmpty, s.count <= max, let first = s.unicodeScalars.first else { return false }
        func alnum(_ u: Unicode.Scalar) -> Bool { ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u) }
        return alnum(first) && s.unicodeScalars.allSatisfy { alnum($0) || $0 == "-" || $0 == "_" }
    }
}
