import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The file system as the daemon sees it: its mounts (which are read-only,
/// which /tmp is its private one) and whom it acts as. Under the system
/// unit it differs from a submitter's view: `ProtectSystem=strict` and
/// `ProtectHome=read-only` make most paths read-only, `PrivateTmp=yes` gives
/// it a /tmp of its own. The daemon checks a job's paths against its own
/// view at intake; `batchctl submit` asks the daemon for this view (the
/// control socket's `view`) and checks the same paths the same way before
/// it writes into the inbox, so a job is never accepted and then failed for
/// a path the service cannot use.
public struct ServiceView: Codable, Sendable, Equatable {
    /// One mount of the daemon's namespace.
    public struct Mount: Codable, Sendable, Equatable {
        /// Where it is mounted.
        public var path: String
        /// Mounted read-only (the per-mount `ro` flag).
        public var readOnly: Bool
        /// A /tmp or /var/tmp of the service's own (systemd's PrivateTmp=).
        public var privateTmp: Bool

        /// Creates a mount.
        public init(path: String, readOnly: Bool, privateTmp: Bool) {
            self.path = path
            self.readOnly = readOnly
            self.privateTmp = privateTmp
        }
    }

    /// The mounts, in mountinfo order (a later mount over the same path wins).
    public var mounts: [Mount]
    /// The daemon's user id.
    public var uid: UInt32
    /// The daemon's group ids, its primary group first.
    public var groups: [UInt32]
    /// Whether the daemon writes for submitters as them (`Identity`): then
    /// its own user needs no permission in a destination, only its sandbox
    /// must let it write there. (Optional: nil from a daemon that predates it.)
    public var actsAsSubmitters: Bool?

    /// Creates a view.
    public init(mounts: [Mount], uid: UInt32, groups: [UInt32], actsAsSubmitters: Bool = false) {
        self.mounts = mounts
        self.uid = uid
        self.groups = groups
        self.actsAsSubmitters = actsAsSubmitters
    }

    /// This process's view: /proc/self/mountinfo, its uid and groups.
    public static func current() -> ServiceView {
        let text = readProcFile("/proc/self/mountinfo")
        let me = Submitter.current()
        return ServiceView(mounts: parse(mountinfo: text), uid: me.uid, groups: [me.gid ?? getegid()] + me.groups.sorted(),
                           actsAsSubmitters: Identity.canSwitch)
    }

    /// A /proc file read to its end with read(2). (Foundation's
    /// String(contentsOfFile:) stopped at 4 KiB: procfs reports size 0, and
    /// the sandbox's own mounts come last in a 6 KiB mountinfo.)
    static func readProcFile(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < 16 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += chunk.prefix(n)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The mounts of a mountinfo text (proc(5)): `ID PARENT MAJ:MIN ROOT
    /// MOUNTPOINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER`. A /tmp or
    /// /var/tmp whose root is a `systemd-private-…` directory is private.
    public static func parse(mountinfo text: String) -> [Mount] {
        var out: [Mount] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            guard f.count >= 6 else { continue }
            let root = unescape(f[3]), point = unescape(f[4])
            let readOnly = f[5].split(separator: ",").contains("ro")
            let privateTmp = (point == "/tmp" || point == "/var/tmp") && root.contains("/systemd-private-")
            out.append(Mount(path: point, readOnly: readOnly, privateTmp: privateTmp))
        }
        return out
    }

    /// mountinfo's octal escapes (`\040` for a space) undone.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        var u = Array(field.utf8)[...]
        while let b = u.popFirst() {
            if b == UInt8(ascii: "\\"), u.count >= 3, let n = UInt8(String(decoding: u.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(n)
                u = u.dropFirst(3)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The mount `path` (absolute, standardized) lies on: the last of the
    /// longest mount points that contain it.
    public func mount(of path: String) -> Mount? {
        var best: Mount?
        for m in mounts where m.path == "/" || path == m.path || path.hasPrefix(m.path + "/") {
            if best == nil || m.path.count >= best!.path.count { best = m }
        }
        return best
    }

    /// Why the service cannot use `path` at all: it lies in a private /tmp,
    /// so the service sees another directory there. Nil when it can.
    public func hidden(_ path: String) -> String? {
        guard let m = mount(of: path), m.privateTmp else { return nil }
        return "\(AccessPolicy.shown(path)) is under \(m.path), which the service sees privately (PrivateTmp=yes in its unit): "
            + "it cannot see the files there"
    }

    /// Why the service cannot write at `path`: a private /tmp, a read-only
    /// mount, or (unless it writes as the submitter) no write permission for
    /// the daemon's user on the deepest part that exists. `existing` is that part, as this process sees it
    /// (batchctl and the daemon agree on it except in a private /tmp, which
    /// is refused first). Nil when it can.
    public func unwritable(_ path: String, existing: String, st: stat, fd: Int32) -> String? {
        if let why = hidden(path) ?? readOnly(existing) { return why }
        let daemon = Submitter(uid: uid, gid: groups.first, groups: Set(groups), name: nil)
        if actsAsSubmitters != true, !Permission.allows(daemon, Permission.write | Permission.execute, fd: fd, st) {
            return "the service (uid \(uid)) may not write into \(AccessPolicy.shown(existing))"
        }
        return nil
    }

    /// Why the service cannot write at `existing`: it is on a mount that is
    /// read-only in its sandbox. Nil when it is not.
    func readOnly(_ existing: String) -> String? {
        guard let m = mount(of: existing), m.readOnly else { return nil }
        return "\(AccessPolicy.shown(existing)) is read-only for the service"
            + (m.path == "/" ? "" : " (\(AccessPolicy.shown(m.path)) is mounted read-only in its sandbox)")
    }

    /// How to give the service a place to write, for an error's hint.
    public func writeHint(_ path: String) -> String {
        "choose a destination the service may write, e.g. under /srv/batchd; or let it write there with a drop-in: "
            + "`sudo systemctl edit batchd`, add `[Service]` and `ReadWritePaths=\(path)`, then `sudo systemctl restart batchd` "
            + (actsAsSubmitters == true ? "(docs/operations.md)"
                : "(the directory must also let the batchd group write: chgrp batchd DIR && chmod g+rwx DIR; docs/operations.md)")
    }

    /// How to put inputs where the service sees them, for an error's hint.
    public static let hiddenHint = "keep the job's files where the service can read them (your home directory, or under /srv/batchd), "
        + "not in /tmp or /var/tmp"
}
