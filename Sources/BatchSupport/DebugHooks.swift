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
