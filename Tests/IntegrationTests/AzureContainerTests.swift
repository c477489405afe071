import BackendAzure
import BatchCore
import Foundation
import Testing
import TestSupport

/// `container:` on Azure (issue 25): a container-enabled pool, tasks with
/// containerSettings, against the emulator with podman behind it.
extension AzureTests {
    /// The image under the name a registry would serve it (Azure's nodes
    /// cannot pull a localhost/ one); scripts/container-image.sh makes both.
    static let servedImage = "batchd.test/batchd-test:1"

    /// An emulator, and a daemon whose local engine uses the shipped
    /// containers.conf, with the tests' image made.
    func startedWithImage(_ extra: String = "") async throws -> (AzureRig, DaemonHarness) {
        let made = try await runProcess("/bin/bash", ["\(repoRoot)/scripts/container-image.sh", ContainerTests.conf], timeout: 300)
        #expect(made.code == 0, "the test image: \(made.err)")
        return try await started("azure:\n  pollMinInterval: 0.2s\n\(extra)containers: {environment: {CONTAINERS_CONF: \(ContainerTests.conf)}}")
    }

    func copyContainerExample(_ d: DaemonHarness, _ name: String) throws -> String {
        let dir = "\(d.root)/\(name)"
        try FileManager.default.copyItem(atPath: "\(repoRoot)/examples/wordcount-container", toPath: dir)
        try? FileManager.default.removeItem(atPath: "\(dir)/output")
        return dir
    }

    @Test("the container wordcount gives the same bytes on local (podman) and Azure (a container pool, podman behind the emulator); the Azure task saw the image's files",
          .timeLimit(.minutes(4)))
    func containerWordcountMatchesLocal() async throws {
        let (rig, d) = try await startedWithImage()
        let local = try copyContainerExample(d, "local"), azure = try copyContainerExample(d, "azure")
        let plan = try await d.batchctl(["plan", "--backend", "azure", "\(azure)/job.yaml"])
        #expect(plan.code == 0 && plan.out.contains("image     \(Self.servedImage)")
                && plan.out.contains("pulled by each node of the job's pool as it starts"), "\(plan.out)\(plan.err)")
        let l = try await d.batchctl(["submit", "--backend", "local", "--wait", "--timeout", "120", "\(local)/job.yaml"])
        #expect(l.code == 0, "\(l.out)\n\(l.err)")
        let a = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", "\(azure)/job.yaml"])
        #expect(a.code == 0, "\(a.out)\n\(a.err)")
        let expected = tree("\(local)/output")
        #expect(expected.count == 3 && tree("\(azure)/output") == expected, "\(tree("\(azure)/output").keys.sorted())")
        // Where it ran: the image's file, and not the host's repository.
        let inside = try write("""
            name: inside
            container: {image: \(Self.servedImage)}
            tasks: [{id: look}]
            command: "cat /etc/batchd-image > seen; test -e \(repoRoot)/Package.swift && echo HOST-REPO >> seen; true"
            outputs: [seen]
            """, "\(d.root)/inside", "job.yaml")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", inside])
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        #expect(read("\(d.root)/inside/output/seen") == "batchd-test image\n")
        // Each job's auto-pool went with it: no container pool is left to bill.
        #expect(AzureRig.kept(try await rig.batch.pools()).isEmpty)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a private image on Azure: the pool carries the registry's login from the daemon's credentials (Get Pool gives no password back), its nodes pull with it, the job runs; the password is nowhere batchd writes",
          .timeLimit(.minutes(4)))
    func containerFromPrivateRegistry() async throws {
        let made = try await runProcess("/bin/bash", ["\(repoRoot)/scripts/container-image.sh", ContainerTests.conf], timeout: 300)
        #expect(made.code == 0, "the test image: \(made.err)")
        let registry = try await TestRegistry()
        let rig = try AzureRig(emulatorEnvironment: ["CONTAINERS_REGISTRIES_CONF": registry.registriesConf])
        let d = try DaemonHarness(extra: "azure:\n  pollMinInterval: 0.2s\n" + registry.config)
        try await d.start(environment: rig.environment().merging(["CREDENTIALS_DIRECTORY": try registry.credentials(under: d.root)]) { $1 })
        try await registry.forget()
        let job = try write("name: private\ncontainer: {image: \"\(registry.image)\"}\npool: {id: rpool}\ntasks: [{id: look}]\n"
                            + "command: cat /etc/batchd-image > seen\noutputs: [seen]\n", "\(d.root)/private", "job.yaml")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", job], timeout: 140)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        #expect(read("\(d.root)/private/output/seen") == "batchd-test image\n")
        let pool = try #require(try await rig.batch.pool("rpool"))
        let config = (pool["virtualMachineConfiguration"] as? [String: Any])?["containerConfiguration"] as? [String: Any]
        let logins = config?["containerRegistries"] as? [[String: String]]
        #expect(logins == [["registryServer": registry.server, "username": registry.user]], "\(String(describing: logins))")
        #expect(registry.log.lines.contains { $0.contains("\"GET /v2/batchd/private/manifests/1 HTTP/1.1\" 200") }, "the node pulled it")
        try await registry.expectPasswordNowhere(d)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a named pool made for one image refuses a job without it, saying how to fix it; an image no node can pull fails its job in plain words; a localhost/ image is refused at intake",
          .timeLimit(.minutes(4)))
    func containerPoolsRefuseAndFailPlainly() async throws {
        let (rig, d) = try await startedWithImage("  poolFailureGrace: 1s\n  pollMaxInterval: 1s\n")
        let boxed = try write("name: boxed\ncontainer: {image: \(Self.servedImage)}\npool: {id: cpool}\ntasks: [{id: a}]\ncommand: echo a > a.txt\noutputs: [a.txt]\n",
                              "\(d.root)/boxed", "job.yaml")
        let first = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", boxed])
        #expect(first.code == 0, "\(first.out)\n\(first.err)")
        let pool = try #require(try await rig.batch.pool("cpool"))
        let config = (pool["virtualMachineConfiguration"] as? [String: Any])?["containerConfiguration"] as? [String: Any]
        #expect(config?["type"] as? String == "dockerCompatible" && config?["containerImageNames"] as? [String] == [Self.servedImage], "\(pool)")

        let bare = try write("name: bare\npool: {id: cpool}\ntasks: [{id: b}]\ncommand: 'true'\n", "\(d.root)/bare", "job.yaml")
        let refused = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", bare])
        let bareJob = try #require(try await d.store().jobs(limit: 1).first)
        #expect(refused.code != 0 && bareJob.phase == .failed, "\(refused.out)")
        let why = bareJob.reason ?? ""
        #expect(why.contains("pool cpool runs tasks in containers") && why.contains("batchctl pool delete cpool"), "\(why)")

        let gone = try write("name: gone\ncontainer: {image: batchd.test/no-such-image:1}\ntasks: [{id: c}]\ncommand: 'true'\n",
                             "\(d.root)/gone", "job.yaml")
        let failed = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "120", gone])
        let goneJob = try #require(try await d.store().jobs(limit: 1).first)
        #expect(failed.code != 0 && goneJob.phase == .failed, "\(failed.out)")
        let words = "\(goneJob.reason ?? "") \(try await d.store().tasks(goneJob.id).map { $0.detail ?? "" })"
        #expect(words.contains("ContainerInvalidImage") && words.contains("check container.image"), "\(words)")

        let local = try write("name: mine\ncontainer: {image: localhost/batchd-test:1}\ntasks: [{id: m}]\ncommand: 'true'\n", "\(d.root)/mine", "job.yaml")
        let r = try await d.batchctl(["submit", "--backend", "azure", "--wait", "--timeout", "60", local])
        #expect(r.code != 0 && (r.out + r.err).contains("an image of this machine only; Azure's nodes cannot pull it"), "\(r.out)\(r.err)")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
