import BatchAccess
import BatchBackend
import BatchCore
import BatchSupport
import CLinux
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One attempt to run, fully resolved.
public struct AttemptSpec: Sendable {
    /// The attempt's directory: stdout, stderr, status, pid and work/.
    public var directory: String
    /// The shell command.
    public var command: String
    /// The complete environment.
    public var env: [String: String]
    /// Blobs to place: content hash → path relative to work/.
    public var inputs: [(sha256: String, target: String)]
    /// Per-attempt time limit.
    public var timeout: Double?
    /// Paths the task must not reach at all (batchd-exec hides them with
    /// Landlock, except `directory` itself).
    public var hide: [String]
    /// Whom the task runs as (batchd-exec's `--user`), when not the daemon's
    /// own user: its work directory is shared with them, and its processes
    /// are signalled as them.
    public var user: Submitter?
    /// The job's secrets, read for this launch (held only until it starts).
    public var secrets: [String: String]
    /// The container the command runs in, when the job names an image:
    /// batchd-exec then runs the engine (as the daemon's user; the engine
    /// runs the task as its submitter), and `env` holds only the variables
    /// passed into the container.
    public var container: ContainerLaunch?
    /// Whom the attempt's processes are signalled as: the task's user, or
    /// the daemon's own (nil) when they are the engine's client.
    public var signalUID: UInt32? { container == nil ? user?.uid : nil }

    /// Creates a spec.
    public init(directory: String, command: String, env: [String: String], inputs: [(sha256: String, target: String)], timeout: Double?,
                hide: [String] = [], user: Submitter? = nil, secrets: [String: String] = [:]) {
        self.secrets = secrets
        self.directory = directory
        self.command = command
        self.env = env
        self.inputs = inputs
        self.timeout = timeout
        self.hide = hide
        self.user = user
    }
}

/// Runs task attempts as processes on this machine, each under batchd-exec in
/// its own session, and learns how they ended, also after a daemon restart.
public struct LocalRunner: Sendable {
    /// Path of the batchd-exec helper.
    public let execPath: String
    /// Where inputs come from.
    public let contents: ContentStore
    /// Time between SIGTERM and SIGKILL when stopping a task.
    public let killGrace: Double

    /// A runner.
    public init(execPath: String, contents: ContentStore, killGrace: Double) {
        self.execPath = execPath
        self.contents = contents
        self.killGrace = killGrace
    }

    /// Creates the attempt directory and places the inputs in work/.
    public func prepare(_ spec: AttemptSpec) throws {
        let work = "\(spec.directory)/work"
        // Three mkdirs in the usual case (task, attempt, work); the whole
        // path only when the job's directory is not there yet.
        let task = (spec.directory as NSString).deletingLastPathComponent
        if mkdir(task, 0o777) != 0 && errno != EEXIST {
            try FileOps.makeDirectory(work)
        } else if mkdir(spec.directory, 0o777) != 0 {
            // Left by a daemon that died before recording this attempt.
            try? FileManager.default.removeItem(atPath: spec.directory)
            try FileOps.makeDirectory(work)
        } else if mkdir(work, 0o777) != 0 {
            throw FileOpError(work, "cannot create the directory: \(String(cString: strerror(errno)))")
        }
        // Before the inputs, so directories made for them inherit it.
        if let user = spec.user { try Permission.shareWorkDirectory(work, with: user.uid) }
        for input in spec.inputs {
            let parts = input.target.split(separator: "/")
            guard !input.target.hasPrefix("/"), !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else {
                throw FileOpError(input.target, "an input may not be placed outside the task's directory")
            }
            try contents.place(input.sha256, at: "\(work)/\(input.target)")
        }
    }

    /// Starts the attempt; returns the supervisor's pid (also its process group).
    ///
    /// In a container, batchd-exec runs the engine's `run`, with no --user
    /// (the engine sets the task's user) and no --hide: the container sees
    /// only its image and the attempt's work directory, and Landlock would
    /// forbid the mounts the engine makes. The engine's environment is the
    /// operator's; the task's variables are added under their own names
    /// (none is one the engine reads: checked at intake).
    public func start(_ spec: AttemptSpec) throws -> pid_t {
        let options: [String], command: [String], env: [String: String]
        if let container = spec.container {
            (options, command) = ([], container.arguments)
            env = spec.env.merging(container.engine.environment) { _, engine in engine }
        } else {
            let user = spec.user.flatMap(Identity.execArgument).map { ["--user", $0] } ?? []
            (options, command, env) = (spec.hide.flatMap { ["--hide", $0] } + user, ["/bin/sh", "-c", spec.command], spec.env)
        }
        guard !spec.secrets.isEmpty else {
            return try ProcessControl.spawnSession([execPath, spec.directory] + options + ["--"] + command, env: env)
        }
        // The secrets go to batchd-exec through a memfd, its descriptor 3:
        // never in its own environment, arguments or a file.
        let block = Secrets.block(spec.secrets)
        let fd = block.withUnsafeBytes { batchd_memfd_with("batchd-secrets", $0.baseAddress, UInt($0.count)) }
        guard fd >= 0 else { throw FileOpError(spec.directory, "cannot pass the job's secrets: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        return try ProcessControl.spawnSession([execPath, spec.directory] + options + ["--secrets-fd", "3", "--"] + command, env: env, fd3: fd)
    }

    /// The outcome recorded in an attempt directory, if the supervisor wrote one.
    public static func recordedOutcome(_ directory: String) -> TaskOutcome? { AttemptFiles.recordedOutcome(directory) }

    /// The supervisor pid recorded in an attempt directory, if still running.
    public static func livePid(_ directory: String, recorded: Int?) -> pid_t? {
        var candidates: [pid_t] = []
        if let recorded { candidates.append(pid_t(recorded)) }
        if let p = AttemptFiles.recordedPid(directory) { candidates.append(p) }
        return candidates.first { ProcessControl.isSupervisor($0, of: directory) }
    }

    /// Waits for the attempt with supervisor `pid` to end, enforcing the
    /// remaining time limit and stopping it when `stop` fires.
    /// - Parameter remaining: seconds left of the timeout, nil for none.
    public func wait(pid: pid_t, spec: AttemptSpec, remaining: Double?, stop: AsyncEvent<StopReason>) async -> TaskOutcome {
        enum Ending: Sendable { case exited, timedOut, stopped(StopReason) }
        // The first of: the process exits, the time runs out, the job is
        // stopped. One continuation, no task per event.
        let first = AsyncEvent<Ending>()
        let exit = ProcessControl.exitEvent(pid)
        let exitToken = exit.observe { _ in first.fire(.exited) }
        let stopToken = stop.observe { first.fire(.stopped($0)) }
        let timer = remaining.map { remaining in
            Task {
                try? await Task.sleep(for: .seconds(max(0, remaining)))
                if !Task.isCancelled { first.fire(.timedOut) }
            }
        }
        let ending = await first.wait() ?? .exited
        timer?.cancel()
        exit.unobserve(exitToken)
        stop.unobserve(stopToken)
        switch ending {
        case .exited:
            ProcessControl.signalGroup(pid, SIGKILL, as: spec.signalUID)  // leftovers the command started in the background
            let outcome = Self.recordedOutcome(spec.directory) ?? .lost
            // The engine's client was killed (not the task): its container may live on.
            if let c = spec.container, outcome != .exited(code: 0) { await c.engine.remove(c.name, grace: 0) }
            return outcome
        case .timedOut:
            await terminate(pid, exit, spec)
            return .timedOut(seconds: spec.timeout ?? 0)
        case .stopped(let reason):
            await terminate(pid, exit, spec)
            return reason == .cancel ? .cancelled : .interrupted
        }
    }

    /// SIGTERM to the whole group, then SIGKILL after the grace period
    /// (as the task's user, when it is another's). A container is stopped
    /// and removed through the engine first (its processes are not in the
    /// group: the engine's monitor runs them).
    func terminate(_ pid: pid_t, _ exit: AsyncEvent<Void>, _ spec: AttemptSpec) async {
        if let c = spec.container { await c.engine.remove(c.name, grace: killGrace) }
        let uid = spec.signalUID
        ProcessControl.signalGroup(pid, SIGTERM, as: uid)
        let gone = await exit.wait(timeout: killGrace) != nil
        ProcessControl.signalGroup(pid, SIGKILL, as: uid)
        if !gone { _ = await exit.wait() }
    }
}
