import BatchCore
import Foundation

/// The request bodies batchd sends to Batch, built from a manifest's fields.
/// Pure functions, so what goes on the wire can be tested without a service.
public enum BatchBodies {
    /// Metadata key naming the daemon that owns a pool or job.
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
        /// A default.
        public init() {}
    }

    /// An ISO 8601 duration of whole seconds (`PT3600S`), as Batch takes.
    public static func duration(_ seconds: Double) -> String { "PT\(max(1, Int(seconds.rounded(.up))))S" }

    /// Pool properties (without the id) for a manifest's pool spec.
    public static func poolProperties(_ spec: PoolSpec, defaults: PoolDefaults, metadata: [String: String]) -> [String: Any] {
        let parts = (spec.image ?? defaults.image).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var image: [String: Any] = ["publisher": parts[0], "offer": parts.count > 1 ? parts[1] : "", "sku": parts.count > 2 ? parts[2] : ""]
        image["version"] = parts.count > 3 && !parts[3].isEmpty ? parts[3] : "latest"
        let noCounts = spec.dedicatedNodes == nil && spec.spotNodes == nil
        var body: [String: Any] = [
            "vmSize": spec.vmSize ?? defaults.vmSize,
            "virtualMachineConfiguration": ["imageReference": image, "nodeAgentSKUId": spec.nodeAgentSku ?? defaults.nodeAgentSku],
            "targetDedicatedNodes": noCounts ? defaults.dedicatedNodes : (spec.dedicatedNodes ?? 0),
            "targetLowPriorityNodes": spec.spotNodes ?? 0,
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
    public static func pool(id: String, _ spec: PoolSpec, defaults: PoolDefaults, owner: String) -> [String: Any] {
        var body = poolProperties(spec, defaults: defaults, metadata: [ownerKey: owner])
        body["id"] = id
        return body
    }

    /// A job's create body: on a named pool, or on an auto-pool that lives and
    /// dies with the job. It starts with `onAllTasksComplete: noaction` (a job
    /// that would end itself could end while tasks are still being added);
    /// `terminateWhenDone` switches it once every task is in.
    public static func job(id: String, batchdJob: String, owner: String, poolID: String?, spec: PoolSpec,
                           defaults: PoolDefaults, wallClockSeconds: Double, retries: Int) -> [String: Any] {
        let metadata = [ownerKey: owner, jobKey: batchdJob]
        let poolInfo: [String: Any]
        if let poolID {
            poolInfo = ["poolId": poolID]
        } else {
            poolInfo = ["autoPoolSpecification": [
                "autoPoolIdPrefix": "batchd",
                "poolLifetimeOption": "job",
                "keepAlive": false,
                "pool": poolProperties(spec, defaults: defaults, metadata: metadata),
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

        /// The parts of one task.
        public init(id: String, command: String, env: [String: String], inputs: [(url: String, target: String)], patterns: [String],
                    outputContainerURL: String, timeoutSeconds: Double?, retries: Int) {
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

    /// A task's add body, typed: encoding it costs a tenth of building a
    /// dictionary and serializing it with JSONSerialization, which took 73%
    /// of the daemon's CPU when adding 5,000 tasks (docs/architecture.md).
    struct TaskBody: Encodable {
        struct Resource: Encodable { let httpUrl: String; let filePath: String }
        struct Setting: Encodable { let name: String; let value: String }
        struct Output: Encodable {
            struct Destination: Encodable {
                struct Container: Encodable { let containerUrl: String; let path: String }
                let container: Container
            }
            struct Options: Encodable { let uploadCondition: String }
            let filePattern: String
            let destination: Destination
            let uploadOptions: Options
        }
        struct Constraints: Encodable { let maxTaskRetryCount: Int; let maxWallClockTime: String? }
        let id: String
        let commandLine: String
        let resourceFiles: [Resource]
        let environmentSettings: [Setting]
        let outputFiles: [Output]
        let constraints: Constraints
    }

    /// A task's add body as JSON. Outputs land at `<task id>/<path>` in the
    /// output container (so two tasks never overwrite each other there),
    /// stdout and stderr at `<task id>/.batchd/` whatever the outcome.
    public static func taskJSON(_ t: TaskParts) throws -> Data {
        func upload(_ pattern: String, _ path: String, _ condition: String) -> TaskBody.Output {
            TaskBody.Output(filePattern: pattern, destination: .init(container: .init(containerUrl: t.outputContainerURL, path: path)),
                            uploadOptions: .init(uploadCondition: condition))
        }
        var outputs = t.patterns.map { p in
            upload(p, p.contains(where: { "*?[".contains($0) }) ? t.id : "\(t.id)/\(p)", "tasksuccess")
        }
        outputs.append(upload("../stdout.txt", logPrefix(t.id) + "stdout.txt", "taskcompletion"))
        outputs.append(upload("../stderr.txt", logPrefix(t.id) + "stderr.txt", "taskcompletion"))
        let body = TaskBody(
            id: t.id, commandLine: shellCommand(t.command),
            resourceFiles: t.inputs.map { .init(httpUrl: $0.url, filePath: $0.target) },
            environmentSettings: t.env.sorted(by: { $0.key < $1.key }).map { .init(name: $0.key, value: $0.value) },
            outputFiles: outputs,
            constraints: .init(maxTaskRetryCount: t.retries, maxWallClockTime: t.timeoutSeconds.map(duration)))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return try encoder.encode(body)
    }

    /// A task's add body as a dictionary (the same as `taskJSON`).
    public static func task(_ t: TaskParts) -> [String: Any] {
        (try? taskJSON(t)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
    }

    /// `/bin/sh -c '<command>'`: Batch runs a command line without a shell.
    public static func shellCommand(_ command: String) -> String {
        "/bin/sh -c '" + command.replacingOccurrences(of: "'", with: "'\\''") + "'"
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
