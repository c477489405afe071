@testable import BackendSlurm
import BatchCore
import Foundation
import Testing

@Suite("Slurm run scripts for container jobs")
struct SlurmContainersTests {
    func settings(_ engine: String) -> SlurmSettings {
        var s = SlurmSettings()
        s.containerEngine = engine
        s.containerEnvironment = ["CONTAINERS_CONF": "/etc/b/containers.conf"]
        return s
    }

    func script(_ engine: String, _ c: ContainerSpec, rootful: Bool = false) -> String {
        SlurmContainers.runScript(header: "# t\n", env: ["PATH": "/usr/bin", "GREETING": "it's", "BATCHD_TASK_ID": "a"],
                                  passed: ["GREETING", "BATCHD_TASK_ID"], command: "echo \"$GREETING\" > out", container: c,
                                  settings: settings(engine), work: "/shared/j/tasks/0/work", name: "batchd-j-0-1", job: "j", rootful: rootful)
    }

    /// Runs `text` with /bin/sh -n (parse only): the quoting holds.
    func parses(_ text: String) throws -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-n", "-c", text]
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    @Test("podman: the container is named, mounts only the task's directory, gets the job's variables by name, and is stopped on SIGTERM")
    func podman() throws {
        let text = script("podman", ContainerSpec(image: "r.example/wc:1", options: ["--memory 1g"]))
        #expect(text.contains("export GREETING='it'\\''s'\n") && text.contains("export CONTAINERS_CONF=/etc/b/containers.conf\n"))
        #expect(text.contains("podman run --rm --name batchd-j-0-1 --label 'batchd.job=j' --volume /shared/j/tasks/0/work:/shared/j/tasks/0/work "
                              + "--workdir /shared/j/tasks/0/work '--userns=keep-id' --env BATCHD_TASK_ID --env GREETING '--memory=1g' "
                              + "--entrypoint /bin/sh r.example/wc:1 -c"), "\(text)")
        #expect(!text.contains("--env PATH") && !text.contains("--env CONTAINERS_CONF"), "the node's and the engine's own stay outside")
        #expect(text.contains("trap 'podman rm --force --time 10 batchd-j-0-1 >/dev/null 2>&1' TERM INT HUP"))
        #expect(try parses(text))
        #expect(!script("podman", ContainerSpec(image: "x"), rootful: true).contains("--userns"), "root is root")
    }

    @Test("apptainer: a docker:// image, nothing of the host's environment but what is passed in with APPTAINERENV_")
    func apptainer() throws {
        let text = script("/opt/apptainer/bin/apptainer", ContainerSpec(image: "r.example/wc:1", workingDirectory: .image))
        #expect(text.contains("export APPTAINERENV_GREETING='it'\\''s'\n") && text.contains("export PATH=/usr/bin\n"))
        #expect(text.contains("exec /opt/apptainer/bin/apptainer exec --cleanenv --no-home --bind /shared/j/tasks/0/work:/shared/j/tasks/0/work "
                              + "docker://r.example/wc:1 /bin/sh -c"), "\(text)")
        #expect(!text.contains("--pwd"), "the image's own working directory")
        #expect(try parses(text))
        #expect(script("singularity", ContainerSpec(image: "x")).contains("export SINGULARITYENV_GREETING="))
    }

    @Test("the config names a known engine; apptainer refuses engine options at intake; a registry is refused until credentials are built")
    func intake() {
        #expect(SlurmContainers.family("docker") == .oci && SlurmContainers.family("/usr/bin/podman") == .oci)
        #expect(SlurmContainers.family("runc") == nil && SlurmContainers.family("/bin/sh") == nil)
        #expect(SlurmContainers.refusal(ContainerSpec(image: "x", options: ["--memory=1g"]), settings("apptainer"))?.field == "container.options")
        #expect(SlurmContainers.refusal(ContainerSpec(image: "x", options: ["--memory=1g"]), settings("podman")) == nil)
        #expect(SlurmContainers.refusal(ContainerSpec(image: "x", registry: "mine"), settings("podman"))?.field == "container.registry")
    }
}
