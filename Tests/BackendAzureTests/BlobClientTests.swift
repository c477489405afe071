import BackendAzure
import BatchHTTP
import Crypto
import Foundation
import Synchronization
import Testing
import TestSupport

@Suite("Blob client against the emulator", .serialized)
struct BlobClientTests {
    let emulator: Emulator
    let transport = CurlTransport()
    var client: BlobClient

    init() throws {
        emulator = try Emulator()
        client = BlobClient(http: HTTPClient(transport: transport, sleep: { _ in }), endpoint: "\(emulator.url)/store",
                            account: "store", key: Secret(Emulator.key))
        client.blockSize = 256 * 1024
        client.singlePutLimit = 256 * 1024
        client.concurrency = 3
    }

    func stats() async throws -> [String: Int] {
        let r = try await transport.send(HTTPRequest(method: "GET", url: "\(emulator.url)/_emulator/stats"))
        let obj = try JSONSerialization.jsonObject(with: r.body) as? [String: Any]
        return obj?["requests"] as? [String: Int] ?? [:]
    }

    func file(_ bytes: Int) throws -> String {
        let path = NSTemporaryDirectory() + "blob-\(UUID().uuidString)"
        let data = Data((0..<bytes).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) })
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func containersAreIdempotent() async throws {
        #expect(try await client.createContainer("first"))
        #expect(try await !client.createContainer("first"))
        #expect(try await client.deleteContainer("first"))
        #expect(try await !client.deleteContainer("first"))
    }

    @Test("a big file goes in parallel blocks and comes back byte-identical through parallel ranges")
    func blocksAndRanges() async throws {
        try await client.createContainer("data")
        let path = try file(1_000_000)
        let md5 = try BlobClient.md5(ofFile: path)
        let told = Mutex<[Int64]>([])
        #expect(try await client.upload(path, to: "data", as: "dir/big file.bin", md5: md5, progress: { n in told.withLock { $0.append(n) } }) == 1_000_000)
        #expect(told.withLock { $0.count == 4 && $0.reduce(0, +) == 1_000_000 }, "each block's bytes are told as it is stored")
        let s = try await stats()
        #expect(s["put.block"] == 4 && s["put.blocklist"] == 1)
        #expect(try await client.properties("data", "dir/big file.bin")?.md5 == md5)
        let out = NSTemporaryDirectory() + "back-\(UUID().uuidString)/big.bin"
        try await client.download("data", "dir/big file.bin", to: out)
        #expect(FileManager.default.contents(atPath: out) == FileManager.default.contents(atPath: path))
        #expect(try await stats()["get.blob"] == 4)
        #expect(try await client.list("data", prefix: "dir/") == ["dir/big file.bin"])
    }

    @Test("an interrupted upload resumes: blocks already staged are not sent again")
    func resume() async throws {
        try await client.createContainer("resume")
        let path = try file(1_000_000)
        let md5 = try BlobClient.md5(ofFile: path)
        // What a crash leaves: the first two blocks staged, nothing committed.
        let signer = RequestSigner(service: .blob, account: "store", key: Secret(Emulator.key))
        let data = FileManager.default.contents(atPath: path)!
        for i in 0..<2 {
            let id = ServiceSAS.encode(Data(String(format: "batchd-block-%06d", i).utf8).base64EncodedString())
            let chunk = data[(i * 262_144)..<((i + 1) * 262_144)]
            let r = try await transport.send(try signer.sign(HTTPRequest(method: "PUT", url: "\(emulator.url)/store/resume/f?comp=block&blockid=\(id)",
                                                                         body: .data(Data(chunk))), now: Date()))
            #expect(r.status == 201)
        }
        #expect(try await client.upload(path, to: "resume", as: "f", md5: md5) == 1_000_000 - 2 * 262_144)
        let out = NSTemporaryDirectory() + "resumed-\(UUID().uuidString)"
        try await client.download("resume", "f", to: out)
        #expect(FileManager.default.contents(atPath: out) == data)
    }

    func faults(_ json: String) async throws {
        let r = try await transport.send(HTTPRequest(method: "POST", url: "\(emulator.url)/_emulator/faults", body: .data(Data(json.utf8))))
        #expect(r.status == 200)
    }

    @Test("an interrupted download resumes: ranges already on disk are not fetched again, unless the blob changed")
    func downloadResumes() async throws {
        try await client.createContainer("downloads")
        let path = try file(10 * 256 * 1024)
        let md5 = try BlobClient.md5(ofFile: path)
        try await client.upload(path, to: "downloads", as: "f", md5: md5)
        var one = client
        one.concurrency = 1
        let out = NSTemporaryDirectory() + "dl-\(UUID().uuidString)/f"
        // The properties read and three ranges get through; then the service is down.
        try await faults(#"{"outage_after": 4}"#)
        _ = try await transport.send(HTTPRequest(method: "DELETE", url: "\(emulator.url)/_emulator/stats"))
        await #expect(throws: (any Error).self) { try await one.download("downloads", "f", to: out) }
        #expect(try await stats()["get.blob"] == 3)
        #expect(!FileManager.default.fileExists(atPath: out), "nothing half-written under the real name")
        try await faults(#"{"outage_after": -1}"#)
        _ = try await transport.send(HTTPRequest(method: "DELETE", url: "\(emulator.url)/_emulator/stats"))
        try await one.download("downloads", "f", to: out)
        #expect(try await stats()["get.blob"] == 7, "only the seven missing ranges")
        #expect(FileManager.default.contents(atPath: out) == FileManager.default.contents(atPath: path))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (out as NSString).deletingLastPathComponent)
        #expect(leftovers == ["f"], "no temp or progress file left: \(leftovers)")

        // Interrupted again, then the blob is replaced: the old ranges must not be reused.
        let out2 = NSTemporaryDirectory() + "dl-\(UUID().uuidString)/f"
        try await faults(#"{"outage_after": 4}"#)
        await #expect(throws: (any Error).self) { try await one.download("downloads", "f", to: out2) }
        try await faults(#"{"outage_after": -1}"#)
        let other = try file(10 * 256 * 1024 + 7)
        try await client.upload(other, to: "downloads", as: "f", md5: try BlobClient.md5(ofFile: other))
        _ = try await transport.send(HTTPRequest(method: "DELETE", url: "\(emulator.url)/_emulator/stats"))
        try await one.download("downloads", "f", to: out2)
        #expect(try await stats()["get.blob"] == 11)
        #expect(FileManager.default.contents(atPath: out2) == FileManager.default.contents(atPath: other))
    }

    @Test("MD5 guards both ways: a single put with the wrong MD5 is refused; a blob whose content does not match its MD5 is not downloaded")
    func md5Mismatch() async throws {
        try await client.createContainer("bad")
        let wrong = Data(Insecure.MD5.hash(data: Data("something else".utf8))).base64EncodedString()
        await #expect(throws: BlobError.self) { try await client.upload(try file(1000), to: "bad", as: "small", md5: wrong) }
        // Blocks carry no whole-blob check, so a wrong stored MD5 can exist; downloads catch it.
        try await client.upload(try file(300_000), to: "bad", as: "f", md5: wrong)
        let out = NSTemporaryDirectory() + "bad-\(UUID().uuidString)"
        await #expect(throws: BlobError.self) { try await client.download("bad", "f", to: out) }
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
