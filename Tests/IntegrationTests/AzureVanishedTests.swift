import BatchCore
import Foundation
import Testing
import TestSupport

extension AzureTests {
    @Test("a task deleted from its Batch job behind batchd's back is lost, added again under its id, and runs again free (retries: 0)")
    func vanishedIsFree() async throws {
        let (rig, d) = try await started("azure:\n  pollMinInterval: 0.2s")
        let dir = "\(d.root)/vanish"
        let (first, second) = ("\(dir)/first-run", "\(dir)/second-run")
        // `only` runs until it is deleted, then again; `keeper` keeps the
        // Batch job active until the second run is over (at most 120 s),
        // in the node's other slot.
        let manifest = try write("""
            name: vanish
            retries: 0
            pool: {dedicatedNodes: 1, slotsPerNode: 2}
            tasks:
              - {id: only, command: "if [ -e \(first) ]; then echo again > out-only.txt; touch \(second); else touch \(first); sleep 300; fi"}
              - {id: keeper, command: "i=0; while [ ! -e \(second) ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; echo kept > out-keeper.txt"}
            outputs: {patterns: ['out-*.txt'], destination: output}
            """, dir, "job.yaml")
        #expect(try await d.batchctl(["submit", "--backend", "azure", manifest]).code == 0)
        #expect(await waitForFiles([first], timeout: 60), "the first run started")
        let job = try #require(try await d.store().jobs(limit: 1).first)
        let from = d.log.mark
        #expect(try await rig.batch.deleteTask("batchd-\(job.id)", "only"))
        try await d.log.wait(from: from, timeout: 60, "the vanished task noticed") { $0.contains("task vanished from its Batch job") }
        let w = try await d.batchctl(["wait", job.id, "--timeout", "120"], timeout: 140)
        #expect(w.code == 0, "\(w.out)\n\(w.err)\n\(d.log.lines.dropFirst(from).filter { !$0.contains("poll") }.suffix(40).joined(separator: "\n"))")
        let attempts = try await d.store().attempts(job.id).filter { $0.idx == 0 }.sorted { $0.attempt < $1.attempt }
        #expect(attempts.map(\.outcome) == [.lost, .exited], "\(attempts)")
        #expect(attempts.first?.counted == false, "a lost attempt uses no retry")
        #expect(read("\(dir)/output/out-only.txt") == "again\n" && read("\(dir)/output/out-keeper.txt") == "kept\n")
        let logs = try await d.batchctl(["logs", job.id, "only"])
        #expect(logs.out.contains("attempt 2 of 2"), "the second run is the task's second attempt: \(logs.out)\n\(logs.err)")
        #expect(await d.signal(SIGTERM) == 0)
        withExtendedLifetime(rig) {}
    }
}
