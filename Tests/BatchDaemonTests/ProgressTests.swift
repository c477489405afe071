import Foundation
import BatchControl
import BatchCore
import BatchDaemon
import BatchStore
import BackendAzure
import BackendSlurm
import Testing

@Suite("batchctl watch rendering")
struct ProgressTests {
    @Test func barFillsWithTheDoneShare() {
        let p = Progress(counts: TaskCounts(pending: 90, running: 10, succeeded: 95, failed: 5), phase: .running, rate: 12.5)
        #expect(p.percent == 50)
        #expect(p.bar(width: 10) == "[=====>    ]  50%  100/200 done · 10 running · 5 failed · 13/s · ETA 8s · running")
    }

    @Test func finishedJobIsFullWithoutETA() {
        let p = Progress(counts: TaskCounts(succeeded: 3), phase: .succeeded, rate: 2)
        #expect(p.bar(width: 4) == "[====] 100%  3/3 done · 0 running · 2.0/s · succeeded")
        #expect(p.eta == nil)
    }

    @Test func noRateYet() {
        let p = Progress(counts: TaskCounts(pending: 4), phase: .staging, rate: nil)
        #expect(p.details == "0/4 done · 0 running · staging")
    }

    @Test func downloadsUnderWayShowTheirBytes() {
        var p = Progress(counts: TaskCounts(running: 1, succeeded: 1), phase: .running, rate: nil)
        p.downloading = (0, 0)
        #expect(!p.details.contains("outputs"), "nothing under way")
        p.downloading = (12 << 20, 5 << 20)
        #expect(p.details == "1/2 done · 1 running · outputs 5.0 MiB/12.0 MiB · running")
    }

    @Test func stagingToACloudStoreShowsBytes() {
        var p = Progress(counts: TaskCounts(pending: 4), phase: .staging, rate: nil)
        p.stagedBytes = 3 << 20
        p.totalBytes = 12 << 20
        #expect(p.details == "0/4 done · 0 running · inputs 3.0 MiB/12.0 MiB · staging")
        p.phase = .running
        #expect(!p.details.contains("inputs"), "bytes matter only while staging")
        #expect(Progress.bytes(512) == "512 B" && Progress.bytes(1536) == "1.5 KiB")
    }
}

@Suite("Daemon config")
struct DaemonConfigTests {
    @Test func defaultsAndRelativePaths() throws {
        let c = try DaemonConfig.parse("stateDirectory: s\nlocal: {slots: 3, killGrace: 5s}\n", file: "c.yaml", directory: "/etc/x")
        #expect(c.stateDirectory == "/etc/x/s")
        #expect(c.inboxDirectory == "/etc/x/s/inbox")
        #expect(c.local.killGrace == 5)
        #expect(c.slotCount(cores: 16) == 3)
        #expect(DaemonConfig().slotCount(cores: 16) == 16)
        #expect(c.shutdownGrace == 30)
    }

    /// The Azure backend's section, as the backend decodes it.
    func azure(_ text: String) throws -> AzureSettings {
        try AzureSettings(DaemonConfig.parse(text, file: "c.yaml", directory: "/").sections["azure"])
    }

    @Test func azureSection() throws {
        let c = try azure("""
            azure:
              owner: lab-7
              blockSize: 8MiB
              concurrency: 6
              tokenMargin: 2h
              pollMaxInterval: 1m
              deleteOrphans: true
            """)
        #expect(c.owner == "lab-7" && c.blockSize == 8 << 20 && c.concurrency == 6)
        #expect(c.tokenMargin == 7200 && c.pollMaxInterval == 60 && c.deleteOrphans)
        #expect(try AzureSettings(nil).inputContainer == "batchd-inputs")
        #expect {
            try azure("azure:\n  blockSize: 1KiB\n")
        } throws: { "\($0)".contains("c.yaml:2: azure.blockSize: expected a size between 64KiB and 4000MiB") }
        #expect {
            try azure("azure:\n  inputContainer: Inputs_1\n")
        } throws: { "\($0)".contains("azure.inputContainer: not a valid container name") }
        #expect {
            try azure("azure:\n  delteOrphans: true\n")
        } throws: { "\($0)".contains("did you mean 'deleteOrphans'?") }
    }

    /// The configs the repository ships (the installed one first: a fresh
    /// install starts with it) parse as they are. The installed config once
    /// shipped `sharedDirectory: ""`, which the parser refused, so a fresh
    /// system service never started.
    @Test func shippedConfigsParse() throws {
        let etc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../etc/batchd").standardizedFileURL.path
        for name in ["batchd.yaml", "batchd.user.yaml", "dev.yaml"] {
            let c = try DaemonConfig.load(path: "\(etc)/\(name)")
            let slurm = try SlurmSettings(c.sections["slurm"])
            _ = try AzureSettings(c.sections["azure"])
            #expect(Set(c.sections.keys).isSubset(of: ["azure", "slurm"]), "\(name): \(c.sections.keys.sorted())")
            #expect(slurm.sharedDirectory.isEmpty || slurm.sharedDirectory.hasPrefix("/"), "\(name)")
        }
        let installed = try DaemonConfig.load(path: "\(etc)/batchd.yaml")
        #expect(try SlurmSettings(installed.sections["slurm"]).sharedDirectory == "", "empty leaves the Slurm backend off")
        #expect(installed.stateDirectory == "/var/lib/batchd" && installed.inboxDirectory == "/var/lib/batchd/inbox")
        #expect {
            try SlurmSettings(DaemonConfig.parse("slurm:\n  sharedDirectory: shared\n", file: "c.yaml", directory: "/").sections["slurm"])
        } throws: { "\($0)".contains("c.yaml:2: slurm.sharedDirectory: expected an absolute path") }
    }

    @Test func typoIsNamedWithASuggestion() {
        #expect {
            try DaemonConfig.parse("stateDirectroy: /x\n", file: "c.yaml", directory: "/")
        } throws: { "\($0)" == "c.yaml:1: stateDirectroy: unknown key 'stateDirectroy' (did you mean 'stateDirectory'?)" }
    }

    @Test("containers: is read whole, and a wrong engine, registry host, credential name or variable name is named with its line")
    func containersSection() throws {
        let c = try DaemonConfig.parse("""
            containers:
              engine: /usr/bin/podman
              engineOptions: [--remote, --url, "unix:///run/podman/podman.sock"]
              environment: {CONTAINERS_CONF: /etc/batchd/containers.conf}
              runOptions: [--memory=4g]
              registries:
                acr: {server: "myregistry.azurecr.io:443", username: pull, passwordCredential: acr-password}
            """, file: "c.yaml", directory: "/")
        #expect(c.containers.engine == "/usr/bin/podman" && c.containers.engineOptions.count == 3 && c.containers.runOptions == ["--memory=4g"])
        #expect(c.containers.environment == ["CONTAINERS_CONF": "/etc/batchd/containers.conf"])
        #expect(c.containers.registries["acr"] == .init(server: "myregistry.azurecr.io:443", username: "pull", passwordCredential: "acr-password"))
        let cases = [
            ("containers:\n  engine: runc\n", "c.yaml:2: containers.engine: 'runc' is neither podman nor docker"),
            ("containers:\n  registries:\n    acr: {server: \"a b\"}\n", "c.yaml:3: containers.registries.acr.server: 'a b' is not a registry host"),
            ("containers:\n  registries:\n    acr: {server: \"host/path\"}\n", "c.yaml:3: containers.registries.acr.server: 'host/path' is not a registry host"),
            ("containers:\n  registries:\n    acr: {server: x.io, passwordCredential: ../key}\n",
             "c.yaml:3: containers.registries.acr.passwordCredential: '../key' is not a credential name"),
            ("containers:\n  environment: {1BAD: x}\n", "c.yaml:2: containers.environment.1BAD: not a variable name"),
            ("containers:\n  enigne: podman\n", "c.yaml:2: containers.enigne: unknown key (did you mean 'engine'?)"),
        ]
        for (text, said) in cases {
            #expect { try DaemonConfig.parse(text, file: "c.yaml", directory: "/") } throws: { "\($0)".hasPrefix(said) }
        }
    }
}

/// What `watch` follows of a job while it is provisioned: the backend's
/// summary lines (a local job's image being pulled), and only then.
@Suite("watch: the backend's activity while provisioning")
struct ActivityTests {
    @Test("the summary's lines are the snapshot's activity while the job provisions, and gone once it runs")
    func activityWhileProvisioning() async throws {
        let dir = NSTemporaryDirectory() + "batchd-activity-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store(path: "\(dir)/batchd.db", clock: { 1000 })
        var m = Manifest(name: "img", tasks: .list([TaskEntry(command: "true")]))
        m.container = ContainerSpec(image: "localhost/tools:1")
        let record = JobRecord(id: "J1", phase: .accepted, sourceFile: "img.yaml", manifestPath: "/m", taskCount: 1, createdAt: 1, updatedAt: 1,
                               spec: JobSpec(m, backend: BackendKind(rawValue: "local"), baseDirectory: "/b", destination: "/d", submitterUID: 0, sharedInputs: []))
        try await store.insertJob(record, tasks: [TaskSpec(index: 0, id: "t0", command: "true", env: [:], inputs: [])])
        try await store.setPhase("J1", JobState(phase: .provisioning))
        #expect(try await JobSnapshot.read(store, "J1")?.activity == nil, "nothing said yet")
        try await store.setBackendRecord("J1", "summary", BackendSummary(lines: [.init("image", "localhost/tools:1 (pulling)")], fields: ["image": "x"]))
        let pulling = try #require(try await JobSnapshot.read(store, "J1"))
        #expect(pulling.activity == ["image localhost/tools:1 (pulling)"])
        try await store.setBackendRecord("J1", "summary", BackendSummary(lines: [.init("image", "localhost/tools:1 (pulled in 3.0 s)")], fields: ["image": "x"]))
        let pulled = try #require(try await JobSnapshot.read(store, "J1"))
        #expect(pulled.activity == ["image localhost/tools:1 (pulled in 3.0 s)"] && pulled.version != pulling.version, "a change is a new version")
        try await store.setPhase("J1", JobState(phase: .running))
        #expect(try await JobSnapshot.read(store, "J1")?.activity == nil)
    }
}
