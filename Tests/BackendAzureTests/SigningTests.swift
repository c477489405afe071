import BackendAzure
import BatchHTTP
import Foundation
import Testing

@Suite("Azure Shared Key and SAS")
struct SigningTests {
    @Test("the Batch string to sign matches the one captured from Microsoft's SDK (WIRE.md)")
    func batchStringToSign() {
        let s = SharedKey.batchStringToSign(
            method: "GET", path: "/jobs/j1/tasks",
            query: [("api-version", "2025-06-01"), ("$filter", "state eq 'completed'"), ("maxresults", "1000"), ("$select", "id,state,executionInfo")],
            headers: [("ocp-date", "Sat, 21 Nov 2026 18:32:18 GMT")], account: "acct")
        #expect(s == "GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Sat, 21 Nov 2026 18:32:18 GMT\n/acct/jobs/j1/tasks\n$filter:state eq 'completed'\n$select:id,state,executionInfo\napi-version:2025-06-01\nmaxresults:1000")
    }

    @Test("Blob signs a zero Content-Length as empty and lower-cases query names")
    func blobStringToSign() {
        let s = SharedKey.blobStringToSign(method: "PUT", path: "/acct/c", query: [("restype", "container")],
                                           headers: [("Content-Length", "0"), ("x-ms-version", "2023-11-03"), ("x-ms-date", "D")], account: "acct")
        #expect(s == "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:D\nx-ms-version:2023-11-03\n/acct/acct/c\nrestype:container")
    }

    @Test func secretsNeverPrint() {
        let key = Secret("c2VjcmV0")
        #expect("\(key)" == "<redacted>")
        #expect(String(reflecting: key) == "<redacted>")
        #expect(!"\(AzureError.badCredentials("AZURE_STORAGE_KEY is not base64"))".contains("c2VjcmV0"))
    }

    @Test func credentialsFromEnvironmentAndSystemdCredentials() throws {
        let env = ["AZURE_BATCH_ACCOUNT": "acct", "AZURE_BATCH_ENDPOINT": "http://127.0.0.1:9/",
                   "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=store;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/store",
                   "AZURE_BATCH_ACCESS_KEY": "ZnJvbS1lbnY="]
        let creds = try AzureCredentials.load(environment: env) { $0 == "AZURE_BATCH_ACCESS_KEY" ? "ZnJvbS1jcmVkcw==\n" : nil }
        #expect(creds.batchKey?.reveal == "ZnJvbS1jcmVkcw==")      // the systemd credential wins
        #expect(creds.batchEndpoint == "http://127.0.0.1:9")
        #expect(creds.storageAccount == "store" && creds.storageKey?.reveal == "a2V5")
        #expect(creds.blobEndpoint == "http://127.0.0.1:9/store")
        #expect(throws: AzureError.self) { try AzureCredentials.load(environment: ["AZURE_BATCH_ACCOUNT": "a"]) { _ in nil } }
        do {
            _ = try AzureCredentials.load(environment: ["AZURE_BATCH_ACCOUNT": "a", "AZURE_BATCH_ENDPOINT": "http://x", "AZURE_STORAGE_ACCOUNT": "s"]) { _ in nil }
        } catch {
            #expect("\(error)".contains("AZURE_BATCH_ACCESS_KEY"))
        }
    }
}

@Suite("HTTP dates")
struct HTTPDateTests {
    @Test func rfc1123() {
        #expect(SharedKey.httpDate(Date(timeIntervalSince1970: 1_795_285_938)) == "Sat, 21 Nov 2026 18:32:18 GMT")
        #expect(SharedKey.httpDate(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 GMT")
    }
}
