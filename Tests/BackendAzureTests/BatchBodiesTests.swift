import BackendAzure
import BatchCore
import Foundation
import Testing

@Suite("Batch request bodies")
struct BatchBodiesTests {
    @Test func autoPoolJobStartsWithNoactionAndCarriesOwnership() throws {
        var spec = PoolSpec()
        spec.spotNodes = 3
        spec.slotsPerNode = 4
        spec.image = "canonical:ubuntu-24_04-lts:server"
        spec.startTask = "apt-get install -y python3"
        let body = BatchBodies.job(id: "batchd-j1", batchdJob: "j1", owner: "me@host", poolID: nil, spec: spec,
                                   defaults: BatchBodies.PoolDefaults(), wallClockSeconds: 3600.2, retries: 2)
        #expect(body["onAllTasksComplete"] as? String == "noaction")
        let constraints = try #require(body["constraints"] as? [String: Any])
        #expect(constraints["maxWallClockTime"] as? String == "PT3601S" && constraints["maxTaskRetryCount"] as? Int == 2)
        #expect(BatchBodies.metadata(body) == ["batchd.owner": "me@host", "batchd.job": "j1"])
        let auto = try #require((body["poolInfo"] as? [String: Any])?["autoPoolSpecification"] as? [String: Any])
        #expect(auto["poolLifetimeOption"] as? String == "job" && auto["keepAlive"] as? Bool == false)
        let pool = try #require(auto["pool"] as? [String: Any])
        #expect(pool["targetDedicatedNodes"] as? Int == 0, "spot nodes named: no default dedicated node")
        #expect(pool["targetLowPriorityNodes"] as? Int == 3 && pool["taskSlotsPerNode"] as? Int == 4)
        let image = try #require((pool["virtualMachineConfiguration"] as? [String: Any])?["imageReference"] as? [String: Any])
        #expect(image["sku"] as? String == "server" && image["version"] as? String == "latest")
        #expect(BatchBodies.metadata(pool)["batchd.job"] == "j1", "an orphaned auto-pool can be traced to its job")
        #expect((pool["startTask"] as? [String: Any])?["commandLine"] as? String == "/bin/sh -c 'apt-get install -y python3'")
    }

    @Test func namedPoolGetsDefaultsAndOwnerOnly() {
        let body = BatchBodies.pool(id: "shared", PoolSpec(), defaults: BatchBodies.PoolDefaults(), owner: "me@host")
        #expect(body["id"] as? String == "shared" && body["vmSize"] as? String == "STANDARD_D2S_V3")
        #expect(body["targetDedicatedNodes"] as? Int == 1)
        #expect(BatchBodies.metadata(body) == ["batchd.owner": "me@host"])
        let job = BatchBodies.job(id: "b", batchdJob: "j", owner: "o", poolID: "shared", spec: PoolSpec(),
                                  defaults: BatchBodies.PoolDefaults(), wallClockSeconds: 60, retries: 0)
        #expect((job["poolInfo"] as? [String: Any])?["poolId"] as? String == "shared")
    }

    @Test func taskRunsUnderAShellAndSendsOutputsUnderItsOwnId() throws {
        let body = BatchBodies.task(BatchBodies.TaskParts(
            id: "t7", command: "echo 'it''s' > out-$N.txt", env: ["N": "7", "A": "1"], inputs: [("https://x/in?sig=s", "data/in.txt")],
            patterns: ["out-*.txt", "summary.json"], outputContainerURL: "https://x/c?sig=w", timeoutSeconds: 90, retries: 1))
        #expect(body["commandLine"] as? String == #"/bin/sh -c 'echo '\''it'\'''\''s'\'' > out-$N.txt'"#)
        #expect((body["environmentSettings"] as? [[String: String]])?.map { $0["name"]! } == ["A", "N"])
        #expect((body["resourceFiles"] as? [[String: String]]) == [["httpUrl": "https://x/in?sig=s", "filePath": "data/in.txt"]])
        let outputs = try #require(body["outputFiles"] as? [[String: Any]])
        func path(_ i: Int) -> String? { ((outputs[i]["destination"] as? [String: Any])?["container"] as? [String: Any])?["path"] as? String }
        func condition(_ i: Int) -> String? { (outputs[i]["uploadOptions"] as? [String: Any])?["uploadCondition"] as? String }
        #expect(path(0) == "t7" && condition(0) == "tasksuccess", "a glob keeps its relative names under the task's prefix")
        #expect(path(1) == "t7/summary.json", "a plain file name is the blob's name")
        #expect(path(2) == "t7/.batchd/stdout.txt" && condition(2) == "taskcompletion")
        #expect(path(3) == "t7/.batchd/stderr.txt" && condition(3) == "taskcompletion")
        #expect((body["constraints"] as? [String: Any])?["maxWallClockTime"] as? String == "PT90S")
    }

    @Test("a task body is valid JSON whatever its strings hold, and gives them back unchanged")
    func taskBodyEscapesEverything() throws {
        let hostile = "q\"b\\s/\n\r\t\u{0}\u{1}\u{1f}\u{7f} é 漢 😀 \u{2028}{\"x\":1}"
        let data = BatchBodies.taskJSON(BatchBodies.TaskParts(
            id: "t1", command: hostile, env: ["V": hostile], inputs: [(hostile, hostile)], patterns: [hostile],
            outputContainerURL: "https://x/c?sig=a/b+c", timeoutSeconds: nil, retries: 3))
        let body = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(body.keys) == ["id", "commandLine", "resourceFiles", "environmentSettings", "outputFiles", "constraints"])
        #expect(body["commandLine"] as? String == BatchBodies.shellCommand(hostile))
        #expect((body["environmentSettings"] as? [[String: String]]) == [["name": "V", "value": hostile]])
        #expect((body["resourceFiles"] as? [[String: String]]) == [["httpUrl": hostile, "filePath": hostile]])
        let outputs = try #require(body["outputFiles"] as? [[String: Any]])
        #expect(outputs.count == 3 && outputs[0]["filePattern"] as? String == hostile)
        #expect(((outputs[0]["destination"] as? [String: Any])?["container"] as? [String: Any])?["containerUrl"] as? String == "https://x/c?sig=a/b+c")
        let constraints = try #require(body["constraints"] as? [String: Any])
        #expect(constraints["maxTaskRetryCount"] as? Int == 3 && constraints["maxWallClockTime"] == nil, "no limit, no maxWallClockTime")
        #expect(!data.contains(0x0A) && !data.contains(0x00), "control characters are escaped, never raw")
    }
}
