import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One array batchd submitted (or means to): recorded under `array.<k>` in
/// the job's backend records before sbatch runs (the intent, `id` nil), and
/// again with its id after.
struct ArrayRecord: Codable, Sendable {
    struct Element: Codable, Sendable, Hashable {
        var idx: Int
        var task: String
        var attempt: Int
    }
    var sequence: Int
    var name: String
    /// Element `i` of the array runs `elements[i]`.
    var elements: [Element]
    /// Slurm's id; nil while only the intent is recorded, "" when the array
    /// ran but its id could not be learned again.
    var id: String?

    var key: String { "array.\(String(sequence + 1_000_000).dropFirst())" }
}

/// One job's steps on Slurm (docs/slurm.md). Every step can be repeated
/// after a crash: arrays are recorded before sbatch and looked up by name
/// when their id was lost; an element's end is read from its status file,
/// squeue or sacct, whichever knows.
struct SlurmJob: Sendable {
    let handle: JobHandle
    let cluster: SlurmCluster

    var id: String { handle.id }
    var log: Logger { handle.log }
    var jobDirectory: String { cluster.jobDirectory(id) }
    /// Whom its Slurm commands and files are run and made as: its
    /// submitter (nil: the daemon itself, for its own user's jobs or when it
    /// cannot switch).
    var runAs: Submitter? { cluster.acting(for: handle.policy.submitter) }
    /// The user its arrays run as, by name.
    var userName: String { cluster.userName(runAs) }

    /// `body` as the submitter (`Identity.acting`), for what is theirs in
    /// the shared directory.
    func asSubmitter<T>(_ body: () throws -> T) throws -> T {
        try Identity.acting(as: handle.policy.submitter, body)
    }

    func attemptDirectory(_ e: ArrayRecord.Element) -> String { "\(jobDirectory)/tasks/\(e.task)/attempt-\(e.attempt)" }

    // MARK: records

    func arrays() async -> [ArrayRecord]? {
        guard let rows = await handle.records(prefix: "array.") else { return nil }
        return rows.compactMap { try? JSONDecoder().decode(ArrayRecord.self, from: Data($0.value.utf8)) }.sorted { $0.sequence < $1.sequence }
    }

    func save(_ a: ArrayRecord) async -> Bool {
        await handle.setRecord(a.key, a) != nil
    }

    /// Attempts already recorded as ended, by (task index, attempt).
    func ended() async -> Set<ArrayRecord.Element>? {
        guard let attempts = await handle.attempts() else { return nil }
        return Set(attempts.filter { $0.state == .finished }.map { ArrayRecord.Element(idx: $0.idx, task: "", attempt: $0.attempt) })
    }

    func isEnded(_ e: ArrayRecord.Element, _ ended: Set<ArrayRecord.Element>) -> Bool {
        ended.contains(ArrayRecord.Element(idx: e.idx, task: "", attempt: e.attempt))
    }

    // MARK: submit

    /// Settles arrays whose sbatch a crash may have cut short, then submits
    /// every open task that is in no array still running (only those of
    /// `only`, when given), in arrays of at most MaxArraySize. The elements
    /// submitted, with the result.
    func submit(only: Set<Int>? = nil) async -> (StepResult, [ArrayRecord.Element]) {
        guard var arrays = await arrays(), let ended = await ended(),
              let tasks = await handle.tasks(), let staged = await handle.stagedInputs() else { return (.interrupted, []) }
        let byIndex = Dictionary(tasks.map { ($0.idx, $0) }, uniquingKeysWith: { x, _ in x })
        let inputs = Dictionary(staged.map { ($0.source, $0.sha256) }, uniquingKeysWith: { x, _ in x })
        for a in arrays where a.id == nil {
            switch await settle(a, tasks: byIndex, inputs: inputs) {
            case .done: continue
            case .failed(let reason): return (.failed(reason: reason), [])
            case .interrupted: return (.interrupted, [])
            }
        }
        guard let settled = await self.arrays() else { return (.interrupted, []) }
        arrays = settled
        var inFlight = Set<Int>()
        var lastAttempt: [Int: Int] = [:]
        for a in arrays {
            for e in a.elements {
                lastAttempt[e.idx] = max(lastAttempt[e.idx] ?? 0, e.attempt)
                if !isEnded(e, ended) { inFlight.insert(e.idx) }
            }
        }
        for a in ended { lastAttempt[a.idx] = max(lastAttempt[a.idx] ?? 0, a.attempt) }
        let todo = tasks.filter { $0.state.isOpen && !inFlight.contains($0.idx) && only?.contains($0.idx) ?? true }
            .map { ArrayRecord.Element(idx: $0.idx, task: $0.taskId, attempt: (lastAttempt[$0.idx] ?? 0) + 1) }
        guard !todo.isEmpty else { return (.done, []) }
        // MaxArraySize comes from the controller: without it, ask again
        // (never guess a size the cluster might refuse).
        var facts = await cluster.clusterFacts()
        var attempt = 0
        let asking = "ask the controller for MaxArraySize"
        while facts == nil {
            await handle.noteRetrying(asking, "scontrol show config did not answer: is slurmctld up?")
            attempt += 1
            guard await handle.pauseBeforeRetry(attempt) else { await handle.clearRetrying(asking); return (.interrupted, []) }
            facts = await cluster.clusterFacts()
        }
        if attempt > 0 { await handle.clearRetrying(asking) }
        guard let facts else { return (.interrupted, []) }
        var sequence = (arrays.last?.sequence ?? 0) + 1
        var submitted: [ArrayRecord.Element] = []
        for chunk in SlurmRules.arrays(todo, maxArraySize: facts.maxArraySize) {
            if handle.control.isHalted { return (.interrupted, submitted) }
            let a = ArrayRecord(sequence: sequence, name: SlurmRules.arrayName(job: id, sequence: sequence), elements: chunk, id: nil)
            sequence += 1
            guard await save(a) else { return (.interrupted, submitted) }
            handle.crashPoint("submit.intent")
            switch await sbatch(a, tasks: byIndex, inputs: inputs) {
            case .done: submitted += chunk
            case .failed(let reason): return (.failed(reason: reason), submitted)
            case .interrupted: return (.interrupted, submitted)
            }
        }
        log.info("tasks submitted", metadata: ["tasks": "\(submitted.count)", "arrays": "\(sequence - 1 - (arrays.last?.sequence ?? 0))",
                                               "max.array.size": "\(facts.maxArraySize)"])
        return (.done, submitted)
    }

    /// An array recorded without its id: found again by name (squeue, then
    /// sacct), or known to have run by its elements' pid files, or else
    /// submitted now. Never submitted twice.
    func settle(_ record: ArrayRecord, tasks: [Int: TaskRecord], inputs: [String: String]) async -> StepResult {
        var a = record
        switch await find(a, until: handle.control.halt) {
        case nil: return .interrupted
        case .some(nil): return await sbatch(a, tasks: tasks, inputs: inputs)
        case .some(let found?):
            a.id = found
            return await save(a) ? .done : .interrupted
        }
    }

    /// Looks an array recorded without its id up by name: squeue, then
    /// sacct, then its elements' pid files (it ran, its id forgotten: "").
    /// `.some(nil)` when it was never submitted; nil when `until` fired
    /// first (a lookup that fails is asked again: never submit blind).
    func find(_ a: ArrayRecord, until: AsyncEvent<Void>) async -> String?? {
        let args = ["--noheader", "--states=all", "--user=\(userName)", "--name=\(a.name)", "--format=\(SlurmOutput.queueFormat)"]
        var out = await cluster.commands.run("squeue", args, as: runAs)
        var attempt = 0
        let step = "look array \(a.name) up in squeue"
        while !out.ok {
            log.warning("squeue failed while looking an array up; will retry", metadata: ["array": "\(a.name)", "error": "\(out.why)"])
            await handle.noteRetrying(step, "squeue failed: \(out.why)")
            attempt += 1
            guard await handle.pauseBeforeRetry(attempt, until: until) else { await handle.clearRetrying(step); return nil }
            out = await cluster.commands.run("squeue", args, as: runAs)
        }
        if attempt > 0 { await handle.clearRetrying(step) }
        var found = SlurmOutput.queue(out.stdout).entries.first { $0.name == a.name }?.arrayID
        if found == nil, await cluster.usesAccounting() {
            let acct = await cluster.commands.run("sacct", ["-X", "--noheader", "--parsable2", "--name=\(a.name)",
                                                            "--starttime=\(Self.day(handle.job.createdAt))", "--format=JobID,JobName,State,ExitCode"],
                                                 as: runAs)
            if acct.ok { found = SlurmOutput.accounting(acct.stdout).first { $0.name == a.name }?.arrayID }
        }
        if found == nil, a.elements.contains(where: { AttemptFiles.started(attemptDirectory($0)) }) { found = "" }
        if let found {
            log.notice("array found again after a restart", metadata: ["array": "\(a.name)", "slurm.id": "\(found.isEmpty ? "forgotten" : found)"])
        }
        return .some(found)
    }

    static func day(_ t: Double) -> String { UTCTime.day(t - 86400) }

    /// Prepares the elements' directories and the array's script, runs
    /// sbatch (again while the controller cannot be reached) and records the id.
    func sbatch(_ record: ArrayRecord, tasks: [Int: TaskRecord], inputs: [String: String]) async -> StepResult {
        var a = record
        let script: String
        do { script = try prepare(a, tasks: tasks, inputs: inputs) } catch { return .failed(reason: "cannot prepare array \(a.name): \(error)") }
        let args = SlurmRules.sbatchArguments(spec: handle.spec, defaults: .init(partition: cluster.settings.partition, account: cluster.settings.account,
                                                                                 qos: cluster.settings.qos),
                                              name: a.name, comment: SlurmRules.comment(owner: cluster.owner), count: a.elements.count,
                                              script: script, logDirectory: "\(jobDirectory)/slurm")
        var attempt = 0
        while true {
            let out = await cluster.commands.run("sbatch", args, as: runAs)
            if attempt > 0, out.ok || !SlurmRules.isTransient(out.status, out.stderr) { await handle.clearRetrying("submit array \(a.name)") }
            if out.ok, let slurmID = SlurmOutput.submittedID(out.stdout) {
                handle.crashPoint("submit.sbatched")
                a.id = slurmID
                guard await save(a) else { return .interrupted }
                log.info("array submitted", metadata: ["array": "\(a.name)", "slurm.id": "\(slurmID)", "tasks": "\(a.elements.count)"])
                return .done
            }
            guard SlurmRules.isTransient(out.status, out.stderr) else {
                return .failed(reason: "sbatch refused array \(a.name): \(out.why)")
            }
            log.warning("sbatch failed; will retry", metadata: ["array": "\(a.name)", "error": "\(out.why)"])
            await handle.noteRetrying("submit array \(a.name)", "sbatch failed: \(out.why)")
            attempt += 1
            guard await handle.pauseBeforeRetry(attempt) else { await handle.clearRetrying("submit array \(a.name)"); return .interrupted }
        }
    }

    /// Makes each element's attempt directory (work/ with its inputs linked
    /// in, run.sh with its environment and command) and the array's script;
    /// returns the script's path. Safe to repeat. The job's directory is the
    /// daemon's, shared with the submitter (an ACL, whose default gives the
    /// daemon its way into what is made below); what is below is made as
    /// the submitter, theirs, as the array that runs there is. The inputs
    /// are linked in by the daemon, whose the store is.
    func prepare(_ a: ArrayRecord, tasks: [Int: TaskRecord], inputs: [String: String]) throws -> String {
        try FileOps.makeDirectory(jobDirectory)
        chmod(jobDirectory, 0o700)
        if let who = runAs { try Permission.shareWorkDirectory(jobDirectory, with: who.uid) }
        try asSubmitter {
            try FileOps.makeDirectory("\(jobDirectory)/slurm")
            try FileOps.makeDirectory("\(jobDirectory)/arrays")
        }
        var cases = ""
        // No Landlock for a container's engine (it must make mounts); the
        // container sees only the attempt's directory anyway.
        let container = handle.spec.container
        let hide = handle.spec.submitterUID == geteuid() || container != nil ? [] : [cluster.shared] + cluster.hidden
        // The secrets reach a node only in the submitter's own attempt
        // directory, in a file of mode 0600 (removed once the attempt's end
        // is recorded); read now, as the submitter.
        let secrets = try handle.spec.secrets.map { String(decoding: Secrets.block(try Secrets.values($0, policy: handle.policy)), as: UTF8.self) }
        for (i, e) in a.elements.enumerated() {
            guard let task = tasks[e.idx] else { throw DaemonError("task \(e.idx) is not in the job") }
            let dir = attemptDirectory(e)
            try asSubmitter { try FileOps.makeDirectory("\(dir)/work") }
            for input in handle.spec.sharedInputs + task.inputs {
                guard let sha = inputs[input.source] else { throw DaemonError("input \(input.source) was not staged") }
                try cluster.contents.place(sha, at: "\(dir)/work/\(input.target)")
            }
            let env = TaskEnvironment.variables(base: cluster.baseEnvironment, task: task.env, job: id, name: handle.spec.name,
                                                taskID: task.taskId, index: e.idx, attempt: e.attempt)
            var run = "# batchd: task \(task.taskId), attempt \(e.attempt) of job \(id)\n"
            if let container {
                // Into the container: the job's and task's variables, BATCHD_* and the secrets, not the node's PATH or HOME.
                let passed = Set(env.keys).subtracting(cluster.baseEnvironment.keys).union(handle.spec.secrets.map { Array($0.keys) } ?? [])
                run = SlurmContainers.runScript(header: run, env: env, passed: passed, command: task.command, container: container,
                                                settings: cluster.settings, work: "\(dir)/work", name: "batchd-\(id)-\(e.idx)-\(e.attempt)",
                                                job: id, rootful: handle.spec.submitterUID == 0)
            } else {
                for (k, v) in env.sorted(by: { $0.key < $1.key }) { run += "export \(k)=\(ShellTemplate.quote(v, in: .bare))\n" }
                run += "exec /bin/sh -c \(ShellTemplate.quote(task.command, in: .bare))\n"
            }
            try asSubmitter {
                try FileOps.writeAtomically(run, to: "\(dir)/run.sh")
                if let secrets { try FileOps.writeAtomically(secrets, to: "\(dir)/secrets", mode: 0o600) }
            }
            cases += "\(i)) d=\(ShellTemplate.quote(dir, in: .bare)) ;;\n"
        }
        let hides = hide.map { "--hide \(ShellTemplate.quote($0, in: .bare)) " }.joined() + (secrets == nil ? "" : "--secrets-file \"$d/secrets\" ")
        let script = """
            #!/bin/sh
            # batchd: array \(a.name) of job \(id); element N runs the task of case N.
            case "$SLURM_ARRAY_TASK_ID" in
            \(cases)*) echo "batchd: array \(a.name) has no element $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;
            esac
            exec \(ShellTemplate.quote(cluster.execPath, in: .bare)) "$d" \(hides)-- /bin/sh "$d/run.sh"

            """
        let path = "\(jobDirectory)/arrays/\(a.sequence).sh"
        try asSubmitter { try FileOps.writeAtomically(script, to: path) }
        return path
    }
}
