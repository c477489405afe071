import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Shared Key signing for Azure Batch and Azure Blob Storage, exactly as
/// ../shared/azure/WIRE.md describes (and the emulator checks).
public enum SharedKey {
    /// The twelve standard slots, each followed by a newline.
    static func standardSlots(method: String, headers: [String: String], blob: Bool) -> String {
        var length = headers["content-length"] ?? ""
        if blob && length == "0" { length = "" }
        let slots = [method, headers["content-encoding"] ?? "", headers["content-language"] ?? "", length,
                     headers["content-md5"] ?? "", headers["content-type"] ?? "", headers["date"] ?? "",
                     headers["if-modified-since"] ?? "", headers["if-match"] ?? "", headers["if-none-match"] ?? "",
                     headers["if-unmodified-since"] ?? "", headers["range"] ?? ""]
        return slots.map { $0 + "\n" }.joined()
    }

    static func lowercased(_ headers: [(name: String, value: String)]) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in headers { out[k.lowercased()] = v }
        return out
    }

    /// The Batch string to sign. `path` is the raw (encoded) URL path;
    /// `query` holds decoded values.
    public static func batchStringToSign(method: String, path: String, query: [(String, String)],
                                         headers: [(name: String, value: String)], account: String) -> String {
        let h = lowercased(headers)
        var s = standardSlots(method: method, headers: h, blob: false)
        for (k, v) in h.filter({ $0.key.contains("ocp-") }).sorted(by: { $0.key < $1.key }) { s += "\(k):\(v)\n" }
        s += "/\(account)\(path)"
        for (k, v) in query.sorted(by: { $0.0 < $1.0 }) { s += "\n\(k):\(v)" }
        return s
    }

    /// The Blob string to sign (path-style URLs include the account in `path`).
    public static func blobStringToSign(method: String, path: String, query: [(String, String)],
                                        headers: [(name: String, value: String)], account: String) -> String {
        let h = lowercased(headers)
        var s = standardSlots(method: method, headers: h, blob: true)
        for (k, v) in h.filter({ $0.key.hasPrefix("x-ms-") }).sorted(by: { $0.key < $1.key }) { s += "\(k):\(v)\n" }
        s += "/\(account)\(path)"
        var grouped: [String: [String]] = [:]
        for (k, v) in query { grouped[k.lowercased(), default: []].append(v) }
        for k in grouped.keys.sorted() { s += "\n\(k):\(grouped[k]!.sorted().joined(separator: ","))" }
        return s
    }

    /// base64(HMAC-SHA256(base64decode(key), utf8(text))).
    public static func signature(_ text: String, key: Secret) throws -> String {
        guard let raw = Data(base64Encoded: key.reveal) else { throw AzureError.badCredentials("the account key is not base64") }
        let mac = HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: SymmetricKey(data: raw))
        return Data(mac).base64EncodedString()
    }

    /// RFC 1123 date, as `ocp-date` and `x-ms-date` carry it.
    /// (Formatted by hand: this runs for every signed request and retry.)
    public static func httpDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }
}

/// Errors of the Azure backend. Messages never contain a secret.
public enum AzureError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Credentials are missing or malformed; says which and where they come from.
    case badCredentials(String)
    /// A SAS would expire before the job's limit.
    case tokenTooShort(String)
    /// A request the daemon refuses, with the reason.
    case badRequest(String)
    /// Entra ID refused the client credentials (a wrong, expired or rotated secret).
    case credentialsRefused(String)

    /// The message.
    public var description: String {
        switch self {
        case .badCredentials(let m): return "Azure credentials: \(m)"
        case .tokenTooShort(let m), .badRequest(let m), .credentialsRefused(let m): return m
        }
    }
}
