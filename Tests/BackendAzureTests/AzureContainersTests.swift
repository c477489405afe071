import BackendAzure
import BatchCore
import Foundation
import Testing

@Suite("Azure container bodies and checks")
struct AzureContainersTests {
    let image = "registry.example.com/tools/wc:2"

    @Test("a container job's auto-pool is container-enabled on the container image, and its tasks carry containerSettings")
    func bodies() throws {
        let c = ContainerSpec(image: image, options: ["--memory 256m", "--network=none"], workingDirectory: .task)
        let job = BatchBodies.job(id: "b", batchdJob: "j", owner: "o", poolID: nil, spec: PoolSpec(), defaults: BatchBodies.PoolDefaults(),
                                  wallClockSeconds: 60, retries: 0, container: c)
        let pool = try #require(((job["poolInfo"] as? [String: Any])?["autoPoolSpecification"] as? [String: Any])?["pool"] as? [String: Any])
        let vm = try #require(pool["virtualMachineConfiguration"] as? [String: Any])
        #expect((vm["imageReference"] as? [String: Any])?["publisher"] as? String == "microsoft-dsvm")
        let config = try #require(vm["containerConfiguration"] as? [String: Any])
        #expect(config["type"] as? String == "dockerCompatible" && config["containerImageNames"] as? [String] == [image])
        // A bare job's pool has none.
        let bare = BatchBodies.pool(id: "p", PoolSpec(), defaults: BatchBodies.PoolDefaults(), owner: "o")
        #expect((bare["virtualMachineConfiguration"] as? [String: Any])?["containerConfiguration"] == nil)

        let parts = BatchBodies.TaskParts(id: "t", command: "wc -l in.txt", env: [:], inputs: [], patterns: [],
                                          outputContainerURL: "https://x/c", timeoutSeconds: nil, retries: 0, container: c)
        let task = BatchBodies.task(parts)
        let settings = try #require(task["containerSettings"] as? [String: Any])
        #expect(settings["imageName"] as? String == image)
        #expect(settings["containerRunOptions"] as? String == "--memory=256m --network=none", "one argument per option")
        #expect(settings["workingDirectory"] as? String == "taskWorkingDirectory")
        #expect(String(decoding: BatchBodies.taskJSON(parts), as: UTF8.self).contains(#""containerHostBatchBindMounts":[{"source":"Task","isReadOnly":false}]"#),
                "only the task's own directory, not all of AZ_BATCH_NODE_ROOT_DIR")
        #expect(task["commandLine"] as? String == "/bin/sh -c 'wc -l in.txt'", "the shell overrides the image's ENTRYPOINT")
        let own = BatchBodies.task(BatchBodies.TaskParts(id: "t", command: "x", env: [:], inputs: [], patterns: [], outputContainerURL: "u",
                                                         timeoutSeconds: nil, retries: 0,
                                                         container: ContainerSpec(image: image, workingDirectory: .image)))
        let ownSettings = try #require(own["containerSettings"] as? [String: Any])
        #expect(ownSettings["workingDirectory"] as? String == "containerImageDefault" && ownSettings["containerRunOptions"] == nil)
    }

    func pool(_ images: [String]?) -> [String: Any] {
        var vm: [String: Any] = ["nodeAgentSKUId": "batch.node.ubuntu 22.04"]
        if let images { vm["containerConfiguration"] = ["type": "dockerCompatible", "containerImageNames": images] }
        return ["id": "p", "virtualMachineConfiguration": vm]
    }

    @Test("a named pool runs only the image it was made for (a missing tag is :latest), and a bare pool no image")
    func namedPools() {
        let c = ContainerSpec(image: "docker.io/library/busybox")
        #expect(AzureContainers.poolMismatch("p", pool(["docker.io/library/busybox:latest"]), c) == nil)
        #expect(AzureContainers.poolMismatch("p", pool(nil), nil) == nil)
        let other = AzureContainers.poolMismatch("p", pool(["docker.io/library/alpine:3"]), c) ?? ""
        #expect(other.contains("was made for docker.io/library/alpine:3") && other.contains("batchctl pool delete p"), "\(other)")
        #expect(AzureContainers.poolMismatch("p", pool(nil), c)?.contains("made without containers") == true)
        #expect(AzureContainers.poolMismatch("p", pool([]), nil)?.contains("runs tasks in containers") == true)
    }

    @Test("the service's container failures in plain words, with its code; other codes are not taken for them")
    func failures() {
        #expect(AzureContainers.taskFailure("ContainerInvalidImage", "ContainerInvalidImage: x")?.contains("could not pull the task's image") == true)
        #expect(AzureContainers.taskFailure("ContainerInvalidSettings", "w")?.contains("container.options") == true)
        #expect(AzureContainers.taskFailure("FailureExitCode", "w") == nil)
        let item = AzureRulesTests.item(#"{"result":"failure","failureInfo":{"category":"usererror","code":"ContainerInvalidImage","message":"One or more container images specified are invalid"}}"#)
        let outcome = AzureRules.outcome(item, timeout: nil, cancelled: false)
        guard case .launchFailed(let why) = outcome else { Issue.record("\(outcome)"); return }
        #expect(why.contains("ContainerInvalidImage: One or more container images specified are invalid") && why.contains("check container.image"))
    }
}
