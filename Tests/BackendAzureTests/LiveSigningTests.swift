import BackendAzure
import BatchHTTP
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The emulator checks signatures exactly as WIRE.md says: what it accepts, Azure accepts.
typealias Emulator = AzureEmulatorProcess

@Suite("Signed requests accepted by the emulator", .serialized)
struct LiveSigningTests {
    let emulator: Emulator
    let transport = CurlTransport()

    init() throws { emulator = try Emulator() }

    func send(_ r: HTTPRequest, _ signer: RequestSigner) async throws -> HTTPResponse {
        try await transport.send(try signer.sign(r, now: Date()))
    }

    @Test func batchSharedKey() async throws {
        let good = RequestSigner(service: .batch, account: "acct", key: Secret(Emulator.key))
        let list = HTTPRequest(method: "GET", url: "\(emulator.url)/pools?api-version=2025-06-01&%24filter=state%20eq%20%27active%27")
        #expect(try await send(list, good).status == 200)
        let body = Data(#"{"id":"p1","vmSize":"standard_d2s_v3","targetDedicatedNodes":0}"#.utf8)
        let create = HTTPRequest(method: "POST", url: "\(emulator.url)/pools?api-version=2025-06-01",
                                 headers: [("Content-Type", "application/json; odata=minimalmetadata")], body: .data(body))
        #expect(try await send(create, good).status == 201)
        let bad = RequestSigner(service: .batch, account: "acct", key: Secret("d3Jvbmcta2V5"))
        let refused = try await send(list, bad)
        #expect(refused.status == 403)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("AuthenticationFailed"))
    }

    @Test func blobSharedKeyAndSAS() async throws {
        let signer = RequestSigner(service: .blob, account: "store", key: Secret(Emulator.key))
        let base = "\(emulator.url)/store"
        #expect(try await send(HTTPRequest(method: "PUT", url: "\(base)/inputs?restype=container"), signer).status == 201)
        let put = HTTPRequest(method: "PUT", url: "\(base)/inputs/dir/a%20b.txt",
                              headers: [("x-ms-blob-type", "BlockBlob"), ("Content-Type", "text/plain")], body: .data(Data("hello".utf8)))
        #expect(try await send(put, signer).status == 201)

        let sas = ServiceSAS(account: "store", key: Secret(Emulator.key))
        let token = try sas.token(container: "inputs", permissions: "rl", start: nil, expiry: Date().addingTimeInterval(3600))
        let read = try await transport.send(HTTPRequest(method: "GET", url: "\(base)/inputs/dir/a%20b.txt?\(token)"))
        #expect(read.status == 200 && read.body == Data("hello".utf8))
        let list = try await transport.send(HTTPRequest(method: "GET", url: "\(base)/inputs?restype=container&comp=list&\(token)"))
        #expect(list.status == 200)
        // Read-only: writing with it is refused; so is an expired token and a tampered one.
        #expect(try await transport.send(HTTPRequest(method: "PUT", url: "\(base)/inputs/x?\(token)", headers: [("x-ms-blob-type", "BlockBlob")],
                                                     body: .data(Data("x".utf8)))).status == 403)
        let expired = try sas.token(container: "inputs", permissions: "r", start: nil, expiry: Date().addingTimeInterval(-60))
        #expect(try await transport.send(HTTPRequest(method: "GET", url: "\(base)/inputs/dir/a%20b.txt?\(expired)")).status == 403)
        let tampered = token.replacingOccurrences(of: "sp=rl", with: "sp=rwl")
        #expect(try await transport.send(HTTPRequest(method: "GET", url: "\(base)/inputs/dir/a%20b.txt?\(tampered)")).status == 403)
        let blobToken = try sas.token(container: "inputs", blob: "dir/a b.txt", permissions: "r", start: Date().addingTimeInterval(-60),
                                      expiry: Date().addingTimeInterval(600))
        #expect(try await transport.send(HTTPRequest(method: "GET", url: "\(base)/inputs/dir/a%20b.txt?\(blobToken)")).status == 200)
    }
}
