import BatchAccess
import BatchSupport
import CLinux
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Starting, watching and stopping task processes.
public enum ProcessControl {
    /// Starts `argv` in a new session (so it leads its own process group and
    /// outlives the daemon), stdin from /dev/null, with exactly `env`. With
    /// `output`, stdout and stderr go to that file instead of being inherited
    /// (a long-lived child must not hold its parent's pipes open). With
    /// `fd3`, that descriptor is the child's descriptor 3.
    public static func spawnSession(_ argv: [String], env: [String: String], output: String? = nil, fd3: Int32? = nil) throws -> pid_t {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // POSIX_SPAWN_SETSID (glibc 2.26+) is 0x80; reset signal mask and dispositions.
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(0x80 | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let fd3 { posix_spawn_file_actions_adddup2(&actions, fd3, 3) }
        if let output {
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cenv: [UnsafeMutablePointer<CChar>?] = env.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cargs + cenv).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = cargs.withUnsafeBufferPointer { a in
            cenv.withUnsafeBufferPointer { e in
                posix_spawn(&pid, argv[0], &actions, &attr, a.baseAddress!, e.baseAddress!)
            }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        return pid
    }

    /// Whether a process exists and has not exited (a zombie waiting to be
    /// reaped counts as gone).
    public static func isAlive(_ pid: pid_t) -> Bool {
        // kill(0) and kill(-1) address groups or everyone, not one process.
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count else { return true }
        return stat[close + 2] != UInt8(ascii: "Z")
    }

    /// Sends a signal to a whole process group; false if none is left.
    /// With `uid` (a task's user, when another than the daemon's), it is
    /// sent as them too, so it reaches their processes and batchd-exec.
    @discardableResult
    public static func signalGroup(_ pgid: pid_t, _ sig: Int32, as uid: UInt32? = nil) -> Bool {
        Identity.kill(-pgid, sig, as: uid)
    }

    /// An event fired when process `pid` exits: it may be our child (it is
    /// reaped) or a process adopted after a restart. Every process is
    /// watched through a pidfd by one thread for the whole daemon.
    public static func exitEvent(_ pid: pid_t) -> AsyncEvent<Void> {
        let event = AsyncEvent<Void>()
        if ExitWatcher.shared.watch(pid, event) { return event }
        // No pidfd (old kernel): a thread looks every 50 ms.
        let thread = Thread {
            while isAlive(pid) && !isZombieReaped(pid) { usleep(50_000) }
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
            event.fire(())
        }
        thread.name = "batchd-wait-\(pid)"
        thread.start()
        return event
    }

    private static func isZombieReaped(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == pid
    }

    /// Whether `pid` is a batchd-exec supervising the attempt in `directory`
    /// (guards against a recycled pid after a reboot or a long outage).
    public static func isSupervisor(_ pid: pid_t, of directory: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.count >= 2 && args[0].hasSuffix("batchd-exec") && args[1] == directory
    }
}

/// Watches processes for their exit: one epoll instance over their pidfds
/// and one thread waiting on it, whatever the number of processes (a task
/// costs no thread of its own).
final class ExitWatcher: Sendable {
    static let shared = ExitWatcher()
    let epoll: Int32
    let watched = Mutex<[Int32: (pid: pid_t, event: AsyncEvent<Void>)]>([:])

    init() {
        epoll = batchd_epoll_create()
        guard epoll >= 0 else { return }
        let thread = Thread { [self] in run() }
        thread.name = "batchd-exits"
        thread.start()
    }

    /// Starts watching `pid`; false if it cannot be (no pidfd or epoll).
    func watch(_ pid: pid_t, _ event: AsyncEvent<Void>) -> Bool {
        guard epoll >= 0 else { return false }
        let fd = batchd_pidfd_open(pid)
        guard fd >= 0 else { return false }
        watched.withLock { $0[fd] = (pid, event) }
        guard batchd_epoll_add(epoll, fd) == 0 else {
            watched.withLock { _ = $0.removeValue(forKey: fd) }
            close(fd)
            return false
        }
        return true
    }

    func run() {
        var ready = [Int32](repeating: -1, count: 64)
        while true {
            let n = batchd_epoll_wait(epoll, &ready, 64, -1)
            if n < 0 { if errno == EINTR { continue }; usleep(10_000); continue }
            for fd in ready.prefix(Int(n)) {
                guard let entry = watched.withLock({ $0.removeValue(forKey: fd) }) else { continue }
                batchd_epoll_remove(epoll, fd)
                close(fd)
                var status: Int32 = 0
                _ = waitpid(entry.pid, &status, WNOHANG)
                entry.event.fire(())
            }
        }
    }
}
