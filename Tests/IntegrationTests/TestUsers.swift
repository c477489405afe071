import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A user the privilege tests act as.
struct TestUser: Sendable, CustomStringConvertible {
    let name: String
    let uid: UInt32
    let gid: UInt32
    var description: String { name }
}

/// The users the privilege tests need, made once on the machine (CI is a
/// fresh one; `useradd` is idempotent here through `getent`): a service user
/// for the daemon, as the system unit runs it; two submitters in its group
/// (alice and bob, each with a group of their own); and eve, in no group of
/// the daemon's. Nil when the tests do not run as root (then they are
/// skipped, and say so).
enum TestUsers {
    struct Set: Sendable {
        let service: TestUser
        let alice: TestUser
        let bob: TestUser
        let eve: TestUser
        /// In the daemon's group and in the operators group (`operators: batchd-it-ops`).
        let oper: TestUser
    }
    /// The operators group `oper` is in.
    static let operators = "batchd-it-ops"

    static let all: Set? = {
        guard geteuid() == 0 else { return nil }
        func run(_ args: [String]) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: args[0])
            p.arguments = Array(args.dropFirst())
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try? p.run()
            p.waitUntilExit()
        }
        func user(_ name: String, group: String, extra: [String]) -> TestUser? {
            run(["/usr/sbin/groupadd", "-f", "-r", group])
            if getpwnam(name) == nil {
                run(["/usr/sbin/useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-g", group] + (extra.isEmpty ? [] : ["-G", extra.joined(separator: ",")]) + [name])
            }
            guard let pw = getpwnam(name) else { return nil }
            return TestUser(name: name, uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid)
        }
        guard let service = user("batchd-it-svc", group: "batchd-it", extra: []),
              let alice = user("batchd-it-alice", group: "batchd-it-alice", extra: ["batchd-it"]),
              let bob = user("batchd-it-bob", group: "batchd-it-bob", extra: ["batchd-it"]),
              let eve = user("batchd-it-eve", group: "batchd-it-eve", extra: []) else { return nil }
        run(["/usr/sbin/groupadd", "-f", "-r", operators])
        guard let oper = user("batchd-it-oper", group: "batchd-it-oper", extra: ["batchd-it", operators]) else { return nil }
        return Set(service: service, alice: alice, bob: bob, eve: eve, oper: oper)
    }()

    /// Gives `path` (and, with `recursive`, everything under it) to `user`.
    static func give(_ path: String, to user: TestUser, recursive: Bool = false) {
        if recursive, let items = FileManager.default.enumerator(atPath: path) {
            for case let item as String in items { lchown("\(path)/\(item)", user.uid, user.gid) }
        }
        lchown(path, user.uid, user.gid)
    }
}

/// Whether `user` can read `path`, asked of the kernel by running `cat` as them.
func canRead(_ path: String, as user: TestUser) async throws -> Bool {
    let r = try await runProcess("/usr/bin/setpriv", ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--", "/bin/cat", path])
    return r.code == 0
}
