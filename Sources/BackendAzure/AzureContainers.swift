import BatchBackend
import BatchCore

/// A job's `container:` on Azure Batch: its pool is container-enabled
/// (`containerConfiguration`, the image pulled as each node starts) and each
/// task carries `containerSettings` (BatchBodies). What is checked here:
/// what Azure nodes cannot pull, a named pool made for another image, and
/// the service's container failures, in plain words (docs/containers.md).
public enum AzureContainers {
    /// Why a job's container cannot run on Azure, checked at intake.
    public static func refusal(_ container: ContainerSpec) -> ManifestIssue? {
        if ContainerEngine.isLocalOnly(container.image) {
            return ManifestIssue(line: nil, column: nil, field: "container.image",
                                 message: "\(Printable.quote(container.image)) is an image of this machine only; Azure's nodes cannot pull it",
                                 hint: "push it to a registry the nodes reach and name it there (registry.example.com/NAME:TAG)")
        }
        return nil
    }

    /// The registry login a container pool carries (its
    /// `containerRegistries`), for the registry whose credentials pull the
    /// job's image; nil for none. The password travels to the service in
    /// the pool's body (over TLS), which batchd neither logs nor keeps.
    static func login(_ container: ContainerSpec?, _ az: AzureBackend) throws -> BatchBodies.RegistryLogin? {
        guard let container, let (_, r) = az.containers.registry(for: container) else { return nil }
        let password = try r.password(in: az.credentialsDirectory)
        if r.username == nil && password == nil { return nil }
        return BatchBodies.RegistryLogin(server: r.server, username: r.username, password: password.map(Secret.init))
    }

    /// The name as Batch pulls it: with `:latest` when it has no tag or digest.
    static func pulled(_ image: String) -> String {
        let last = image.split(separator: "/").last ?? ""
        return image.contains("@") || last.contains(":") ? image : image + ":latest"
    }

    /// The images an existing pool's nodes were made to pull, nil when it is
    /// not container-enabled.
    static func images(of pool: [String: Any]) -> [String]? {
        let vm = pool["virtualMachineConfiguration"] as? [String: Any]
        guard let config = vm?["containerConfiguration"] as? [String: Any] else { return nil }
        return (config["containerImageNames"] as? [String] ?? []).map(pulled)
    }

    /// Why a job may not use an existing named pool: Batch requires that a
    /// container-enabled pool run container tasks only, and a pool without
    /// containerConfiguration none; and a pool runs the images it was made
    /// for. Nil when it may.
    public static func poolMismatch(_ poolID: String, _ pool: [String: Any], _ container: ContainerSpec?) -> String? {
        let images = images(of: pool)
        let fix = "pick another pool.id, leave pool.id out for an auto-pool, or delete the pool (batchctl pool delete \(poolID)) "
            + "so that the next job makes it again"
        switch (container, images) {
        case (nil, nil): return nil
        case (nil, let names?):
            return "pool \(poolID) runs tasks in containers (\(names.joined(separator: ", "))) and this job has no container: image; \(fix)"
        case (let c?, nil):
            return "pool \(poolID) was made without containers and cannot run this job's image \(c.image); \(fix)"
        case (let c?, let names?):
            guard names.contains(pulled(c.image)) else {
                return "pool \(poolID) was made for \(names.joined(separator: ", ")), not this job's image \(c.image); \(fix)"
            }
            return nil
        }
    }

    /// The service's node error codes of a container-enabled pool that a
    /// reboot does not mend: the image cannot be pulled, or the settings
    /// are refused.
    static func isImageError(_ code: String) -> Bool { code.hasPrefix("Container") }

    /// A task's container failure in plain words, with the service's code.
    public static func taskFailure(_ code: String, _ words: String) -> String? {
        switch code {
        case "ContainerInvalidImage":
            return "the node could not pull the task's image (\(words)): check container.image, and that the nodes can reach its registry"
        case let c where c.hasPrefix("Container"):
            return "the node could not start the task's container (\(words)): check container.image and container.options"
        default:
            return nil
        }
    }
}
