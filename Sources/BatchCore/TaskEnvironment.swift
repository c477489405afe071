/// The environment of a task, the same on every backend: the daemon's
/// pass-through variables (local only), the manifest's `env` with the task's
/// values filled in, and batchd's own variables.
public enum TaskEnvironment {
    /// `base`, then `task`, then `BATCHD_JOB_ID`, `BATCHD_JOB_NAME`,
    /// `BATCHD_TASK_ID`, `BATCHD_TASK_INDEX`, and `BATCHD_ATTEMPT` where the
    /// backend knows which attempt this is when it starts the task (locally
    /// it does; a service that retries a task itself does not).
    public static func variables(base: [String: String] = [:], task: [String: String], job: String, name: String,
                                 taskID: String, index: Int, attempt: Int?) -> [String: String] {
        var env = base
        for (k, v) in task { env[k] = v }
        env["BATCHD_JOB_ID"] = job
        env["BATCHD_JOB_NAME"] = name
        env["BATCHD_TASK_ID"] = taskID
        env["BATCHD_TASK_INDEX"] = String(index)
        if let attempt { env["BATCHD_ATTEMPT"] = String(attempt) }
        return env
    }
}
