import BatchCore
import BatchHTTP

/// The Azure backend's pure decisions, tested on captured responses
/// (Tests/BackendAzureTests/AzureRulesTests.swift).
public enum AzureRules {
    /// Whether a failed request is worth repeating: network errors, 408,
    /// 429, 5xx, and a download that arrived corrupt or changed under us.
    /// Everything else (400, 403, 404, 409, a refused body) fails the step.
    public static func isTransient(_ error: Error) -> Bool {
        if error is HTTPError { return true }
        if let e = error as? BatchServiceError { return e.status == 408 || e.status == 429 || e.status >= 500 }
        if let e = error as? BlobError {
            return e.status == 408 || e.status == 429 || e.status >= 500 || ["Md5Mismatch", "SizeMismatch", "ShortRange", "BlobChanged"].contains(e.code)
        }
        return false
    }

    /// What a completed task's state on the service means here. A task the
    /// service ended because the job was terminated counts as cancelled only
    /// when the job was cancelled; otherwise the Batch job ended first (its
    /// wall-clock limit).
    public static func outcome(_ s: TaskSnapshot, timeout: Double?, cancelled: Bool) -> TaskOutcome {
        if s.result == "success", s.exitCode ?? 0 == 0 { return .exited(code: 0) }
        switch s.failureCode {
        case "MaxWallClockTimeExpiry"?: return .timedOut(seconds: timeout ?? 0)
        case "TaskEnded"? where cancelled, "JobTerminated"? where cancelled: return .cancelled
        case "JobTerminated"?: return .launchFailed(reason: "the Batch job ended before the task ran (its wall-clock limit?)")
        default: break
        }
        if let code = s.exitCode { return .exited(code: Int32(truncatingIfNeeded: code)) }
        return .launchFailed(reason: "\(s.failureCode ?? "failure"): \(s.failureMessage ?? "no detail from the service")")
    }
}
