import CCurl
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One transfer: the curl easy handle, where its body comes from and goes to,
/// and the continuation waiting for it. Owned by the curl thread once submitted.
final class RequestContext: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    var headerList: UnsafeMutablePointer<curl_slist>?
    var continuation: CheckedContinuation<Result<HTTPResponse, HTTPError>, Never>?
    let cancelled = Atomic<Bool>(false)

    // Upload source.
    let uploadData: Data?
    var uploadFD: Int32 = -1
    let uploadOffset: Int64
    let uploadLength: Int64
    var uploadPosition: Int64 = 0

    // Response.
    var statusLine = 0
    var headers: [String: String] = [:]
    var body = Data()
    let sinkPath: String?
    var sinkFD: Int32 = -1
    var sinkError: String?
    var unmanaged: Unmanaged<RequestContext>?

    init(request: HTTPRequest, sinkPath: String?, configuration: TransportConfiguration) throws {
        guard let e = curl_easy_init() else { throw HTTPError(.invalid, "curl_easy_init failed") }
        easy = e
        self.sinkPath = sinkPath
        switch request.body {
        case .none:
            uploadData = nil; uploadOffset = 0; uploadLength = 0
        case .data(let d):
            uploadData = d; uploadOffset = 0; uploadLength = Int64(d.count)
        case .file(let path, let offset, let length):
            uploadData = nil; uploadOffset = offset; uploadLength = length
            uploadFD = open(path, O_RDONLY | O_CLOEXEC)
            if uploadFD < 0 {
                curl_easy_cleanup(e)
                throw HTTPError(.io, "cannot open \(path) to send it: \(String(cString: strerror(errno)))")
            }
        }
        let me = Unmanaged.passRetained(self)
        unmanaged = me
        let ptr = me.toOpaque()
        ccurl_setopt_string(e, CURLOPT_URL, request.url)
        ccurl_setopt_long(e, CURLOPT_NOSIGNAL, 1)
        ccurl_setopt_long(e, CURLOPT_CONNECTTIMEOUT_MS, Int(configuration.connectTimeout * 1000))
        ccurl_setopt_long(e, CURLOPT_LOW_SPEED_TIME, configuration.stallSeconds)
        ccurl_setopt_long(e, CURLOPT_LOW_SPEED_LIMIT, configuration.stallBytesPerSecond)
        if let t = request.timeout { ccurl_setopt_long(e, CURLOPT_TIMEOUT_MS, Int(t * 1000)) }
        if request.method == "HEAD" {
            ccurl_setopt_long(e, CURLOPT_NOBODY, 1)
        } else if request.method != "GET" {
            ccurl_setopt_string(e, CURLOPT_CUSTOMREQUEST, request.method)
        }
        if request.method == "PUT" || request.method == "POST" || request.method == "PATCH" || request.body.length > 0 {
            ccurl_setopt_long(e, CURLOPT_UPLOAD, 1)
            ccurl_setopt_off(e, CURLOPT_INFILESIZE_LARGE, curl_off_t(uploadLength))
            ccurl_setopt_data_cb(e, CURLOPT_READFUNCTION, readCallback)
            ccurl_setopt_ptr(e, CURLOPT_READDATA, ptr)
            ccurl_setopt_seek_cb(e, CURLOPT_SEEKFUNCTION, seekCallback)
            ccurl_setopt_ptr(e, CURLOPT_SEEKDATA, ptr)
        }
        // "Expect:" avoids a one-second 100-continue stall on uploads.
        for line in request.headers.map({ "\($0.name): \($0.value)" }) + ["Expect:"] {
            headerList = curl_slist_append(headerList, line)
        }
        ccurl_setopt_slist(e, CURLOPT_HTTPHEADER, headerList)
        ccurl_setopt_data_cb(e, CURLOPT_WRITEFUNCTION, writeCallback)
        ccurl_setopt_ptr(e, CURLOPT_WRITEDATA, ptr)
        ccurl_setopt_data_cb(e, CURLOPT_HEADERFUNCTION, headerCallback)
        ccurl_setopt_ptr(e, CURLOPT_HEADERDATA, ptr)
    }

    /// The outcome once curl says the transfer is done.
    func result(_ code: CURLcode) -> Result<HTTPResponse, HTTPError> {
        if let sinkError { return .failure(HTTPError(.io, sinkError)) }
        switch code {
        case CURLE_OK:
            var status = 0
            ccurl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            return .success(HTTPResponse(status: status, headers: headers, body: body))
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_SSL_CONNECT_ERROR:
            return .failure(HTTPError(.connect, String(cString: curl_easy_strerror(code))))
        case CURLE_OPERATION_TIMEDOUT:
            return .failure(HTTPError(.timeout, String(cString: curl_easy_strerror(code))))
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_PEER_FAILED_VERIFICATION:
            return .failure(HTTPError(code == CURLE_PEER_FAILED_VERIFICATION ? .connect : .invalid, String(cString: curl_easy_strerror(code))))
        case CURLE_READ_ERROR, CURLE_WRITE_ERROR:
            return .failure(HTTPError(.io, String(cString: curl_easy_strerror(code))))
        default:
            return .failure(HTTPError(.transfer, String(cString: curl_easy_strerror(code))))
        }
    }

    /// Resumes the waiter once, and releases everything.
    func complete(_ result: Result<HTTPResponse, HTTPError>) {
        if sinkFD >= 0 {
            if case .success = result { fsync(sinkFD) }
            close(sinkFD)
            sinkFD = -1
        }
        if uploadFD >= 0 { close(uploadFD); uploadFD = -1 }
        curl_easy_cleanup(easy)
        curl_slist_free_all(headerList)
        headerList = nil
        let c = continuation
        continuation = nil
        c?.resume(returning: result)
        unmanaged?.release()
        unmanaged = nil
    }

    // MARK: callbacks (on the curl thread)

    func received(_ ptr: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        if let sinkPath, (200..<300).contains(statusLine) {
            if sinkFD < 0 {
                sinkFD = open(sinkPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if sinkFD < 0 { sinkError = "cannot write \(sinkPath): \(String(cString: strerror(errno)))"; return 0 }
            }
            var off = 0
            while off < count {
                let w = write(sinkFD, ptr + off, count - off)
                if w < 0 { if errno == EINTR { continue }; sinkError = "cannot write \(sinkPath): \(String(cString: strerror(errno)))"; return 0 }
                off += w
            }
            return count
        }
        body.append(UnsafeRawPointer(ptr).assumingMemoryBound(to: UInt8.self), count: count)
        return count
    }

    func headerLine(_ line: String) {
        if line.hasPrefix("HTTP/") {
            // A new response (after a 100 Continue or a redirect): start over.
            headers = [:]
            let parts = line.split(separator: " ")
            statusLine = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        // Optional whitespace around a field value (RFC 9110 5.5), and the line's CR LF.
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }
        let rest = line[line.index(after: colon)...]
        let start = rest.firstIndex { !blank($0) } ?? rest.endIndex
        let end = rest.lastIndex { !blank($0) }.map { rest.index(after: $0) } ?? start
        headers[name] = String(rest[start..<max(start, end)])
    }

    func readBody(_ ptr: UnsafeMutablePointer<CChar>, _ capacity: Int) -> Int {
        let left = uploadLength - uploadPosition
        let n = Int(min(Int64(capacity), left))
        if n <= 0 { return 0 }
        if let d = uploadData {
            let start = d.startIndex + Int(uploadPosition)
            d.copyBytes(to: UnsafeMutableRawPointer(ptr).assumingMemoryBound(to: UInt8.self), from: start..<(start + n))
            uploadPosition += Int64(n)
            return n
        }
        let r = pread(uploadFD, ptr, n, off_t(uploadOffset + uploadPosition))
        if r < 0 { return Int(CURL_READFUNC_ABORT) }
        uploadPosition += Int64(r)
        return r
    }

    func seek(_ offset: Int64, _ origin: Int32) -> Int32 {
        guard origin == SEEK_SET, offset >= 0, offset <= uploadLength else { return CURL_SEEKFUNC_CANTSEEK }
        uploadPosition = offset
        return CURL_SEEKFUNC_OK
    }
}

private func context(_ p: UnsafeMutableRawPointer?) -> RequestContext {
    Unmanaged<RequestContext>.fromOpaque(p!).takeUnretainedValue()
}

private let writeCallback: ccurl_data_cb = { ptr, size, n, user in
    guard let ptr else { return 0 }
    return context(user).received(ptr, size * n)
}

private let headerCallback: ccurl_data_cb = { ptr, size, n, user in
    guard let ptr else { return 0 }
    let count = size * n
    let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: count), as: UTF8.self)
    context(user).headerLine(line)
    return count
}

private let readCallback: ccurl_data_cb = { ptr, size, n, user in
    guard let ptr else { return 0 }
    return context(user).readBody(ptr, size * n)
}

private let seekCallback: ccurl_seek_cb = { user, offset, origin in
    context(user).seek(Int64(offset), origin)
}
