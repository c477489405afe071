import CCurl
import Foundation
import Synchronization

/// Settings of the transport.
public struct TransportConfiguration: Sendable {
    /// Seconds to wait for a connection (and TLS handshake).
    public var connectTimeout: Double = 10
    /// A transfer slower than `stallBytesPerSecond` for `stallSeconds` is aborted.
    public var stallSeconds: Int = 60
    /// See `stallSeconds`.
    public var stallBytesPerSecond: Int = 1
    /// Most connections kept open per host.
    public var maxConnectionsPerHost: Int = 16

    /// Defaults: 10 s to connect, a minute of no progress aborts.
    public init() {}
}

/// HTTP over libcurl: one thread runs a curl_multi handle for every request
/// of the process, so connections are reused and many transfers run at once;
/// `send` bridges it to async/await. TLS verification stays on; proxies come
/// from the usual environment variables (libcurl reads http_proxy,
/// https_proxy and no_proxy itself). Bodies stream from and to files.
public final class CurlTransport: Sendable {
    let loop: CurlLoop
    let configuration: TransportConfiguration

    /// A transport with its own curl_multi thread.
    public init(configuration: TransportConfiguration = TransportConfiguration()) {
        CurlLoop.globalInit
        self.configuration = configuration
        loop = CurlLoop(maxConnectionsPerHost: configuration.maxConnectionsPerHost)
    }

    deinit { loop.shutdown() }

    /// Stops the transport: requests in flight and later ones fail with
    /// `cancelled`, and the curl thread ends.
    public func shutdown() { loop.shutdown() }

    /// Sends a request; the response body is returned in memory.
    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        try await perform(request, sinkPath: nil)
    }

    /// Sends a request and streams a 2xx response body into `path` (created or
    /// truncated); other answers' bodies are returned in memory for their errors.
    public func download(_ request: HTTPRequest, to path: String) async throws -> HTTPResponse {
        try await perform(request, sinkPath: path)
    }

    func perform(_ request: HTTPRequest, sinkPath: String?) async throws -> HTTPResponse {
        let context = try RequestContext(request: request, sinkPath: sinkPath, configuration: configuration)
        let result: Result<HTTPResponse, HTTPError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<HTTPResponse, HTTPError>, Never>) in
                context.continuation = c
                if Task.isCancelled { context.cancelled.store(true, ordering: .relaxed) }
                loop.submit(context)
            }
        } onCancel: {
            context.cancelled.store(true, ordering: .relaxed)
            loop.wake()
        }
        return try result.get()
    }
}

/// The thread that drives curl_multi.
final class CurlLoop: @unchecked Sendable {
    static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    struct State {
        var pending: [RequestContext] = []
        var active: [RequestContext] = []
        var stopping = false
    }
    let multi: UnsafeMutableRawPointer
    let state = Mutex(State())

    init(maxConnectionsPerHost: Int) {
        multi = curl_multi_init()
        ccurl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxConnectionsPerHost)
        let thread = Thread { [self] in run() }
        thread.name = "batchd-curl"
        thread.start()
    }

    deinit { curl_multi_cleanup(multi) }

    func submit(_ context: RequestContext) {
        let refused = state.withLock { s -> Bool in
            if s.stopping { return true }
            s.pending.append(context)
            return false
        }
        if refused { context.complete(.failure(HTTPError(.cancelled, "the HTTP transport was shut down"))) } else { wake() }
    }

    func wake() { curl_multi_wakeup(multi) }

    /// Ends the loop: what is in flight fails, and the thread returns.
    func shutdown() {
        state.withLock { $0.stopping = true }
        wake()
    }

    func run() {
        var running: Int32 = 0
        while true {
            let (added, active, stopping) = state.withLock { s -> ([RequestContext], [RequestContext], Bool) in
                let p = s.pending
                s.pending = []
                s.active += p
                return (p, s.active, s.stopping)
            }
            if stopping {
                for c in added { c.complete(.failure(HTTPError(.cancelled, "the HTTP transport was shut down"))) }
                for c in active where !added.contains(where: { $0 === c }) {
                    finish(c, .failure(HTTPError(.cancelled, "the HTTP transport was shut down")))
                }
                state.withLock { $0.active = [] }
                return
            }
            for c in added { curl_multi_add_handle(multi, c.easy) }
            for c in active where c.cancelled.load(ordering: .relaxed) {
                finish(c, .failure(HTTPError(.cancelled, "cancelled")))
            }
            curl_multi_perform(multi, &running)
            var left: Int32 = 0
            while let msg = curl_multi_info_read(multi, &left) {
                guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
                let code = msg.pointee.data.result
                guard let c = state.withLock({ s in s.active.first { $0.easy == easy } }) else { continue }
                finish(c, c.result(code))
            }
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
    }

    func finish(_ c: RequestContext, _ result: Result<HTTPResponse, HTTPError>) {
        curl_multi_remove_handle(multi, c.easy)
        state.withLock { s in s.active.removeAll { $0 === c } }
        c.complete(result)
    }
}
