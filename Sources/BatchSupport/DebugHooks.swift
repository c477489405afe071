import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Test hooks that make the daemon die at a chosen point, as a crash would,
/// so tests can prove what a crash there leaves behind. Off unless the
/// daemon config sets `debug.crashMarker` (docs/testing.md); never on in
/// production.
public enum Debug {
    static let marker = Mutex<String?>(nil)

    /// Turns the hooks on: any crash point whose subject contains `text`
    /// kills the process. Empty turns them off.
    public static func setCrashMarker(_ text: String) {
        marker.withLock { $0 = text.isEmpty ? nil : text }
    }

    /// Kills this process with SIGKILL (nothing cleans up, as with a power
    /// cut or the OOM killer) when the hooks are on and `subject` holds the
    /// marker. `point` names the place: `parse`, `start`, `collect`.
    public static func crashPoint(_ point: String, _ subject: String) {
        guard let m = marker.withLock({ $0 }), subject.contains(m) else { return }
        let text = "batchd: debug.crashMarker: dying at \(point)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        kill(getpid(), SIGKILL)
    }
}

/// Named crash points at the step boundaries of the backend port: after a
/// step's intent is recorded, after its side effect, after its result is
/// recorded (docs/testing.md lists them). Armed only by `debug.crashAt` in a
/// test configuration; the crash-point walk arms each in turn, SIGKILLs the
/// daemon there, restarts it and checks what the crash left. With
/// `debug.crashTrace` the daemon also writes each point's name to a file
/// every time it passes it, so the walk learns the points of every backend
/// (and how often each is passed) from a clean run instead of from a list
/// that could go stale.
public enum CrashPoints {
    struct Armed { var name: String; var nth: Int; var seen = 0 }
    static let armed = Mutex<Armed?>(nil)
    static let trace = Mutex<Int32?>(nil)

    /// `POINT` or `POINT#N` (N ≥ 1): the name and the passing to die at.
    public static func parse(_ text: String) -> (name: String, nth: Int)? {
        if text.isEmpty { return ("", 0) }
        let parts = text.split(separator: "#", omittingEmptySubsequences: false)
        guard parts.count <= 2, !parts[0].isEmpty,
              parts[0].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" }) else { return nil }
        guard parts.count == 2 else { return (String(parts[0]), 1) }
        guard let n = Int(parts[1]), n >= 1, n <= 1_000_000 else { return nil }
        return (String(parts[0]), n)
    }

    /// Arms the point `text` names (empty disarms).
    public static func arm(_ text: String) {
        let parsed = parse(text)
        armed.withLock { $0 = parsed.flatMap { $0.name.isEmpty ? nil : Armed(name: $0.name, nth: $0.nth) } }
    }

    /// Writes each point's name to `path` every time it is passed.
    public static func traceTo(_ path: String) {
        guard !path.isEmpty else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        trace.withLock { $0 = fd }
    }

    /// The daemon passes point `name`: noted in the trace, and the end of
    /// the process when it is the armed passing.
    public static func reached(_ name: String) {
        trace.withLock { fd in
            guard let fd else { return }
            let line = "\(name)\n"
            _ = line.withCString { write(fd, $0, strlen($0)) }
        }
        let die = armed.withLock { a -> Bool in
            guard var current = a, current.name == name else { return false }
            current.seen += 1
            a = current
            return current.seen == current.nth
        }
        guard die else { return }
        let text = "batchd: debug.crashAt: dying at \(name)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        kill(getpid(), SIGKILL)
    }
}
