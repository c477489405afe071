/// Where a placeholder stands in a command's shell text, which decides how
/// its value is quoted.
public enum ShellContext: Sendable, Equatable {
    /// Outside quotes (also inside `$(…)`): the value becomes one quoted word.
    case bare
    /// Inside `"…"`: `\`, `"`, `$` and `` ` `` in the value are escaped.
    case doubleQuoted
    /// Inside `'…'`: each `'` in the value becomes `'\''`.
    case singleQuoted
}

/// A command template whose placeholders are data, not code: each value
/// reaches `/bin/sh` as literal text, whatever it holds (`;`, quotes, `$(…)`,
/// newlines). The shell text around the placeholders is read once, when the
/// manifest is checked, to learn each placeholder's quoting context; a
/// placeholder where no quoting can be trusted (inside `${…}`, `$((…))`,
/// backquotes, a comment, a here-document, after a backslash, after `$'…'`,
/// or after a `case` inside `$(…)`) is refused with the fix.
///
/// ```
/// command: wc -l {file} > "{stem}.count"
/// file = a;echo INJECTED >x;.txt   →   wc -l 'a;echo INJECTED >x;.txt' > "a;echo INJECTED >x;.count"
/// ```
public struct ShellTemplate: Sendable, Equatable {
    enum Piece: Sendable, Equatable { case text(String), value(String, ShellContext) }
    let pieces: [Piece]

    /// The placeholders, each with its context, in order.
    public var placeholders: [(name: String, context: ShellContext)] {
        pieces.compactMap { if case .value(let n, let c) = $0 { return (n, c) } else { return nil } }
    }

    /// Reads a command template; throws when a placeholder stands where its
    /// value could not be quoted safely.
    public init(_ template: String) throws(TemplateError) {
        var lexer = ShellLexer()
        var out: [Piece] = []
        for piece in Template.pieces(template) {
            switch piece {
            case .text(let t):
                for u in t.unicodeScalars { lexer.feed(u) }
                out.append(.text(t))
            case .placeholder(let name):
                out.append(.value(name, try lexer.hole(name)))
            }
        }
        pieces = out
    }

    /// The command with every placeholder's value quoted for its context.
    public func render(_ values: [String: String]) throws(TemplateError) -> String {
        var out = ""
        for piece in pieces {
            switch piece {
            case .text(let t): out += t
            case .value(let name, let context):
                guard let value = values[name] else { throw TemplateError(message: "no value for {\(name)}", hint: nil) }
                if value.utf8.contains(0) {
                    throw TemplateError(message: "the value of {\(name)} contains a NUL byte, which no command can carry", hint: nil)
                }
                out += Self.quote(value, in: context)
            }
        }
        return out
    }

    /// `value` as literal shell text in `context`.
    public static func quote(_ value: String, in context: ShellContext) -> String {
        switch context {
        case .bare:
            if !value.isEmpty, value.unicodeScalars.allSatisfy(isPlain) { return value }
            return "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
        case .singleQuoted:
            return value.replacingOccurrences(of: "'", with: "'\\''")
        case .doubleQuoted:
            var out = ""
            for u in value.unicodeScalars {
                if u == "\\" || u == "\"" || u == "$" || u == "`" { out.unicodeScalars.append("\\") }
                out.unicodeScalars.append(u)
            }
            return out
        }
    }

    /// Characters that mean nothing to the shell anywhere in a word, so a
    /// value made only of them needs no quotes (`data/in-01.txt`, `42`).
    static func isPlain(_ u: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u)
            || u == "_" || u == "." || u == "/" || u == "-" || u == "+" || u == "," || u == ":" || u == "@" || u == "%"
    }
}

/// Just enough of a POSIX shell lexer to know the quoting context at each
/// placeholder: quotes, backslashes, `$(…)`, `${…}`, `$((…))`, backquotes,
/// comments and here-documents. Linear in the text.
struct ShellLexer {
    enum Frame: Equatable {
        case command(depth: Int)   // the top level (depth 0) or $(…)
        case double, single, param(depth: Int), arith(depth: Int), backtick
    }
    var stack: [Frame] = [.command(depth: 0)]
    /// `case` appeared inside `$(…)`: its patterns' unbalanced `)` make the
    /// end of the substitution unknowable here, so no later placeholder is trusted.
    var caseInSubstitution = false
    /// The last characters seen, for `$(`, `<<` and word starts.
    var prev: Unicode.Scalar?
    var prev2: Unicode.Scalar?
    var escaped = false
    var comment = false
    var ansiC = false
    var word = ""
    /// Here-documents: waiting for the end of the line, then inside the body.
    var pendingHeredocs: [(delimiter: String, stripTabs: Bool)] = []
    var heredoc: (delimiter: String, stripTabs: Bool)?
    var heredocLine = ""
    var readingDelimiter: (text: String, stripTabs: Bool, started: Bool, quote: Unicode.Scalar?)?
    /// A `$` seen in a command or double-quoted frame, deciding on the next character.
    var dollar = false

    var top: Frame { stack.last! }

    static func isBlank(_ u: Unicode.Scalar) -> Bool { u == " " || u == "\t" }
    static func endsWord(_ u: Unicode.Scalar) -> Bool { isBlank(u) || u == "\n" || ";&|()<>".unicodeScalars.contains(u) }

    mutating func feed(_ u: Unicode.Scalar) {
        defer { prev2 = prev; prev = u }
        if let h = heredoc {
            if u == "\n" {
                let line = h.stripTabs ? String(heredocLine.drop(while: { $0 == "\t" })) : heredocLine
                heredocLine = ""
                if line == h.delimiter { heredoc = pendingHeredocs.isEmpty ? nil : pendingHeredocs.removeFirst() }
            } else {
                heredocLine.unicodeScalars.append(u)
            }
            return
        }
        if readingDelimiter != nil, readDelimiter(u) { return }
        if escaped { escaped = false; return }
        if comment {
            if u == "\n" { comment = false; newline() }
            return
        }
        if dollar {
            dollar = false
            if afterDollar(u) { return }
        }
        switch top {
        case .single:
            if u == "'" { stack.removeLast() }
        case .double:
            switch u {
            case "\\": escaped = true
            case "\"": stack.removeLast()
            case "$": dollar = true
            case "`": stack.append(.backtick)
            default: break
            }
        case .backtick:
            if u == "\\" { escaped = true } else if u == "`" { stack.removeLast() }
        case .arith(let depth):
            if u == "(" { replaceTop(.arith(depth: depth + 1)) }
            if u == ")" { if depth <= 1 { stack.removeLast() } else { replaceTop(.arith(depth: depth - 1)) } }
        case .param(let depth):
            if opens(u) { break }
            if u == "}" { if depth <= 1 { stack.removeLast() } else { replaceTop(.param(depth: depth - 1)) } }
        case .command(let depth):
            let wordStart = prev.map(Self.endsWord) ?? true
            if Self.endsWord(u) {
                if word == "case", depth > 0 { caseInSubstitution = true }
                word = ""
            } else {
                word.unicodeScalars.append(u)
            }
            if opens(u) { break }
            switch u {
            case "#" where wordStart: comment = true
            case "(" where depth == 1 && prev == "(" && prev2 == "$": replaceTop(.arith(depth: 2))  // $((
            case "(" where depth > 0: replaceTop(.command(depth: depth + 1))
            case ")" where depth > 0:
                if depth <= 1 { stack.removeLast() } else { replaceTop(.command(depth: depth - 1)) }
            case "<" where prev == "<" && prev2 != "<":
                readingDelimiter = ("", false, false, nil)
            case "\n": newline()
            default: break
            }
        }
    }

    /// What opens in unquoted text (a command, or `${…}`): a backslash
    /// escape, quotes, a `$` expansion, backquotes. True when `u` was one.
    mutating func opens(_ u: Unicode.Scalar) -> Bool {
        switch u {
        case "\\": escaped = true
        case "'": stack.append(.single)
        case "\"": stack.append(.double)
        case "$": dollar = true
        case "`": stack.append(.backtick)
        default: return false
        }
        return true
    }

    /// After `$`: opens `$(`, `$((`, `${` or `$'`; false when `u` is ordinary.
    mutating func afterDollar(_ u: Unicode.Scalar) -> Bool {
        switch u {
        case "(":
            stack.append(.command(depth: 1))
            word = ""
            return true
        case "{":
            stack.append(.param(depth: 1))
            return true
        case "'":
            if case .double = top { return false }
            ansiC = true  // $'…' is read differently by dash and bash
            stack.append(.single)
            return true
        default:
            return false
        }
    }

    mutating func replaceTop(_ frame: Frame) { stack[stack.count - 1] = frame }

    mutating func newline() {
        if !pendingHeredocs.isEmpty {
            heredoc = pendingHeredocs.removeFirst()
            heredocLine = ""
        }
    }

    /// Reads a here-document's delimiter word after `<<`; true when `u` was part of it.
    mutating func readDelimiter(_ u: Unicode.Scalar) -> Bool {
        guard var d = readingDelimiter else { return false }
        if !d.started {
            if u == "<" { readingDelimiter = nil; return false }  // `<<<`: a here-string, a plain word
            if u == "-" && d.text.isEmpty && !d.stripTabs { d.stripTabs = true; readingDelimiter = d; return true }
            if Self.isBlank(u) { return true }
            d.started = true
        }
        if let q = d.quote {
            if u == q { d.quote = nil } else { d.text.unicodeScalars.append(u) }
            readingDelimiter = d
            return true
        }
        if u == "'" || u == "\"" { d.quote = u; readingDelimiter = d; return true }
        if u == "\\" { readingDelimiter = d; return true }
        if Self.endsWord(u) {
            pendingHeredocs.append((d.text, d.stripTabs))
            readingDelimiter = nil
            return false  // the character itself still counts (a newline starts the body)
        }
        d.text.unicodeScalars.append(u)
        readingDelimiter = d
        return true
    }

    /// The context of a placeholder here, or why there is none to trust.
    mutating func hole(_ name: String) throws(TemplateError) -> ShellContext {
        func refuse(_ place: String, _ hint: String) -> TemplateError {
            TemplateError(message: "{\(name)} stands \(place), where batchd cannot quote its value safely", hint: hint)
        }
        let viaEnv = "pass the value through the environment instead: env: {VALUE: \"{\(name)}\"} and use \"$VALUE\""
        if heredoc != nil { throw refuse("inside a here-document", viaEnv) }
        if readingDelimiter != nil { throw refuse("in a here-document's delimiter", viaEnv) }
        if escaped { throw refuse("right after a backslash", "remove the backslash: batchd quotes the value itself") }
        if comment { throw refuse("inside a comment", "move it out of the comment") }
        if dollar { throw refuse("right after '$'", "remove the '$'") }
        if ansiC { throw refuse("after $'…' quoting", viaEnv) }
        if caseInSubstitution { throw refuse("after a 'case' inside $(…)", viaEnv) }
        for frame in stack {
            switch frame {
            case .param: throw refuse("inside ${…}", viaEnv)
            case .arith: throw refuse("inside $((…))", viaEnv)
            case .backtick: throw refuse("inside backquotes", "write $(…) instead of `…`")
            default: break
            }
        }
        // A placeholder ends whatever word came before it as far as the
        // lexer cares: it is never `case`, `#` or `<<`.
        prev = "x"
        prev2 = "x"
        word += "x"
        switch top {
        case .single: return .singleQuoted
        case .double: return .doubleQuoted
        default: return .bare
        }
    }
}
