import BatchControl
import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Watches the inbox with inotify on a thread of its own and delivers
/// candidate names: first every entry already there, then each file that is
/// completed (IN_CLOSE_WRITE) or moved in (IN_MOVED_TO), and each entry that
/// appears (IN_CREATE) and will never be completed: a directory, a FIFO, a
/// symlink, a socket, a hard link. Names may repeat; claiming by rename makes
/// that harmless.
final class InboxWatcher: @unchecked Sendable {
    let directory: String
    let names: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation
    private var inotifyFD: Int32 = -1
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1

    /// Whether a name in the inbox is a manifest to take: not a dot-file, and
    /// ending in .yaml, .yml or .json.
    static func isCandidate(_ name: String) -> Bool {
        guard !name.hasPrefix("."), !name.hasSuffix(".error") else { return false }
        let lower = name.lowercased()
        return lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") || lower.hasSuffix(".json")
    }

    init(directory: String) throws {
        self.directory = directory
        (names, continuation) = AsyncStream.makeStream(of: String.self)
        inotifyFD = inotify_init1(Int32(IN_CLOEXEC))
        guard inotifyFD >= 0 else { throw DaemonError("inotify_init1 failed: \(String(cString: strerror(errno)))") }
        guard inotify_add_watch(inotifyFD, directory, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)) >= 0 else {
            close(inotifyFD)
            throw DaemonError("cannot watch \(directory): \(String(cString: strerror(errno)))")
        }
        // An eventfd wakes the thread to stop it.
        wakeRead = batchd_eventfd()
        guard wakeRead >= 0 else { throw DaemonError("eventfd failed: \(String(cString: strerror(errno)))") }
        wakeWrite = wakeRead
    }

    /// Starts delivering: the startup scan, then events, until `stop`.
    func start() {
        // The watch is in place before the scan, so nothing dropped between the
        // two is missed.
        let existing = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in existing where Self.isCandidate(name) { continuation.yield(name) }
        let thread = Thread { [self] in loop() }
        thread.name = "batchd-inbox"
        thread.start()
    }

    /// Whether a just-created entry is something no writer will complete: not
    /// a regular file, or one with other hard links.
    private func willNotComplete(_ name: String) -> Bool {
        var st = stat()
        guard lstat("\(directory)/\(name)", &st) == 0 else { return false }
        return st.st_mode & S_IFMT != S_IFREG || st.st_nlink > 1
    }

    /// Stops the watcher thread and ends the stream.
    func stop() {
        var one: UInt64 = 1
        _ = write(wakeWrite, &one, 8)
    }

    private func loop() {
        let size = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer {
            buffer.deallocate()
            close(inotifyFD)
            close(wakeRead)
            continuation.finish()
        }
        var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        while true {
            let r = poll(&fds, 2, -1)
            if r < 0 { if errno == EINTR { continue }; return }
            if fds[1].revents != 0 { return }
            let n = read(inotifyFD, buffer, size)
            if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
            // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[]; }
            var offset = 0
            while offset + 16 <= n {
                let mask = buffer.load(fromByteOffset: offset + 4, as: UInt32.self)
                let len = Int(buffer.load(fromByteOffset: offset + 12, as: UInt32.self))
                let nameStart = buffer.advanced(by: offset + 16).assumingMemoryBound(to: CChar.self)
                if len > 0 {
                    let name = String(cString: nameStart)
                    if Self.isCandidate(name), mask & UInt32(IN_CREATE) == 0 || willNotComplete(name) { continuation.yield(name) }
                }
                offset += 16 + len
            }
        }
    }
}
