import BatchCore

/// A job's `container:` on a Slurm cluster: each element's run.sh runs the
/// command in the image with the engine the cluster's config names
/// (`slurm.containerEngine`), on the node, as the submitter. The image is
/// pulled on each node by its first task that needs it (no node is
/// reachable from the daemon to pull ahead); docs/containers.md.
public enum SlurmContainers {
    /// How an engine is called.
    public enum Family: Sendable, Equatable {
        /// podman or docker: `run --rm`, a named container stopped on SIGTERM.
        case oci
        /// apptainer or singularity: `exec` of a `docker://` image, a
        /// process of the task itself (no daemon, nothing to stop apart).
        case apptainer(variablePrefix: String)
    }

    /// The family of an engine named in the config, nil for one batchd does not know.
    public static func family(_ engine: String) -> Family? {
        switch engine.split(separator: "/").last.map(String.init) ?? "" {
        case "podman", "docker": return .oci
        case "apptainer": return .apptainer(variablePrefix: "APPTAINERENV_")
        case "singularity": return .apptainer(variablePrefix: "SINGULARITYENV_")
        default: return nil
        }
    }

    /// Why a job's container cannot run on this cluster, checked at intake.
    public static func refusal(_ c: ContainerSpec, _ settings: SlurmSettings) -> ManifestIssue? {
        if c.registry != nil {
            return ManifestIssue(line: nil, column: nil, field: "container.registry",
                                 message: "a registry's credentials are not given to Slurm nodes: the nodes pull as the task's submitter, who could read them",
                                 hint: "leave registry out for an image the nodes may pull without credentials, or run the job on the local or azure backend (docs/containers.md)")
        }
        if case .apptainer = family(settings.containerEngine), !c.options.isEmpty {
            return ManifestIssue(line: nil, column: nil, field: "container.options",
                                 message: "this cluster runs images with \(settings.containerEngine), which takes none of these options",
                                 hint: "leave options out; pool.cpusPerTask and pool.memory bound the task on Slurm")
        }
        return nil
    }

    /// What run.sh holds for one attempt: the variables, then the command in
    /// the image. `env` is every variable of the task; `passed` those that go
    /// into the container (the job's, the task's, BATCHD_*; not the node's
    /// PATH or HOME). Values reach the engine through its environment, never
    /// its command line. `name` names the container (podman, docker).
    static func runScript(header: String, env: [String: String], passed: Set<String>, command: String, container c: ContainerSpec,
                          settings: SlurmSettings, work: String, name: String, job: String, rootful: Bool) -> String {
        func q(_ s: String) -> String { ShellTemplate.quote(s, in: .bare) }
        let engine = ([settings.containerEngine] + settings.containerEngineOptions).map(q).joined(separator: " ")
        var out = header
        let prefix: String?
        if case .apptainer(let p) = family(settings.containerEngine) { prefix = p } else { prefix = nil }
        for (k, v) in env.sorted(by: { $0.key < $1.key }) {
            // apptainer passes APPTAINERENV_NAME in as NAME (with --cleanenv, nothing else).
            out += "export \(prefix.map { passed.contains(k) ? $0 + k : k } ?? k)=\(q(v))\n"
        }
        for (k, v) in settings.containerEnvironment.sorted(by: { $0.key < $1.key }) { out += "export \(k)=\(q(v))\n" }
        if prefix != nil {
            var args = ["exec", "--cleanenv", "--no-home", "--bind", "\(work):\(work)"]
            if c.workingDirectory == .task { args += ["--pwd", work] }
            let image = c.image.contains("://") ? c.image : "docker://\(c.image)"
            out += "exec \(engine) \((args + [image, "/bin/sh", "-c", command]).map(q).joined(separator: " "))\n"
            return out
        }
        var args = ["run", "--rm", "--name", name, "--label", "batchd.job=\(job)", "--volume", "\(work):\(work)"]
        if c.workingDirectory == .task { args += ["--workdir", work] }
        // Rootless podman maps the submitter to themselves, so what the task
        // writes in its directory is theirs; a root submitter is root.
        if !rootful { args.append("--userns=keep-id") }
        for k in passed.sorted() { args += ["--env", k] }
        args += settings.containerRunOptions + c.options.map(ContainerOptions.normalized)
        args += ["--entrypoint", "/bin/sh", c.image, "-c", command]
        // scancel and a timeout signal the job step: the engine's client
        // dies, not the container (conmon holds it); the trap stops it.
        out += """
            trap '\(engine.replacingOccurrences(of: "'", with: "'\\''")) rm --force --time 10 \(name) >/dev/null 2>&1' TERM INT HUP
            \(engine) \(args.map(q).joined(separator: " ")) &
            pid=$!
            wait "$pid"; status=$?
            while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done
            exit "$status"

            """
        return out
    }
}
