import BatchControl
import Foundation

/// The `azure:` section of the daemon's config (accounts and keys come from
/// the environment or systemd credentials, never from here): the backend's
/// own, decoded with its defaults.
public struct AzureSettings: Sendable, Equatable {
    /// The section's name.
    public static let section = "azure"

    /// The name written into the metadata of every pool and job batchd
    /// makes; empty means `batchd@<host name>`. Orphans are looked for
    /// among objects with this owner only.
    public var owner = ""
    /// Pool fields a manifest leaves out.
    public var vmSize = "STANDARD_D2S_V3"
    /// See `vmSize`.
    public var image = "canonical:0001-com-ubuntu-server-jammy:22_04-lts:latest"
    /// See `vmSize`.
    public var nodeAgentSku = "batch.node.ubuntu 22.04"
    /// The marketplace image of a pool for a job with `container:` (one
    /// Batch runs containers on; its node agent SKU is `nodeAgentSku`).
    public var containerImage = BatchBodies.PoolDefaults().containerImage
    /// See `vmSize`.
    public var dedicatedNodes = 1
    /// The shared, content-addressed input container.
    public var inputContainer = "batchd-inputs"
    /// Bytes per upload block and download range.
    public var blockSize = 4 << 20
    /// Blocks, ranges, files or task collections in flight at once.
    public var concurrency = 4
    /// Extra life of SAS tokens after the job's wall-clock limit.
    public var tokenMargin: Double = 3600
    /// The longest a SAS token may live; a job whose limit plus the
    /// margin is longer is refused.
    public var maxTokenLifetime: Double = 7 * 86400
    /// Shortest and longest time between polls of task state.
    public var pollMinInterval: Double = 1
    /// See `pollMinInterval`.
    public var pollMaxInterval: Double = 30
    /// Delete, at start, pools and jobs of this owner that no job in the
    /// database knows (otherwise they are only reported).
    public var deleteOrphans = false
    /// A named pool of this daemon that no job has used for this long is
    /// resized to zero nodes (its own `pool.idleTimeout` wins); 0: never.
    public var poolIdleTimeout: Double = 3600
    /// How often idle pools are looked for.
    public var poolIdleCheck: Double = 300
    /// How long Azure may refuse batchd's credentials (a rotated key or
    /// secret, a revoked token, a clock it does not trust) before a job
    /// that needs them fails, with the fix; until then it waits, and says so.
    public var authFailureLimit: Double = 600
    /// How long a job's pool may be unable to run any task (every node's
    /// start task failed or unusable, or no node and a resize error) before
    /// the job fails with the service's words; until then it waits, and says so.
    public var poolFailureGrace: Double = 600
    /// How many times batchd reboots a node of a job's pool that cannot run
    /// tasks (`starttaskfailed`, `unusable`) before it removes it from the
    /// pool (when other nodes can run them); 0: never.
    public var nodeRecoveries = 2

    /// Every default.
    public init() {}

    static let keys = ["owner", "vmSize", "image", "containerImage", "nodeAgentSku", "dedicatedNodes", "inputContainer", "blockSize", "concurrency",
                       "tokenMargin", "maxTokenLifetime", "pollMinInterval", "pollMaxInterval", "deleteOrphans",
                       "poolIdleTimeout", "poolIdleCheck", "authFailureLimit", "poolFailureGrace", "nodeRecoveries"]

    /// The settings a config's section gives (every default without one).
    public init(_ section: ConfigSection?) throws {
        guard let section else { return }
        try section.decode(keys: Self.keys) { v in
            switch v.key {
            case "owner": owner = try v.text()
            case "vmSize": vmSize = try v.text()
            case "image", "containerImage":
                let text = try v.text()
                guard text.split(separator: ":").count >= 3 else {
                    throw v.fail("expected publisher:offer:sku[:version]", "e.g. canonical:0001-com-ubuntu-server-jammy:22_04-lts")
                }
                if v.key == "image" { image = text } else { containerImage = text }
            case "nodeAgentSku": nodeAgentSku = try v.text()
            case "dedicatedNodes": dedicatedNodes = try v.count(0...1_000_000)
            case "inputContainer":
                inputContainer = try v.text()
                guard inputContainer.range(of: "^[a-z0-9](-?[a-z0-9])+$", options: .regularExpression) != nil,
                      (3...63).contains(inputContainer.count) else {
                    throw v.fail("not a valid container name", "3 to 63 lowercase letters, digits and single hyphens")
                }
            case "blockSize": blockSize = try v.bytes((64 << 10)...(4000 << 20), "64KiB and 4000MiB")
            case "concurrency": concurrency = try v.count(1...1_000_000)
            case "tokenMargin": tokenMargin = try v.seconds()
            case "maxTokenLifetime": maxTokenLifetime = try v.seconds()
            case "pollMinInterval": pollMinInterval = try v.seconds()
            case "pollMaxInterval": pollMaxInterval = try v.seconds()
            case "deleteOrphans": deleteOrphans = try v.bool()
            case "poolIdleTimeout": poolIdleTimeout = try v.seconds()
            case "authFailureLimit": authFailureLimit = try v.seconds()
            case "poolFailureGrace": poolFailureGrace = try v.seconds()
            case "nodeRecoveries": nodeRecoveries = try v.count(0...100)
            case "poolIdleCheck":
                poolIdleCheck = try v.seconds()
                guard poolIdleCheck >= 0.1 else { throw v.fail("must be at least 100ms") }
            default: return false
            }
            return true
        }
        guard pollMinInterval > 0, pollMinInterval <= pollMaxInterval else {
            throw section.fail("pollMinInterval", "must be above 0 and at most azure.pollMaxInterval")
        }
    }
}
