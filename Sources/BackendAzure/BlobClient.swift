import BatchHTTP
import Crypto
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Azure Blob Storage over the libcurl transport, signed with Shared Key.
/// Uploads go in parallel blocks and resume from the uncommitted block list;
/// downloads go in parallel ranges, are verified against size and MD5, and
/// land by temp file, fsync and rename.
public struct BlobClient: Sendable {
    /// HTTP with retries.
    public let http: HTTPClient
    /// e.g. https://store.blob.core.windows.net or http://127.0.0.1:P/store.
    public let endpoint: String
    let authorizer: Authorizer
    /// Bytes per block (and per download range).
    public var blockSize: Int64 = 4 << 20
    /// Blocks or ranges in flight at once.
    public var concurrency = 4
    /// Blobs up to this size go in one Put Blob.
    public var singlePutLimit: Int64 = 8 << 20

    /// A client for one storage account, signing with its Shared Key.
    public init(http: HTTPClient, endpoint: String, account: String, key: Secret) {
        self.init(http: http, endpoint: endpoint, authorizer: .sharedKey(RequestSigner(service: .blob, account: account, key: key)))
    }

    /// A client for one storage account, with any authorizer (Entra ID tokens).
    public init(http: HTTPClient, endpoint: String, authorizer: Authorizer) {
        self.http = http
        self.endpoint = endpoint
        self.authorizer = authorizer
    }

    /// The URL of a container or blob, with an optional query (no `?`).
    public func url(_ container: String, _ blob: String? = nil, _ query: String = "") -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#;")
        let name = blob.map { "/" + ($0.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0) } ?? ""
        return "\(endpoint)/\(container)\(name)\(query.isEmpty ? "" : "?" + query)"
    }

    func send(_ op: String, _ method: String, _ url: String, headers: [(name: String, value: String)] = [],
              body: HTTPBody = .none, sinkPath: String? = nil) async throws -> HTTPResponse {
        try await authorizer.execute(http, idempotent: true, sinkPath: sinkPath) {
            HTTPRequest(method: method, url: url, headers: headers, body: body)
        }
    }

    func expect(_ r: HTTPResponse, _ ok: Set<Int>, _ op: String) throws {
        guard ok.contains(r.status) else {
            throw BlobError(status: r.status, code: r.header("x-ms-error-code") ?? "", operation: op, serverDate: r.header("Date"))
        }
    }

    /// Creates a container; false if it already existed.
    @discardableResult
    public func createContainer(_ name: String) async throws -> Bool {
        let r = try await send("create container", "PUT", url(name, nil, "restype=container"))
        if r.status == 409 && r.header("x-ms-error-code") == "ContainerAlreadyExists" { return false }
        try expect(r, [201], "create container \(name)")
        return true
    }

    /// Deletes a container; false if there was none.
    @discardableResult
    public func deleteContainer(_ name: String) async throws -> Bool {
        let r = try await send("delete container", "DELETE", url(name, nil, "restype=container"))
        if r.status == 404 { return false }
        try expect(r, [202], "delete container \(name)")
        return true
    }

    /// Deletes a blob; false if there was none.
    @discardableResult
    public func deleteBlob(_ container: String, _ blob: String) async throws -> Bool {
        let r = try await send("delete blob", "DELETE", url(container, blob))
        if r.status == 404 { return false }
        try expect(r, [202], "delete \(container)/\(blob)")
        return true
    }

    /// A blob's properties, or nil if it does not exist.
    public func properties(_ container: String, _ blob: String) async throws -> BlobProperties? {
        let r = try await send("properties", "HEAD", url(container, blob))
        if r.status == 404 { return nil }
        try expect(r, [200], "properties of \(container)/\(blob)")
        return BlobProperties(size: Int64(r.header("content-length") ?? "") ?? 0, md5: r.header("content-md5"), etag: r.header("etag") ?? "")
    }

    /// Blobs under a prefix with their properties (size, MD5, ETag), by
    /// name, following every page: one request per 5,000 blobs tells what a
    /// HEAD per blob would.
    public func listProperties(_ container: String, prefix: String = "", pageSize: Int = 5000) async throws -> [String: BlobProperties] {
        var out: [String: BlobProperties] = [:]
        var marker = ""
        repeat {
            var q = "restype=container&comp=list&maxresults=\(pageSize)"
            if !prefix.isEmpty { q += "&prefix=\(ServiceSAS.encode(prefix))" }
            if !marker.isEmpty { q += "&marker=\(ServiceSAS.encode(marker))" }
            let r = try await send("list", "GET", url(container, nil, q))
            try expect(r, [200], "list \(container)")
            let xml = XMLNames(data: r.body)
            for blob in xml.records(of: "Blob") {
                guard let name = blob["Name"], let size = blob["Content-Length"].flatMap({ Int64($0) }) else { continue }
                let md5 = blob["Content-MD5"].flatMap { $0.isEmpty ? nil : $0 }
                // A listing gives the ETag bare; the header (and If-Match) quoted.
                let etag = blob["Etag"].map { $0.hasPrefix("\"") ? $0 : "\"\($0)\"" } ?? ""
                out[name] = BlobProperties(size: size, md5: md5, etag: etag)
            }
            marker = xml.values(of: "NextMarker", inside: nil).first ?? ""
        } while !marker.isEmpty
        return out
    }

    /// Blob names under a prefix, in name order, following every page.
    public func list(_ container: String, prefix: String = "", pageSize: Int = 5000) async throws -> [String] {
        try await listProperties(container, prefix: prefix, pageSize: pageSize).keys.sorted()
    }

    /// A file's size in bytes (through symlinks, so `/proc/self/fd/N` names
    /// the open file); nil if it cannot be read.
    static func fileSize(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }

    /// MD5 of a file, base64, as Content-MD5 carries it.
    public static func md5(ofFile path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BlobError(status: 0, code: "NoSuchFile", operation: "read \(path)") }
        defer { close(fd) }
        return Data(try digest(Insecure.MD5.self, fd: fd)).base64EncodedString()
    }

    /// Base64 MD5 (what Blob stores) and hex SHA-256 of an open file, read
    /// from its start. A file of 8 MiB or more is read twice at once, one
    /// hash on each of two threads: neither hash can be split, and on a
    /// machine with two cores that halves the wait before its upload.
    public static func digests(fd: Int32, size: Int64) async throws -> (md5: String, sha256: String) {
        let md5: Insecure.MD5.Digest, sha: SHA256.Digest
        if size < 8 << 20 {
            var m = Insecure.MD5(), h = SHA256()
            try forEachChunk(fd) { m.update(bufferPointer: $0); h.update(bufferPointer: $0) }
            (md5, sha) = (m.finalize(), h.finalize())
        } else {
            async let m = digest(Insecure.MD5.self, fd: fd)
            async let h = digest(SHA256.self, fd: fd)
            (md5, sha) = try await (m, h)
        }
        return (Data(md5).base64EncodedString(), hex(sha))
    }

    static func digest<H: HashFunction>(_: H.Type, fd: Int32) throws -> H.Digest {
        var h = H()
        try forEachChunk(fd) { h.update(bufferPointer: $0) }
        return h.finalize()
    }

    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Calls `body` with each MiB of the file, read with pread from offset 0
    /// (so two readers of one descriptor do not share a position).
    static func forEachChunk(_ fd: Int32, _ body: (UnsafeRawBufferPointer) -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var offset: off_t = 0
        while true {
            let n = pread(fd, buffer.baseAddress, buffer.count, offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw BlobError(status: 0, code: "CannotRead", operation: "read an input: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return }
            body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            offset += off_t(n)
        }
    }

    /// Get User Delegation Key: a key valid from `start` to `expiry` (at most
    /// 7 days ahead) for signing SAS tokens, asked for with an Entra ID token
    /// (the service takes no other authorization for it).
    public func userDelegationKey(start: Date, expiry: Date) async throws -> UserDelegationKey {
        let (st, se) = (ServiceSAS.isoDate(start), ServiceSAS.isoDate(expiry))
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>\(st)</Start><Expiry>\(se)</Expiry></KeyInfo>"
        let r = try await send("get user delegation key", "POST", "\(endpoint)/?restype=service&comp=userdelegationkey",
                               headers: [("Content-Type", "application/xml")], body: .data(Data(body.utf8)))
        try expect(r, [200], "get a user delegation key")
        let xml = XMLNames(data: r.body)
        func one(_ name: String) -> String { xml.values(of: name, inside: "UserDelegationKey").first ?? "" }
        let value = one("Value")
        guard !value.isEmpty, Data(base64Encoded: value) != nil else {
            throw BlobError(status: 502, code: "NoDelegationKey", operation: "get a user delegation key")
        }
        return UserDelegationKey(oid: one("SignedOid"), tid: one("SignedTid"), start: one("SignedStart"), expiry: one("SignedExpiry"),
                                 expiryDate: expiry, service: one("SignedService"), version: one("SignedVersion"), value: Secret(value))
    }

    /// Puts a file of at most `singlePutLimit` bytes as one blob unless a
    /// blob of that name exists (If-None-Match: *): one request either way.
    /// True if it was written, false if the name was taken (409
    /// BlobAlreadyExists), which is how a retry of a put whose answer was
    /// lost ends too.
    public func putIfAbsent(_ path: String, size: Int64, to container: String, as blob: String, md5: String) async throws -> Bool {
        precondition(size <= singlePutLimit)
        let r = try await send("put blob", "PUT", url(container, blob),
                               headers: [("x-ms-blob-type", "BlockBlob"), ("x-ms-blob-content-md5", md5), ("Content-MD5", md5), ("If-None-Match", "*")],
                               body: .file(path: path, offset: 0, length: size))
        if r.status == 409 && r.header("x-ms-error-code") == "BlobAlreadyExists" { return false }
        try expect(r, [201], "upload \(container)/\(blob)")
        return true
    }

    /// Uploads a file (streamed, never loaded whole). Big files go in parallel
    /// blocks with deterministic ids; blocks a crashed upload already staged
    /// (listed as uncommitted, with the right size) are not sent again.
    /// Returns the number of bytes actually sent.
    @discardableResult
    /// `progress` is told the bytes of each block as it is stored (blocks a
    /// crashed upload left are told at once), so a large file's upload
    /// shows while it lasts.
    public func upload(_ path: String, to container: String, as blob: String, md5: String,
                       progress: (@Sendable (Int64) -> Void)? = nil) async throws -> Int64 {
        guard let size = Self.fileSize(path) else { throw BlobError(status: 0, code: "CannotRead", operation: "read \(path)") }
        let common: [(name: String, value: String)] = [("x-ms-blob-type", "BlockBlob"), ("x-ms-blob-content-md5", md5)]
        if size <= singlePutLimit {
            let r = try await send("put blob", "PUT", url(container, blob), headers: common + [("Content-MD5", md5)],
                                   body: .file(path: path, offset: 0, length: size))
            try expect(r, [201], "upload \(container)/\(blob)")
            return size
        }
        let count = Int((size + blockSize - 1) / blockSize)
        let ids = (0..<count).map { Data(String(format: "batchd-block-%06d", $0).utf8).base64EncodedString() }
        let staged = try await uncommittedBlocks(container, blob)
        let todo = (0..<count).filter { i in
            let length = min(blockSize, size - Int64(i) * blockSize)
            return staged[ids[i]] != length
        }
        let already = (0..<count).filter { !todo.contains($0) }.reduce(Int64(0)) { $0 + min(blockSize, size - Int64($1) * blockSize) }
        if already > 0 { progress?(already) }
        var sent: Int64 = 0
        try await withThrowingTaskGroup(of: Int64.self) { group in
            var next = 0
            func add() {
                let i = todo[next]
                next += 1
                let offset = Int64(i) * blockSize
                let length = min(blockSize, size - offset)
                let target = url(container, blob, "comp=block&blockid=\(ServiceSAS.encode(ids[i]))")
                group.addTask {
                    let r = try await send("put block", "PUT", target, body: .file(path: path, offset: offset, length: length))
                    try expect(r, [201], "upload block \(i) of \(container)/\(blob)")
                    return length
                }
            }
            while next < todo.count && next < concurrency { add() }
            while let n = try await group.next() {
                sent += n
                progress?(n)
                if next < todo.count { add() }
            }
        }
        let list = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>" + ids.map { "<Latest>\($0)</Latest>" }.joined() + "</BlockList>"
        let r = try await send("put block list", "PUT", url(container, blob, "comp=blocklist"),
                               headers: [("x-ms-blob-content-md5", md5), ("Content-Type", "application/xml")], body: .data(Data(list.utf8)))
        try expect(r, [201], "commit \(container)/\(blob)")
        return sent
    }

    /// Uncommitted blocks of a blob: id → size.
    func uncommittedBlocks(_ container: String, _ blob: String) async throws -> [String: Int64] {
        let r = try await send("get block list", "GET", url(container, blob, "comp=blocklist&blocklisttype=uncommitted"))
        if r.status == 404 { return [:] }
        try expect(r, [200], "block list of \(container)/\(blob)")
        let xml = XMLNames(data: r.body)
        let names = xml.values(of: "Name", inside: "Block")
        let sizes = xml.values(of: "Size", inside: "Block").compactMap { Int64($0) }
        return Dictionary(zip(names, sizes), uniquingKeysWith: { a, _ in a })
    }

    /// Downloads a blob to `path`: parallel ranges into a temp file beside it,
    /// verified against the blob's size and Content-MD5, fsynced, renamed.
    ///
    /// Resumable: each range, once on disk, is noted in a `.ranges` file
    /// beside the temp file, under the blob's ETag. A download interrupted
    /// by an error or a crash fetches only the ranges not noted, as long as
    /// the blob has not changed (ranges are read with If-Match, so a blob
    /// replaced midway starts over instead of mixing two versions).
    /// `known`: the blob's properties from a listing, which saves the HEAD.
    public func download(_ container: String, _ blob: String, to path: String, known: BlobProperties? = nil,
                         received: (@Sendable (Int64) -> Void)? = nil) async throws {
        let found: BlobProperties?
        if let known { found = known } else { found = try await properties(container, blob) }
        guard let props = found else {
            throw BlobError(status: 404, code: "BlobNotFound", operation: "download \(container)/\(blob)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = "\(dir)/.\((path as NSString).lastPathComponent).batchd-download"
        let progress = "\(tmp).ranges"
        if props.size == 0 {
            // Nothing to fetch (a ranged GET of an empty blob is 416).
            guard FileManager.default.createFile(atPath: tmp, contents: Data()) else {
                throw BlobError(status: 0, code: "CannotWrite", operation: "write \(tmp)")
            }
        } else if props.size <= blockSize {
            do {
                let r = try await send("get blob", "GET", url(container, blob), sinkPath: tmp)
                try expect(r, [200], "download \(container)/\(blob)")
                received?(props.size)
            } catch {
                unlink(tmp)
                throw error
            }
        } else {
            try await downloadRanges(container, blob, props, to: tmp, progress: progress, received: received)
        }
        let size = Self.fileSize(tmp) ?? -1
        var corrupt: String?
        if size != props.size {
            corrupt = "SizeMismatch"
        } else if let expected = props.md5, try Self.md5(ofFile: tmp) != expected {
            corrupt = "Md5Mismatch"
        }
        if let corrupt {
            // Start over next time: what is on disk cannot be trusted.
            unlink(tmp)
            unlink(progress)
            throw BlobError(status: 0, code: corrupt, operation: "download \(container)/\(blob): \(size) of \(props.size) bytes")
        }
        let fd = open(tmp, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(tmp, path) == 0 else { throw BlobError(status: 0, code: "CannotRename", operation: "move into \(path)") }
        unlink(progress)
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// Fetches the ranges of `tmp` that `progress` does not list as done.
    func downloadRanges(_ container: String, _ blob: String, _ props: BlobProperties, to tmp: String, progress: String,
                        received: (@Sendable (Int64) -> Void)?) async throws {
        var done = Set<Int64>()
        let noted = (try? String(contentsOfFile: progress, encoding: .utf8)).map { $0.split(separator: "\n").map(String.init) } ?? []
        let header = "etag \(props.etag) size \(props.size) block \(blockSize)"
        if noted.first == header, Self.fileSize(tmp) == props.size {
            done = Set(noted.dropFirst().compactMap { Int64($0) })
        } else {
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0, ftruncate(fd, off_t(props.size)) == 0 else {
                if fd >= 0 { close(fd) }
                throw BlobError(status: 0, code: "CannotWrite", operation: "write \(tmp)")
            }
            close(fd)
            guard FileManager.default.createFile(atPath: progress, contents: Data((header + "\n").utf8)) else {
                throw BlobError(status: 0, code: "CannotWrite", operation: "write \(progress)")
            }
        }
        let ranges = stride(from: Int64(0), to: props.size, by: Int(blockSize))
            .filter { !done.contains($0) }
            .map { ($0, min(props.size, $0 + blockSize) - 1) }
        let etag = props.etag
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                func add() {
                    let (start, end) = ranges[next]
                    next += 1
                    group.addTask {
                        let r = try await send("get range", "GET", url(container, blob),
                                               headers: [("x-ms-range", "bytes=\(start)-\(end)"), ("If-Match", etag)])
                        try expect(r, [206], "download \(container)/\(blob) bytes \(start)-\(end)")
                        guard r.body.count == Int(end - start + 1) else {
                            throw BlobError(status: r.status, code: "ShortRange", operation: "download \(container)/\(blob)")
                        }
                        let fd = open(tmp, O_WRONLY | O_CLOEXEC)
                        guard fd >= 0 else { throw BlobError(status: 0, code: "CannotWrite", operation: "write \(tmp)") }
                        defer { close(fd) }
                        let written = r.body.withUnsafeBytes { pwrite(fd, $0.baseAddress, r.body.count, off_t(start)) }
                        // On disk before it is noted done, so a crash never skips a range it lost.
                        guard written == r.body.count, fdatasync(fd) == 0 else {
                            throw BlobError(status: 0, code: "CannotWrite", operation: "write \(tmp)")
                        }
                        received?(end - start + 1)
                        let pfd = open(progress, O_WRONLY | O_APPEND | O_CLOEXEC)
                        if pfd >= 0 {
                            let line = Array("\(start)\n".utf8)
                            _ = line.withUnsafeBytes { write(pfd, $0.baseAddress, $0.count) }
                            close(pfd)
                        }
                    }
                }
                while next < ranges.count && next < concurrency { add() }
                while try await group.next() != nil { if next < ranges.count { add() } }
            }
        } catch let e as BlobError where e.status == 412 {
            // Replaced since it was listed: what is on disk is another version.
            unlink(tmp)
            unlink(progress)
            throw BlobError(status: 412, code: "BlobChanged", operation: "download \(container)/\(blob): it changed while being read; will start over")
        }
    }
}

/// Just enough XML for Blob's list answers: the text of elements by name.
struct XMLNames {
    let data: Data

    /// Texts of every `<name>` (inside a `<parent>` when given), in order.
    func values(of name: String, inside parent: String?) -> [String] {
        final class Collector: NSObject, XMLParserDelegate {
            let name: String, parent: String?
            var stack: [String] = []
            var text = ""
            var out: [String] = []
            init(_ name: String, _ parent: String?) { self.name = name; self.parent = parent }
            func parser(_ p: XMLParser, didStartElement e: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
                stack.append(e)
                text = ""
            }
            func parser(_ p: XMLParser, foundCharacters s: String) { text += s }
            func parser(_ p: XMLParser, didEndElement e: String, namespaceURI: String?, qualifiedName: String?) {
                if e == name, parent == nil || (stack.count >= 2 && stack[stack.count - 2] == parent) { out.append(text) }
                stack.removeLast()
                text = ""
            }
        }
        let c = Collector(name, parent)
        let p = XMLParser(data: data)
        p.delegate = c
        _ = p.parse()   // a listing cut short yields the names read so far; the caller checks what it needs
        return c.out
    }

    /// For each `<element>`, the texts of the elements inside it (at any
    /// depth) by name, in order.
    func records(of element: String) -> [[String: String]] {
        final class Collector: NSObject, XMLParserDelegate {
            let element: String
            var inside = false
            var text = ""
            var current: [String: String] = [:]
            var out: [[String: String]] = []
            init(_ element: String) { self.element = element }
            func parser(_ p: XMLParser, didStartElement e: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
                if e == element { inside = true; current = [:] }
                text = ""
            }
            func parser(_ p: XMLParser, foundCharacters s: String) { text += s }
            func parser(_ p: XMLParser, didEndElement e: String, namespaceURI: String?, qualifiedName: String?) {
                if e == element { out.append(current); inside = false } else if inside { current[e] = text }
                text = ""
            }
        }
        let c = Collector(element)
        let p = XMLParser(data: data)
        p.delegate = c
        _ = p.parse()
        return c.out
    }
}
