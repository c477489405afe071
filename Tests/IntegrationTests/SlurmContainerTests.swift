import BatchCore
import Foundation
import Testing
import TestSupport

/// `container:` on Slurm (issue 25): the test cluster's node runs the image
/// with podman (slurm.containerEngine), as the submitter.
extension SlurmTests {
    /// A cluster and a daemon whose nodes' podman and local engine use the
    /// shipped containers.conf, with the tests' image made.
    func startedWithImage() async throws -> (SlurmTestCluster, DaemonHarness, SlurmShims) {
        let made = try await runProcess("/bin/bash", ["\(repoRoot)/scripts/container-image.sh", ContainerTests.conf], timeout: 300)
        #expect(made.code == 0, "the test image: \(made.err)")
        return try await started(slurm: "\n  containerEngine: podman\n  containerEnvironment: [CONTAINERS_CONF=\(ContainerTests.conf)]",
                                 extra: "containers: {environment: {CONTAINERS_CONF: \(ContainerTests.conf)}}")
    }

    @Test("the container wordcount on Slurm (podman on the node) gives the local backend's bytes; the task saw the image's files",
          .timeLimit(.minutes(4)))
    func containerWordcountMatchesLocal() async throws {
        let (cluster, d, _) = try await startedWithImage()
        let (local, slurm) = try await onLocalAndSlurm(d, "wordcount-container")
        #expect(local.count == 3 && slurm == local, "\(slurm.keys.sorted())")
        let inside = try write("""
            name: inside
            backend: slurm
            container: {image: \(AzureTests.servedImage)}
            env: {GREETING: hello}
            tasks: [{id: look}]
            command: "cat /etc/batchd-image > seen; echo $GREETING >> seen; test -e \(repoRoot)/Package.swift && echo HOST-REPO >> seen; true"
            outputs: [seen]
            """, "\(d.root)/inside", "job.yaml")
        let r = try await d.batchctl(["submit", inside, "--wait", "--timeout", "120"], timeout: 140)
        #expect(r.code == 0, "\(r.out)\n\(r.err)")
        #expect(read("\(d.root)/inside/output/seen") == "batchd-test image\nhello\n", "the image's file, the job's variable, none of the host's files")
        #expect(await d.signal(SIGTERM) == 0)
        _ = cluster
    }

    @Test("cancel of a Slurm job whose tasks run in containers stops them: none is left in podman ps -a", .timeLimit(.minutes(4)))
    func containerCancelLeavesNothing() async throws {
        let (cluster, d, _) = try await startedWithImage()
        let from = d.log.mark
        let id = try await submit(d, """
            name: held
            backend: slurm
            container: {image: \(AzureTests.servedImage)}
            tasks: {forEachInteger: {from: 1, to: 2}}
            command: "touch started-{i}; sleep 300"
            """, "held")
        try await d.log.wait(from: from, timeout: 60, "the job running") { $0.contains("job.phase=running") }
        let up = try await waitForContainers(id, count: 2)
        #expect(up, "two containers run")
        #expect(try await d.batchctl(["cancel", id]).code == 0)
        let w = try await d.batchctl(["wait", id, "--timeout", "120"], timeout: 140)
        #expect(w.code != 0)
        #expect(try await d.store().job(id)?.phase == .cancelled)
        #expect(try await waitForContainers(id, count: 0), "the containers are gone")
        #expect(await d.signal(SIGTERM) == 0)
        _ = cluster
    }

    /// Waits (at most 60 s) until podman lists `count` containers of job `id`.
    func waitForContainers(_ id: String, count: Int) async throws -> Bool {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let ps = try await ContainerTests.podman(["ps", "--all", "--filter", "label=batchd.job=\(id)", "--format", "{{.Names}}"])
            if ps.code == 0, ps.out.split(separator: "\n").count == count { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }
}
