import BatchAccess
import BatchBackend
import BatchControl
import BatchSupport
import CLinux
import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's end of the control socket (`<runtimeDirectory>/batchd.sock`,
/// mode 0660: members of the daemon's group may use it). One thread accepts
/// connections and hands each to a reader thread of its own, which must get
/// the whole request line within 5 s and 64 KiB; at most 16 connections are
/// read at once (more wait in the listen backlog). Requests are answered
/// concurrently, so a slow answer (Azure's pool list) or a slow client holds
/// up no one else. Each request is logged with the uid and pid of its sender.
struct ControlServer: Service {
    let path: String
    let supervisor: Supervisor
    let logger: Logger
    /// The file system as the daemon sees it (the `view` request).
    let view: ServiceView
    let listening = AsyncEvent<Void>()
    /// A pulse per change to the database, for reads that wait.
    let pulse = ChangePulse()

    /// Connections read at once.
    static let readers = 16
    /// Time a client has to send its whole request.
    static let deadline = 5.0

    /// Who is at the other end of a connection, as the kernel said at
    /// connect (the pid only for the log).
    struct Peer: Sendable, CustomStringConvertible {
        let pid: Int32
        let uid: UInt32
        let gid: UInt32
        let groups: Set<UInt32>
        var description: String { "uid \(uid) pid \(pid)" }
        var requester: Requester { Requester(uid: uid, gid: gid, groups: groups, name: Submitter.lookup(uid: uid).name) }

        /// The peer of a connected socket; nil when the kernel would not say.
        static func of(_ fd: Int32) -> Peer? {
            var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
            guard batchd_peer_credentials(fd, &pid, &uid, &gid) == 0 else { return nil }
            var list = [UInt32](repeating: 0, count: 65536)
            let n = batchd_peer_groups(fd, &list, Int32(list.count))
            // Without its groups, only its uid and primary group count.
            return Peer(pid: pid, uid: uid, gid: gid, groups: Set(list.prefix(Int(max(0, n)))))
        }
    }

    struct Request: Sendable {
        let fd: Int32
        let peer: Peer?
        let body: Result<ControlRequest, ControlFailure>
    }

    struct ControlFailure: Error, Sendable { let message: String }

    func run() async throws {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DaemonError("socket: \(String(cString: strerror(errno)))") }
        guard let bound = ControlClient.withUnixAddress(path, { bind(fd, $0, $1) }) else {
            close(fd)
            throw DaemonError("socket path too long: \(path)")
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw DaemonError("cannot listen on \(path): \(message)")
        }
        chmod(path, 0o660)
        let pulse = self.pulse
        let observation = supervisor.ctx.store.observeChanges { pulse.fire() }
        defer { observation.cancel() }
        let (requests, input) = AsyncStream.makeStream(of: Request.self)
        let thread = Thread { Self.accept(fd, into: input) }
        thread.name = "batchd-control"
        thread.start()
        listening.fire(())
        logger.info("control socket listening", metadata: ["socket": "\(path)"])
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await request in requests {
                    group.addTask { await answer(request) }
                }
            }
        } onGracefulShutdown: {
            shutdown(fd, Int32(SHUT_RDWR))
        }
        close(fd)
        unlink(path)
    }

    /// The accept loop, on its own thread: each connection is read by a
    /// thread of its own, at most `readers` at once.
    static func accept(_ fd: Int32, into input: AsyncStream<Request>.Continuation) {
        let free = DispatchSemaphore(value: readers)
        while true {
            let client = Glibc.accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            free.wait()
            let reader = Thread {
                defer { free.signal() }
                var tv = timeval(tv_sec: Int(deadline), tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                let peer = Peer.of(client)
                let body: Result<ControlRequest, ControlFailure>
                if let line = ControlClient.readLine(client, limit: 64 << 10, within: deadline) {
                    do { body = .success(try JSONDecoder().decode(ControlRequest.self, from: line)) } catch {
                        body = .failure(ControlFailure(message: Self.describe(error)))
                    }
                } else {
                    body = .failure(ControlFailure(message: "expected one JSON object with an 'op', on one line, within \(Int(deadline)) s"))
                }
                if case .terminated = input.yield(Request(fd: client, peer: peer, body: body)) { close(client) }
            }
            reader.name = "batchd-control-read"
            reader.start()
        }
        input.finish()
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c) where !c.codingPath.isEmpty: return c.debugDescription
        case DecodingError.keyNotFound(let key, _): return "the request lacks '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let c): return "'\(c.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type"
        default: return "expected one JSON object with an 'op'"
        }
    }

    func answer(_ request: Request) async {
        let reply: ControlReply
        switch request.body {
        case .failure(let f):
            reply = .refused(f.message)
        case .success(let op):
            if case .read = op {
                logger.debug("control request", metadata: ["op": "read", "peer": "\(request.peer.map(\.description) ?? "unknown")"])
            } else if op != .ping && op != .status && op != .view {
                logger.info("control request", metadata: ["op": "\(op.op)", "peer": "\(request.peer.map(\.description) ?? "unknown")"])
            }
            reply = await perform(op, peer: request.peer)
        }
        if var data = try? JSONEncoder().encode(reply) {
            data.append(0x0A)
            _ = data.withUnsafeBytes { write(request.fd, $0.baseAddress, $0.count) }
        }
        close(request.fd)
    }

    func perform(_ request: ControlRequest, peer: Peer?) async -> ControlReply {
        switch request {
        case .ping:
            return ControlReply(ok: true, pid: Int(getpid()))
        case .status:
            let (used, limit) = supervisor.ctx.slots.usage
            return ControlReply(ok: true, jobs: await supervisor.activeJobs, slots: .init(used: used, limit: limit))
        case .cancel(let job):
            do { return ControlReply(ok: true, job: try await supervisor.cancel(job, by: peer?.requester, authority: await supervisor.authority).id) } catch {
                return .refused("\(error)")
            }
        case .retry(let job):
            do {
                let (record, n) = try await supervisor.retry(job, by: peer?.requester, authority: await supervisor.authority)
                return ControlReply(ok: true, job: record.id, tasks: n)
            } catch {
                return .refused("\(error)")
            }
        case .pools:
            if let refusal = await supervisor.authority.refusal(peer?.requester, operatorsOnly: "pools") { return .refused(refusal) }
            var owner: String?
            var items: [ControlReply.PoolItem] = []
            do {
                for backend in supervisor.ctx.backends.all {
                    guard let held = try await backend.owned() else { continue }
                    owner = held.owner
                    items += held.items.map { .init(kind: $0.kind, id: $0.id, state: $0.state, job: $0.job, nodes: $0.nodes, orphan: $0.orphan) }
                }
            } catch {
                return .refused("cannot list the pools and jobs the backends hold: \(error)")
            }
            guard let owner else {
                return .refused("no backend of this daemon keeps pools or jobs: \(supervisor.ctx.backends.missingReasons.joined(separator: "; "))")
            }
            return ControlReply(ok: true, owner: owner, items: items)
        case .poolCreate, .poolResize, .poolDelete:
            let change: PoolChange = switch request {
            case .poolCreate(let spec): .create(spec)
            case .poolResize(let id, let dedicated, let spot): .resize(id: id, dedicated: dedicated, spot: spot)
            case .poolDelete(let id): .delete(id: id)
            default: preconditionFailure("not a pool request")
            }
            let verb = switch change { case .create: "create"; case .resize: "resize"; case .delete: "delete" }
            if let refusal = await supervisor.authority.refusal(peer?.requester, operatorsOnly: "pool \(verb)") { return .refused(refusal) }
            do {
                for backend in supervisor.ctx.backends.all {
                    if let done = try await backend.managePool(change) { return ControlReply(ok: true, detail: done) }
                }
            } catch {
                return .refused("\(error)")
            }
            return .refused("no backend of this daemon keeps pools: \(supervisor.ctx.backends.missingReasons.joined(separator: "; "))")
        case .filesPut(let paths, let backend):
            return await FilesControl(ctx: supervisor.ctx).put(paths, backend: backend, uid: peer?.uid)
        case .filesPrune(let unusedFor, let apply, let backend):
            if let refusal = await supervisor.authority.refusal(peer?.requester, operatorsOnly: "files prune") { return .refused(refusal) }
            return await FilesControl(ctx: supervisor.ctx).prune(unusedFor: unusedFor, apply: apply, backend: backend)
        case .view:
            var reply = ControlReply(ok: true)
            reply.view = view
            return reply
        case .read(let query):
            return await ControlReads(store: supervisor.ctx.store, authority: await supervisor.authority, pulse: pulse,
                                      requester: peer?.requester, rejectedDirectory: supervisor.ctx.config.rejectedDirectory).perform(query)
        case .stall(let seconds):
            guard await supervisor.allowsStall else { return .refused("stall is a test hook; set debug.allowStall in the config") }
            await supervisor.stall(seconds: seconds)
            return .done
        }
    }
}
