import BatchCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `secrets:` on Azure (issue 24): the value travels in the task's
/// environment settings, and lands nowhere of batchd's.
@Suite("Azure: secrets", .serialized)
struct AzureSecretsTests {
    @Test("a secret reaches the Azure task's environment, and is in neither the daemon's log (its HTTP trace at debug included), the state directory, nor batchctl's output")
    func secretReachesTheTaskOnly() async throws {
        let (rig, d) = try await AzureTests().started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/sec"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let value = "tok-\(UUID().uuidString)"
        try write("\(value)\n", dir, "token.txt")
        chmod("\(dir)/token.txt", 0o600)
        try write("""
            name: sec
            backend: azure
            secrets: {TOKEN: token.txt}
            command: "printf %s \\"$TOKEN\\" | sha256sum | cut -c1-64 > seen.txt"
            tasks: [{}]
            outputs: {patterns: [seen.txt], destination: out}
            """, dir, "job.yaml")
        let r = try await d.batchctl(["submit", "\(dir)/job.yaml", "--wait", "--timeout", "120"], timeout: 140)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        let hash = try await runProcess("/bin/sh", ["-c", "printf %s '\(value)' | sha256sum | cut -c1-64"])
        #expect(read("\(dir)/out/seen.txt") == hash.out, "the task's TOKEN was not the file's content")
        #expect(d.log.lines.contains { $0.contains("http request") }, "the HTTP trace was on")
        #expect(!d.log.lines.contains { $0.contains(value) }, "the secret is in the daemon's log")
        for file in HostileTests.files(under: d.state) {
            if let data = FileManager.default.contents(atPath: "\(d.state)/\(file)") {
                #expect(data.range(of: Data(value.utf8)) == nil, "the secret is in \(file)")
            }
        }
        let id = try #require(try await d.store().job("sec")).id
        for args in [["show", id], ["show", id, "--json"], ["logs", id, "0"], ["list", "--json"]] {
            let out = try await d.batchctl(args)
            #expect(!(out.out + out.err).contains(value), "batchctl \(args) shows the secret")
        }
        #expect(await d.signal(SIGTERM) == 0)
        _ = rig
    }
}
