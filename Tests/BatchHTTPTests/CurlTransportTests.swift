import BatchHTTP
import Foundation
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite("libcurl transport against a real HTTP peer", .serialized)
struct CurlTransportTests {
    let emulator: AzureEmulatorProcess
    let transport = CurlTransport()

    init() throws { emulator = try AzureEmulatorProcess() }

    func admin(_ path: String, _ json: String? = nil) async throws -> HTTPResponse {
        try await transport.send(HTTPRequest(method: json == nil ? "GET" : "POST", url: "\(emulator.url)/_emulator/\(path)",
                                             headers: [("Content-Type", "application/json")], body: json.map { .data(Data($0.utf8)) } ?? .none))
    }

    @Test func getAndHeaders() async throws {
        let r = try await admin("stats")
        #expect(r.status == 200)
        #expect(r.header("Content-Type") == "application/json")
        #expect(String(decoding: r.body, as: UTF8.self).contains("\"requests\""))
    }

    @Test("a body streams from a region of a file")
    func fileBody() async throws {
        let path = NSTemporaryDirectory() + "body-\(UUID().uuidString)"
        let json = #"{"latency": 0.0, "error_status": 503}"#
        try ("XXXX" + json + "YYYY").write(toFile: path, atomically: true, encoding: .utf8)
        let r = try await transport.send(HTTPRequest(method: "POST", url: "\(emulator.url)/_emulator/faults",
                                                     body: .file(path: path, offset: 4, length: Int64(json.utf8.count))))
        #expect(r.status == 200)
        #expect(String(decoding: r.body, as: UTF8.self).contains("\"error_status\": 503"))
    }

    @Test("a 2xx body streams into a file")
    func downloadToFile() async throws {
        let path = NSTemporaryDirectory() + "download-\(UUID().uuidString)"
        let r = try await transport.download(HTTPRequest(method: "GET", url: "\(emulator.url)/_emulator/stats"), to: path)
        #expect(r.status == 200 && r.body.isEmpty)
        #expect(String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self).contains("\"requests\""))
    }

    @Test("throttling answers are retried after Retry-After; the final answer is returned")
    func retries() async throws {
        _ = try await admin("faults", #"{"error_burst": 2, "error_status": 503, "retry_after": 0.01}"#)
        let waits = Mutex<[Double]>([])
        let client = HTTPClient(transport: transport, sleep: { s in waits.withLock { $0.append(s) } }, jitter: { 0 })
        let r = try await client.execute { HTTPRequest(method: "GET", url: "\(emulator.url)/pools?api-version=2025-06-01") }
        #expect(r.status == 403)   // through the throttling, to the missing signature
        #expect(waits.withLock { $0 } == [0.25, 0.5])
    }

    @Test func manyAtOnce() async throws {
        _ = try await admin("faults", #"{"latency": 0.2}"#)
        let statuses = try await withThrowingTaskGroup(of: Int.self) { g in
            for _ in 0..<20 { g.addTask { try await transport.send(HTTPRequest(method: "GET", url: "\(emulator.url)/pools")).status } }
            return try await g.reduce(into: [Int]()) { $0.append($1) }
        }
        _ = try await admin("faults", #"{"latency": 0}"#)
        #expect(statuses.count == 20 && statuses.allSatisfy { $0 == 403 })
    }

    @Test func cancellationStopsATransfer() async throws {
        _ = try await admin("faults", #"{"latency": 30}"#)
        let t = Task { try await transport.send(HTTPRequest(method: "GET", url: "\(emulator.url)/pools")) }
        t.cancel()
        await #expect(throws: HTTPError.self) { _ = try await t.value }
        _ = try await admin("faults", #"{"latency": 0}"#)
    }

    @Test("shutdown ends a transfer in flight and refuses the next; the curl thread returns")
    func shutdownStopsTheLoop() async throws {
        _ = try await admin("faults", #"{"latency": 30}"#)
        defer { Task { [transport] in _ = try? await transport.send(HTTPRequest(method: "POST", url: "\(emulator.url)/_emulator/faults", body: .data(Data(#"{"latency": 0}"#.utf8)))) } }
        let own = CurlTransport()
        // The emulator holds the request for 30 s: whether the shutdown finds
        // it sent or still queued, it must end it now.
        let inFlight = Task { try await own.send(HTTPRequest(method: "GET", url: "\(emulator.url)/pools")) }
        own.shutdown()
        do {
            _ = try await inFlight.value
            Issue.record("a transfer in flight outlived the shutdown")
        } catch let e as HTTPError {
            #expect(e.kind == .cancelled)
        }
        do {
            _ = try await own.send(HTTPRequest(method: "GET", url: "\(emulator.url)/pools"))
            Issue.record("a request after the shutdown was sent")
        } catch let e as HTTPError {
            #expect(e.kind == .cancelled)
        }
    }

    @Test func refusedConnectionIsATransientConnectError() async throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = bind(fd, $0, len); _ = getsockname(fd, $0, &len) } }
        close(fd)   // the port is free and nobody listens
        do {
            _ = try await transport.send(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(UInt16(bigEndian: addr.sin_port))/"))
            Issue.record("expected a connection error")
        } catch let e as HTTPError {
            #expect(e.kind == .connect && e.isTransient)
        }
    }
}
