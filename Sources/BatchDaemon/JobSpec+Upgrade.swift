import BatchControl
import BatchCore
import BatchStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension JobSpec {
    /// The spec of a job an older batchd accepted, which stored none: its
    /// columns, and the pool and limits read once from its manifest copy.
    /// The only place a manifest is read after intake; it runs at most once
    /// per such job (`Supervisor` stores the result).
    static func upgrading(_ job: JobRecord, defaultUID: UInt32) -> JobSpec {
        var m = Manifest(name: job.name, tasks: .list([]))
        if let data = FileManager.default.contents(atPath: job.manifestPath),
           let parsed = try? ManifestParser.parse(bytes: Array(data), file: job.manifestPath) {
            m = parsed
        }
        m.retries = job.retries
        m.timeoutSeconds = job.timeoutSeconds
        m.cleanup = job.cleanup
        m.outputs.patterns = (try? JSONDecoder().decode([String].self, from: Data(job.outputPatterns.utf8))) ?? []
        m.pool.slotsPerNode = job.maxParallel
        let shared = (try? JSONDecoder().decode([InputFile].self, from: Data(job.sharedInputs.utf8))) ?? []
        var st = stat()
        let uid = stat(job.manifestPath, &st) == 0 ? st.st_uid : defaultUID
        return JobSpec(m, backend: job.backend, baseDirectory: job.baseDirectory, destination: job.destination,
                       submitterUID: uid, sharedInputs: shared)
    }
}
