import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BackendLocal
import BatchStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What every job runner shares.
struct JobContext: Sendable {
    let config: DaemonConfig
    let store: Store
    /// The local slots (the status line shows them; a reload resizes them).
    let slots: SlotPool
    let logger: Logger
    let clock: @Sendable () -> Double
    /// The backends this daemon runs (registered in `Daemon.run`).
    var backends = BackendRegistry()
    /// Directories no submitter's path may reach (state, runtime, credentials).
    var protected: [(path: String, why: String)] = []
    /// Staging and `files prune` take turns.
    let gate = StagingGate()

    /// The rule for a job's files: its submitter's rights, the daemon's
    /// directories refused.
    func policy(_ spec: JobSpec) -> AccessPolicy {
        AccessPolicy(submitter: Submitter.lookup(uid: spec.submitterUID), protected: protected)
    }
}
