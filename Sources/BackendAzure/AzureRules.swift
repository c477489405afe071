import BatchCore
import BatchHTTP
import Foundation

/// The Azure backend's pure decisions, tested on captured responses
/// (Tests/BackendAzureTests/AzureRulesTests.swift).
public enum AzureRules {
    /// Whether a failed request is worth repeating: network errors, 408,
    /// 429, 5xx, and a download that arrived corrupt or changed under us.
    /// Everything else (400, 403, 404, 409, a refused body) fails the step.
    public static func isTransient(_ error: Error) -> Bool {
        if error is HTTPError { return true }
        // A pool still resizing (to zero while idle, say) takes a new size once
        // it is steady; a name still held by something being deleted is free
        // once it is gone.
        if let e = error as? BatchServiceError {
            return e.status == 408 || e.status == 429 || e.status >= 500 || ["PoolNotSteady", "PoolBeingDeleted", "JobBeingDeleted"].contains(e.code)
        }
        if let e = error as? BlobError {
            return e.status == 408 || e.status == 429 || e.status >= 500
                || ["Md5Mismatch", "SizeMismatch", "ShortRange", "BlobChanged", "ContainerBeingDeleted"].contains(e.code)
        }
        return false
    }

    /// Why a step failed, in words for `batchctl show`: what happened, not
    /// the error's type. Never holds a secret (errors never carry one).
    public static func plainWords(_ error: Error) -> String {
        func status(_ code: Int, _ name: String, _ what: String) -> String {
            switch code {
            case 429: return "Azure is throttling this account's requests (HTTP 429\(name.isEmpty ? "" : " \(name)")) while trying to \(what)"
            case 503: return "the service is busy (HTTP 503\(name.isEmpty ? "" : " \(name)")) while trying to \(what)"
            case 408: return "the service gave up waiting for the request (HTTP 408) while trying to \(what)"
            case 500...: return "the service failed (HTTP \(code)\(name.isEmpty ? "" : " \(name)")) while trying to \(what)"
            default: return "HTTP \(code)\(name.isEmpty ? "" : " \(name)") while trying to \(what)"
            }
        }
        switch error {
        case let e as HTTPError:
            switch e.kind {
            case .connect: return "cannot connect to Azure (\(e.message)): the network, a proxy or a firewall is in the way"
            case .timeout: return "Azure did not answer in time (\(e.message))"
            case .transfer: return "the connection broke in the middle of a request (\(e.message))"
            default: return e.message
            }
        case let e as BlobError:
            switch e.code {
            case "Md5Mismatch":
                return "what arrived for \(e.operation) does not match the blob's MD5: something between here and Azure "
                    + "(a proxy, a broken network card) changes the bytes"
            case "SizeMismatch", "ShortRange":
                return "\(e.operation) came back shorter than the blob: the connection was cut, or a proxy truncates"
            case "BlobChanged": return "the blob changed while it was read (\(e.operation)); it is read again from the start"
            case "ContainerBeingDeleted": return "waiting for a container of the same name to finish being deleted (\(e.operation))"
            default: return status(e.status, e.code, e.operation)
            }
        case let e as BatchServiceError where isAuthFailure(e):
            return refusal(service: "Azure Batch", e.status, e.code, e.operation, serverDate: e.serverDate, message: e.message)
        case let e as BlobError where isAuthFailure(e):
            return refusal(service: "Azure Storage", e.status, e.code, e.operation, serverDate: e.serverDate, message: "")
        case let e as BatchServiceError where e.code == "PoolBeingDeleted" || e.code == "JobBeingDeleted":
            return "waiting for a \(e.code == "PoolBeingDeleted" ? "pool" : "Batch job") of the same id to finish being deleted (\(e.operation))"
        case let e as BatchServiceError:
            return status(e.status, e.code, e.operation) + (e.message.isEmpty ? "" : ": \(e.message)")
        default:
            return "\(error)"
        }
    }

    /// Whether Azure refused who batchd is rather than what it asked: a
    /// bearer token it does not take (401, after one new token was tried),
    /// a key or signature it does not match, a request time it does not
    /// trust (403 `AuthenticationFailed`), or Entra ID refusing the client
    /// credentials. Retried, as a rotated key may be put right, but only
    /// for `azure.authFailureLimit`.
    public static func isAuthFailure(_ error: Error) -> Bool {
        switch error {
        case let e as BatchServiceError: return e.status == 401 || e.status == 403 && e.code == "AuthenticationFailed"
        case let e as BlobError: return e.status == 401 || e.status == 403 && e.code == "AuthenticationFailed"
        case AzureError.credentialsRefused: return true
        default: return false
        }
    }

    /// What to do about a credential Azure keeps refusing.
    public static func authFix(_ error: Error) -> String {
        if clockOffset(error) != nil || "\(error)".contains("date header") {
            return "set this machine's clock right (`timedatectl status`; chrony or systemd-timesyncd keeps it so), then `batchctl retry`"
        }
        switch error {
        case AzureError.credentialsRefused:
            return "put the client's current secret in AZURE_CLIENT_SECRET (or its systemd credential) and restart batchd, then `batchctl retry`"
        case let e as BlobError where e.status == 403:
            return "put the storage account's current key in AZURE_STORAGE_KEY or the connection string and restart batchd, then `batchctl retry`"
        case let e as BatchServiceError where e.status == 403:
            return "put the Batch account's current key in AZURE_BATCH_ACCESS_KEY (or its systemd credential) and restart batchd, then `batchctl retry`"
        default:
            return "check that the Entra ID client still has its role on the account (tokens are fetched anew and still refused), then `batchctl retry`"
        }
    }

    /// Seconds the service's clock is ahead of this machine's (negative:
    /// behind), when a request was refused for its time and the answer said
    /// the service's time.
    public static func clockOffset(_ error: Error, now: Date = Date()) -> Double? {
        let date: String?
        switch error {
        case let e as BatchServiceError where e.status == 403: date = e.serverDate
        case let e as BlobError where e.status == 403: date = e.serverDate
        default: return nil
        }
        guard let text = date, let server = httpDate(text) else { return nil }
        let offset = server.timeIntervalSince(now)
        return abs(offset) > 300 ? offset : nil
    }

    /// An RFC 1123 date (`Mon, 07 Dec 2026 07:41:27 GMT`).
    static func httpDate(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: text)
    }

    static func refusal(service: String, _ status: Int, _ code: String, _ operation: String, serverDate: String?, message: String) -> String {
        let what = "\(service) refused batchd's credentials (HTTP \(status)\(code.isEmpty ? "" : " \(code)")) while trying to \(operation)"
        if status == 403, let text = serverDate, let server = httpDate(text), abs(server.timeIntervalSinceNow) > 300 {
            let off = server.timeIntervalSinceNow
            return what + ": this machine's clock is \(HumanDuration.format(abs(off))) \(off > 0 ? "behind" : "ahead of") Azure's"
        }
        if status == 401 { return what + ": its token was refused, and so was a new one" }
        return what + (message.isEmpty ? "" : ": \(message)")
    }

    /// Failures Batch retries itself, up to the job's `maxTaskRetryCount`:
    /// it "retries a Task if its exit code is nonzero". Anything else it
    /// reports once, and batchd retries it (an upload the node could not
    /// make, say). Whether a task the service ended at its
    /// `maxWallClockTime` gets an exit code, and so a retry, the spec does
    /// not say; batchd retries it itself, within what is left of `retries`
    /// after the service's own retries (`retryCount`), so it is retried
    /// once either way.
    public static let retriedByService: Set<OutcomeKind> = [.exited]

    /// What a completed task's state on the service means here. Only
    /// `result: success` is a success: a task that exited 0 but whose
    /// outputs the node could not upload failed (its outputs are not in the
    /// container), with the service's code and detail. A task the service
    /// ended because the job was terminated counts as cancelled only when
    /// the job was cancelled; otherwise the Batch job ended first (its
    /// wall-clock limit).
    public static func outcome(_ s: TaskSnapshot, timeout: Double?, cancelled: Bool) -> TaskOutcome {
        // An older service may leave `result` out: then a clean exit is a success.
        if s.result == "success" || s.result == nil && s.exitCode == 0 && s.failureCode == nil { return .exited(code: 0) }
        let said = serviceWords([s.failureCode, s.failureMessage, s.failureDetails].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": "))
        let words = said.isEmpty ? "no detail from the service" : said
        switch s.failureCode {
        case "MaxWallClockTimeExpiry"?: return .timedOut(seconds: timeout ?? 0)
        case "TaskEnded"? where cancelled, "JobTerminated"? where cancelled: return .cancelled
        case "JobTerminated"?: return .launchFailed(reason: "the Batch job ended before the task ran (its wall-clock limit?)")
        case let code? where code.hasPrefix("FileUpload"):
            return .outputsFailed(reason: "the node could not upload the task's outputs (\(words))")
        case let code?:
            if let plain = AzureContainers.taskFailure(code, words) { return .launchFailed(reason: plain) }
        default: break
        }
        if let code = s.exitCode, code != 0 { return .exited(code: Int32(truncatingIfNeeded: code)) }
        return .launchFailed(reason: words)
    }
}

extension AzureRules {
    /// The service's words, safe to keep: any URL in them loses its secrets
    /// (a container URL's SAS signature), and they are at most 1,000 bytes.
    public static func serviceWords(_ text: String) -> String {
        var out = text.split(separator: " ", omittingEmptySubsequences: false)
            .map { $0.contains("://") ? HTTPTrace.redacted(String($0)) : String($0) }.joined(separator: " ")
        if out.utf8.count > 1000 { out = String(decoding: out.utf8.prefix(1000), as: UTF8.self) + "…" }
        return out
    }

    /// The vCPUs of an Azure VM size, read from its name as Azure names
    /// them: the number after the family letters (`Standard_D2s_v3` → 2,
    /// `Standard_HB120rs_v3` → 120), or the active count of a constrained
    /// size (`Standard_E4-2ds_v4` → 2). nil when the name has no number.
    public static func vmCores(_ vmSize: String) -> Int? {
        var name = Substring(vmSize)
        if let underscore = name.firstIndex(of: "_"), name[..<underscore].lowercased() == "standard" || name[..<underscore].lowercased() == "basic" {
            name = name[name.index(after: underscore)...]
        }
        let family = name.prefix { $0.isLetter }
        var rest = name.dropFirst(family.count)
        let digits = rest.prefix { $0.isNumber }
        guard !family.isEmpty, let n = Int(digits), n > 0 else { return nil }
        rest = rest.dropFirst(digits.count)
        if rest.first == "-" {
            let active = rest.dropFirst().prefix { $0.isNumber }
            if let a = Int(active), a > 0 { return a }
        }
        return n
    }

    /// Cores one task holds, for `limits.coreHours`: the pool's VM cores
    /// divided among its task slots (at least one).
    public static func coresPerTask(vmSize: String, slotsPerNode: Int) -> Double {
        Double(vmCores(vmSize) ?? 1) / Double(max(1, slotsPerNode))
    }
}

extension AzureBackend {
    /// Cores one task of a job with this pool holds.
    func coresPerTask(_ pool: PoolSpec) -> Double {
        AzureRules.coresPerTask(vmSize: pool.vmSize ?? settings.vmSize, slotsPerNode: pool.slotsPerNode ?? 1)
    }
}
