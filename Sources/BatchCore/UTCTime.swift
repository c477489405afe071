import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Times in UTC as batchd writes them, formatted by hand with gmtime_r: a
/// Foundation date formatter pages in ICU's data, 0.75 MiB of the daemon's
/// memory the first time a `show` of a job asked for its dates
/// (bench/limits.md, "Peak RSS"), and costs more than a token's signature
/// when made per input.
public enum UTCTime {
    /// `2026-12-03T02:45:44Z` (whole seconds, rounded down).
    public static func iso(_ seconds: Double) -> String {
        let t = fields(seconds)
        return "\(t.year)-\(two(t.month))-\(two(t.day))T\(two(t.hour)):\(two(t.minute)):\(two(t.second))Z"
    }

    /// `20261203-024544`: a job id's time.
    public static func compact(_ seconds: Double) -> String {
        let t = fields(seconds)
        return "\(t.year)\(two(t.month))\(two(t.day))-\(two(t.hour))\(two(t.minute))\(two(t.second))"
    }

    /// `2026-12-03`.
    public static func day(_ seconds: Double) -> String {
        let t = fields(seconds)
        return "\(t.year)-\(two(t.month))-\(two(t.day))"
    }

    static func fields(_ seconds: Double) -> (year: Int, month: Int32, day: Int32, hour: Int32, minute: Int32, second: Int32) {
        var time = time_t(seconds.rounded(.down))
        var tm = Glibc.tm()
        gmtime_r(&time, &tm)
        return (Int(tm.tm_year) + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
    }

    static func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
}
