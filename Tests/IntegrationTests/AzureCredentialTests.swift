import BatchCore
import Foundation
import Testing
import TestSupport

extension AzureTests {
    @Test("an Entra token the service refuses before its time (401, expired) is dropped and fetched anew, once; the job goes on")
    func expiredTokenIsFetchedAgain() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s", entra: true)
        let dir = "\(d.root)/token"
        let gate = "\(dir)/gate"
        let id = try await submitRunning(d, "token", tasks: [Self.gated("only", dir, gate: gate)], started: ["only"])
        let fetched = try await rig.requests("token")
        #expect(((try await rig.admin("tokens", ["expire": true]))["expired"] as? Int ?? 0) >= 1)
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(read("\(dir)/output/out-only.txt") == "only\n")
        #expect(try await rig.requests("token") == fetched + 1, "one new token, fetched after the 401")
        let statuses = (try await rig.admin("stats"))["statuses"] as? [String: [String: Int]] ?? [:]
        #expect(statuses.values.contains { ($0["401"] ?? 0) > 0 }, "the service did refuse the old token: \(statuses)")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("credentials Azure keeps refusing (a rotated client secret) show on the job while it waits, then fail it after azure.authFailureLimit, with the fix")
    func lastingRefusalFailsTheJob() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  authFailureLimit: 3s", entra: true)
        let dir = "\(d.root)/rotated"
        let id = try await submitRunning(d, "rotated", tasks: [Self.gated("only", dir, gate: "\(dir)/never")], started: ["only"])
        // The secret is rotated, and the tokens issued with the old one revoked.
        let from = d.log.mark
        _ = try await rig.admin("clients", ["tenant": AzureRig.tenant, "client_id": AzureRig.clientID, "client_secret": "rotated-elsewhere"])
        _ = try await rig.admin("tokens", ["revoke": true])
        try await d.log.wait(from: from, timeout: 30, "the refusal noticed") { $0.contains("Azure refused batchd's credentials") }
        let shown = try await d.json(["show", id, "--json"])
        let retrying = (shown["retrying"] as? [[String: Any]] ?? []).map { "\($0)" }.joined()
        #expect(retrying.contains("refused batchd's credentials") || retrying.contains("Entra ID refused"), "\(shown)")
        // Failed once the limit passed; its stop then waits for working
        // credentials (nothing may be left running on Azure), so they come back.
        try await d.log.wait(from: from, timeout: 60, "the job failed") { $0.contains("azure.authFailureLimit") }
        _ = try await rig.admin("clients", ["tenant": AzureRig.tenant, "client_id": AzureRig.clientID, "client_secret": AzureRig.clientSecret])
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code != 0)
        let reason = try #require(try await d.store().job(id)?.reason)
        #expect(reason.contains("Entra ID refused the client credentials") && reason.contains("AZURE_CLIENT_SECRET"), "\(reason)")
        #expect(!reason.contains(AzureRig.clientSecret) && !d.log.lines.joined().contains(AzureRig.clientSecret), "no secret in words kept")
        let pools = try await rig.batch.pools().filter { $0["state"] as? String == "active" }
        #expect(pools.isEmpty, "its auto-pool was deleted once batchd could: \(pools.map { $0["id"] ?? "" })")
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("Shared Key requests Azure refuses for this machine's clock (20 minutes off) show how far off it is; the job goes on once it is right")
    func skewedClockIsNamed() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/skew"
        let gate = "\(dir)/gate"
        let id = try await submitRunning(d, "skew", tasks: [Self.gated("only", dir, gate: gate)], started: ["only"])
        let from = d.log.mark
        _ = try await rig.admin("faults", ["clock_offset": 1200])
        try await d.log.wait(from: from, timeout: 30, "the refusal noticed") { $0.contains("Azure refused batchd's credentials") }
        let shown = try await d.batchctl(["show", id])
        #expect(shown.out.contains("clock is 20m behind Azure's") || shown.out.contains("clock is 19m"), "\(shown.out)")
        _ = try await rig.admin("faults", ["clock_offset": 0])
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)")
        #expect(await d.signal(SIGTERM) == 0)
    }
}
