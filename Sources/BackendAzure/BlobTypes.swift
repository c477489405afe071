import Foundation

/// A Blob answer other than the one expected.
public struct BlobError: Error, Sendable, CustomStringConvertible {
    /// HTTP status.
    public var status: Int
    /// `x-ms-error-code`, e.g. ContainerNotFound.
    public var code: String
    /// What was being done (no query string: it may hold a SAS).
    public var operation: String
    /// The service's `Date` header, when it answered (its clock).
    public var serverDate: String?
    /// `operation: status code`.
    public var description: String { "\(operation): HTTP \(status) \(code)" }

    /// An error.
    public init(status: Int, code: String, operation: String, serverDate: String? = nil) {
        self.status = status
        self.code = code
        self.operation = operation
        self.serverDate = serverDate
    }
}

/// Properties of a blob.
public struct BlobProperties: Sendable, Equatable {
    /// Size in bytes.
    public var size: Int64
    /// Content-MD5 (base64), if stored.
    public var md5: String?
    /// ETag.
    public var etag: String
}
