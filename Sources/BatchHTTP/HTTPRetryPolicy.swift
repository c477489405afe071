import BatchCore
import Foundation
import Logging

/// When a request is tried again, and after how long.
///
/// Safe to retry, always: GET, HEAD, PUT, DELETE, OPTIONS (idempotent by
/// definition), on a transport failure or on 408, 429, 500, 502, 503, 504.
/// POST and PATCH only on 429 and 503 (the service refused the work) and on
/// connection failures before anything was sent, unless the caller vouches that
/// the request is idempotent (Batch's addtaskcollection with deterministic
/// task ids is: a resend answers TaskExists). A `Retry-After` (seconds or an
/// HTTP date) or `retry-after-ms` / `x-ms-retry-after-ms` sets the wait, never
/// shorter than the backoff.
public struct HTTPRetryPolicy: Sendable {
    /// Tries in all, the first included.
    public var maxAttempts: Int
    /// Backoff between tries.
    public var backoff: Backoff
    /// Longest wait a Retry-After may ask for before we give up instead.
    public var maxRetryAfter: Double

    /// Defaults: 8 tries, 0.5 s doubling to 30 s, Retry-After up to 5 minutes.
    public init(maxAttempts: Int = 8, backoff: Backoff = Backoff(base: 0.5, factor: 2, cap: 30), maxRetryAfter: Double = 300) {
        self.maxAttempts = maxAttempts
        self.backoff = backoff
        self.maxRetryAfter = maxRetryAfter
    }

    static let idempotentMethods: Set<String> = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]
    static let retryableStatus: Set<Int> = [408, 429, 500, 502, 503, 504]
    static let refusedStatus: Set<Int> = [429, 503]

    /// The wait before the next try, or nil to stop. `attempt` counts tries made (1 after the first).
    public func delay(method: String, idempotent: Bool, attempt: Int, status: Int?, headers: [String: String],
                      error: HTTPError?, jitter: Double, now: Date) -> Double? {
        guard attempt < maxAttempts else { return nil }
        let safe = idempotent || Self.idempotentMethods.contains(method.uppercased())
        if let error {
            guard error.isTransient else { return nil }
            guard safe || error.kind == .connect else { return nil }
            return backoff.delay(attempt: attempt - 1, jitter: jitter)
        }
        guard let status, Self.retryableStatus.contains(status) else { return nil }
        guard safe || Self.refusedStatus.contains(status) else { return nil }
        let base = backoff.delay(attempt: attempt - 1, jitter: jitter)
        guard let asked = Self.retryAfter(headers, now: now) else { return base }
        return asked > maxRetryAfter ? nil : max(asked, base)
    }

    /// Seconds a response asks the client to wait, from `retry-after-ms`,
    /// `x-ms-retry-after-ms` or `Retry-After` (delta-seconds or an HTTP date).
    public static func retryAfter(_ headers: [String: String], now: Date) -> Double? {
        for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
            if let v = headers[name].flatMap(Double.init), v >= 0 { return v / 1000 }
        }
        guard let value = headers["retry-after"]?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Double(value), seconds >= 0 { return seconds }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = f.date(from: value) else { return nil }
        return max(0, date.timeIntervalSince(now))
    }
}

/// A transport with the retry policy applied. Clock, sleep and jitter are
/// injected, so the policy is tested without waiting.
public struct HTTPClient: Sendable {
    /// The transport.
    public let transport: CurlTransport
    /// The policy.
    public var policy: HTTPRetryPolicy
    let sleep: @Sendable (Double) async throws -> Void
    let jitter: @Sendable () -> Double
    /// Where each request is traced at debug level (method, URL with its
    /// secrets redacted, status, duration, the service's request id), as
    /// the Azure SDKs' `logging_enable` does; nil for none.
    public var trace: Logger?

    /// A client; `sleep` defaults to Task.sleep, `jitter` to a uniform draw.
    public init(transport: CurlTransport, policy: HTTPRetryPolicy = HTTPRetryPolicy(),
                sleep: @escaping @Sendable (Double) async throws -> Void = { try await Task.sleep(for: .seconds($0)) },
                jitter: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }) {
        self.transport = transport
        self.policy = policy
        self.sleep = sleep
        self.jitter = jitter
    }

    /// Sends `make()`'s request (rebuilt for each try: signatures carry the
    /// time), retrying per the policy. Returns the last HTTP answer, whatever
    /// its status; throws only when no answer came.
    public func execute(idempotent: Bool = false, sinkPath: String? = nil,
                        _ make: @Sendable () throws -> HTTPRequest) async throws -> HTTPResponse {
        var attempt = 0
        while true {
            let request = try make()
            attempt += 1
            var response: HTTPResponse?
            var failure: HTTPError?
            let started = ContinuousClock.now
            do {
                if let sinkPath {
                    response = try await transport.download(request, to: sinkPath)
                } else {
                    response = try await transport.send(request)
                }
            } catch let e as HTTPError {
                if e.kind == .cancelled { throw CancellationError() }
                failure = e
            }
            if let trace, trace.logLevel <= .debug {
                let d = ContinuousClock.now - started
                let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
                var meta: Logger.Metadata = ["http.method": "\(request.method)", "http.url": "\(HTTPTrace.redacted(request.url))",
                                             "http.ms": "\(Int(ms.rounded()))", "http.try": "\(attempt)"]
                if let response {
                    meta["http.status"] = "\(response.status)"
                    if let id = response.header("x-ms-request-id") ?? response.header("request-id") { meta["http.request.id"] = "\(id)" }
                } else if let failure {
                    meta["http.error"] = "\(failure)"
                }
                trace.debug("http request", metadata: meta)
            }
            guard let wait = policy.delay(method: request.method, idempotent: idempotent, attempt: attempt, status: response?.status,
                                          headers: response?.headers ?? [:], error: failure, jitter: jitter(), now: Date()) else {
                if let response { return response }
                throw failure!
            }
            try await sleep(wait)
        }
    }
}

/// What a traced URL may show.
public enum HTTPTrace {
    /// The URL with the value of every query parameter that can carry a
    /// secret (a SAS signature, a token, a key, a code) replaced by
    /// `REDACTED`, and any user information dropped.
    public static func redacted(_ url: String) -> String {
        var base = url, query = ""
        if let q = url.firstIndex(of: "?") {
            base = String(url[..<q])
            query = String(url[url.index(after: q)...])
        }
        if let scheme = base.range(of: "://"), let at = base[scheme.upperBound...].firstIndex(of: "@"),
           base[scheme.upperBound..<at].firstIndex(of: "/") == nil {
            base = String(base[..<scheme.upperBound]) + String(base[base.index(after: at)...])
        }
        guard !query.isEmpty else { return base }
        let secret = ["sig", "signature", "token", "secret", "key", "code", "password", "assertion", "skoid", "sktid"]
        let parts = query.split(separator: "&", omittingEmptySubsequences: false).map { item -> String in
            let name = item.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            let lower = name.lowercased()
            return secret.contains(where: { lower == $0 || lower.contains($0) }) ? "\(name)=REDACTED" : String(item)
        }
        return base + "?" + parts.joined(separator: "&")
    }
}
