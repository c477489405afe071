import BatchCore
import BatchSupport
import Foundation

/// The request bodies batchd sends to Batch, built from a manifest's fields.
/// Pure functions, so what goes on the wire can be tested without a service.
public enum BatchBodies {
    /// Metadata key naming the daemon that owns a pool or job.
    /// Pool metadata: its idle timeout in seconds (`pool.idleTimeout`).
    public static let idleKey = "batchd.idleTimeout"
    public static let ownerKey = "batchd.owner"
    /// Metadata key naming the batchd job a Batch job or auto-pool belongs to.
    public static let jobKey = "batchd.job"

    /// Defaults for what a manifest's `pool:` leaves out.
    public struct PoolDefaults: Sendable, Equatable {
        /// VM size.
        public var vmSize = "STANDARD_D2S_V3"
        /// Marketplace image, `publisher:offer:sku[:version]`.
        public var image = "canonical:0001-com-ubuntu-server-jammy:22_04-lts:latest"
        /// Node agent SKU matching the image.
        public var nodeAgentSku = "batch.node.ubuntu 22.04"
        /// Dedicated nodes when the manifest names neither dedicated nor spot nodes.
        public var dedicatedNodes = 1
        /// Marketplace image of a pool whose tasks run in a container: one
        /// Batch supports containers on (Microsoft's docs name this one; the
        /// old `ubuntu-server-container` offer is retired).
        public var containerImage = "microsoft-dsvm:ubuntu-hpc:2204:latest"
        /// A default.
        public init() {}
    }

    /// A private registry a container pool's nodes log in to.
    public struct RegistryLogin: Sendable {
        public var server: String
        public var username: String?
        public var password: Secret?
        public init(server: String, username: String?, password: Secret?) {
            self.server = server
            self.username = username
            self.password = password
        }
    }

    /// An ISO 8601 duration of whole seconds (`PT3600S`), as Batch takes.
    public static func duration(_ seconds: Double) -> String { "PT\(max(1, Int(seconds.rounded(.up))))S" }

    /// The dedicated and spot nodes a manifest's pool asks for (the
    /// config's default dedicated count when it names neither).
    public static func nodeCounts(_ spec: PoolSpec, defaults: PoolDefaults) -> (dedicated: Int, spot: Int) {
        spec.dedicatedNodes == nil && spec.spotNodes == nil ? (defaults.dedicatedNodes, 0) : (spec.dedicatedNodes ?? 0, spec.spotNodes ?? 0)
    }

    /// Pool properties (without the id) for a manifest's pool spec.
    /// With a `container`, the pool is container-enabled, and its nodes
    /// pull the image as they start (not each at its first task).
    public static func poolProperties(_ spec: PoolSpec, defaults: PoolDefaults, metadata: [String: String],
                                      container: ContainerSpec? = nil, registry: RegistryLogin? = nil) -> [String: Any] {
        let parts = (spec.image ?? (container == nil ? defaults.image : defaults.containerImage)).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var image: [String: Any] = ["publisher": parts[0], "offer": parts.count > 1 ? parts[1] : "", "sku": parts.count > 2 ? parts[2] : ""]
        image["version"] = parts.count > 3 && !parts[3].isEmpty ? parts[3] : "latest"
        let counts = nodeCounts(spec, defaults: defaults)
        var vm: [String: Any] = ["imageReference": image, "nodeAgentSKUId": spec.nodeAgentSku ?? defaults.nodeAgentSku]
        if let container {
            var config: [String: Any] = ["type": "dockerCompatible", "containerImageNames": [container.image]]
            if let r = registry {
                var login: [String: Any] = ["registryServer": r.server]
                if let u = r.username { login["username"] = u }
                if let p = r.password { login["password"] = p.reveal }
                config["containerRegistries"] = [login]
            }
            vm["containerConfiguration"] = config
        }
        var body: [String: Any] = [
            "vmSize": spec.vmSize ?? defaults.vmSize,
            "virtualMachineConfiguration": vm,
            "targetDedicatedNodes": counts.dedicated,
            "targetLowPriorityNodes": counts.spot,
            "taskSlotsPerNode": spec.slotsPerNode ?? 1,
            "metadata": metadata.sorted(by: { $0.key < $1.key }).map { ["name": $0.key, "value": $0.value] },
        ]
        if let start = spec.startTask {
            body["startTask"] = ["commandLine": shellCommand(start), "waitForSuccess": true, "maxTaskRetryCount": 1,
                                 "userIdentity": ["autoUser": ["scope": "pool", "elevationLevel": "admin"]]]
        }
        return body
    }

    /// A named pool's create body.
    public static func pool(id: String, _ spec: PoolSpec, defaults: PoolDefaults, owner: String,
                            container: ContainerSpec? = nil, registry: RegistryLogin? = nil) -> [String: Any] {
        var metadata = [ownerKey: owner]
        // The idle rule reads it back (azure.poolIdleTimeout otherwise).
        if let idle = spec.idleTimeoutSeconds { metadata[idleKey] = String(Int(idle.rounded(.up))) }
        var body = poolProperties(spec, defaults: defaults, metadata: metadata, container: container, registry: registry)
        body["id"] = id
        return body
    }

    /// A job's create body: on a named pool, or on an auto-pool that lives and
    /// dies with the job. It starts with `onAllTasksComplete: noaction` (a job
    /// that would end itself could end while tasks are still being added);
    /// `terminateWhenDone` switches it once every task is in.
    public static func job(id: String, batchdJob: String, owner: String, poolID: String?, spec: PoolSpec,
                           defaults: PoolDefaults, wallClockSeconds: Double, retries: Int,
                           container: ContainerSpec? = nil, registry: RegistryLogin? = nil) -> [String: Any] {
        let metadata = [ownerKey: owner, jobKey: batchdJob]
        let poolInfo: [String: Any]
        if let poolID {
            poolInfo = ["poolId": poolID]
        } else {
            poolInfo = ["autoPoolSpecification": [
                "autoPoolIdPrefix": "batchd",
                "poolLifetimeOption": "job",
                "keepAlive": false,
                "pool": poolProperties(spec, defaults: defaults, metadata: metadata, container: container, registry: registry),
            ] as [String: Any]]
        }
        return [
            "id": id,
            "poolInfo": poolInfo,
            "onAllTasksComplete": "noaction",
            "constraints": ["maxWallClockTime": duration(wallClockSeconds), "maxTaskRetryCount": retries],
            "metadata": metadata.sorted(by: { $0.key < $1.key }).map { ["name": $0.key, "value": $0.value] },
        ]
    }

    /// The patch that lets the service end the job (and its auto-pool) when
    /// the last task completes.
    public static var terminateWhenDone: [String: Any] { ["onAllTasksComplete": "terminatejob"] }

    /// What a task's body is made from.
    public struct TaskParts: Sendable {
        /// Deterministic id (the manifest's task id).
        public var id: String
        /// The manifest's command, run by `/bin/sh -c`.
        public var command: String
        /// Environment variables.
        public var env: [String: String]
        /// (SAS URL, path in the working directory) of each input.
        public var inputs: [(url: String, target: String)]
        /// Output globs, relative to the working directory.
        public var patterns: [String]
        /// Container SAS URL (`w`/`c`) outputs and logs go to.
        public var outputContainerURL: String
        /// Per-attempt time limit.
        public var timeoutSeconds: Double?
        /// Retries Batch makes after a failure.
        public var retries: Int
        /// The image the task runs in, if any.
        public var container: ContainerSpec?

        /// The parts of one task.
        public init(id: String, command: String, env: [String: String], inputs: [(url: String, target: String)], patterns: [String],
                    outputContainerURL: String, timeoutSeconds: Double?, retries: Int, container: ContainerSpec? = nil) {
            self.container = container
            self.id = id
            self.command = command
            self.env = env
            self.inputs = inputs
            self.patterns = patterns
            self.outputContainerURL = outputContainerURL
            self.timeoutSeconds = timeoutSeconds
            self.retries = retries
        }
    }

    /// Where a task's logs go in the output container.
    public static func logPrefix(_ taskID: String) -> String { "\(taskID)/.batchd/" }

    /// A task's add body as JSON. Outputs land at `<task id>/<path>` in the
    /// output container (so two tasks never overwrite each other there),
    /// stdout and stderr at `<task id>/.batchd/` whatever the outcome.
    /// Written with `JSONText`: the body is a fixed shape, and encoding it
    /// through JSONSerialization (73% of the daemon's CPU adding 5,000
    /// tasks) and then JSONEncoder (43% adding 10,000) cost more than the
    /// rest of the submission (docs/architecture.md).
    public static func taskJSON(_ t: TaskParts) -> Data {
        var j = JSONText(capacity: 1024)
        j.raw("{"); j.key("id"); j.string(t.id)
        j.raw(","); j.key("commandLine"); j.string(shellCommand(t.command))
        j.raw(","); j.key("resourceFiles"); j.raw("[")
        for (i, input) in t.inputs.enumerated() {
            if i > 0 { j.raw(",") }
            j.raw("{"); j.key("httpUrl"); j.string(input.url); j.raw(","); j.key("filePath"); j.string(input.target); j.raw("}")
        }
        j.raw("],"); j.key("environmentSettings"); j.raw("[")
        for (i, setting) in t.env.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { j.raw(",") }
            j.raw("{"); j.key("name"); j.string(setting.key); j.raw(","); j.key("value"); j.string(setting.value); j.raw("}")
        }
        j.raw("],"); j.key("outputFiles"); j.raw("[")
        func upload(_ pattern: String, _ path: String, _ condition: StaticString) {
            j.raw("{"); j.key("filePattern"); j.string(pattern)
            j.raw(","); j.key("destination"); j.raw("{"); j.key("container")
            j.raw("{"); j.key("containerUrl"); j.string(t.outputContainerURL); j.raw(","); j.key("path"); j.string(path); j.raw("}}")
            j.raw(","); j.key("uploadOptions"); j.raw("{"); j.key("uploadCondition"); j.raw("\""); j.raw(condition); j.raw("\"}}")
        }
        for p in t.patterns {
            upload(p, p.contains(where: { "*?[".contains($0) }) ? t.id : "\(t.id)/\(p)", "tasksuccess")
            j.raw(",")
        }
        upload("../stdout.txt", logPrefix(t.id) + "stdout.txt", "taskcompletion")
        j.raw(",")
        upload("../stderr.txt", logPrefix(t.id) + "stderr.txt", "taskcompletion")
        j.raw("],"); j.key("constraints"); j.raw("{"); j.key("maxTaskRetryCount"); j.int(t.retries)
        if let timeout = t.timeoutSeconds { j.raw(","); j.key("maxWallClockTime"); j.string(duration(timeout)) }
        j.raw("}")
        if let c = t.container {
            // The command line overrides the image's ENTRYPOINT, as Batch
            // documents: `/bin/sh -c` runs it, as on a node without one.
            // Only the task's own directory is mounted (the default is the
            // whole of AZ_BATCH_NODE_ROOT_DIR, other tasks' files with it).
            j.raw(","); j.key("containerSettings"); j.raw("{"); j.key("imageName"); j.string(c.image)
            let options = c.options.map(ContainerOptions.normalized)
            if !options.isEmpty { j.raw(","); j.key("containerRunOptions"); j.string(options.joined(separator: " ")) }
            j.raw(","); j.key("workingDirectory"); j.string(c.workingDirectory == .task ? "taskWorkingDirectory" : "containerImageDefault")
            j.raw(","); j.key("containerHostBatchBindMounts"); j.raw("[{"); j.key("source"); j.string("Task")
            j.raw(","); j.key("isReadOnly"); j.raw("false}]}")
        }
        j.raw("}")
        return Data(j.bytes)
    }

    /// A task's add body as a dictionary (the same as `taskJSON`).
    public static func task(_ t: TaskParts) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: taskJSON(t)) as? [String: Any]) ?? [:]
    }

    /// `/bin/sh -c '<command>'`: Batch runs a command line without a shell.
    public static func shellCommand(_ command: String) -> String {
        var out = "/bin/sh -c '"
        for c in command.unicodeScalars {
            if c == "'" { out += "'\\''" } else { out.unicodeScalars.append(c) }
        }
        return out + "'"
    }

    /// A metadata list (`[{name, value}]`) as a dictionary.
    public static func metadata(_ object: [String: Any]) -> [String: String] {
        var out: [String: String] = [:]
        for item in object["metadata"] as? [[String: Any]] ?? [] {
            if let n = item["name"] as? String, let v = item["value"] as? String { out[n] = v }
        }
        return out
    }
}
