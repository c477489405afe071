import BatchAccess
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs a backend's commands (Slurm's, a container engine's): each with
/// its arguments as separate words (no shell), a deadline, and the given
/// environment (SLURM_CONF and PATH included); as a job's submitter when
/// asked and the daemon may switch users (through `batchd-exec --run-as`),
/// so that munge vouches for them and Slurm's accounting, fair share and
/// limits see them.
public final class Commands: Sendable {
    /// What a command printed and how it ended.
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var ok: Bool { status == 0 }
        /// The first line of stderr, for a reason.
        public var why: String {
            let line = stderr.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            return line.isEmpty ? "exit status \(status)" : line
        }
    }

    let environment: [String: String]
    let timeout: Double
    /// The daemon's batchd-exec, which runs a command as another user.
    let switcher: String?

    public init(environment: [String: String], timeout: Double, switcher: String? = nil) {
        self.environment = environment
        self.timeout = timeout
        self.switcher = switcher
    }

    /// The path of `command` on the daemon's PATH, nil if it is not there.
    public func find(_ command: String) -> String? {
        if command.hasPrefix("/") { return access(command, X_OK) == 0 ? command : nil }
        for dir in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(command)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    /// Runs `command args...`; a command that cannot start or outlives the
    /// deadline ends with status 127 or 124 and says so in stderr.
    /// With `user` (another than the daemon's, which it may switch to), it
    /// runs as them.
    public func run(_ command: String, _ args: [String], as user: Submitter? = nil) async -> Output {
        guard let found = find(command) else {
            return Output(status: 127, stdout: "", stderr: "\(command) is not on the daemon's PATH")
        }
        let switched = user.flatMap(Identity.execArgument).flatMap { identity in switcher.map { ($0, identity) } }
        let path = switched?.0 ?? found
        let args = switched.map { ["--run-as", $0.1, "--", found] } .map { $0 + args } ?? args
        let environment = self.environment
        let timeout = self.timeout
        let signalAs = switched == nil ? nil : user?.uid
        return await withCheckedContinuation { (c: CheckedContinuation<Output, Never>) in
            Thread.detachNewThread {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: path)
                p.arguments = args
                p.environment = environment
                let out = Pipe(), err = Pipe()
                p.standardOutput = out
                p.standardError = err
                p.standardInput = FileHandle.nullDevice
                do { try p.run() } catch {
                    c.resume(returning: Output(status: 127, stdout: "", stderr: "\(command) could not start: \(error)"))
                    return
                }
                let timedOut = Atomic<Bool>(false)
                let pid = p.processIdentifier
                let timer = DispatchSource.makeTimerSource()
                timer.schedule(deadline: .now() + timeout)
                // (A command run as a submitter is theirs to signal.)
                timer.setEventHandler { timedOut.store(true, ordering: .relaxed); Identity.kill(pid, SIGKILL, as: signalAs) }
                timer.resume()
                let errData = Mutex<Data>(Data())
                let errDone = DispatchSemaphore(value: 0)
                let errHandle = err.fileHandleForReading
                Thread.detachNewThread {
                    let data = errHandle.readDataToEndOfFile()
                    errData.withLock { $0 = data }
                    errDone.signal()
                }
                let outData = out.fileHandleForReading.readDataToEndOfFile()
                errDone.wait()
                p.waitUntilExit()
                timer.cancel()
                if timedOut.load(ordering: .relaxed) {
                    c.resume(returning: Output(status: 124, stdout: "", stderr: "\(command) took longer than \(Int(timeout))s"))
                    return
                }
                c.resume(returning: Output(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                                           stderr: String(decoding: errData.withLock { $0 }, as: UTF8.self)))
            }
        }
    }
}
