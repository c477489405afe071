import BatchAccess
import BatchCore
import BatchStore
import BatchSupport
import Foundation

/// `batchctl plan FILE`: what a manifest would do, without doing it.
public enum Plan {
    /// Builds the plan as an object (for --json) and as text.
    public static func make(path: String, backend: String?, config: DaemonConfig, cores: Int,
                            set: [String: String] = [:]) async throws -> (object: [String: Any], text: String) {
        // One pass over the tasks, as submit checks them: their inputs, the
        // first few for the sample; none is kept.
        var sources = Set<String>(), sample: [TaskSpec] = []
        let prepared = try Submission.prepare(path: path, backend: backend, config: config, set: set) { task in
            for i in task.inputs { sources.insert(i.source) }
            if sample.count < 5 { sample.append(task) }
        }
        let m = prepared.manifest
        let policy = Submission.policy(config)
        let chosen = prepared.plan.backend.rawValue
        let count = prepared.taskCount

        // Inputs after dedup: every distinct file once, and only those whose
        // content the store lacks (hashes from the daemon's cache when it still holds).
        let store = ContentStore(root: config.storeDirectory)
        let db = try? Store(readOnlyPath: config.databasePath)
        for i in prepared.plan.sharedInputs { sources.insert(i.source) }
        var totalBytes: Int64 = 0, newBytes: Int64 = 0, stored = 0
        var seen = Set<String>()
        for source in sources.sorted() {
            let file = try policy.openForReading(source)
            defer { close(file.fd) }
            let id = (device: Int64(file.st.st_dev), inode: Int64(file.st.st_ino), size: Int64(file.st.st_size),
                      mtimeNs: Int64(file.st.st_mtim.tv_sec) * 1_000_000_000 + Int64(file.st.st_mtim.tv_nsec))
            var sha: String?
            if let cached = try? await db?.cachedHash(path: source),
               cached.describes(device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs) {
                sha = cached.sha256
            }
            let hash = try sha ?? FileOps.stream(from: file.fd, to: -1, sourceName: source, targetName: "").hex
            totalBytes += id.size
            guard seen.insert(hash).inserted else { continue }
            if store.contains(hash) { stored += 1 } else { newBytes += id.size }
        }

        let slots = chosen == "local" ? min(config.slotCount(cores: cores), m.pool.slotsPerNode ?? Int.max) : nil
        let coreHours = m.timeoutSeconds.map { Double(count) * $0 / 3600 }
        let source: String = switch m.tasks {
        case .list(let l): "explicit list of \(l.count)"
        case .forEachFile(let p, _): "forEachFile \(p)"
        case .forEachInteger(let a, let b, let s, _): "forEachInteger \(a)…\(b) step \(s)"
        case .forEachRow(let f, let fmt, _): "forEachRow \(f) (\(fmt.rawValue))"
        }
        let destination = prepared.plan.destination
        var object: [String: Any] = [
            "name": m.name, "backend": chosen, "tasks": count, "taskSource": source,
            "sample": sample.map { ["id": $0.id, "command": $0.command] },
            "inputs": ["files": sources.count, "bytes": totalBytes, "bytesToStage": newBytes, "alreadyStored": stored],
            "pool": ["id": m.pool.id as Any? ?? NSNull(), "auto": m.pool.id == nil, "slotsPerNode": m.pool.slotsPerNode as Any? ?? NSNull(),
                     "localSlots": slots as Any? ?? NSNull(), "options": m.pool.options.mapValues(Self.json)] as [String: Any],
            "outputs": ["patterns": m.outputs.patterns, "destination": destination],
            "retries": m.retries, "timeoutSeconds": m.timeoutSeconds as Any? ?? NSNull(),
            "estimatedCoreHoursAtMost": coreHours as Any? ?? NSNull(),
        ]
        var lines = ["plan for \(m.name) (\(path))", "backend   \(chosen)\(m.backend == nil ? " (the daemon's default)" : "")"]
        if let c = m.container {
            let pulled = Self.pulledWhere(c, backend: chosen, config: config)
            object["container"] = ["image": c.image, "options": c.options, "workingDirectory": c.workingDirectory.rawValue,
                                   "registry": c.registry as Any? ?? NSNull(), "pulled": pulled] as [String: Any]
            lines.append("image     \(c.image)\(c.options.isEmpty ? "" : " · " + c.options.joined(separator: " "))"
                         + (c.workingDirectory == .image ? " · in the image's working directory" : ""))
            lines.append("          \(pulled)")
        }
        if let slots {
            lines.append("pool      this machine: up to \(slots) tasks at once")
        } else {
            // The backend's own options as the manifest gives them; the rest are the backend's defaults.
            let options = m.pool.options.keys.sorted().map { "\($0) \(Printable.escape(Self.text(m.pool.options[$0]!)))" }
            lines.append("pool      \(m.pool.id.map { "named pool \($0)" } ?? "auto-pool")"
                         + (m.pool.slotsPerNode.map { " · \($0) slots per node" } ?? "")
                         + (options.isEmpty ? " · the backend's defaults" : " · " + options.joined(separator: " · ")))
        }
        lines.append("tasks     \(count) (\(source))")
        for t in sample { lines.append("  \(t.id)  \(t.command)") }
        if count > 5 { lines.append("  … \(count - 5) more") }
        lines.append("inputs    \(sources.count) files, \(bytes(totalBytes)); \(bytes(newBytes)) to stage after dedup (\(stored) already stored)")
        lines.append("outputs   \(m.outputs.patterns.isEmpty ? "none" : m.outputs.patterns.joined(separator: ", ")) → \(destination)")
        lines.append("attempts  \(m.retries) retries, \(m.timeoutSeconds.map { "timeout \(HumanDuration.format($0))" } ?? "no timeout")")
        lines.append("estimate  " + (coreHours.map { String(format: "at most %.2f core-hours (%d tasks × %@ timeout × 1 core)", $0, count, HumanDuration.format(m.timeoutSeconds!)) }
            ?? "unknown: set a timeout to bound core-hours"))
        return (object, lines.joined(separator: "\n"))
    }

    /// Where a job's image would be pulled, in words.
    static func pulledWhere(_ c: ContainerSpec, backend: String, config: DaemonConfig) -> String {
        if backend == "azure" {
            return "pulled by each node of the job's pool as it starts (the pool's containerConfiguration); "
                + "every task runs in it (containerSettings)"
        }
        if backend == "slurm" {
            return "pulled on each node by the cluster's engine (slurm.containerEngine), by the first of the job's tasks to run there"
        }
        guard backend == "local" else { return "the \(backend) backend does not run containers: the daemon refuses this job" }
        let engine = (config.containers.engine as NSString).lastPathComponent
        let registry = config.containers.registry(for: c)?.name ?? c.registry
        return "pulled on this machine by \(engine), once, before the job's first task (unless the engine has it)"
            + (registry.map { ", with the credentials of registry \($0)" } ?? "")
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }

    /// A pool option's value for JSON.
    static func json(_ v: PoolValue) -> Any {
        switch v {
        case .int(let n): n
        case .number(let d): d
        case .text(let t): t
        }
    }

    /// A pool option's value for people.
    static func text(_ v: PoolValue) -> String {
        switch v {
        case .int(let n): "\(n)"
        case .number(let d): d.rounded() == d ? "\(Int(d))" : "\(d)"
        case .text(let t): t
        }
    }
}
