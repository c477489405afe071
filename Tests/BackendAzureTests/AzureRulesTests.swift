@testable import BackendAzure
import BatchCore
import BatchHTTP
import Foundation
import Testing

/// The Azure backend's pure decisions on responses as the service sends them
/// (shapes from the REST spec, BatchService.json, and captured from the
/// emulator): the list-tasks items become snapshots, then outcomes; error
/// bodies become errors, then "retry" or "give up".
@Suite("Azure rules on captured responses")
struct AzureRulesTests {
    /// One `value` item of GET /jobs/{job}/tasks?$select=id,state,stateTransitionTime,executionInfo.
    static func item(_ executionInfo: String) -> TaskSnapshot {
        let json = """
            {"id":"t-7","state":"completed","stateTransitionTime":"2026-11-21T18:32:18.12Z","executionInfo":\(executionInfo)}
            """
        let obj = try! JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        return TaskPoller.snapshot(obj)!
    }

    struct Row: Sendable, CustomStringConvertible {
        let name: String
        let executionInfo: String
        let cancelled: Bool
        let expected: TaskOutcome
        var description: String { name }
    }

    static let rows: [Row] = [
        Row(name: "success", executionInfo: """
            {"startTime":"2026-11-21T18:32:17.9Z","endTime":"2026-11-21T18:32:18.1Z","exitCode":0,"result":"success","retryCount":0,"requeueCount":0}
            """, cancelled: false, expected: .exited(code: 0)),
        Row(name: "non-zero exit", executionInfo: """
            {"exitCode":3,"result":"failure","retryCount":1,"failureInfo":{"category":"UserError","code":"FailureExitCode","message":"The task process exited with an unexpected exit code","details":[{"name":"Message","value":"The task process exited with an unexpected exit code"}]}}
            """, cancelled: false, expected: .exited(code: 3)),
        Row(name: "wall-clock limit", executionInfo: """
            {"result":"failure","retryCount":0,"failureInfo":{"category":"UserError","code":"MaxWallClockTimeExpiry","message":"The task has exceeded its maximum wall clock time"}}
            """, cancelled: false, expected: .timedOut(seconds: 60)),
        Row(name: "ended by a cancel", executionInfo: """
            {"result":"failure","retryCount":0,"failureInfo":{"category":"UserError","code":"TaskEnded","message":"The task was terminated"}}
            """, cancelled: true, expected: .cancelled),
        Row(name: "ended, not by us", executionInfo: """
            {"result":"failure","retryCount":0,"failureInfo":{"category":"UserError","code":"TaskEnded","message":"The task was terminated"}}
            """, cancelled: false, expected: .launchFailed(reason: "TaskEnded: The task was terminated")),
        Row(name: "job terminated by a cancel", executionInfo: """
            {"result":"failure","failureInfo":{"category":"UserError","code":"JobTerminated","message":"The job was terminated"}}
            """, cancelled: true, expected: .cancelled),
        Row(name: "job ended first (its wall clock)", executionInfo: """
            {"result":"failure","failureInfo":{"category":"UserError","code":"JobTerminated","message":"The job was terminated"}}
            """, cancelled: false, expected: .launchFailed(reason: "the Batch job ended before the task ran (its wall-clock limit?)")),
        Row(name: "an input never arrived", executionInfo: """
            {"result":"failure","retryCount":0,"failureInfo":{"category":"UserError","code":"ResourceFileDownloadError","message":"One or more resource files failed to download"}}
            """, cancelled: false, expected: .launchFailed(reason: "ResourceFileDownloadError: One or more resource files failed to download")),
        Row(name: "failure with no detail", executionInfo: """
            {"result":"failure"}
            """, cancelled: false, expected: .launchFailed(reason: "no detail from the service")),
        // Exit code 0 is not a success when the service says failure: the
        // outputs did not reach the container. Its words keep no token.
        Row(name: "exited 0, outputs not uploaded", executionInfo: """
            {"exitCode":0,"result":"failure","retryCount":0,"failureInfo":{"category":"UserError","code":"FileUploadMiscError","message":"The compute node could not upload one or more output files","details":[{"name":"FilePath","value":"out-1.txt"},{"name":"ContainerUrl","value":"https://store.blob.core.windows.net/out?sv=2023-11-03&sp=cw&sig=c2VjcmV0"}]}}
            """, cancelled: false, expected: .outputsFailed(reason: "the node could not upload the task's outputs (FileUploadMiscError: "
                + "The compute node could not upload one or more output files: FilePath=out-1.txt, "
                + "ContainerUrl=https://store.blob.core.windows.net/out?sv=2023-11-03&sp=cw&sig=REDACTED)")),
        Row(name: "exited 0, failed for another reason", executionInfo: """
            {"exitCode":0,"result":"failure","failureInfo":{"category":"ServerError","code":"TaskFailedToRun","message":"The node could not run the task"}}
            """, cancelled: false, expected: .launchFailed(reason: "TaskFailedToRun: The node could not run the task")),
        Row(name: "exited 0, no result (an older service)", executionInfo: """
            {"exitCode":0,"retryCount":0}
            """, cancelled: false, expected: .exited(code: 0)),
    ]

    @Test("a completed task's executionInfo means this outcome", arguments: rows)
    func outcome(_ row: Row) {
        #expect(AzureRules.outcome(Self.item(row.executionInfo), timeout: 60, cancelled: row.cancelled) == row.expected)
    }

    @Test("the retry count the service reports numbers the attempt")
    func retryCount() {
        #expect(Self.item(#"{"exitCode":3,"result":"failure","retryCount":2}"#).retryCount == 2)
    }

    /// An error body as Batch sends it.
    static func batchError(_ status: Int, _ code: String) -> BatchServiceError {
        let body = """
            {"odata.metadata":"https://acct.westeurope.batch.azure.com/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",\
            "code":"\(code)","message":{"lang":"en-US","value":"\(code) happened.\\nRequestId:8f3a\\nTime:2026-11-21T18:32:18.1Z"}}
            """
        return BatchClient.error(HTTPResponse(status: status, headers: [:], body: Data(body.utf8)), "add task collection")
    }

    @Test("busy, throttled and broken answers are retried; refusals are not")
    func transient() {
        #expect(Self.batchError(503, "ServerBusy").message == "ServerBusy happened.")
        // A name held by something being deleted is free once it is gone: waited out.
        for (status, code) in [(500, "InternalError"), (503, "ServerBusy"), (429, "TooManyRequests"), (408, "OperationTimedOut"),
                               (409, "PoolBeingDeleted"), (409, "JobBeingDeleted")] {
            #expect(AzureRules.isTransient(Self.batchError(status, code)), "\(status) \(code)")
        }
        for (status, code) in [(400, "InvalidPropertyValue"), (403, "AuthenticationFailed"), (404, "JobNotFound"), (409, "TaskExists"),
                               (409, "PoolExists"), (413, "RequestBodyTooLarge")] {
            #expect(!AzureRules.isTransient(Self.batchError(status, code)), "\(status) \(code)")
        }
        #expect(AzureRules.isTransient(HTTPError(.connect, "connection refused")))
        #expect(AzureRules.isTransient(HTTPError(.timeout, "stalled")))
        #expect(AzureRules.isTransient(BlobError(status: 0, code: "Md5Mismatch", operation: "download")))
        #expect(AzureRules.isTransient(BlobError(status: 503, code: "ServerBusy", operation: "put block")))
        #expect(!AzureRules.isTransient(BlobError(status: 412, code: "ConditionNotMet", operation: "download")))
        #expect(!AzureRules.isTransient(BlobError(status: 403, code: "AuthenticationFailed", operation: "put blob")))
        #expect(!AzureRules.isTransient(CocoaError(.fileNoSuchFile)))
    }

    @Test("an add-collection answer is counted as all added only when each task says success, however it is spaced")
    func addAnswerCounting() {
        func count(_ s: String) -> Int { BatchClient.successes(in: Data(s.utf8)) }
        #expect(count(#"{"value":[{"status":"success","taskId":"a"},{"status":"success","taskId":"b"}]}"#) == 2)
        #expect(count("{\"value\": [{\"status\" :\n \"success\", \"taskId\": \"a\"}]}") == 1)
        #expect(count(#"{"value":[{"status":"clienterror","taskId":"a","error":{"message":{"value":"\"status\":\"success\""}}}]}"#) == 0,
                "a message quoting the words is not a success")
        #expect(count(#"{"value":[{"taskId":"status","status":"servererror"}]}"#) == 0, "a value that reads status is not a key")
    }

    @Test("SAS times are ISO 8601 in UTC, as a formatter writes them")
    func sasDates() {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        for t in [0.0, 951_782_400.5, 1_796_272_344, 4_102_444_799] {
            let date = Date(timeIntervalSince1970: t)
            #expect(ServiceSAS.isoDate(date) == f.string(from: date))
        }
    }

    @Test("why a step is retried, in words a user can act on")
    func plainWords() {
        #expect(AzureRules.plainWords(BlobError(status: 0, code: "Md5Mismatch", operation: "download c/t3/out.txt"))
                .contains("does not match the blob's MD5: something between here and Azure"))
        #expect(AzureRules.plainWords(BatchServiceError(status: 503, code: "ServerBusy", message: "The server is busy.", operation: "list tasks"))
                == "the service is busy (HTTP 503 ServerBusy) while trying to list tasks: The server is busy.")
        #expect(AzureRules.plainWords(BlobError(status: 429, code: "", operation: "upload c/b")).hasPrefix("Azure is throttling"))
        #expect(AzureRules.plainWords(HTTPError(.connect, "Couldn't connect to server")).hasPrefix("cannot connect to Azure"))
    }

    @Test("a user delegation SAS carries the key's fields and never outlives the key")
    func delegationTokens() throws {
        let keyExpiry = Date(timeIntervalSince1970: 1_800_000_000)
        let key = UserDelegationKey(oid: "app-1", tid: "tenant-1", start: "2027-01-08T00:00:00Z", expiry: ServiceSAS.isoDate(keyExpiry),
                                    expiryDate: keyExpiry, service: "b", version: "2026-10-06", value: Secret("a2V5LWtleS1rZXk="))
        let sas = ServiceSAS(account: "store", delegation: key)
        let token = try sas.token(container: "c", blob: "b", permissions: "r", start: nil, expiry: keyExpiry.addingTimeInterval(-60))
        for field in ["skoid=app-1", "sktid=tenant-1", "skt=2027-01-08T00%3A00%3A00Z", "sks=b", "skv=2026-10-06", "sig="] {
            #expect(token.contains(field), "\(field) in \(token)")
        }
        #expect(throws: AzureError.self) { try sas.token(container: "c", permissions: "r", start: nil, expiry: keyExpiry.addingTimeInterval(60)) }
    }

    @Test("the service's times, with any number of fractional digits")
    func serviceTimes() {
        #expect(AzureBackend.parseISO("2026-12-03T03:52:52.0139513Z")?.timeIntervalSince1970 == 1_796_269_972)
        #expect(AzureBackend.parseISO("2026-12-03T03:52:52Z")?.timeIntervalSince1970 == 1_796_269_972)
        #expect(AzureBackend.parseISO("2026-12-03 03:52:52") == nil && AzureBackend.parseISO("") == nil)
    }

    @Test("a pool asked for over the control socket is checked against the manifest's bounds")
    func poolBounds() {
        var p = PoolSpec()
        p.id = "ok"
        #expect(AzureBackend.problem(p) == nil)
        p.dedicatedNodes = 10_001
        #expect(AzureBackend.problem(p)?.contains("dedicated") == true)
        p.dedicatedNodes = 1
        p.idleTimeoutSeconds = .infinity
        #expect(AzureBackend.problem(p)?.contains("idle timeout") == true)
        p.idleTimeoutSeconds = nil
        p.startTask = "echo \u{1b}[2J"
        #expect(AzureBackend.problem(p)?.contains("start task") == true)
    }
}
