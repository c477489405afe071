import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the kernel would let a user do with a file, worked out from the
/// file's owner, group, mode bits and POSIX ACL (acl(5)'s access check
/// algorithm), so the daemon can ask "could the submitter do this?" about a
/// file it can reach itself.
public enum Permission {
    /// Read, write and execute (search, for a directory) bits.
    public static let read: UInt16 = 4, write: UInt16 = 2, execute: UInt16 = 1

    /// One entry of a POSIX access ACL.
    struct ACLEntry: Equatable {
        var tag: UInt16
        var perm: UInt16
        var id: UInt32
    }

    static let userObj: UInt16 = 0x01, user: UInt16 = 0x02, groupObj: UInt16 = 0x04, group: UInt16 = 0x08,
               mask: UInt16 = 0x10, other: UInt16 = 0x20

    /// Parses the `system.posix_acl_access` extended attribute (version 2:
    /// a 4-byte header, then 8-byte entries of tag, perm, id, little-endian).
    static func parseACL(_ bytes: [UInt8]) -> [ACLEntry]? {
        guard bytes.count >= 4, (bytes.count - 4) % 8 == 0 else { return nil }
        func u16(_ i: Int) -> UInt16 { UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8 }
        func u32(_ i: Int) -> UInt32 { UInt32(u16(i)) | UInt32(u16(i + 2)) << 16 }
        guard u32(0) == 2 else { return nil }
        return stride(from: 4, to: bytes.count, by: 8).map { ACLEntry(tag: u16($0), perm: u16($0 + 2), id: u32($0 + 4)) }
    }

    /// The access ACL of the object `fd` refers to (an O_PATH descriptor is
    /// fine), or nil when it has none beyond its mode bits.
    static func acl(fd: Int32) -> [ACLEntry]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var n = batchd_getxattr("/proc/self/fd/\(fd)", "system.posix_acl_access", &buffer, UInt(buffer.count))
        if n < 0, errno == ERANGE {
            buffer = [UInt8](repeating: 0, count: 65536)
            n = batchd_getxattr("/proc/self/fd/\(fd)", "system.posix_acl_access", &buffer, UInt(buffer.count))
        }
        guard n > 0 else { return nil }
        return parseACL(Array(buffer.prefix(n)))
    }

    /// The bytes of an access ACL: the mode's owner, group and other bits,
    /// plus `extra` rights for one more user (the mask allows them).
    public static func aclBytes(mode: UInt32, user uid: UInt32, rights: UInt16) -> [UInt8] {
        aclBytes(mode: mode, users: [(uid, rights)])
    }

    /// The bytes of an ACL: the mode's owner, group and other bits, plus
    /// rights for named users (sorted, as the kernel wants them; the mask
    /// allows them all).
    static func aclBytes(mode: UInt32, users: [(uid: UInt32, rights: UInt16)]) -> [UInt8] {
        var out: [UInt8] = [2, 0, 0, 0]
        func entry(_ tag: UInt16, _ perm: UInt16, _ id: UInt32) {
            out += [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm & 0xff), UInt8(perm >> 8)]
            out += [UInt8(id & 0xff), UInt8((id >> 8) & 0xff), UInt8((id >> 16) & 0xff), UInt8(id >> 24)]
        }
        let groupBits = UInt16((mode >> 3) & 7)
        entry(userObj, UInt16((mode >> 6) & 7), UInt32.max)
        var named: [UInt32: UInt16] = [:]
        for (uid, rights) in users { named[uid, default: 0] |= rights }
        for uid in named.keys.sorted() { entry(user, named[uid]!, uid) }
        entry(groupObj, groupBits, UInt32.max)
        entry(mask, named.values.reduce(groupBits, |), UInt32.max)
        entry(other, UInt16(mode & 7), UInt32.max)
        return out
    }

    /// Lets `who` pass through the daemon's directory `path` and those made
    /// in it later (its default ACL), and nothing more: search, no reading
    /// or listing; what is made in it stays the daemon's. A job's
    /// directory, so that its submitter's tasks reach their own working
    /// directories. Throws when the file system takes no ACL.
    public static func sharePassage(_ path: String, with who: UInt32) throws {
        let acl = aclBytes(mode: 0o700, users: [(who, execute)])
        guard batchd_setxattr(path, "system.posix_acl_access", acl, UInt(acl.count)) == 0,
              batchd_setxattr(path, "system.posix_acl_default", acl, UInt(acl.count)) == 0 else {
            let why = errno == EOPNOTSUPP ? "its file system takes no ACL (mount it with the acl option)" : String(cString: strerror(errno))
            throw AccessError("cannot let uid \(who) pass through \(path): \(why)")
        }
    }

    /// Makes the daemon's directory `path` a task's working directory for
    /// `who`, who runs it under their own uid: they may read, write and
    /// search it, and what they make in it is theirs and the daemon's (its
    /// default ACL: owner and daemon rwx, no one else), so the daemon reads
    /// the outputs and removes the directory later. Throws when the file
    /// system takes no ACL.
    public static func shareWorkDirectory(_ path: String, with who: UInt32) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw AccessError("cannot read \(path): \(String(cString: strerror(errno)))") }
        let access = aclBytes(mode: st.st_mode, users: [(who, 7)])
        let inherited = aclBytes(mode: 0o700, users: [(who, 7), (geteuid(), 7)])
        guard batchd_setxattr(path, "system.posix_acl_access", access, UInt(access.count)) == 0,
              batchd_setxattr(path, "system.posix_acl_default", inherited, UInt(inherited.count)) == 0 else {
            let why = errno == EOPNOTSUPP ? "its file system takes no ACL (mount it with the acl option)" : String(cString: strerror(errno))
            throw AccessError("cannot let uid \(who) write the task's directory \(path): \(why)")
        }
    }

    /// Lets `who` use what the daemon made for them (the object `fd` refers
    /// to): it becomes theirs when the daemon runs as root; otherwise an ACL
    /// entry gives them read and write (and search, for a directory, whose
    /// default ACL passes the same to what is made in it). False when the
    /// file system takes no ACL.
    @discardableResult
    public static func grant(_ fd: Int32, to who: Submitter) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0, who.uid != st.st_uid else { return true }
        if geteuid() == 0 {
            return fchownat(fd, "", who.uid, who.gid ?? UInt32.max, batchd_AT_EMPTY_PATH) == 0
        }
        let isDirectory = st.st_mode & S_IFMT == S_IFDIR
        let rights: UInt16 = isDirectory ? 7 : 6
        let acl = aclBytes(mode: st.st_mode, user: who.uid, rights: rights)
        let path = "/proc/self/fd/\(fd)"
        guard batchd_setxattr(path, "system.posix_acl_access", acl, UInt(acl.count)) == 0 else { return false }
        if isDirectory { _ = batchd_setxattr(path, "system.posix_acl_default", acl, UInt(acl.count)) }
        return true
    }

    /// Whether `who` has every bit of `want` on a file with this status and ACL.
    static func allows(_ who: Submitter, _ want: UInt16, mode: UInt32, owner: UInt32, group: UInt32, acl: [ACLEntry]? = nil) -> Bool {
        if who.uid == 0 {
            // Root reads and writes anything and searches any directory; it
            // executes a file only if someone may.
            let isDirectory = mode & UInt32(S_IFMT) == UInt32(S_IFDIR)
            return want & execute == 0 || isDirectory || mode & 0o111 != 0
        }
        let ownerBits = UInt16((mode >> 6) & 7), groupBits = UInt16((mode >> 3) & 7), otherBits = UInt16(mode & 7)
        guard let acl, acl.contains(where: { $0.tag == user || $0.tag == group || $0.tag == mask }) else {
            if who.uid == owner { return ownerBits & want == want }
            if who.groups.contains(group) { return groupBits & want == want }
            return otherBits & want == want
        }
        if who.uid == owner { return (acl.first { $0.tag == userObj }?.perm ?? ownerBits) & want == want }
        let maskBits = acl.first { $0.tag == mask }?.perm ?? 7
        if let named = acl.first(where: { $0.tag == user && $0.id == who.uid }) { return named.perm & maskBits & want == want }
        var inAnyGroup = false
        for entry in acl where (entry.tag == groupObj && who.groups.contains(group)) || (entry.tag == Self.group && who.groups.contains(entry.id)) {
            inAnyGroup = true
            if entry.perm & maskBits & want == want { return true }
        }
        if inAnyGroup { return false }
        return (acl.first { $0.tag == other }?.perm ?? otherBits) & want == want
    }

    /// Whether `who` has `want` on the object `fd` refers to.
    static func allows(_ who: Submitter, _ want: UInt16, fd: Int32, _ st: stat) -> Bool {
        if who.uid == 0 { return allows(who, want, mode: st.st_mode, owner: st.st_uid, group: st.st_gid) }
        return allows(who, want, mode: st.st_mode, owner: st.st_uid, group: st.st_gid, acl: acl(fd: fd))
    }
}
