import BatchHTTP
import Foundation

/// Signs requests with Shared Key: adds the date and version headers the
/// service expects and the Authorization header. Re-signed on every try,
/// since the signature covers the date.
public struct RequestSigner: Sendable {
    /// Which service's rules.
    public enum Service: Sendable { case batch, blob }

    /// The service.
    public var service: Service
    /// The account name.
    public var account: String
    /// The account key.
    public var key: Secret
    /// x-ms-version sent to Blob.
    public static let blobVersion = "2023-11-03"

    /// A signer.
    public init(service: Service, account: String, key: Secret) {
        self.service = service
        self.account = account
        self.key = key
    }

    /// The request with the date, version and Authorization headers added.
    public func sign(_ request: HTTPRequest, now: Date) throws -> HTTPRequest {
        var r = request
        guard let components = URLComponents(string: r.url) else { throw AzureError.badCredentials("cannot sign a malformed URL") }
        let date = SharedKey.httpDate(now)
        switch service {
        case .batch: r.headers.append(("ocp-date", date))
        case .blob:
            r.headers.append(("x-ms-date", date))
            if r.header("x-ms-version") == nil { r.headers.append(("x-ms-version", Self.blobVersion)) }
        }
        // curl sends Content-Length for bodies (and 0 for empty PUT/POST): sign what goes out.
        if r.header("Content-Length") == nil, r.method == "PUT" || r.method == "POST" || r.body.length > 0 {
            r.headers.append(("Content-Length", String(r.body.length)))
        }
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        let query = (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }
        let text = service == .batch
            ? SharedKey.batchStringToSign(method: r.method, path: path, query: query, headers: r.headers, account: account)
            : SharedKey.blobStringToSign(method: r.method, path: path, query: query, headers: r.headers, account: account)
        r.headers.append(("Authorization", "SharedKey \(account):\(try SharedKey.signature(text, key: key))"))
        return r
    }
}
