import BackendAzure
import BatchCore
import BatchHTTP
import Foundation
import Logging
import Testing
import TestSupport

@Suite("Task poller against the emulator", .serialized)
struct TaskPollerTests {
    @Test("2,000 tasks on 4 nodes x 4 slots are followed to the end with at most 0.05 polling calls per task")
    func twoThousandTasks() async throws {
        let emulator = try AzureEmulatorProcess()
        let transport = CurlTransport()
        let client = BatchClient(http: HTTPClient(transport: transport), endpoint: emulator.url, account: "acct",
                                 key: Secret(AzureEmulatorProcess.key))
        try await client.createPool(["id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 4, "taskSlotsPerNode": 4])
        try await client.createJob(["id": "j", "poolInfo": ["poolId": "p"]])
        let poller = TaskPoller(client: client, logger: Logger(label: "test"))
        let updates = await poller.watch("j")
        let tasks: [[String: Any]] = (0..<2000).map { ["id": String(format: "t%05d", $0), "commandLine": "/bin/true"] }
        let refused = try await client.addTasks("j", tasks)
        #expect(refused.isEmpty)

        let polling = Task { await poller.run() }
        var completed = Set<String>()
        var reports = 0
        let watchdog = Task {   // a missed task must fail the test, not hang it
            try await Task.sleep(for: .seconds(300))
            await poller.unwatch("j")
        }
        defer { watchdog.cancel() }
        for await update in updates {
            let batch = update.snapshots
            reports += batch.count
            for t in batch where t.state == "completed" {
                #expect(t.exitCode == 0 && t.result == "success")
                completed.insert(t.id)
            }
            if completed.count == 2000 { break }
        }
        polling.cancel()
        await poller.unwatch("j")
        #expect(completed.count == 2000)

        let r = try await transport.send(HTTPRequest(method: "GET", url: "\(emulator.url)/_emulator/stats"))
        let stats = try JSONSerialization.jsonObject(with: r.body) as? [String: Any]
        let requests = stats?["requests"] as? [String: Int] ?? [:]
        let polls = requests["batch.task_counts", default: 0] + requests["batch.list_tasks", default: 0]
        print("poller: \(polls) polling calls for 2000 tasks (\(Double(polls) / 2000) per task), \(reports) task reports, stats \(requests)")
        #expect(Double(polls) / 2000 <= 0.05)
        #expect(requests["batch.add_task_collection"] == 20)
    }

    @Test("a task deleted behind the watcher's back is reported vanished, once; the tasks still there are not")
    func vanished() async throws {
        let emulator = try AzureEmulatorProcess()
        let client = BatchClient(http: HTTPClient(transport: CurlTransport()), endpoint: emulator.url, account: "acct",
                                 key: Secret(AzureEmulatorProcess.key))
        try await client.createPool(["id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1, "taskSlotsPerNode": 3])
        try await client.createJob(["id": "j", "poolInfo": ["poolId": "p"]])
        let ids = ["a", "b", "c"]
        #expect(try await client.addTasks("j", ids.map { ["id": $0, "commandLine": "sleep 60"] }).isEmpty)
        let poller = TaskPoller(client: client, schedule: PollSchedule(minInterval: 0.05, maxInterval: 0.2), logger: Logger(label: "test"))
        let updates = await poller.watch("j", open: Set(ids))
        let polling = Task { await poller.run() }
        defer { polling.cancel() }
        let watchdog = Task {   // a missed report must fail the test, not hang it
            try await Task.sleep(for: .seconds(60))
            await poller.unwatch("j")
        }
        defer { watchdog.cancel() }
        var running = Set<String>(), vanished: [String] = [], deleted = false
        for await update in updates {
            let batch = update.snapshots
            for t in batch where t.state == "running" { running.insert(t.id) }
            for t in batch where t.state == "vanished" { vanished.append(t.id) }
            if running.count == 3, !deleted { deleted = try await client.deleteTask("j", "b") }
            if !vanished.isEmpty { break }
        }
        // Further polls while a and c run: b is not reported again.
        for _ in 0..<12 { _ = await poller.pollOnce() }
        await poller.unwatch("j")
        var more: [String] = []
        for await update in updates { more += update.snapshots.filter { $0.state == "vanished" }.map(\.id) }
        #expect(vanished == ["b"] && more.isEmpty, "\(vanished) then \(more)")
    }
}

extension PollUpdate {
    /// The tasks an update reports (none for a credentials note).
    var snapshots: [TaskSnapshot] {
        if case .tasks(let t) = self { return t }
        return []
    }
}
