import BatchControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The control socket serves each client on its own: one that connects and
/// says nothing (or trickles) holds up no one, and a malformed request gets
/// its reason.
@Suite("Control socket")
struct ControlTests {
    /// A raw connection to the socket, sending `text` (nothing when nil).
    func connect(_ socketPath: String, sending text: String? = nil) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard ControlClient.withUnixAddress(socketPath, { Glibc.connect(fd, $0, $1) }) == 0 else {
            throw HarnessError(description: "cannot connect to \(socketPath)")
        }
        if let text { _ = text.withCString { write(fd, $0, strlen($0)) } }
        return fd
    }

    func readAll(_ fd: Int32) -> String {
        var out = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            out += buffer.prefix(n)
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test("a client that connects and says nothing holds up no one; bad requests are answered with their reason")
    func clientsAreServedApart() async throws {
        let d = try DaemonHarness()
        try await d.start()
        let socketPath = "\(d.root)/run/batchd.sock"
        // Silent clients: more than one, still connected.
        let silent = try (0..<3).map { _ in try connect(socketPath) }
        defer { silent.forEach { close($0) } }
        let answer = try ControlClient.send(.ping, socket: socketPath, timeout: 20)
        #expect(answer.ok && answer.pid == Int(d.pid))
        // The ping was answered while the silent clients were still being waited
        // for: the daemon has not given up on them yet (no EOF for them).
        for fd in silent {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            #expect(poll(&p, 1, 0) == 0, "a silent client was already dropped: the ping waited for it")
        }
        for (request, reason) in [("not json\n", "expected one JSON object"), ("{\"op\": \"explode\"}\n", "unknown request 'explode'"),
                                  ("{\"op\": \"cancel\"}\n", "lacks 'job'")] {
            let fd = try connect(socketPath, sending: request)
            let reply = readAll(fd)
            close(fd)
            let decoded = try JSONDecoder().decode(ControlReply.self, from: Data(reply.utf8))
            #expect(!decoded.ok && decoded.error?.contains(reason) == true, "\(request): \(reply)")
        }
        #expect(await d.signal(SIGTERM) == 0)
        try? FileManager.default.removeItem(atPath: d.root)
    }
}
