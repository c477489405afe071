import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// batchctl's end of the control socket: one `ControlRequest` per
/// connection, one `ControlReply` back, each one JSON object on one line.
public enum ControlClient {
    /// Sends one request and returns the answer.
    public static func send(_ request: ControlRequest, socket path: String, timeout: Double = 10) throws -> ControlReply {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DaemonError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connectUnix(fd, path) else {
            throw DaemonError("cannot reach batchd at \(path): \(String(cString: strerror(errno))) (is the daemon running with this config?)")
        }
        var line = try JSONEncoder().encode(request)
        line.append(0x0A)
        guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw DaemonError("cannot send to batchd: \(String(cString: strerror(errno)))")
        }
        guard let answer = readReply(fd), let reply = try? JSONDecoder().decode(ControlReply.self, from: answer) else {
            throw DaemonError("batchd sent no answer")
        }
        return reply
    }

    /// The daemon's one answer: all it sends until it closes (a `read` of a
    /// task's logs may be megabytes), in large reads; at most `limit` bytes.
    static func readReply(_ fd: Int32, limit: Int = 1 << 30) -> Data? {
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while data.count <= limit {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data.append(contentsOf: chunk.prefix(n))
        }
        if data.last == 0x0A { data.removeLast() }
        return data.isEmpty || data.count > limit ? nil : data
    }

    static func connectUnix(_ fd: Int32, _ path: String) -> Bool {
        withUnixAddress(path) { connect(fd, $0, $1) == 0 } ?? false
    }

    /// Calls `body` with a `sockaddr_un` for `path`; nil (errno ENAMETOOLONG)
    /// when the path does not fit.
    public static func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { errno = ENAMETOOLONG; return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// Reads up to a newline (at most 1 MiB).
    /// One line from `fd`: at most `limit` bytes, and, with `within`, all
    /// of it within that many seconds (a client that trickles its request
    /// cannot hold the reader).
    public static func readLine(_ fd: Int32, limit: Int = 1 << 20, within: Double? = nil) -> Data? {
        var data = Data()
        var byte: UInt8 = 0
        let deadline = within.map { Date().timeIntervalSince1970 + $0 }
        while data.count < limit {
            if let deadline {
                let left = Int32(max(0, (deadline - Date().timeIntervalSince1970) * 1000))
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if left == 0 || poll(&p, 1, left) <= 0 { return nil }
            }
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return data.isEmpty ? nil : data }
            if byte == 0x0A { return data }
            data.append(byte)
        }
        return nil
    }
}
