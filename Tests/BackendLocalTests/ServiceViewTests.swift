@testable import BatchAccess
import BatchCore
import Foundation
import Testing

/// The file system as the system unit's sandbox shows it to the daemon,
/// read from a mountinfo captured under the unit (systemd 252, booted in
/// the real-systemd test): / read-only (ProtectSystem=strict), /home
/// read-only (ProtectHome=read-only), /srv/batchd writable
/// (ReadWritePaths=), /tmp private (PrivateTmp=yes).
@Suite("ServiceView: paths as the service sees them")
struct ServiceViewTests {
    static let mountinfo = """
        275 234 254:0 /var/tmp/batchd-systemd.aY8Ewt/root / ro,nosuid,relatime shared:58 master:1 - ext4 /dev/vda rw,discard
        276 275 0:40 / /tmp rw,nosuid,nodev shared:74 master:2 - tmpfs tmpfs rw,size=2468380k,nr_inodes=409600
        292 275 0:57 / /proc rw,nosuid,nodev,noexec,relatime shared:114 - proc proc rw,hidepid=invisible
        300 275 254:0 /var/tmp/batchd-systemd.aY8Ewt/root/home /home ro,nosuid,relatime shared:120 master:1 - ext4 /dev/vda rw
        301 275 254:0 /var/tmp/batchd-systemd.aY8Ewt/root/var/lib/batchd /var/lib/batchd rw,nosuid,relatime shared:121 - ext4 /dev/vda rw
        319 275 254:0 /var/tmp/batchd-systemd.aY8Ewt/root/srv/batchd /srv/batchd rw,nosuid,relatime shared:125 master:1 - ext4 /dev/vda rw
        320 275 254:0 /data\\040sets /data\\040sets rw,relatime - ext4 /dev/vdb rw
        328 276 0:40 /systemd-private-13878398c3424b639a6d740c95e2c2d6-batchd.service-HvWr6p/tmp /tmp rw,nosuid,nodev shared:75 master:2 - tmpfs tmpfs rw
        """
    let view = ServiceView(mounts: ServiceView.parse(mountinfo: mountinfo), uid: 997, groups: [997])

    @Test func parsesMountsAndTheirFlags() {
        #expect(view.mounts.count == 8)
        #expect(view.mounts[0] == .init(path: "/", readOnly: true, privateTmp: false))
        #expect(view.mounts[1] == .init(path: "/tmp", readOnly: false, privateTmp: false), "the guest's own /tmp tmpfs")
        #expect(view.mounts[6].path == "/data sets", "octal escapes undone")
        #expect(view.mounts[7] == .init(path: "/tmp", readOnly: false, privateTmp: true), "the unit's private /tmp over it")
    }

    @Test func theDeepestLastMountWins() {
        #expect(view.mount(of: "/home/alice/wordcount/output")?.path == "/home")
        #expect(view.mount(of: "/home/alice")?.readOnly == true)
        #expect(view.mount(of: "/srv/batchd/alice/out")?.readOnly == false)
        #expect(view.mount(of: "/srv/batchdx/out")?.path == "/", "a prefix of a name is not its directory")
        #expect(view.mount(of: "/tmp/wc")?.privateTmp == true, "the later mount of /tmp hides the earlier")
        #expect(view.mount(of: "/usr/bin")?.readOnly == true)
    }

    @Test func aPrivateTmpHidesInputs() {
        #expect(view.hidden("/tmp/wc-alice")?.contains("PrivateTmp=yes") == true)
        #expect(view.hidden("/home/alice/wordcount") == nil)
        #expect(ServiceView(mounts: [.init(path: "/", readOnly: false, privateTmp: false)], uid: 0, groups: [0]).hidden("/tmp/x") == nil)
    }

    @Test func fixedPartOfAPattern() {
        #expect(ServiceView.fixedPart("texts/*.txt", base: "/home/a/wc") == "/home/a/wc/texts")
        #expect(ServiceView.fixedPart("/tmp/in/{row.name}.csv", base: "/home/a") == "/tmp/in")
        #expect(ServiceView.fixedPart("../../../tmp/x.py", base: "/home/a/wc") == "/tmp/x.py")
        #expect(ServiceView.fixedPart("wordcount.py", base: "/home/a/wc") == "/home/a/wc/wordcount.py")
    }

    @Test func aManifestInTheServicesPrivateTmpIsRefusedWithTheFix() throws {
        let manifest = try ManifestParser.parse("""
            version: 1
            name: wc
            inputs: {shared: [/tmp/shared/wordcount.py]}
            tasks: {forEachFile: "texts/*.txt"}
            command: "true"
            """, file: "job.yaml", catalog: .open)
        let inHome = view.issues(manifest, base: "/home/alice/wc", destination: "/home/alice/wc/output")
        #expect(inHome.map(\.field) == ["inputs.shared[0]"], "an absolute input in /tmp, and no outputs to write")
        let inTmp = view.issues(manifest, base: "/tmp/wc-alice", destination: "/tmp/wc-alice/output")
        #expect(inTmp.map(\.field) == ["baseDirectory"])
        #expect(inTmp[0].hint?.contains("not in /tmp") == true)
    }

    /// Read-only is asked of the directory that exists (here, this test's
    /// own temp directory, placed under a mount the view calls read-only).
    @Test func aDestinationReadOnlyForTheServiceNamesTheDropIn() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sv-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let readOnly = ServiceView(mounts: [.init(path: "/", readOnly: false, privateTmp: false), .init(path: dir, readOnly: true, privateTmp: false)],
                                   uid: 0, groups: [0])
        let why = try #require(readOnly.unwritable("\(dir)/out/run1"))
        #expect(why.contains("\(dir) is read-only for the service"))
        #expect(readOnly.writeHint(dir).contains("ReadWritePaths=\(dir)"))
        #expect(readOnly.writeHint(dir).contains("/srv/batchd"))
        let writable = ServiceView(mounts: [.init(path: "/", readOnly: false, privateTmp: false)], uid: 0, groups: [0])
        #expect(writable.unwritable("\(dir)/out") == nil)
        let stranger = ServiceView(mounts: writable.mounts, uid: 4242, groups: [4242])
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir)
        #expect(stranger.unwritable("\(dir)/out")?.contains("the service (uid 4242) may not write into \(dir)") == true)
        // A service that writes as its submitters needs only its sandbox to allow it.
        let switching = ServiceView(mounts: writable.mounts, uid: 4242, groups: [4242], actsAsSubmitters: true)
        #expect(switching.unwritable("\(dir)/out") == nil)
        #expect(!switching.writeHint(dir).contains("chgrp"))
    }

    @Test func thisProcessHasAView() {
        let mine = ServiceView.current()
        #expect(mine.mount(of: "/") != nil, "mountinfo read to its end")
        #expect(mine.uid == geteuid())
    }
}
