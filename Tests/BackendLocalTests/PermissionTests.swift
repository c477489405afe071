@testable import BatchAccess
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The daemon answers "could this submitter do that?" as the kernel would:
/// mode bits, groups, and POSIX ACLs (acl(5)'s algorithm), on tables.
@Suite("Permission: the kernel's answer, worked out for a submitter")
struct PermissionTests {
    let alice = Submitter(uid: 1001, gid: 1001, groups: [1001, 500], name: "alice")
    let r = Permission.read, w = Permission.write, x = Permission.execute

    func acl(_ entries: [(UInt16, UInt16, UInt32)]) -> [Permission.ACLEntry] {
        var bytes: [UInt8] = [2, 0, 0, 0]
        for (tag, perm, id) in entries {
            bytes += [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm & 0xff), UInt8(perm >> 8)]
            bytes += [UInt8(id & 0xff), UInt8((id >> 8) & 0xff), UInt8((id >> 16) & 0xff), UInt8(id >> 24)]
        }
        return Permission.parseACL(bytes)!
    }

    @Test func modeBits() {
        #expect(Permission.allows(alice, r, mode: 0o100400, owner: 1001, group: 0))   // owner r--
        #expect(!Permission.allows(alice, w, mode: 0o100400, owner: 1001, group: 0))
        #expect(Permission.allows(alice, r, mode: 0o100040, owner: 0, group: 500))    // through a secondary group
        // The owner class decides alone: an owner without r is refused even if others may read.
        #expect(!Permission.allows(alice, r, mode: 0o100044, owner: 1001, group: 0))
        #expect(!Permission.allows(alice, r, mode: 0o100600, owner: 0, group: 0))     // /etc/shadow-like
        #expect(Permission.allows(alice, r, mode: 0o100604, owner: 0, group: 0))
        let root = Submitter(uid: 0, gid: 0, groups: [0], name: "root")
        #expect(Permission.allows(root, r | w, mode: 0o100000, owner: 5, group: 5))
        #expect(!Permission.allows(root, x, mode: 0o100644, owner: 5, group: 5))      // root executes only what someone may
        #expect(Permission.allows(root, x, mode: 0o040000, owner: 5, group: 5))       // and searches any directory
    }

    @Test func acls() {
        let (userObj, user, groupObj, group, mask, other): (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) = (1, 2, 4, 8, 0x10, 0x20)
        // A named-user entry grants what the mode bits would not...
        let grant = acl([(userObj, 6, .max), (user, 4, 1001), (groupObj, 0, .max), (mask, 4, .max), (other, 0, .max)])
        #expect(Permission.allows(alice, r, mode: 0o100640, owner: 0, group: 0, acl: grant))
        // ...limited by the mask...
        let masked = acl([(userObj, 6, .max), (user, 6, 1001), (groupObj, 0, .max), (mask, 4, .max), (other, 0, .max)])
        #expect(!Permission.allows(alice, w, mode: 0o100640, owner: 0, group: 0, acl: masked))
        // ...and a named entry that denies wins over a group that allows.
        let deny = acl([(userObj, 6, .max), (user, 0, 1001), (groupObj, 4, .max), (mask, 4, .max), (other, 4, .max)])
        #expect(!Permission.allows(alice, r, mode: 0o100644, owner: 0, group: 500, acl: deny))
        // A matching group that denies stops the search: "other" is not asked.
        let groups = acl([(userObj, 6, .max), (groupObj, 0, .max), (group, 0, 500), (mask, 7, .max), (other, 4, .max)])
        #expect(!Permission.allows(alice, r, mode: 0o100604, owner: 0, group: 0, acl: groups))
        // The ACL the daemon writes for rejections parses back and lets exactly its owner read.
        let mine = Permission.parseACL(Permission.aclBytes(mode: 0o100600, user: 1001, rights: 4))
        #expect(Permission.allows(alice, r, mode: 0o100600, owner: 7, group: 7, acl: mine))
        let bob = Submitter(uid: 1002, gid: 1002, groups: [1002, 500], name: "bob")
        #expect(!Permission.allows(bob, r, mode: 0o100600, owner: 7, group: 500, acl: mine))
    }

    @Test("paths resolve as the kernel would, and the refused places are refused whoever asks")
    func resolution() throws {
        let dir = try tempDirectory("access")
        try "x".write(toFile: "\(dir)/f.txt", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "\(dir)/state", withIntermediateDirectories: true)
        try "db".write(toFile: "\(dir)/state/db", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/to-f", withDestinationPath: "f.txt")
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/to-db", withDestinationPath: "\(dir)/state/db")
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/loop", withDestinationPath: "loop")
        let me = Submitter.current()
        let policy = AccessPolicy(submitter: me, protected: [("\(dir)/state", "the daemon's state directory")])
        #expect(try policy.readFile("\(dir)/to-f", maxBytes: 10) == Array("x".utf8))
        #expect(try policy.readFile("\(dir)/./f.txt", maxBytes: 10) == Array("x".utf8))
        for (path, words) in [("\(dir)/to-db", "the daemon's state directory"), ("/proc/self/environ", "inside /proc"),
                              ("/dev/null", "inside /dev"), ("\(dir)/loop", "too many symbolic links"),
                              ("\(dir)/state", "state directory"), ("\(dir)/state/../f.txt", "state directory"),
                              ("\(dir)", "is a directory, not a file"),
                              ("\(dir)/nope", "does not exist")] {
            #expect(throws: AccessError.self) { try policy.checkReadable(path) }
            do { try policy.checkReadable(path) } catch { #expect(error.description.contains(words), "\(path): \(error)") }
        }
        #expect(throws: AccessError.self) { try policy.readFile("\(dir)/f.txt", maxBytes: 0) }
    }
}
