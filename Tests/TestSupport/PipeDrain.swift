import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads a pipe to its end on a thread of its own, with blocking reads.
///
/// Not `FileHandle.readabilityHandler`: on Linux its dispatch read source,
/// torn down while other suites set up theirs, can leave libdispatch's epoll
/// bookkeeping pointing at freed memory, and the test process then crashes in
/// `_dispatch_event_loop_drain` (swift-corelibs-libdispatch#949). A blocking
/// read never registers the descriptor with libdispatch.
public func drainPipe(_ handle: FileHandle, onData: @escaping @Sendable (Data) -> Void, onEnd: @escaping @Sendable () -> Void = {}) {
    let thread = Thread {
        let fd = handle.fileDescriptor
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                onData(Data(buffer[0..<n]))
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        onEnd()
    }
    thread.name = "pipe drain"
    thread.start()
}
