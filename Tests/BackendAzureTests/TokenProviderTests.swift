import BackendAzure
import BatchHTTP
import Foundation
import Testing
import TestSupport

@Suite("Entra ID client credentials against the emulator", .serialized)
struct TokenProviderTests {
    let emulator: AzureEmulatorProcess
    let http = HTTPClient(transport: CurlTransport(), sleep: { _ in })

    init() throws { emulator = try AzureEmulatorProcess(extraArguments: ["--client", "tenant-1:app-1:s3cret-value"]) }

    func provider(secret: String = "s3cret-value", scope: String) -> TokenProvider {
        TokenProvider(http: http, authorityHost: emulator.url, tenant: "tenant-1", clientID: "app-1", secret: Secret(secret), scope: scope)
    }

    func tokenRequests() async throws -> Int {
        let r = try await http.transport.send(HTTPRequest(method: "GET", url: "\(emulator.url)/_emulator/stats"))
        return ((try JSONSerialization.jsonObject(with: r.body) as? [String: Any])?["requests"] as? [String: Int])?["token"] ?? 0
    }

    @Test("a token is kept until five minutes before it expires, then fetched again")
    func caching() async throws {
        let p = provider(scope: TokenProvider.batchScope)
        let now = Date()
        let first = try await p.token(now: now)
        #expect(try await p.token(now: now.addingTimeInterval(60)) == first)
        #expect(try await tokenRequests() == 1)
        let renewed = try await p.token(now: now.addingTimeInterval(3600 - 200))
        #expect(renewed != first)
        #expect(try await tokenRequests() == 2)
    }

    @Test("Batch and Blob accept the bearer tokens of their own resource")
    func bearerClients() async throws {
        let batch = BatchClient(http: http, endpoint: emulator.url, authorizer: .bearer(provider(scope: TokenProvider.batchScope), .batch))
        #expect(try await batch.createPool(["id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 0]))
        let blob = BlobClient(http: http, endpoint: "\(emulator.url)/store", authorizer: .bearer(provider(scope: TokenProvider.storageScope), .blob))
        #expect(try await blob.createContainer("tokens"))
        let wrongAudience = BlobClient(http: http, endpoint: "\(emulator.url)/store", authorizer: .bearer(provider(scope: TokenProvider.batchScope), .blob))
        await #expect(throws: BlobError.self) { try await wrongAudience.createContainer("nope") }
    }

    @Test("a wrong client secret is refused, and the error names the client but never the secret")
    func wrongSecret() async throws {
        do {
            _ = try await provider(secret: "not-the-secret", scope: TokenProvider.batchScope).token()
            Issue.record("expected a refusal")
        } catch {
            #expect("\(error)".contains("app-1"))
            #expect(!"\(error)".contains("not-the-secret"))
        }
    }
}
