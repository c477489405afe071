import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Service SAS tokens (sv 2020-12-06 and later) for a container or a blob:
/// what tasks use to read inputs and write outputs without the account key.
public struct ServiceSAS: Sendable {
    /// Storage account name.
    public var account: String
    /// Storage account key.
    public var key: Secret
    /// Service version signed into the token.
    public static let version = "2022-11-02"

    /// A SAS signer.
    public init(account: String, key: Secret) {
        self.account = account
        self.key = key
    }

    /// `2026-12-03T02:45:44Z`, as `st` and `se` carry it. Formatted by hand:
    /// a job makes a token per input, and an ISO8601DateFormatter each time
    /// cost more than the signature.
    static func isoDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
    }

    /// The token (query string, without `?`) for `container` (or one blob in
    /// it), with permissions such as "rl" or "wc", valid from `start` to `expiry`.
    public func token(container: String, blob: String? = nil, permissions: String, start: Date?, expiry: Date,
                      httpsOnly: Bool = false) throws -> String {
        let st = start.map(Self.isoDate) ?? ""
        let se = Self.isoDate(expiry)
        let sr = blob == nil ? "c" : "b"
        let resource = "/blob/\(account)/\(container)" + (blob.map { "/\($0)" } ?? "")
        let spr = httpsOnly ? "https" : "https,http"
        let fields = [permissions, st, se, resource, "", "", spr, Self.version, sr, "", "", "", "", "", "", ""]
        let sig = try SharedKey.signature(fields.joined(separator: "\n"), key: key)
        var items = [("sv", Self.version), ("sr", sr), ("sp", permissions), ("se", se), ("spr", spr), ("sig", sig)]
        if !st.isEmpty { items.insert(("st", st), at: 3) }
        return items.map { "\($0.0)=\(Self.encode($0.1))" }.joined(separator: "&")
    }

    /// Percent-encoding for a query value (RFC 3986 unreserved characters kept).
    public static func encode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }
}
