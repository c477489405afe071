import BatchCore

/// The pool options a Slurm cluster takes in a manifest (`pool:`), with
/// their bounds: the backend's own, declared here and checked by the
/// manifest parser wherever a manifest is read.
public enum SlurmPoolOptions {
    /// Most CPUs one task asks for.
    public static let cpusPerTask = 1024
    /// Most memory one task asks for, in MiB (16 TiB).
    public static let memoryMiB = 16 << 20
    /// Most tasks of a job running at once (the array throttle `%N`).
    public static let maxRunning = 1_000_000

    static func name(_ key: String) -> PoolOption {
        PoolOption(key, .name(max: 64, extra: "-_."), what: "a Slurm \(key) name",
                   hint: "use 1-64 letters, digits, '-', '_' and '.', starting with a letter or digit", help: "Slurm \(key) (--\(key))")
    }

    /// The declarations.
    public static let declared: [PoolOption] = [
        name("partition"), name("account"), name("qos"),
        PoolOption("cpusPerTask", .integer(min: 1, max: cpusPerTask), what: "a CPU count", hint: "1 to \(cpusPerTask)",
                   help: "CPUs per task (--cpus-per-task)"),
        PoolOption("memory", .memory(maxMiB: memoryMiB), what: "a memory size from 1M to 16T", hint: "a whole number with M, G or T, e.g. 512M or 4G",
                   help: "memory per task (--mem)"),
        PoolOption("maxRunning", .integer(min: 1, max: maxRunning), what: "a task count", hint: "1 to \(maxRunning)",
                   help: "most tasks of the job running at once (the array's %N)"),
    ]
}

/// Slurm's options of a pool, typed.
extension PoolSpec {
    public var partition: String? {
        get { text("partition") }
        set { options["partition"] = newValue.map(PoolValue.text) }
    }
    public var account: String? {
        get { text("account") }
        set { options["account"] = newValue.map(PoolValue.text) }
    }
    public var qos: String? {
        get { text("qos") }
        set { options["qos"] = newValue.map(PoolValue.text) }
    }
    public var cpusPerTask: Int? {
        get { int("cpusPerTask") }
        set { options["cpusPerTask"] = newValue.map(PoolValue.int) }
    }
    /// `memory`, in MiB.
    public var memoryMiB: Int? {
        get { int("memory") }
        set { options["memory"] = newValue.map(PoolValue.int) }
    }
    public var maxRunning: Int? {
        get { int("maxRunning") }
        set { options["maxRunning"] = newValue.map(PoolValue.int) }
    }
}
