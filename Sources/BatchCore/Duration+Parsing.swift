import Foundation

/// Parsing and printing of the human durations used in manifests and the
/// daemon config: `90` or `90s`, `10m`, `1h30m`, `2d`, `1.5h`.
public enum HumanDuration {
    /// Parses a duration into seconds, or returns nil when the text is not one.
    ///
    /// A bare number is seconds. Units: `ms`, `s`, `m`, `h`, `d`; several may be
    /// joined (`1h30m`). Negative values are rejected.
    public static func seconds(from text: String) -> Double? {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        if s.isEmpty { return nil }
        if let plain = Double(s) { return plain >= 0 && plain.isFinite ? plain : nil }
        var total = 0.0
        var number = ""
        var unit = ""
        var sawAny = false
        func flush() -> Bool {
            guard let value = Double(number), !unit.isEmpty else { return false }
            let scale: Double
            switch unit {
            case "ms": scale = 0.001
            case "s", "sec", "secs": scale = 1
            case "m", "min", "mins": scale = 60
            case "h", "hr", "hrs": scale = 3600
            case "d", "day", "days": scale = 86400
            default: return false
            }
            total += value * scale
            number = ""
            unit = ""
            sawAny = true
            return true
        }
        for ch in s {
            if ch.isNumber || ch == "." {
                if !unit.isEmpty { guard flush() else { return nil } }
                number.append(ch)
            } else if ch.isLetter {
                if number.isEmpty { return nil }
                unit.append(ch)
            } else {
                return nil
            }
        }
        guard flush(), sawAny else { return nil }
        return total
    }

    /// Formats seconds compactly: `45s`, `12m`, `1h30m`, `2d3h`.
    public static func format(_ seconds: Double) -> String {
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
