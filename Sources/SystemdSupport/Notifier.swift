import CSystemd

/// sd_notify(3) through libsystemd: tells the service manager that the daemon
/// is ready, reloading or stopping, what it is doing (STATUS=, shown by
/// `systemctl status`) and that it is alive (WATCHDOG=1). A no-op when the
/// process was not started with NOTIFY_SOCKET.
public struct Notifier: Sendable {
    /// Whether to send anything at all (NOTIFY_SOCKET was set).
    public let enabled: Bool

    /// A notifier; `enabled` is whether NOTIFY_SOCKET is set.
    public init(enabled: Bool) { self.enabled = enabled }

    /// Sends raw `KEY=value` lines; returns false if nothing was sent.
    @discardableResult
    public func send(_ lines: [String]) -> Bool {
        guard enabled else { return false }
        return sd_notify(0, lines.joined(separator: "\n")) > 0
    }

    /// READY=1, with a status line.
    public func ready(status: String) { send(["READY=1", "STATUS=\(status)"]) }
    /// STATUS=...
    public func status(_ text: String) { send(["STATUS=\(text)"]) }
    /// WATCHDOG=1.
    public func watchdog() { send(["WATCHDOG=1"]) }
    /// STOPPING=1.
    public func stopping() { send(["STOPPING=1", "STATUS=Stopping"]) }
    /// RELOADING=1 with the MONOTONIC_USEC systemd 253+ asks for.
    public func reloading() { send(["RELOADING=1", "MONOTONIC_USEC=\(csystemd_monotonic_usec())", "STATUS=Reloading configuration"]) }
}
