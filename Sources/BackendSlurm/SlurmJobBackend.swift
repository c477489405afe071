import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore

/// A Slurm cluster through its own commands: inputs in a shared directory,
/// tasks in job arrays under batchd-exec, one squeue per interval for every
/// job, outputs collected from the shared directory as each task ends
/// (docs/slurm.md).
public struct SlurmJobBackend: JobBackend {
    /// Its name in manifests.
    public static let name = BackendKind(rawValue: "slurm")
    public let cluster: SlurmCluster

    public init(cluster: SlurmCluster) { self.cluster = cluster }

    /// The job's steps; its submitter's arrays followed by the poller.
    func job(_ handle: JobHandle) async -> SlurmJob {
        let job = SlurmJob(handle: handle, cluster: cluster)
        await cluster.poller.include(job.userName)
        return job
    }

    /// What the cluster would refuse is refused at intake: `sbatch
    /// --test-only` with the job's options (partition, account, QoS, CPUs,
    /// memory, time) submits nothing and says whether sbatch would take
    /// them. A cluster that does not answer refuses nothing (the job meets
    /// sbatch's refusal, with its words, when it is submitted). It asks as
    /// the submitter: the account, QoS and partitions they may use are theirs.
    public func refusal(_ spec: JobSpec) async -> ManifestIssue? {
        if let container = spec.container, let issue = SlurmContainers.refusal(container, cluster.settings) { return issue }
        if let issue = Identity.refusal(forTasksOf: spec.submitterUID) { return issue }
        let args = SlurmRules.testArguments(spec: spec, defaults: .init(partition: cluster.settings.partition,
                                                                       account: cluster.settings.account, qos: cluster.settings.qos))
        let out = await cluster.commands.run("sbatch", args, as: cluster.acting(for: Submitter.lookup(uid: spec.submitterUID)))
        guard !out.ok, !SlurmRules.isTransient(out.status, out.stderr) else { return nil }
        let field = SlurmRules.refusedField(out.stderr)
        return ManifestIssue(line: nil, column: nil, field: field, message: "the Slurm cluster refuses this job: \(out.why)",
                             hint: "check pool.partition, pool.account, pool.qos, pool.cpusPerTask, pool.memory and timeout against `sinfo` and `sacctmgr show assoc`")
    }

    public func stage(_ job: JobHandle) async -> StepResult { await job.stage(into: cluster.contents) }
    public var inputFiles: (any InputFiles)? { ContentStoreFiles(cluster.contents) }
    /// The cluster is there already; partitions are checked at intake.
    public func provision(_ job: JobHandle) async -> StepResult { .done }
    public func submit(_ job: JobHandle) async -> StepResult { await self.job(job).submit().0 }
    public func adapter(for job: JobHandle) async -> (any TaskAdapter)? { SlurmAdapter(await self.job(job)) }
    public func cancel(_ job: JobHandle) async { await self.job(job).cancel() }
    public func cleanup(_ job: JobHandle, _ verdict: Verdict) async { await self.job(job).cleanup(verdict) }
    public func attemptsDirectory(_ job: JobHandle) -> String { "\(cluster.jobDirectory(job.id))/tasks" }

    public func owned() async throws -> (owner: String, items: [HeldItem])? {
        let items = try await cluster.inventory()
        return (cluster.owner, items.map { .init(kind: "array", id: $0.arrayID, state: $0.state, job: $0.job, nodes: nil, orphan: $0.orphan) })
    }

    public var background: (@Sendable () async -> Void)? {
        let cluster = self.cluster
        return { await cluster.runBackground() }
    }
}

/// A Slurm cluster as the daemon registers it: off (with the reason)
/// until `slurm.sharedDirectory` is set and the commands are there.
public enum SlurmPlugin: BackendPlugin {
    public static let name = SlurmJobBackend.name
    public static var poolOptions: [PoolOption] { SlurmPoolOptions.declared }
    public static let setupHint = "see docs/slurm.md"
    public static func make(_ setup: BackendSetup, section: ConfigSection?) throws -> any JobBackend {
        let settings = try SlurmSettings(section)
        return SlurmJobBackend(cluster: try SlurmCluster.make(settings: settings, variables: setup.variables, exec: setup.exec,
                                                              baseEnvironment: setup.baseEnvironment, hidden: setup.hidden,
                                                              hostName: setup.hostName, ledger: setup.ledger, logger: setup.logger))
    }
}
