import BatchAccess
import BatchCore
import Foundation

/// A manifest read once, the same way by `batchctl submit`, `batchctl plan`
/// and the daemon's intake: parsed (against the backends' catalog), its
/// backend chosen, its base directory and destination resolved, checked
/// against the service's view of the file system, its tasks planned (made
/// one at a time, as they are consumed) and, when it has outputs, its
/// destination checked as the submitter may write. Nothing is parsed or
/// expanded a second time: each caller consumes this plan.
public struct IntakePlan: Sendable {
    /// The manifest, parsed.
    public let manifest: Manifest
    /// The file's name, for errors.
    public let file: String
    /// The backend it runs on (the manifest's, else the daemon's default).
    public let backend: BackendKind
    /// Where its relative paths start.
    public let base: String
    /// The absolute output directory.
    public let destination: String
    /// The tasks, made in order by `tasks.forEach`.
    public let tasks: TaskPlan
    /// `secrets:`, their paths absolute (each checked readable by the
    /// submitter, within bounds; the values were read and dropped).
    public let secrets: [String: String]

    /// Files staged into every task.
    public var sharedInputs: [InputFile] { tasks.sharedInputs }
    /// How many tasks it makes.
    public var taskCount: Int { tasks.count }

    /// Reads `text`. `base` is where relative paths start when the manifest
    /// gives no `baseDirectory`; `view`, the daemon's view of the file
    /// system (nil: as the caller sees it); `reveal`, whether errors may
    /// quote what the manifest's row files hold (batchctl, run by the
    /// submitter, may; the daemon, whose errors land in files, does not).
    /// `backend` overrides the manifest's (`batchctl submit --backend`).
    public static func make(text: String, file: String, catalog: BackendCatalog, types: JobTypes?, set: [String: String] = [:],
                            backend: String? = nil, defaultBackend: String, base fallback: String, policy: AccessPolicy, view: ServiceView?,
                            jobID: String, reveal: Bool) throws(ManifestError) -> IntakePlan {
        let manifest = try ManifestParser.parse(text, file: file, catalog: catalog, types: types, set: set)
        let base = manifest.baseDirectory ?? fallback
        let d = manifest.outputs.destination
        let destination = URL(fileURLWithPath: d.hasPrefix("/") ? d : "\(base)/\(d)").standardizedFileURL.path
        // What the service's sandbox forbids (a private /tmp, read-only
        // homes) is refused before anything else, with the fix.
        if let view {
            let issues = view.issues(manifest, base: base, destination: destination)
            if !issues.isEmpty { throw ManifestError(file: file, issues: issues) }
        }
        let tasks = try TaskExpander(fs: LocalFileSystem(policy: policy), revealFileContent: reveal).plan(manifest, base: base, jobID: jobID, file: file)
        if !manifest.outputs.patterns.isEmpty {
            do { try Destination.check(destination, policy: policy) } catch {
                throw ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: "outputs.destination", message: "\(error)",
                                                                       hint: "choose a directory \(policy.submitter) may write")])
            }
        }
        let secrets = manifest.secrets.mapValues { URL(fileURLWithPath: $0.hasPrefix("/") ? $0 : "\(base)/\($0)").standardizedFileURL.path }
        do { _ = try Secrets.values(secrets, policy: policy) } catch {
            throw ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: error.name.map { "secrets.\($0)" } ?? "secrets",
                                                                   message: error.reason,
                                                                   hint: "name a regular file \(policy.submitter) may read: UTF-8 text, at most \(Bounds.secretBytes) bytes")])
        }
        return IntakePlan(manifest: manifest, file: file, backend: BackendKind(rawValue: backend ?? manifest.backend ?? defaultBackend), base: base,
                          destination: destination, tasks: tasks, secrets: secrets)
    }

    /// The job as accepted, for the submitter `uid`.
    public func spec(submitterUID uid: UInt32) -> JobSpec {
        JobSpec(manifest, backend: backend, baseDirectory: base, destination: destination, submitterUID: uid, sharedInputs: sharedInputs,
                secrets: secrets)
    }
}
