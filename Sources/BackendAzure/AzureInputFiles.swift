import BatchAccess
import BatchBackend
import BatchStore
import BatchSupport
#if canImport(Glibc)
import Glibc
#endif

/// The `batchd-inputs` container, outside any job: a file is put exactly as
/// a job's staging would put it (`AzureJob.stageOne`), under its MD5, so a
/// later job that uses it sends nothing.
struct AzureInputFiles: InputFiles {
    let az: AzureBackend

    var width: Int { max(1, 2 * az.settings.concurrency) }

    func put(_ source: String, policy: AccessPolicy, cached: FileHashRecord?) async throws -> PutFile {
        let file = try policy.openForReading(source)
        let id = FileOps.identity(file.st)
        close(file.fd)
        var input = AzureJob.InputFile(source: source, identity: id)
        if let c = cached, c.describes(device: id.device, inode: id.inode, size: id.size, mtimeNs: id.mtimeNs), let md5 = c.md5 {
            input.cached = (c.sha256, md5)
        }
        _ = try await az.blob.createContainer(az.inputs.container)
        let staged = try await AzureJob.stageOne(input, policy: policy, az: az, progress: { _ in })
        return PutFile(sha256: staged.sha256, size: id.size, blob: staged.blob, sent: staged.uploaded, hashed: staged.hashed)
    }

    func remove(sha256: String, blob: String?) async throws -> Bool {
        guard let blob else { return false }
        return try await az.blob.deleteBlob(az.inputs.container, blob)
    }
}
