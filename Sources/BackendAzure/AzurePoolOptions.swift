import BatchCore

/// The pool options Azure Batch takes in a manifest (`pool:`), with their
/// bounds: the backend's own, declared here and checked by the manifest
/// parser wherever a manifest is read.
public enum AzurePoolOptions {
    /// Most dedicated or spot nodes in a pool.
    public static let nodes = 10_000
    /// Longest start task, in bytes.
    public static let startTaskBytes = 8192

    /// The declarations.
    public static let declared: [PoolOption] = [
        PoolOption("vmSize", .name(max: 64, extra: "-_"), what: "a VM size", hint: "e.g. STANDARD_D2S_V3",
                   help: "VM size, e.g. STANDARD_D2S_V3"),
        PoolOption("dedicatedNodes", .integer(min: 0, max: nodes), what: "a node count", hint: "0 to \(nodes)",
                   help: "dedicated nodes"),
        PoolOption("spotNodes", .integer(min: 0, max: nodes), what: "a node count", hint: "0 to \(nodes)",
                   help: "spot (low-priority) nodes"),
        PoolOption("image", .text(maxBytes: Bounds.shortText, multiline: false, separator: ":", parts: 3...4),
                   what: "a marketplace image reference", hint: "publisher:offer:sku[:version], e.g. canonical:0001-com-ubuntu-server-jammy:22_04-lts",
                   help: "marketplace image publisher:offer:sku[:version]"),
        PoolOption("nodeAgentSku", .text(maxBytes: Bounds.shortText, multiline: false, separator: nil, parts: nil),
                   what: "a node agent SKU id", hint: "e.g. batch.node.ubuntu 22.04", help: "node agent SKU id"),
        PoolOption("startTask", .text(maxBytes: startTaskBytes, multiline: true, separator: nil, parts: nil),
                   what: "a start task", hint: "a command of at most \(startTaskBytes) bytes", help: "command run on each node as it joins"),
        PoolOption("idleTimeout", .duration, what: "a duration", hint: "e.g. 30m", help: "how long an idle named pool is kept"),
    ]
}

/// Azure's options of a pool, typed.
extension PoolSpec {
    public var vmSize: String? {
        get { text("vmSize") }
        set { options["vmSize"] = newValue.map(PoolValue.text) }
    }
    public var dedicatedNodes: Int? {
        get { int("dedicatedNodes") }
        set { options["dedicatedNodes"] = newValue.map(PoolValue.int) }
    }
    public var spotNodes: Int? {
        get { int("spotNodes") }
        set { options["spotNodes"] = newValue.map(PoolValue.int) }
    }
    public var image: String? {
        get { text("image") }
        set { options["image"] = newValue.map(PoolValue.text) }
    }
    public var nodeAgentSku: String? {
        get { text("nodeAgentSku") }
        set { options["nodeAgentSku"] = newValue.map(PoolValue.text) }
    }
    public var startTask: String? {
        get { text("startTask") }
        set { options["startTask"] = newValue.map(PoolValue.text) }
    }
    /// `idleTimeout`, in seconds.
    public var idleTimeoutSeconds: Double? {
        get { number("idleTimeout") }
        set { options["idleTimeout"] = newValue.map(PoolValue.number) }
    }
}
