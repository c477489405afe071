import BatchControl
import BatchCore
import BatchStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension JobSpec {
    /// The spec of a job an older batchd accepted, which stored none, made
    /// from its columns (`Supervisor` stores it once). Its manifest is not
    /// read again: pool fields and limits an older batchd did not store take
    /// their defaults, which matters only to an Azure job not yet
    /// provisioned when the daemon was upgraded.
    static func upgrading(_ job: JobRecord, defaultUID: UInt32) -> JobSpec {
        var m = Manifest(name: job.name, tasks: .list([]))
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
