import Foundation

/// What a request sends.
public enum HTTPBody: Sendable, Equatable {
    /// No body.
    case none
    /// Bytes in memory.
    case data(Data)
    /// A region of a file, read as it is sent (never loaded whole).
    case file(path: String, offset: Int64, length: Int64)

    /// Bytes the body has.
    public var length: Int64 {
        switch self {
        case .none: return 0
        case .data(let d): return Int64(d.count)
        case .file(_, _, let n): return n
        }
    }
}

/// One HTTP request.
public struct HTTPRequest: Sendable {
    /// GET, PUT, POST, DELETE, HEAD, ...
    public var method: String
    /// The absolute URL, already encoded.
    public var url: String
    /// Headers in order; names as given.
    public var headers: [(name: String, value: String)]
    /// The body.
    public var body: HTTPBody
    /// Whole-request limit in seconds; nil for none (long downloads rely on the stall limit).
    public var timeout: Double?

    /// A request.
    public init(method: String, url: String, headers: [(name: String, value: String)] = [], body: HTTPBody = .none, timeout: Double? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }

    /// The value of a header (case-insensitive), if set.
    public func header(_ name: String) -> String? {
        headers.last { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// One HTTP response. When the body was streamed to a file, `body` is empty.
public struct HTTPResponse: Sendable {
    /// The status code.
    public var status: Int
    /// Headers by lower-cased name (the last one wins).
    public var headers: [String: String]
    /// The body, unless it was streamed elsewhere.
    public var body: Data

    /// A response.
    public init(status: Int, headers: [String: String], body: Data) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The value of a header, case-insensitive.
    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// A request that got no HTTP answer.
public struct HTTPError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public enum Kind: Sendable, Equatable {
        /// Could not connect (refused, DNS, TLS handshake).
        case connect
        /// Timed out or stalled.
        case timeout
        /// The connection broke mid-request or mid-response.
        case transfer
        /// The task was cancelled.
        case cancelled
        /// A local file could not be read or written.
        case io
        /// The request itself is invalid (bad URL, bad option).
        case invalid
    }

    /// What kind of failure.
    public var kind: Kind
    /// libcurl's words, or ours; never a header or a URL query (they may hold secrets).
    public var message: String

    /// Creates an error.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// Whether trying again may work.
    public var isTransient: Bool { kind == .connect || kind == .timeout || kind == .transfer }

    /// `kind: message`.
    public var description: String { "\(kind): \(message)" }
}
