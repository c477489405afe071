import BatchAccess
import BatchControl
import BatchCore
import BatchSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The container engine on this machine (podman or docker, as the config's
/// `containers:` says): the words of a task's `run`, and the image checks,
/// pulls and removals around it. Every call is argument words, never a
/// shell line; image names and options were checked at intake.
public struct ContainerEngine: Sendable {
    /// The config's section.
    public let config: ContainersConfig
    /// The engine's executable, found on the daemon's PATH.
    public let executable: String
    /// Whether containers are made by root (the daemon is root, or the
    /// engine is a rootful service reached with --remote/--url): a task can
    /// then run as any submitter (`--user`). A rootless engine can run only
    /// the daemon's own user's tasks (with `--userns=keep-id`).
    public let rootful: Bool
    /// The engine's environment: the daemon's PATH, HOME and XDG_RUNTIME_DIR,
    /// and the config's variables.
    public let environment: [String: String]
    /// The daemon's credentials directory (systemd's $CREDENTIALS_DIRECTORY),
    /// where a registry's `passwordCredential` is read.
    public let credentialsDirectory: String?
    /// Engine calls besides runs: quick ones (inspect, rm, ps) and pulls.
    let commands: Commands, pulls: Commands
    /// Whether it is podman (else docker).
    public var isPodman: Bool { (executable as NSString).lastPathComponent != "docker" }

    /// The engine the config names, when it is on `environment`'s PATH.
    public init?(_ config: ContainersConfig, environment daemonEnvironment: [String: String], pullTimeout: Double = 3600) {
        var env = daemonEnvironment.filter { ["PATH", "HOME", "XDG_RUNTIME_DIR", "TMPDIR", "LANG"].contains($0.key) }
        env.merge(config.environment) { _, configured in configured }
        let path = env["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        let found: String? = config.engine.hasPrefix("/")
            ? (access(config.engine, X_OK) == 0 ? config.engine : nil)
            : path.split(separator: ":").map { "\($0)/\(config.engine)" }.first { access($0, X_OK) == 0 }
        guard let found else { return nil }
        self.config = config
        executable = found
        environment = env
        rootful = geteuid() == 0 || config.engineOptions.contains { $0 == "--remote" || $0 == "-r" || $0.hasPrefix("--url") }
            || env["CONTAINER_HOST"] != nil || env["DOCKER_HOST"] != nil || (found as NSString).lastPathComponent == "docker"
        commands = Commands(environment: env, timeout: 60)
        pulls = Commands(environment: env, timeout: pullTimeout)
        credentialsDirectory = daemonEnvironment["CREDENTIALS_DIRECTORY"]
    }

    /// The container name of one attempt: unique, and found again after a
    /// restart (`rm` on cancel, the crash walk's checks).
    public static func containerName(job: String, task idx: Int, attempt: Int) -> String {
        "batchd-\(job)-\(idx)-\(attempt)"
    }

    /// Why the engine cannot run `submitter`'s tasks, or nil.
    public func refusal(for submitter: UInt32) -> String? {
        guard !rootful, submitter != geteuid() else { return nil }
        return "the container engine (\(executable)) is rootless: it can run only the daemon's own user's tasks, not uid \(submitter)'s. "
            + "Point containers.engineOptions at a rootful podman service the service user may use "
            + "([--remote, --url, unix:///run/podman/podman.sock]; docs/containers.md)"
    }

    /// The words of one task's run: the attempt's `work` directory mounted
    /// at the same path (and, by default, where the task starts); the task
    /// as its submitter; only the variables `names` passed (their values
    /// come from the engine's own environment, never the command line);
    /// the operator's run options, then the manifest's; `/bin/sh -c command`.
    public func runArguments(_ spec: ContainerSpec, name: String, job: String, work: String, user: (uid: UInt32, gid: UInt32, groups: [UInt32])?,
                             variables names: [String], command: String) -> [String] {
        var a = [executable] + config.engineOptions + ["run", "--rm", "--name", name, "--label", "batchd.job=\(job)", "--pull=never",
                                                       "--volume", "\(work):\(work)"]
        if spec.workingDirectory == .task { a += ["--workdir", work] }
        if rootful, let user {
            a += ["--user", "\(user.uid):\(user.gid)"] + user.groups.filter { $0 != user.gid }.flatMap { ["--group-add", "\($0)"] }
        } else if !rootful && isPodman {
            // Rootless: the daemon's own uid inside, so the task's files are its own.
            a += ["--userns=keep-id"]
        }
        for n in names.sorted() { a += ["--env", n] }
        a += config.runOptions + spec.options
        a += ["--entrypoint", "/bin/sh", spec.image, "-c", command]
        return a
    }

    /// Whether the engine holds `image` (nil when it cannot tell).
    public func hasImage(_ image: String) async -> Bool? {
        // podman's `image exists` answers 1 for no; docker's inspect does too.
        let ask = isPodman ? ["image", "exists", image] : ["image", "inspect", "--format", "{{.Id}}", image]
        let out = await commands.run(executable, config.engineOptions + ask)
        switch out.status {
        case 0: return true
        case 1: return false
        default: return nil
        }
    }

    /// Pulls `image`, with `registry`'s credentials when it has some; nil
    /// when done, else the engine's reason. The credentials reach the engine
    /// in an auth file of mode 0600 in a directory of the daemon's own
    /// (podman's `--authfile`, docker's `--config`), removed after the pull.
    public func pull(_ image: String, registry: ContainersConfig.Registry? = nil) async -> String? {
        var auth: String?
        let secret: String?
        do { secret = try registry.flatMap { try $0.password(in: credentialsDirectory) } } catch { return "the registry's credentials: \(error)" }
        if let registry, let password = secret {
            let user = registry.username ?? ""
            let token = Data("\(user):\(password)".utf8).base64EncodedString()
            var template = Array("\(NSTemporaryDirectory())/batchd-auth-XXXXXX".utf8CString)
            guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }) else {
                return "cannot make a private directory for the registry's credentials: \(String(cString: strerror(errno)))"
            }
            auth = dir
            // The server is HOST[:PORT] and the token base64: nothing in them needs escaping.
            let body = #"{"auths":{"# + "\"\(registry.server)\"" + #":{"auth":""# + token + #""}}}"#
            do { try FileOps.writeAtomically(body, to: isPodman ? "\(dir)/auth.json" : "\(dir)/config.json", mode: 0o600) } catch {
                try? FileManager.default.removeItem(atPath: dir)
                return "cannot write the registry's credentials for the engine: \(error)"
            }
        }
        defer { if let auth { try? FileManager.default.removeItem(atPath: auth) } }
        let words: [String]
        switch (auth, isPodman) {
        case (let dir?, true): words = config.engineOptions + ["pull", "--quiet", "--authfile", "\(dir)/auth.json", image]
        case (let dir?, false): words = ["--config", dir] + config.engineOptions + ["pull", "--quiet", image]
        case (nil, _): words = config.engineOptions + ["pull", "--quiet", image]
        }
        let out = await pulls.run(executable, words)
        return out.ok ? nil : out.why
    }

    /// Stops (after `grace` seconds) and removes the container `name`, if there is one.
    public func remove(_ name: String, grace: Double) async {
        let time = isPodman ? ["--time", "\(Int(grace.rounded(.up)))"] : []
        _ = await commands.run(executable, config.engineOptions + ["rm", "--force"] + time + [name])
    }

    /// The names of the containers of `job` still there (running or not).
    public func containers(of job: String) async -> [String]? {
        let out = await commands.run(executable, config.engineOptions + ["ps", "--all", "--filter", "label=batchd.job=\(job)", "--format", "{{.Names}}"])
        return out.ok ? out.stdout.split(whereSeparator: \.isNewline).map(String.init) : nil
    }

    /// Whether an image is one no registry serves (`localhost/…`): if the
    /// engine lacks it, nothing can pull it.
    public static func isLocalOnly(_ image: String) -> Bool {
        image.hasPrefix("localhost/")
    }
}
