/// The keys each part of a manifest accepts. The parser rejects every other key
/// (suggesting the nearest of these), and a test checks that the JSON Schema in
/// docs/ lists exactly these.
public enum ManifestKeys {
    /// Top-level keys.
    public static let top = ["version", "name", "backend", "baseDirectory", "pool", "inputs", "tasks",
                             "command", "env", "secrets", "container", "retries", "timeout", "outputs", "cleanup", "limits", "type", "parameters"]
    /// Keys a job type file has besides a manifest's (and `type`, which it may not have).
    public static let typeOnly = ["default"]
    /// Keys of `pool` every backend shares; each backend adds its own
    /// (`BackendCatalog.poolKeys`).
    public static let pool = ["id", "slotsPerNode"]
    /// Keys of `inputs` (when it is a mapping).
    public static let inputs = ["shared"]
    /// Keys of `tasks` when it is a mapping (a factory); exactly one factory.
    public static let taskFactory = ["forEachFile", "forEachInteger", "forEachRow", "id"]
    /// The factory keys among `taskFactory`.
    public static let factories = ["forEachFile", "forEachInteger", "forEachRow"]
    /// Keys of `tasks.forEachInteger`.
    public static let integerRange = ["from", "to", "step"]
    /// Keys of `tasks.forEachRow`.
    public static let rows = ["file", "format"]
    /// Keys of one entry of an explicit task list.
    public static let taskEntry = ["id", "command", "env", "inputs"]
    /// Keys of `outputs` (when it is a mapping).
    public static let outputs = ["patterns", "destination", "merge"]
    /// Keys of `outputs.merge`.
    public static let merge = ["from", "into", "format"]
    /// Keys of `container`.
    public static let container = ["image", "options", "workingDirectory", "registry"]
    /// Keys of `limits`.
    public static let limits = ["wallClock", "coreHours"]}
