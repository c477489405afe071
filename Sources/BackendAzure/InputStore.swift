import Foundation

/// How long the SAS tokens of a job live: its wall-clock limit plus a margin,
/// so no token expires while the job may still run (the failure other Azure
/// Batch tools are known for). A job without a limit gets the longest
/// lifetime allowed, and that becomes its limit; a job whose limit is longer
/// than tokens may live is refused.
public struct SASLifetime: Sendable, Equatable {
    /// Seconds the tokens live.
    public var tokenSeconds: Double
    /// The job's wall-clock limit to set on Batch (maxWallClockTime).
    public var jobWallClockSeconds: Double

    /// A lifetime.
    public init(tokenSeconds: Double, jobWallClockSeconds: Double) {
        self.tokenSeconds = tokenSeconds
        self.jobWallClockSeconds = jobWallClockSeconds
    }

    /// How long after the job's own wall-clock limit Batch's stops it.
    public static let backstop: Double = 300

    /// Sizes the tokens for a job.
    /// - Parameters:
    ///   - wallClock: the manifest's `limits.wallClock`, if any.
    ///   - margin: extra life after the limit (downloads of the last outputs).
    ///   - maximum: the longest a token may live (config).
    public static func forJob(wallClock: Double?, margin: Double = 3600, maximum: Double = 7 * 86400) throws -> SASLifetime {
        guard let wallClock else { return SASLifetime(tokenSeconds: maximum, jobWallClockSeconds: maximum - margin) }
        guard wallClock + margin <= maximum else {
            throw AzureError.tokenTooShort(
                "limits.wallClock (\(Int(wallClock / 3600)) h) plus a \(Int(margin / 60)) min margin is longer than storage tokens may live "
                    + "(\(Int(maximum / 3600)) h): shorten the limit, or raise azure.maxTokenLifetime in the daemon config")
        }
        // batchd stops the job at its limit itself (the shared running phase,
        // as on every backend); Batch's own limit is the backstop for a daemon
        // that is down then, a little later, so that batchd's comes first and
        // the job's reason names the limit.
        return SASLifetime(tokenSeconds: wallClock + margin, jobWallClockSeconds: wallClock + min(Self.backstop, margin))
    }
}

/// Inputs on Blob, content-addressed: a file lives at `md5/<hex MD5>` in one
/// container shared by every job, so a file already uploaded (by this job or
/// any earlier one) is not uploaded again.
public struct InputStore: Sendable {
    /// The Blob client.
    public let blob: BlobClient
    /// The shared container.
    public let container: String

    /// An input store in `container`.
    public init(blob: BlobClient, container: String = "batchd-inputs") {
        self.blob = blob
        self.container = container
    }

    /// The blob name of content with this MD5 (base64).
    public static func name(md5: String) -> String {
        "md5/" + BlobClient.hex(Data(base64Encoded: md5) ?? Data())
    }

    /// Makes sure the content of `path` (with this MD5) is stored; returns the
    /// blob name and the bytes actually sent (0 when it was there already).
    /// `likelyStored`: the file was seen before (its hash came from the
    /// cache), so its blob is probably there and is asked about first (a
    /// HEAD, no bytes sent). A file seen for the first time is most likely
    /// absent: one that fits a single put goes in one conditional request.
    /// `progress`: bytes of a large file's blocks as they are stored.
    public func put(_ path: String, size: Int64, md5: String, likelyStored: Bool = true,
                    progress: (@Sendable (Int64) -> Void)? = nil) async throws -> (name: String, uploaded: Int64) {
        let name = Self.name(md5: md5)
        if !likelyStored && size <= blob.singlePutLimit {
            return (name, try await blob.putIfAbsent(path, size: size, to: container, as: name, md5: md5) ? size : 0)
        }
        if let props = try await blob.properties(container, name), props.md5 == md5, props.size == size {
            return (name, 0)
        }
        return (name, try await blob.upload(path, to: container, as: name, md5: md5, progress: progress))
    }

    /// A URL tasks can read the blob with, valid for `lifetime`.
    public func readURL(_ name: String, sas: ServiceSAS, lifetime: SASLifetime, now: Date = Date(), httpsOnly: Bool = false) throws -> String {
        let token = try sas.token(container: container, blob: name, permissions: "r", start: now.addingTimeInterval(-300),
                                  expiry: now.addingTimeInterval(lifetime.tokenSeconds), httpsOnly: httpsOnly)
        return "\(blob.url(container, name))?\(token)"
    }
}
