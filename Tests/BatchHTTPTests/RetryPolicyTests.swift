import BatchHTTP
import Foundation
import Testing

@Suite("HTTP retry policy")
struct HTTPRetryPolicyTests {
    let policy = HTTPRetryPolicy(maxAttempts: 4)
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func delay(_ method: String, status: Int? = nil, headers: [String: String] = [:], error: HTTPError? = nil,
               attempt: Int = 1, idempotent: Bool = false) -> Double? {
        policy.delay(method: method, idempotent: idempotent, attempt: attempt, status: status, headers: headers,
                     error: error, jitter: 1, now: now)
    }

    @Test func idempotentVerbsRetryTransientAnswers() {
        for status in [408, 429, 500, 502, 503, 504] { #expect(delay("GET", status: status) == 0.5) }
        #expect(delay("GET", status: 404) == nil)
        #expect(delay("PUT", status: 500, attempt: 3) == 2)
        #expect(delay("DELETE", status: 503, attempt: 4) == nil)   // out of tries
    }

    @Test("POST is retried only when the service refused the work, unless the caller vouches for it")
    func postIsCareful() {
        #expect(delay("POST", status: 429) == 0.5)
        #expect(delay("POST", status: 503) == 0.5)
        #expect(delay("POST", status: 500) == nil)
        #expect(delay("POST", status: 504) == nil)
        #expect(delay("POST", status: 500, idempotent: true) == 0.5)
        #expect(delay("POST", error: HTTPError(.transfer, "reset")) == nil)
        #expect(delay("POST", error: HTTPError(.connect, "refused")) == 0.5)
        #expect(delay("POST", error: HTTPError(.transfer, "reset"), idempotent: true) == 0.5)
    }

    @Test func retryAfterSetsTheWaitButNeverBelowTheBackoff() {
        #expect(delay("GET", status: 503, headers: ["retry-after": "7"]) == 7)
        #expect(delay("GET", status: 503, headers: ["retry-after-ms": "100"], attempt: 3) == 2)
        #expect(delay("GET", status: 429, headers: ["retry-after": "Sat, 15 Jan 2027 08:00:10 GMT"]) != nil)
        #expect(HTTPRetryPolicy.retryAfter(["retry-after": "Fri, 15 Jan 2027 08:00:10 GMT"], now: Date(timeIntervalSince1970: 1_800_000_000)) != nil)
        #expect(HTTPRetryPolicy.retryAfter(["x-ms-retry-after-ms": "250"], now: now) == 0.25)
        #expect(delay("GET", status: 503, headers: ["retry-after": "3600"]) == nil)   // longer than we wait
    }

    @Test func permanentErrorsAreNotRetried() {
        #expect(delay("GET", error: HTTPError(.invalid, "bad url")) == nil)
        #expect(delay("GET", error: HTTPError(.io, "disk full")) == nil)
    }

    @Test("a traced URL keeps its path and harmless parameters and loses every secret")
    func traceRedaction() {
        #expect(HTTPTrace.redacted("https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sr=b&sp=r&se=2026-12-03T00%3A00%3A00Z&sig=abc%2Bdef")
                == "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sr=b&sp=r&se=2026-12-03T00%3A00%3A00Z&sig=REDACTED")
        #expect(HTTPTrace.redacted("https://user:pw@host/p?api-version=2024-07-01&client_secret=s&access_token=t&code=c&SIG=x")
                == "https://host/p?api-version=2024-07-01&client_secret=REDACTED&access_token=REDACTED&code=REDACTED&SIG=REDACTED")
        #expect(HTTPTrace.redacted("http://127.0.0.1:1/jobs/j/tasks?$filter=state%20eq%20'completed'&$select=id")
                == "http://127.0.0.1:1/jobs/j/tasks?$filter=state%20eq%20'completed'&$select=id")
        #expect(HTTPTrace.redacted("http://h/a@b/c") == "http://h/a@b/c", "an @ in the path is not user information")
    }
}
