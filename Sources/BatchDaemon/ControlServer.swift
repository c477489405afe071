import BatchControl
import BackendLocal
import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's end of the control socket (`<runtimeDirectory>/batchd.sock`):
/// a thread accepts connections and reads each request line; this service
/// answers them. Mode 0660, so members of the daemon's group can use it.
struct ControlServer: Service {
    let path: String
    let supervisor: Supervisor
    let logger: Logger
    let listening = AsyncEvent<Void>()

    struct Request: @unchecked Sendable {
        let fd: Int32
        let body: [String: Any]?
    }

    func run() async throws {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DaemonError("socket: \(String(cString: strerror(errno)))") }
        guard let bound = ControlClient.withUnixAddress(path, { bind(fd, $0, $1) }) else {
            close(fd)
            throw DaemonError("socket path too long: \(path)")
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw DaemonError("cannot listen on \(path): \(message)")
        }
        chmod(path, 0o660)
        let (requests, input) = AsyncStream.makeStream(of: Request.self)
        let thread = Thread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    break
                }
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                var tv = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                let line = ControlClient.readLine(client, limit: 64 << 10, within: 5)
                let body = line.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
                input.yield(Request(fd: client, body: body))
            }
            input.finish()
        }
        thread.name = "batchd-control"
        thread.start()
        listening.fire(())
        logger.info("control socket listening", metadata: ["socket": "\(path)"])
        await withGracefulShutdownHandler {
            for await request in requests {
                await answer(request)
            }
        } onGracefulShutdown: {
            shutdown(fd, Int32(SHUT_RDWR))
        }
        close(fd)
        unlink(path)
    }

    func answer(_ request: Request) async {
        var reply: [String: Any]
        switch request.body?["op"] as? String {
        case "ping":
            reply = ["ok": true, "pid": Int(getpid())]
        case "status":
            let (used, limit) = supervisor.ctx.slots.usage
            reply = ["ok": true, "jobs": await supervisor.activeJobs, "slots": ["used": used, "limit": limit]]
        case "cancel":
            guard let job = request.body?["job"] as? String else {
                reply = ["ok": false, "error": "cancel needs a job"]
                break
            }
            do {
                let record = try await supervisor.cancel(job)
                reply = ["ok": true, "job": record.id]
            } catch {
                reply = ["ok": false, "error": "\(error)"]
            }
        case "retry":
            guard let job = request.body?["job"] as? String else {
                reply = ["ok": false, "error": "retry needs a job"]
                break
            }
            do {
                let (record, n) = try await supervisor.retry(job)
                reply = ["ok": true, "job": record.id, "tasks": n]
            } catch {
                reply = ["ok": false, "error": "\(error)"]
            }
        case "pools":
            guard let azure = supervisor.ctx.azure else {
                reply = ["ok": false, "error": "the Azure backend is not configured in this daemon: \(supervisor.ctx.azureProblem ?? "")"]
                break
            }
            do {
                let items = try await azure.inventory(store: supervisor.ctx.store)
                reply = ["ok": true, "owner": azure.owner, "items": items.map(\.json)]
            } catch {
                reply = ["ok": false, "error": "cannot list pools and jobs on Azure Batch: \(error)"]
            }
        case "stall":
            guard await supervisor.allowsStall else {
                reply = ["ok": false, "error": "stall is a test hook; set debug.allowStall in the config"]
                break
            }
            await supervisor.stall(seconds: Double(request.body?["seconds"] as? String ?? "") ?? 1)
            reply = ["ok": true]
        case let op?:
            reply = ["ok": false, "error": "unknown request '\(op)'"]
        case nil:
            reply = ["ok": false, "error": "expected one JSON object with an 'op'"]
        }
        if var data = try? JSONSerialization.data(withJSONObject: reply) {
            data.append(0x0A)
            _ = data.withUnsafeBytes { write(request.fd, $0.baseAddress, $0.count) }
        }
        close(request.fd)
    }
}
