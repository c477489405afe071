import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The person a manifest acts for: the owner of the manifest file in the
/// inbox (docs/security.md). The daemon reads and writes for a job only what
/// this user could read and write.
public struct Submitter: Sendable, Equatable, CustomStringConvertible {
    /// User id.
    public var uid: UInt32
    /// Primary group id (the passwd entry's), or nil for a uid with no entry.
    public var gid: UInt32?
    /// Every group the user is in, primary group included.
    public var groups: Set<UInt32>
    /// Login name, when the uid has one.
    public var name: String?
    /// Home directory, from the user database.
    public var home: String?

    /// A submitter with explicit groups (tests, and the current process).
    public init(uid: UInt32, gid: UInt32?, groups: Set<UInt32>, name: String?, home: String? = nil) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.name = name
        self.home = home
    }

    /// `alice (uid 1001)`, or `uid 4242` when the uid has no name.
    public var description: String { name.map { "\($0) (uid \(uid))" } ?? "uid \(uid)" }

    /// The submitter a uid stands for, with its groups from the system's
    /// user database (getpwuid_r, getgrouplist). A uid with no entry gets
    /// no groups: only what it owns, and what everyone may, is open to it.
    public static func lookup(uid: UInt32) -> Submitter {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pwd, &buffer, buffer.count, &result) == 0, result != nil, let namePtr = pwd.pw_name else {
            return Submitter(uid: uid, gid: nil, groups: [], name: nil)
        }
        let name = String(cString: namePtr)
        let primary = pwd.pw_gid
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        while getgrouplist(namePtr, primary, &list, &count) < 0 {
            guard count < 65536 else { break }
            list = [gid_t](repeating: 0, count: Int(count))
        }
        let groups = Set(list.prefix(Int(max(0, count))).map { UInt32($0) }).union([primary])
        return Submitter(uid: uid, gid: primary, groups: groups, name: name, home: pwd.pw_dir.map { String(cString: $0) })
    }

    /// This process's user and groups (batchctl acts for whoever runs it).
    public static func current() -> Submitter {
        let n = getgroups(0, nil)
        var list = [gid_t](repeating: 0, count: Int(max(0, n)))
        let got = getgroups(n, &list)
        var groups = Set(list.prefix(Int(max(0, got))).map { UInt32($0) })
        groups.insert(getegid())
        let me = lookup(uid: geteuid())
        return Submitter(uid: geteuid(), gid: getegid(), groups: groups, name: me.name)
    }
}
