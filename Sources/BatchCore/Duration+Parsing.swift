import Foundation

/// Parsing and printing of the human durations used in manifests and the
/// daemon config: `90` or `90s`, `10m`, `1h30m`, `2d`, `1.5h`.
public enum HumanDuration {
    /// Parses a duration into seconds, or returns nil when the text is not one.
    ///
    /// A bare number is seconds. Units: `ms`, `s`, `m`, `h`, `d`; several may be
    /// joined (`1h30m`). Numbers are plain decimals of at most 12 digits before
    /// and 9 after the point: no sign, exponent, hex or infinity, so the
    /// result is always finite. Callers bound it (`Bounds.durationSeconds`).
    public static func seconds(from text: String) -> Double? {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !s.isEmpty, s.utf8.count <= 64 else { return nil }
        if let plain = decimal(Substring(s)) { return plain }
        var total = 0.0
        var rest = Substring(s)
        var parts = 0
        while !rest.isEmpty {
            let number = rest.prefix(while: { $0.isASCII && ($0.isNumber || $0 == ".") })
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix(while: { $0.isASCII && $0.isLetter })
            rest = rest.dropFirst(unit.count)
            guard let value = decimal(number), !unit.isEmpty else { return nil }
            let scale: Double
            switch unit {
            case "ms": scale = 0.001
            case "s", "sec", "secs": scale = 1
            case "m", "min", "mins": scale = 60
            case "h", "hr", "hrs": scale = 3600
            case "d", "day", "days": scale = 86400
            default: return nil
            }
            total += value * scale
            parts += 1
            if parts > 8 { return nil }
        }
        return total
    }

    /// A plain decimal: 1–12 digits, optionally `.` and 1–9 digits.
    static func decimal(_ s: Substring) -> Double? {
        let pieces = s.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(pieces.count), let whole = pieces.first, (1...12).contains(whole.count),
              whole.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        if pieces.count == 2 {
            let frac = pieces[1]
            guard (1...9).contains(frac.count), frac.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        }
        return Double(s)
    }

    /// Formats seconds compactly: `45s`, `12m`, `1h30m`, `2d3h`.
    public static func format(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0, seconds < 1e12 else { return "\(seconds)s" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        var rest = Int(seconds.rounded())
        let d = rest / 86400; rest %= 86400
        let h = rest / 3600; rest %= 3600
        let m = rest / 60; let s = rest % 60
        var out = ""
        if d > 0 { out += "\(d)d" }
        if h > 0 { out += "\(h)h" }
        if m > 0 { out += "\(m)m" }
        if s > 0 || out.isEmpty { out += "\(s)s" }
        return out
    }
}
