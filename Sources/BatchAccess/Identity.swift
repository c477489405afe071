import BatchCore
import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Acting as a submitter (docs/security.md, "Tasks run as their
/// submitter"). Under the system unit the daemon holds CAP_SETUID and
/// CAP_SETGID, and nothing else: tasks start as their submitter
/// (batchd-exec's `--user`), and what the daemon writes for a submitter it
/// writes as them, with the kernel checking each step and the files theirs.
/// The switch is per thread and lasts one synchronous call: Linux keeps
/// credentials per thread, and the raw system calls (not glibc's set*id,
/// which change every thread) touch only the calling one. A daemon without
/// those capabilities (a user unit, serving its own user) acts as itself.
public enum Identity {
    /// Whether this process may take on other users' identities.
    public static let canSwitch: Bool = batchd_can_switch_users() == 1

    /// Whether tasks and files of `who` are made as them: they are another
    /// user than the daemon's, and it may switch.
    public static func switches(to who: Submitter) -> Bool {
        who.uid != geteuid() && canSwitch
    }

    /// batchd-exec's `--user` value for `who`: uid, primary gid, groups;
    /// nil when there is nothing to switch, or `who` has no entry in the
    /// user database (and so no group to run with).
    public static func execArgument(for who: Submitter) -> String? {
        guard switches(to: who), let gid = who.gid else { return nil }
        return "\(who.uid):\(gid):\(who.groups.sorted().map(String.init).joined(separator: ","))"
    }

    /// Runs `body` with this thread's file-system identity that of `who`
    /// (uid, primary gid, groups), when `switches(to:)`; as the daemon
    /// otherwise. `body` must not suspend: it is synchronous, so nothing
    /// else runs on this thread meanwhile.
    public static func acting<T>(as who: Submitter, _ body: () throws -> T) throws -> T {
        guard switches(to: who) else { return try body() }
        var uid: UInt32 = 0, gid: UInt32 = 0
        var groups = [UInt32](repeating: 0, count: 1024)
        let n = batchd_thread_fs_current(&uid, &gid, &groups, 1024)
        if uid == who.uid { return try body() }  // already them (a nested call)
        guard n >= 0 else { throw AccessError("cannot act as \(who): \(String(cString: strerror(errno)))") }
        guard let primary = who.gid else {
            throw AccessError("cannot act as \(who): the uid has no entry in the user database, so no group to act with")
        }
        let theirs = who.groups.sorted()
        guard batchd_thread_fs_identity(who.uid, primary, theirs, Int32(theirs.count)) == 0 else {
            throw AccessError("cannot act as \(who): \(String(cString: strerror(errno)))")
        }
        defer {
            // Never go on as someone else.
            if batchd_thread_fs_identity(uid, gid, groups, n) != 0 { fatalError("cannot return from acting as \(who)") }
        }
        return try body()
    }

    /// Why a job of `uid` cannot run here, when its tasks would run on this
    /// machine or a cluster as that user: the daemon cannot switch to
    /// another user (a user unit), or the user has no entry in the user
    /// database. Nil when it can run.
    public static func refusal(forTasksOf uid: UInt32) -> ManifestIssue? {
        guard uid != geteuid() else { return nil }
        let who = Submitter.lookup(uid: uid)
        if !canSwitch {
            let me = Submitter.lookup(uid: geteuid())
            return ManifestIssue(line: nil, column: nil, field: "backend",
                                 message: "tasks run as their submitter, \(who), and this daemon (running as \(me)) cannot run them as another user",
                                 hint: "submit it to a daemon of your own (the user unit), or to the system service, which may (CAP_SETUID and CAP_SETGID)")
        }
        if who.gid == nil {
            return ManifestIssue(line: nil, column: nil, field: "backend",
                                 message: "tasks run as their submitter, and \(who) has no entry in the user database to run them with",
                                 hint: "submit it as a user the system knows (getent passwd \(who.uid))")
        }
        return nil
    }

    /// kill(2) of `target` (-pgid for a group) as `uid` when that is another
    /// user the daemon may switch to (their processes are not the daemon's
    /// to signal otherwise); as the daemon otherwise.
    @discardableResult
    public static func kill(_ target: pid_t, _ sig: Int32, as uid: UInt32?) -> Bool {
        guard let uid, uid != geteuid(), canSwitch else { return Glibc.kill(target, sig) == 0 }
        return batchd_kill_as(uid, target, sig) == 0
    }
}

extension AccessPolicy {
    /// `Identity.acting` as this policy's submitter, its errors as access
    /// errors: what is read for them is read as them, with the kernel
    /// checking too (the rule's own checks still come first).
    func acting<T>(_ body: () throws(AccessError) -> T) throws(AccessError) -> T {
        do {
            return try Identity.acting(as: submitter) { try body() }
        } catch let error as AccessError {
            throw error
        } catch {
            throw AccessError("\(error)")
        }
    }
}
