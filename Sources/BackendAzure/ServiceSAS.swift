import BatchCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Service SAS tokens (sv 2020-12-06 and later) for a container or a blob:
/// what tasks use to read inputs and write outputs without the account key.
///
/// Signed with the storage account key, or, when the daemon has no key and
/// signs in with Entra ID, with a user delegation key (a user delegation
/// SAS: the key comes from Get User Delegation Key, lives at most 7 days,
/// and every token it signs expires with it at the latest).
public struct ServiceSAS: Sendable {
    /// Storage account name.
    public var account: String
    /// Storage account key, or the user delegation key's value.
    public var key: Secret
    /// The user delegation key's fields, when `key` is one.
    public var delegation: UserDelegationKey?
    /// Service version signed into the token.
    public static let version = "2022-11-02"

    /// A SAS signer with the account key.
    public init(account: String, key: Secret) {
        self.account = account
        self.key = key
    }

    /// A SAS signer with a user delegation key.
    public init(account: String, delegation: UserDelegationKey) {
        self.account = account
        self.key = delegation.value
        self.delegation = delegation
    }

    /// `2026-12-03T02:45:44Z`, as `st` and `se` carry it. Formatted by hand:
    /// a job makes a token per input, and an ISO8601DateFormatter each time
    /// cost more than the signature.
    static func isoDate(_ date: Date) -> String { UTCTime.iso(date.timeIntervalSince1970) }

    /// The token (query string, without `?`) for `container` (or one blob in
    /// it), with permissions such as "rl" or "wc", valid from `start` to `expiry`.
    public func token(container: String, blob: String? = nil, permissions: String, start: Date?, expiry: Date,
                      httpsOnly: Bool = false) throws -> String {
        let st = start.map(Self.isoDate) ?? ""
        let se = Self.isoDate(expiry)
        let sr = blob == nil ? "c" : "b"
        let resource = "/blob/\(account)/\(container)" + (blob.map { "/\($0)" } ?? "")
        let spr = httpsOnly ? "https" : "https,http"
        let fields: [String]
        var items = [("sv", Self.version), ("sr", sr), ("sp", permissions), ("se", se), ("spr", spr)]
        if let d = delegation {
            guard expiry <= d.expiryDate else {
                throw AzureError.tokenTooShort("a token until \(se) would outlive the user delegation key that signs it (until \(d.expiry))")
            }
            // sp st se resource skoid sktid skt ske sks skv saoid suoid scid sip spr sv sr snapshot ses rscc rscd rsce rscl rsct
            fields = [permissions, st, se, resource, d.oid, d.tid, d.start, d.expiry, d.service, d.version, "", "", "", "", spr,
                      Self.version, sr, "", "", "", "", "", "", ""]
            items += [("skoid", d.oid), ("sktid", d.tid), ("skt", d.start), ("ske", d.expiry), ("sks", d.service), ("skv", d.version)]
        } else {
            fields = [permissions, st, se, resource, "", "", spr, Self.version, sr, "", "", "", "", "", "", ""]
        }
        items.append(("sig", try SharedKey.signature(fields.joined(separator: "\n"), key: key)))
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

/// A user delegation key (Get User Delegation Key's answer): signs SAS
/// tokens in place of the account key, until its expiry.
public struct UserDelegationKey: Sendable, Equatable {
    /// The principal's object id and tenant, as the service signed them.
    public var oid: String
    public var tid: String
    /// Validity, as the service wrote it (ISO 8601), and the expiry as a date.
    public var start: String
    public var expiry: String
    public var expiryDate: Date
    /// `b` (Blob), and the service version that made it.
    public var service: String
    public var version: String
    /// The key (base64).
    public var value: Secret

    /// A key.
    public init(oid: String, tid: String, start: String, expiry: String, expiryDate: Date, service: String, version: String, value: Secret) {
        self.oid = oid
        self.tid = tid
        self.start = start
        self.expiry = expiry
        self.expiryDate = expiryDate
        self.service = service
        self.version = version
        self.value = value
    }
}
