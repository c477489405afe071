/// Shell-style globs over `/`-separated paths: `*` and `?` within one path
/// component, `[abc]`, `[a-z]` and `[!x]` classes, and `**` for any number of
/// directories. A leading `.` in a name is only matched by a pattern component
/// that starts with `.`, as in the shell. Pure: the walk lives in an adapter.
public struct Glob: Sendable, Equatable {
    /// The pattern's components.
    public let components: [String]

    /// A glob from its text; empty components (`a//b`) and `.` are dropped,
    /// and repeated `**` are one.
    public init(_ pattern: String) {
        var parts: [String] = []
        for part in pattern.split(separator: "/") where part != "." {
            if part == "**", parts.last == "**" { continue }  // `**/**` is `**`
            parts.append(String(part))
        }
        components = parts
    }

    /// Whether the text has any wildcard at all.
    public static func hasWildcard(_ s: String) -> Bool { s.contains { "*?[".contains($0) } }

    /// Whether a relative path (components) matches the whole pattern.
    public func matches(_ path: [String]) -> Bool { Self.match(components[...], path[...]) }

    static func match(_ pattern: ArraySlice<String>, _ path: ArraySlice<String>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == "**" {
            let rest = pattern.dropFirst()
            var p = path
            while true {
                if match(rest, p) { return true }
                guard let head = p.first, !head.hasPrefix(".") else { return false }
                p = p.dropFirst()
            }
        }
        guard let name = path.first, component(first, name) else { return false }
        return match(pattern.dropFirst(), path.dropFirst())
    }

    /// Whether one name matches one pattern component.
    public static func component(_ pattern: String, _ name: String) -> Bool {
        if name.hasPrefix("."), !pattern.hasPrefix(".") { return false }
        return wildcard(Array(pattern.unicodeScalars)[...], Array(name.unicodeScalars)[...])
    }

    static func wildcard(_ p: ArraySlice<Unicode.Scalar>, _ s: ArraySlice<Unicode.Scalar>) -> Bool {
        var p = p, s = s
        var star: (ArraySlice<Unicode.Scalar>, ArraySlice<Unicode.Scalar>)?
        while true {
            if let pc = p.first {
                if pc == "*" {
                    star = (p.dropFirst(), s)
                    p = p.dropFirst()
                    continue
                }
                if let sc = s.first {
                    if pc == "?" { p = p.dropFirst(); s = s.dropFirst(); continue }
                    if pc == "[", let (ok, rest) = bracket(p, sc) {
                        if ok { p = rest; s = s.dropFirst(); continue }
                    } else if pc == "\\", p.count > 1, p[p.startIndex + 1] == sc {
                        p = p.dropFirst(2); s = s.dropFirst(); continue
                    } else if pc == sc {
                        p = p.dropFirst(); s = s.dropFirst(); continue
                    }
                }
            } else if s.isEmpty {
                return true
            }
            // Backtrack: let the last star eat one more character.
            guard let (sp, ss) = star, !ss.isEmpty else { return false }
            star = (sp, ss.dropFirst())
            p = sp
            s = ss.dropFirst()
        }
    }

    /// Matches a `[...]` class at the start of `p` against `c`; nil when the
    /// bracket is not closed (then `[` is literal).
    static func bracket(_ p: ArraySlice<Unicode.Scalar>, _ c: Unicode.Scalar) -> (Bool, ArraySlice<Unicode.Scalar>)? {
        var i = p.index(after: p.startIndex)
        var negate = false
        if i < p.endIndex, p[i] == "!" || p[i] == "^" { negate = true; i += 1 }
        var matched = false
        var first = true
        while i < p.endIndex {
            let ch = p[i]
            if ch == "]" && !first { return (matched != negate, p[(i + 1)...]) }
            first = false
            if i + 2 < p.endIndex, p[i + 1] == "-", p[i + 2] != "]" {
                if ch.value <= c.value && c.value <= p[i + 2].value { matched = true }
                i += 3
            } else {
                if ch == c { matched = true }
                i += 1
            }
        }
        return nil
    }
}
