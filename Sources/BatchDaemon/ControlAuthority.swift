import BatchAccess
import BatchStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Who sent a control request, as the kernel said when they connected
/// (SO_PEERCRED for the uid and primary group, SO_PEERGROUPS for the
/// supplementary groups): never looked up again, and no pid trusted. The
/// name is looked up only to be shown.
struct Requester: Sendable, CustomStringConvertible {
    let uid: UInt32
    let gid: UInt32
    let groups: Set<UInt32>
    let name: String?

    var description: String { name.map { "\($0) (uid \(uid))" } ?? "uid \(uid)" }
}

/// Who may do what over the control socket, as slurmctld decides for its
/// jobs: a job's submitter, or an operator, may cancel or retry it; pool
/// commands and `files prune` are for operators only. Operators are root,
/// the service user (the daemon's own uid), and the members of the group
/// the config names (`operators`).
struct ControlAuthority: Sendable {
    /// The daemon's own uid: the service user.
    let serviceUID: UInt32
    /// The operators group, when the config names one that exists.
    let operatorsGroup: (name: String, gid: UInt32)?
    /// Named in the config but not on this machine (no one is in it).
    let missingGroup: String?

    init(operators: String?, serviceUID: UInt32 = geteuid()) {
        self.serviceUID = serviceUID
        if let name = operators {
            var group = group()
            var result: UnsafeMutablePointer<group>?
            var buffer = [CChar](repeating: 0, count: 16384)
            if getgrnam_r(name, &group, &buffer, buffer.count, &result) == 0, result != nil {
                operatorsGroup = (name, group.gr_gid)
                missingGroup = nil
            } else {
                operatorsGroup = nil
                missingGroup = name
            }
        } else {
            operatorsGroup = nil
            missingGroup = nil
        }
    }

    func isOperator(_ r: Requester) -> Bool {
        if r.uid == 0 || r.uid == serviceUID { return true }
        guard let g = operatorsGroup?.gid else { return false }
        return r.gid == g || r.groups.contains(g)
    }

    /// Who the operators are, in words for a refusal.
    var operators: String {
        let service = Submitter.lookup(uid: serviceUID).name.map { "the service user \($0)" } ?? "the service user (uid \(serviceUID))"
        if serviceUID == 0 { return "root" + (operatorsGroup.map { " or a member of group \($0.name)" } ?? "") }
        if let g = operatorsGroup { return "root, \(service), or a member of group \(g.name)" }
        return "root or \(service)" + (missingGroup.map { " (the operators group \($0) in the config does not exist)" } ?? "")
    }

    /// Why `requester` may not `action` (e.g. "cancel") job `job`; nil when they may.
    func refusal(_ requester: Requester?, _ action: String, _ job: JobRecord) -> String? {
        guard let requester else { return "permission denied: the daemon could not tell who asked to \(action) job \(job.id)" }
        if requester.uid == job.spec.submitterUID || isOperator(requester) { return nil }
        let owner = Submitter.lookup(uid: job.spec.submitterUID)
        return "permission denied: job \(job.id) is \(owner)'s; only its submitter or an operator (\(operators)) may \(action) it"
    }

    /// Whose jobs `requester` may see: nil for everyone's (an operator),
    /// else their own uid's (private by default, as slurmctld's
    /// `PrivateData=jobs`).
    func visible(to requester: Requester?) -> UInt32? {
        guard let requester else { return UInt32.max }  // no one's
        return isOperator(requester) ? nil : requester.uid
    }

    /// Why `requester` may not run `command`, an operators' command; nil when they may.
    func refusal(_ requester: Requester?, operatorsOnly command: String) -> String? {
        if let requester, isOperator(requester) { return nil }
        return "permission denied: `batchctl \(command)` is for operators: \(operators) (`operators` in the daemon's config names the group)"
    }
}
