import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A local job's image (docs/containers.md): checked at intake, pulled once
/// before its tasks start, and each attempt's `run` under batchd-exec.
extension LocalJobBackend {
    /// Why a job naming `container` cannot run here, or nil.
    func containerRefusal(_ container: ContainerSpec, submitter: UInt32) async -> (field: String, message: String, hint: String)? {
        guard let engine else {
            return ("container", "the container engine '\(containers.engine)' is not on the daemon's PATH",
                    "install it (Debian: apt install podman), or set containers.engine in the daemon's config")
        }
        if let refused = containers.registryRefusal(container, credentialsDirectory: engine.credentialsDirectory) { return refused }
        if let why = engine.refusal(for: submitter) { return ("container", why, "docs/containers.md, \"Who the task runs as\"") }
        if await engine.hasImage(container.image) == false, ContainerEngine.isLocalOnly(container.image) {
            return ("container.image", "the engine has no image \(container.image), and a localhost/ image cannot be pulled",
                    "build or import it first (podman images lists what there is)")
        }
        return nil
    }

    /// Pulls the job's image unless the engine has it; a pull that fails
    /// fails the job, in the engine's words.
    func provisionImage(_ container: ContainerSpec, job: JobHandle) async -> StepResult {
        guard let engine else { return .failed(reason: "the container engine '\(containers.engine)' is no longer on the daemon's PATH") }
        func note(_ text: String) async {
            _ = await job.setSummary(BackendSummary(lines: [.init("image", text)], fields: ["image": container.image]))
        }
        if await engine.hasImage(container.image) == true {
            await note("\(container.image) (present)")
            job.crashPoint("image.ready")
            return .done
        }
        await note("\(container.image) (pulling)")
        job.log.info("pulling the job's image", metadata: ["image": "\(container.image)"])
        let started = job.clock()
        let registry = containers.registry(for: container)
        if let registry { job.log.info("pulling with a registry's credentials", metadata: ["registry": "\(registry.name)"]) }
        if let why = await engine.pull(container.image, registry: registry?.registry) {
            await note("\(container.image) (pull failed)")
            return .failed(reason: "the image \(container.image) could not be pulled: \(why)")
        }
        let seconds = job.clock() - started
        await note("\(container.image) (pulled in \(String(format: "%.1f", seconds)) s)")
        job.log.info("pulled the job's image", metadata: ["image": "\(container.image)", "seconds": "\(String(format: "%.1f", seconds))"])
        job.crashPoint("image.ready")
        return .done
    }

    /// How attempt `attempt` of task `idx` runs in the job's container:
    /// `variables` (its own and the job's, no host variable) and the
    /// secrets' names pass into it; nil when the job names no image.
    func containerLaunch(_ job: JobHandle, idx: Int, attempt: Int, directory: String, variables: [String: String], command: String)
        -> ContainerLaunch? {
        guard let container = job.spec.container, let engine else { return nil }
        let name = ContainerEngine.containerName(job: job.id, task: idx, attempt: attempt)
        let submitter = job.policy.submitter
        let user = submitter.gid.map { (uid: submitter.uid, gid: $0, groups: submitter.groups.sorted()) }
        let names = Array(variables.keys) + (job.spec.secrets?.keys.map { $0 } ?? [])
        return ContainerLaunch(engine: engine, name: name,
                               arguments: engine.runArguments(container, name: name, job: job.id, work: "\(directory)/work", user: user,
                                                              variables: names, command: command))
    }

    /// The container of an attempt found running after a restart (its
    /// arguments are not needed again: only its name, to stop it).
    func adoptedContainer(_ job: JobHandle, idx: Int, attempt: Int) -> ContainerLaunch? {
        guard job.spec.container != nil, let engine else { return nil }
        return ContainerLaunch(engine: engine, name: ContainerEngine.containerName(job: job.id, task: idx, attempt: attempt), arguments: [])
    }
}

/// One attempt's container: the engine, the container's name and the
/// words that run it.
public struct ContainerLaunch: Sendable {
    public let engine: ContainerEngine
    public let name: String
    public let arguments: [String]
}
