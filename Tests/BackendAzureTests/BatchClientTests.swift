import BackendAzure
import BatchHTTP
import Foundation
import Testing
import TestSupport

@Suite("Batch client against the emulator", .serialized)
struct BatchClientTests {
    let emulator: Emulator
    let transport = CurlTransport()
    let client: BatchClient

    init() throws {
        emulator = try Emulator()
        client = BatchClient(http: HTTPClient(transport: transport, sleep: { _ in }), endpoint: emulator.url,
                             account: "acct", key: Secret(Emulator.key))
    }

    func admin(_ path: String, _ json: String? = nil) async throws -> [String: Any] {
        let r = try await transport.send(HTTPRequest(method: json == nil ? "GET" : "POST", url: "\(emulator.url)/_emulator/\(path)",
                                                     body: json.map { .data(Data($0.utf8)) } ?? .none))
        return (try JSONSerialization.jsonObject(with: r.body) as? [String: Any]) ?? [:]
    }

    func requests() async throws -> [String: Int] { try await admin("stats")["requests"] as? [String: Int] ?? [:] }

    func setUp() async throws {
        let pool: [String: Any] = ["id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 2, "taskSlotsPerNode": 4,
                                   "metadata": [["name": "batchd.owner", "value": "test"]]]
        #expect(try await client.createPool(pool))
        #expect(try await !client.createPool(pool))   // PoolExists: reuse
        // noaction: with terminatejob the service ends the job as soon as the tasks
        // added so far are done, and refuses later collections (JobCompleted).
        #expect(try await client.createJob(["id": "j", "poolInfo": ["poolId": "p"], "onAllTasksComplete": "noaction"]))
        #expect(try await !client.createJob(["id": "j", "poolInfo": ["poolId": "p"]]))
    }

    @Test("250 tasks in 3 collections; a resend adds nothing twice; pages are followed")
    func tasksAndPaging() async throws {
        try await setUp()
        let tasks: [[String: Any]] = (0..<250).map { ["id": String(format: "t%04d", $0), "commandLine": "/bin/true"] }
        let first = try await client.addTasks("j", tasks)
        #expect(first.isEmpty, "every task added")
        #expect(try await requests()["batch.add_task_collection"] == 3)
        let again = try await client.addTasks("j", tasks)   // as after a crash: TaskExists is success
        #expect(again.isEmpty)
        let mixed = try await client.addTasks("j", [["id": "fine", "commandLine": "/bin/true"], ["id": "not ok!", "commandLine": "/bin/true"]])
        #expect(mixed.map(\.taskID) == ["not ok!"] && mixed.first?.error == "InvalidPropertyValue", "only the refused task is returned, with the reason")
        let listed = try await client.tasks("j", select: ["id", "state"], pageSize: 100)
        #expect(listed.count == 251 && Set(listed.compactMap { $0["id"] as? String }).count == 251)
        #expect(listed.allSatisfy { Set($0.keys) == ["id", "state"] })
        #expect(try await requests()["batch.list_tasks"] == 3)   // 251 tasks, 100 a page
        let pool = try await client.pool("p")
        #expect(pool?["taskSlotsPerNode"] as? Int == 4)
    }

    @Test("a collection over 1 MB is split before it is sent; one that still is too big is halved")
    func bigCollections() async throws {
        try await setUp()
        let pad = String(repeating: "x", count: 30_000)
        let tasks: [[String: Any]] = (0..<60).map { ["id": "b\($0)", "commandLine": "/bin/true", "environmentSettings": [["name": "PAD", "value": pad]]] }
        let refused = try await client.addTasks("j", tasks)
        #expect(refused.isEmpty)
        // Split before sending: never refused as too large, and at least two calls went through.
        let stats = try await admin("stats")
        let answers = (stats["statuses"] as? [String: [String: Int]])?["batch.add_task_collection"] ?? [:]
        #expect(answers["413"] == nil && answers["200", default: 0] >= 2, "\(stats)")
        let counts = try await client.taskCounts("j")
        #expect(counts["active", default: 0] + counts["running", default: 0] + counts["completed", default: 0] == 60)
    }

    @Test("an add answered with a timeout after it was applied is resent, and each task exists once")
    func timedOutAdd() async throws {
        try await setUp()
        _ = try await admin("faults", #"{"addcollection_timeout": 1}"#)
        let tasks: [[String: Any]] = (0..<5).map { ["id": "r\($0)", "commandLine": "/bin/true"] }
        let refused = try await client.addTasks("j", tasks)
        #expect(refused.isEmpty)
        let listed = try await client.tasks("j")
        #expect(listed.count == 5)
        #expect(try await requests()["batch.add_task_collection"] == 2)
    }

    @Test func errorsCarryTheServiceCode() async throws {
        await #expect {
            try await client.createJob(["id": "orphan", "poolInfo": ["poolId": "p"], "notAProperty": true])
        } throws: { ($0 as? BatchServiceError)?.code == "InvalidRequestBody" }
        #expect(try await client.job("nope") == nil)
        #expect(try await !client.deleteJob("nope"))
        try await setUp()
        try await client.terminateJob("j", reason: "test")
        try await client.terminateJob("j", reason: "again")     // already completed: fine
        #expect(try await client.deleteJob("j"))
        #expect(try await client.deletePool("p"))
    }
}
