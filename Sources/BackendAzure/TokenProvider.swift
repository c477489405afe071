import BatchHTTP
import Foundation

/// Entra ID client credentials (the "unattended account"): fetches a token
/// for one resource, keeps it, and fetches a new one `refreshMargin` seconds
/// before it expires. The authority host is configurable
/// (AZURE_AUTHORITY_HOST), so the emulator can serve it.
public actor TokenProvider {
    let http: HTTPClient
    let url: String
    let clientID: String
    let secret: Secret
    let scope: String
    let refreshMargin: Double
    var cached: (token: Secret, expiry: Date)?

    /// The Batch resource's scope.
    public static let batchScope = "https://batch.core.windows.net/.default"
    /// The Storage resource's scope.
    public static let storageScope = "https://storage.azure.com/.default"

    /// A provider for `scope`.
    public init(http: HTTPClient, authorityHost: String, tenant: String, clientID: String, secret: Secret,
                scope: String, refreshMargin: Double = 300) {
        self.http = http
        url = "\(authorityHost)/\(tenant)/oauth2/v2.0/token"
        self.clientID = clientID
        self.secret = secret
        self.scope = scope
        self.refreshMargin = refreshMargin
    }

    /// A valid token, fetched anew when the kept one is near its expiry.
    public func token(now: Date = Date()) async throws -> Secret {
        if let c = cached, c.expiry.timeIntervalSince(now) > refreshMargin { return c.token }
        let form = [("grant_type", "client_credentials"), ("client_id", clientID), ("client_secret", secret.reveal), ("scope", scope)]
            .map { "\($0.0)=\(ServiceSAS.encode($0.1))" }.joined(separator: "&")
        let url = self.url
        let r = try await http.execute(idempotent: true) {
            HTTPRequest(method: "POST", url: url, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: .data(Data(form.utf8)))
        }
        let obj = (try? JSONSerialization.jsonObject(with: r.body)) as? [String: Any] ?? [:]
        guard r.status == 200, let token = obj["access_token"] as? String else {
            let code = obj["error"] as? String ?? ""
            // Busy or failing: worth trying again, like any service.
            if r.status == 429 || r.status >= 500 {
                throw BatchServiceError(status: r.status, code: code, message: "", operation: "get an Entra ID token")
            }
            throw AzureError.credentialsRefused("Entra ID refused the client credentials of \(clientID) (HTTP \(r.status) \(code))")
        }
        let lifetime = (obj["expires_in"] as? Double) ?? Double(obj["expires_in"] as? String ?? "") ?? 3600
        cached = (Secret(token), now.addingTimeInterval(lifetime))
        return cached!.token
    }

    /// Forgets `token` if it is the one kept: the service refused it before
    /// its time (revoked, or a clock that disagrees), so the next request
    /// fetches a new one.
    public func invalidate(_ token: Secret) {
        if cached?.token == token { cached = nil }
    }
}

/// How requests are authorized: Shared Key, or an Entra ID bearer token.
public enum Authorizer: Sendable {
    /// Shared Key with the account key.
    case sharedKey(RequestSigner)
    /// `Authorization: Bearer` from a token provider (plus the date/version headers the service wants).
    case bearer(TokenProvider, RequestSigner.Service)

    /// Resolves what may need network (a token) once, before the tries.
    public func prepare() async throws -> PreparedAuthorizer {
        switch self {
        case .sharedKey(let s): return PreparedAuthorizer(signer: s, token: nil, service: s.service)
        case .bearer(let p, let service): return PreparedAuthorizer(signer: nil, token: try await p.token(), service: service)
        }
    }
}

extension Authorizer {
    /// Sends what `make` builds, authorized, through `http`. A bearer token
    /// the service refuses (401 with a challenge: expired early, or revoked)
    /// is dropped and the request sent once more with a new one; a second
    /// 401 is the answer. A 401 means the request was not carried out, so
    /// sending it again is safe whatever it does.
    public func execute(_ http: HTTPClient, idempotent: Bool, sinkPath: String? = nil,
                        _ make: @escaping @Sendable () -> HTTPRequest) async throws -> HTTPResponse {
        let first = try await prepare()
        let response = try await http.execute(idempotent: idempotent, sinkPath: sinkPath) { try first.apply(make(), now: Date()) }
        guard response.status == 401, case .bearer(let provider, _) = self, let refused = first.token else { return response }
        await provider.invalidate(refused)
        let again = try await prepare()
        return try await http.execute(idempotent: idempotent, sinkPath: sinkPath) { try again.apply(make(), now: Date()) }
    }
}

/// An authorizer ready to stamp requests synchronously, once per try.
public struct PreparedAuthorizer: Sendable {
    let signer: RequestSigner?
    let token: Secret?
    let service: RequestSigner.Service

    /// The request, authorized.
    public func apply(_ request: HTTPRequest, now: Date) throws -> HTTPRequest {
        if let signer { return try signer.sign(request, now: now) }
        var r = request
        switch service {
        case .batch: r.headers.append(("ocp-date", SharedKey.httpDate(now)))
        case .blob:
            r.headers.append(("x-ms-date", SharedKey.httpDate(now)))
            if r.header("x-ms-version") == nil { r.headers.append(("x-ms-version", RequestSigner.blobVersion)) }
        }
        r.headers.append(("Authorization", "Bearer \(token?.reveal ?? "")"))
        return r
    }
}
