import BatchCore
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A real image registry on loopback (Debian's docker-registry, the CNCF
/// distribution registry) that wants a user name and password, holding the
/// tests' image as `127.0.0.1:PORT/batchd/private:1`.
final class TestRegistry: @unchecked Sendable {
    let root: String
    let port: Int
    let user = "puller"
    let password = "pw-\(UInt64.random(in: 1...UInt64.max))"
    let log = LineLog()
    private let process = Process()
    var server: String { "127.0.0.1:\(port)" }
    var image: String { "\(server)/batchd/private:1" }
    /// A registries.conf that lets the engine speak plain HTTP to it.
    var registriesConf: String { "\(root)/registries.conf" }

    init() async throws {
        root = NSTemporaryDirectory() + "batchd-registry-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        port = SlurmTestCluster.freePortPair()
        let hashed = try await runProcess("/usr/bin/htpasswd", ["-Bbc", "\(root)/htpasswd", user, password])
        guard hashed.code == 0 else { throw HarnessError(description: "htpasswd: \(hashed.err)") }
        try """
            version: 0.1
            log: {level: info}
            storage: {filesystem: {rootdirectory: \(root)/data}}
            http: {addr: "127.0.0.1:\(port)", secret: test-only}
            auth: {htpasswd: {realm: batchd-test, path: \(root)/htpasswd}}
            """.write(toFile: "\(root)/config.yml", atomically: true, encoding: .utf8)
        try "[[registry]]\nlocation = \"\(server)\"\ninsecure = true\n".write(toFile: registriesConf, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
        process.arguments = ["serve", "\(root)/config.yml"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        drainPipe(pipe.fileHandleForReading, onData: { [log] in log.append($0) }, onEnd: {})
        try process.run()
        try await log.wait(timeout: 30, "the registry listening") { $0.contains("listening on") }
        // The tests' image, pushed with the credentials (the test's own podman).
        let push = try await runProcess("/usr/bin/env", ["CONTAINERS_CONF=\(ContainerTests.conf)", "podman", "push", "--tls-verify=false",
                                                         "--creds", "\(user):\(password)", AzureTests.servedImage, image], timeout: 120)
        guard push.code == 0 else { throw HarnessError(description: "podman push: \(push.err)") }
    }

    /// Removes the image from the engine, so the next job must pull it.
    func forget() async throws {
        _ = try await ContainerTests.podman(["rmi", "--force", image])
        #expect(try await ContainerTests.podman(["image", "exists", image]).code == 1)
    }

    /// Writes the password, as LoadCredential= would, into a credentials
    /// directory under `root` as `name`; the directory.
    func credentials(under root: String, name: String = "private-registry", password: String? = nil) throws -> String {
        let dir = "\(root)/credentials"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try ((password ?? self.password) + "\n").write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
        return dir
    }

    /// Expects the password nowhere `d` writes: its log, its state
    /// directory (the database and its WAL among it).
    func expectPasswordNowhere(_ d: DaemonHarness) async throws {
        #expect(!d.log.lines.joined().contains(password))
        let grep = try await runProcess("/bin/grep", ["-r", "-l", "-F", password, d.state])
        #expect(grep.code == 1, "found in: \(grep.out)")
    }

    /// The daemon's `containers:` for this registry, named `private`.
    var config: String {
        """
        containers:
          environment: {CONTAINERS_CONF: \(ContainerTests.conf), CONTAINERS_REGISTRIES_CONF: \(registriesConf)}
          registries:
            private: {server: "\(server)", username: \(user), passwordCredential: private-registry}
        """
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

@Suite("Container images from a registry that wants credentials", .serialized)
struct RegistryTests {
    /// A daemon whose engine knows `registry` as `private`, its password in
    /// the daemon's credentials directory (as LoadCredential= gives it).
    func daemon(_ registry: TestRegistry, password: String? = nil) async throws -> DaemonHarness {
        let made = try await runProcess("/bin/bash", ["\(repoRoot)/scripts/container-image.sh", ContainerTests.conf], timeout: 300)
        #expect(made.code == 0, "the test image: \(made.err)")
        let d = try DaemonHarness(extra: registry.config)
        try await d.start(environment: ["CREDENTIALS_DIRECTORY": try registry.credentials(under: d.root, password: password)])
        return d
    }

    func job(_ d: DaemonHarness, _ name: String, _ container: String) throws -> String {
        try write("name: \(name)\ncontainer: \(container)\ntasks: [{id: look}]\ncommand: cat /etc/batchd-image > seen\noutputs: [seen]\n",
                  "\(d.root)/\(name)", "job.yaml")
    }

    @Test("a private image is pulled with the configured registry's credentials, named or found by its server; the password is nowhere batchd writes",
          .timeLimit(.minutes(4)))
    func pulledWithCredentials() async throws {
        let registry = try await TestRegistry()
        let d = try await daemon(registry)
        for (name, container) in [("named", "{image: \"\(registry.image)\", registry: private}"), ("found", "{image: \"\(registry.image)\"}")] {
            try await registry.forget()
            let r = try await d.batchctl(["submit", try job(d, name, container), "--wait", "--timeout", "120"], timeout: 140)
            #expect(r.code == 0, "\(name): \(r.out)\n\(r.err)")
            #expect(read("\(d.root)/\(name)/output/seen") == "batchd-test image\n", "\(name)")
            let show = try await d.batchctl(["show", name])
            #expect(show.out.contains("pulled in"), "\(show.out)")
        }
        // Each job pulled from the registry, which answers nothing without the credentials.
        let pulls = registry.log.lines.filter { $0.contains("\"GET /v2/batchd/private/manifests/1 HTTP/1.1\" 200") }
        #expect(pulls.count == 2, "\(registry.log.lines.suffix(20))")
        try await registry.expectPasswordNowhere(d)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a wrong password fails the job with the registry's refusal; an image of another host under a named registry, or a credential that is not there, is refused at intake",
          .timeLimit(.minutes(4)))
    func refusedPlainly() async throws {
        let registry = try await TestRegistry()
        let d = try await daemon(registry, password: "not-the-password")
        try await registry.forget()
        let r = try await d.batchctl(["submit", try job(d, "wrong", "{image: \"\(registry.image)\", registry: private}"), "--wait", "--timeout", "120"],
                                     timeout: 140)
        let failed = try #require(try await d.store().jobs(limit: 1).first)
        #expect(r.code != 0 && failed.phase == .failed, "\(r.out)")
        #expect((failed.reason ?? "").contains("could not be pulled") && (failed.reason ?? "").lowercased().contains("unauthorized"), "\(failed.reason ?? "")")
        let elsewhere = try await d.batchctl(["submit", try job(d, "elsewhere", "{image: \"\(AzureTests.servedImage)\", registry: private}"),
                                              "--wait", "--timeout", "60"])
        #expect(elsewhere.code != 0 && (elsewhere.out + elsewhere.err).contains("is not on registry 'private' (\(registry.server))"),
                "\(elsewhere.out)\(elsewhere.err)")
        try FileManager.default.removeItem(atPath: "\(d.root)/credentials/private-registry")
        let missing = try await d.batchctl(["submit", try job(d, "missing", "{image: \"\(registry.image)\", registry: private}"),
                                            "--wait", "--timeout", "60"])
        #expect(missing.code != 0 && (missing.out + missing.err).contains("'private-registry' is not in the daemon's credentials directory"),
                "\(missing.out)\(missing.err)")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
