import BatchControl
import BackendAzure
import BatchBackend
import BatchCore
import BatchHTTP
import BatchStore
import Foundation
import Testing
import TestSupport
import Glibc

/// What `show` and `watch` say while an Azure job moves bytes or retries a step.
extension AzureTests {
    @Test("a step retried through an outage shows in show and watch: what, why in plain words, how often, since when; and goes when it works")
    func retryingShows() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        _ = try await rig.admin("faults", ["outage_after": 0, "retry_after": 0.05, "error_status": 503])
        let dir = try copyExample(d, "wc")
        let from = d.log.mark
        #expect(try await d.batchctl(["submit", "--backend", "azure", "\(dir)/job.yaml"]).code == 0)
        try await d.log.wait(from: from, count: 2, timeout: 120, "the staging step retried twice") {
            $0.contains("azure step failed; will retry") && $0.contains("create the input container")
        }
        let shown = try await d.batchctl(["show", "wordcount"])
        #expect(shown.out.contains("retrying   create the input container: the service is busy (HTTP 503"), "\(shown.out)")
        #expect(shown.out.range(of: #"— [2-9]\d* tries since 20\d\d-"#, options: .regularExpression) != nil, "how often and since when: \(shown.out)")
        let json = try JSONSerialization.jsonObject(with: Data(try await d.batchctl(["show", "wordcount", "--json"]).out.utf8)) as? [String: Any]
        let retrying = try #require(json?["retrying"] as? [[String: Any]])
        #expect(retrying.count == 1 && retrying[0]["step"] as? String == "create the input container" && (retrying[0]["tries"] as? Int ?? 0) >= 2)
        // watch samples at once when it starts; one more failed try (at least
        // a second later) means it has seen the step retrying.
        let mark = d.log.mark
        async let watching = d.batchctl(["watch", "wordcount", "--json"], timeout: 300)
        try await d.log.wait(from: mark, timeout: 120, "one more retry") { $0.contains("azure step failed; will retry") }
        _ = try await rig.admin("faults", ["outage_after": -1])
        let watched = try await watching
        #expect(watched.code == 0, "the job succeeds once the outage ends: \(watched.err)")
        let samples = watched.out.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let seen = samples.compactMap { ($0["retrying"] as? [[String: Any]])?.first?["step"] as? String }
        #expect(seen.contains("create the input container"), "\(watched.out)")
        let after = try await d.batchctl(["show", "wordcount", "--json"])
        #expect(((try JSONSerialization.jsonObject(with: Data(after.out.utf8)) as? [String: Any])?["retrying"] as? [Any])?.isEmpty == true)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a large input's upload shows its bytes in show while it lasts, block by block")
    func uploadProgress() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  blockSize: 1MiB\n  concurrency: 1")
        let dir = "\(d.root)/big"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: "\(dir)/big.bin", contents: Data((0..<(12 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })))
        let manifest = try write("name: big\ninputs: [big.bin]\ntasks: [{id: a, command: 'wc -c big.bin'}]\n", dir, "job.yaml")
        // 12 blocks of 1 MiB, one at a time, each answered after 0.3 s: the
        // upload lasts about 4 s, and watch samples twice a second.
        _ = try await rig.admin("faults", ["latency": 0.3])
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        let watched = try await d.batchctl(["watch", "big", "--json"], timeout: 300)
        #expect(watched.code == 0, "\(watched.err)")
        let staged = watched.out.split(separator: "\n").compactMap { line -> (Int, Int)? in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  o["state"] as? String == "staging", let b = o["inputBytes"] as? [String: Any],
                  let staged = b["staged"] as? Int, let total = b["total"] as? Int else { return nil }
            return (staged, total)
        }
        let partial = staged.filter { $0.0 > 0 && $0.0 < $0.1 }
        #expect(!partial.isEmpty, "a partial upload was shown: \(staged)")
        #expect(partial.allSatisfy { $0.1 == 12 << 20 && $0.0 % (1 << 20) == 0 }, "whole blocks of the whole: \(partial)")
        let shown = try JSONSerialization.jsonObject(with: Data(try await d.batchctl(["show", "big", "--json"]).out.utf8)) as? [String: Any]
        #expect(((shown?["transfer"] as? [String: Any])?["inputs"] as? [String: Any])?["bytesUploaded"] as? Int == 12 << 20)
        #expect(await d.signal(SIGTERM) == 0)
    }

    @Test("a large output's download shows its bytes in watch while it lasts, block by block, and the total in show")
    func downloadProgress() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s\n  blockSize: 1MiB\n  concurrency: 1")
        let dir = "\(d.root)/bigout"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let manifest = try write("""
            name: bigout
            tasks: [{id: a, command: 'head -c 12582912 /dev/zero | tr "\\\\0" x > big.out'}]
            outputs: [big.out]
            """, dir, "job.yaml")
        // 12 ranges of 1 MiB, one at a time, each answered after 0.3 s: the
        // download lasts about 4 s, and watch samples twice a second.
        _ = try await rig.admin("faults", ["latency": 0.3])
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        let watched = try await d.batchctl(["watch", "bigout", "--json"], timeout: 300)
        #expect(watched.code == 0, "\(watched.err)")
        let seen = watched.out.split(separator: "\n").compactMap { line -> (Int, Int)? in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let b = o["downloadBytes"] as? [String: Any], let size = b["underWay"] as? Int, let got = b["received"] as? Int, size > 0 else { return nil }
            return (got, size)
        }
        let partial = seen.filter { $0.0 > 0 && $0.0 < $0.1 }
        #expect(!partial.isEmpty, "a partial download was shown: \(seen)")
        #expect(partial.allSatisfy { $0.1 == 12 << 20 && $0.0 % (1 << 20) == 0 }, "whole blocks of the whole: \(partial)")
        #expect(read("\(dir)/output/big.out")?.utf8.count == 12 << 20)
        let shown = try await d.json(["show", "bigout"])
        let downloads = (shown["transfer"] as? [String: Any])?["downloads"] as? [String: Any]
        #expect((downloads?["bytes"] as? Int ?? 0) >= 12 << 20, "\(String(describing: downloads))")
        #expect((downloads?["underWay"] as? [String: Any])?["bytes"] as? Int == 0)
        #expect(await d.signal(SIGTERM) == 0)
        withExtendedLifetime(rig) {}
    }
}
