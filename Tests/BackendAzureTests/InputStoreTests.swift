import BackendAzure
import BatchHTTP
import Crypto
import Foundation
import Testing
import TestSupport

@Suite("Content-addressed inputs on Blob", .serialized)
struct InputStoreTests {
    @Test("a file already stored, by this job or an earlier one, is not uploaded again; tasks read it by SAS")
    func dedup() async throws {
        let emulator = try AzureEmulatorProcess()
        let transport = CurlTransport()
        let blob = BlobClient(http: HTTPClient(transport: transport), endpoint: "\(emulator.url)/store", account: "store",
                              key: Secret(AzureEmulatorProcess.key))
        let store = InputStore(blob: blob)
        try await blob.createContainer(store.container)
        let dir = NSTemporaryDirectory() + "inputs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "same bytes".write(toFile: "\(dir)/a.txt", atomically: true, encoding: .utf8)
        try "same bytes".write(toFile: "\(dir)/copy-of-a.txt", atomically: true, encoding: .utf8)
        try "other bytes".write(toFile: "\(dir)/b.txt", atomically: true, encoding: .utf8)

        func requests() async throws -> [String: Int] {
            let r = try await transport.send(HTTPRequest(method: "GET", url: "\(emulator.url)/_emulator/stats"))
            return (try JSONSerialization.jsonObject(with: r.body) as? [String: Any])?["requests"] as? [String: Int] ?? [:]
        }
        // Files seen for the first time go in one conditional put each, the
        // copy included; "a later job", whose hash came from the cache, asks
        // first and sends nothing.
        var uploaded: [Int64] = []
        var names: [String] = []
        for (f, seen) in [("a.txt", false), ("copy-of-a.txt", false), ("b.txt", false), ("a.txt", true)] {
            let path = "\(dir)/\(f)"
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? -1
            let (name, sent) = try await store.put(path, size: size, md5: try BlobClient.md5(ofFile: path), likelyStored: seen)
            uploaded.append(sent)
            names.append(name)
        }
        #expect(uploaded == [10, 0, 11, 0])
        #expect(names[0] == names[1] && names[0] == names[3] && names[0] != names[2])
        #expect(names[0] == "md5/" + md5Hex("same bytes"))
        let counts = try await requests()
        #expect(counts["put.blob"] == 3 && counts["blob.properties"] == 1)
        let read0 = try await transport.send(HTTPRequest(method: "GET", url: try store.readURL(names[0], sas: ServiceSAS(account: "store", key: Secret(AzureEmulatorProcess.key)),
                                                                                               lifetime: try SASLifetime.forJob(wallClock: 7200))))
        #expect(String(decoding: read0.body, as: UTF8.self) == "same bytes")

        let sas = ServiceSAS(account: "store", key: Secret(AzureEmulatorProcess.key))
        let url = try store.readURL(names[2], sas: sas, lifetime: try SASLifetime.forJob(wallClock: 7200))
        let read = try await transport.send(HTTPRequest(method: "GET", url: url))
        #expect(read.status == 200 && String(decoding: read.body, as: UTF8.self) == "other bytes")
    }

    @Test("tokens outlive the job's wall clock by the margin; a limit longer than tokens may live is refused")
    func lifetimes() throws {
        #expect(try SASLifetime.forJob(wallClock: 7200, margin: 3600) == SASLifetime(tokenSeconds: 10800, jobWallClockSeconds: 7500))
        #expect(try SASLifetime.forJob(wallClock: nil, margin: 3600, maximum: 86400) == SASLifetime(tokenSeconds: 86400, jobWallClockSeconds: 82800))
        #expect {
            try SASLifetime.forJob(wallClock: 30 * 86400)
        } throws: { "\($0)".contains("limits.wallClock") && "\($0)".contains("maxTokenLifetime") }
    }
}

func md5Hex(_ s: String) -> String {
    Insecure.MD5.hash(data: Data(s.utf8)).map { String(format: "%02x", $0) }.joined()
}
