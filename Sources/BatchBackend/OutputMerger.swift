import BatchAccess
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `outputs.merge`, the same on every backend: it reads the outputs already
/// collected into the destination, so it needs nothing of where tasks ran.
/// Each pass appends, in task order, the files of the tasks that ended
/// since the last, up to the first task still open, and publishes the whole
/// file again (temp file, fsync, rename): a reader always sees the merge of
/// tasks 0..<k for some k. The state is saved after the rename; a crash in
/// between leaves a file longer than recorded, which the next pass notices
/// and merges again from the first task.
public final class OutputMerger: @unchecked Sendable {
    /// The backend-record key of the state.
    public static let key = MergeState.key
    /// Longest CSV header line.
    public static let headerBytes = 64 << 10
    /// Tasks whose outputs are read at once.
    static let batch = 10_000

    let handle: JobHandle
    let spec: MergeSpec
    let glob: Glob
    var destination: Destination?

    /// A merger for a job with `outputs.merge`.
    public init(handle: JobHandle, spec: MergeSpec) {
        self.handle = handle
        self.spec = spec
        glob = Glob(spec.from)
    }

    /// Starts the merge again from the first task (a retry reopens tasks it passed).
    public static func reset(_ store: Store, _ jobID: String) async throws {
        try await store.setBackendRecord(jobID, key, MergeState())
    }

    struct Restart: Error {}

    /// One pass: every task ended since the last pass, up to the first
    /// still open, appended and published in one write (its outputs read a
    /// page at a time). Whether it merged anything.
    public func pass() async throws -> Bool {
        let store = handle.store, id = handle.id
        var state = try await store.backendRecord(id, Self.key, as: MergeState.self) ?? MergeState()
        for _ in 0..<2 {
            let frontier = try await store.firstOpenTask(id, from: state.next) ?? handle.job.taskCount
            guard frontier > state.next else { return false }
            do {
                let next = try await write(after: state, upTo: frontier)
                try await store.setBackendRecord(id, Self.key, next)
                return true
            } catch is Restart {
                handle.log.warning("the merged file is not as batchd left it; merging again from the first task",
                                   metadata: ["path": "\(Printable.escape(spec.into))"])
                state = MergeState()
            }
        }
        return false
    }

    /// The destination, opened (its directories made) once.
    func opened() throws -> Destination {
        if let destination { return destination }
        let d = try Destination(path: handle.spec.destination, policy: handle.policy, jobID: handle.id)
        destination = d
        return d
    }

    /// Publishes the merged file: what `state` covers, then the files of
    /// tasks `state.next..<frontier` that match `from`.
    func write(after state: MergeState, upTo frontier: Int) async throws -> MergeState {
        var result = state
        result.next = frontier
        let matches = { (o: OutputRecord) in self.glob.matches(o.path.split(separator: "/").map(String.init)) }
        let firstUpTo = min(frontier, state.next + Self.batch)
        let first = try await handle.store.outputs(handle.id, tasks: state.next..<firstUpTo).filter(matches)
        // Nothing new to append (failed tasks, say): the file stays as it is,
        // except that a job's last pass leaves one, if empty.
        if first.isEmpty, firstUpTo == frontier, state.bytes > 0 || frontier < handle.job.taskCount { return result }
        let dest = try opened()
        let file = try dest.begin(spec.into)
        do {
            var w = Writer(fd: file.fd, target: file.target)
            if state.bytes > 0 {
                guard let prev = try dest.openExisting(spec.into) else { throw Restart() }
                defer { close(prev.fd) }
                guard prev.size == state.bytes else { throw Restart() }
                try w.copy(from: prev.fd, bytes: state.bytes)
            }
            for o in first { try append(o, dest: dest, to: &w, state: &result) }
            var from = firstUpTo
            while from < frontier {
                let upTo = min(frontier, from + Self.batch)
                for o in try await handle.store.outputs(handle.id, tasks: from..<upTo).filter(matches) {
                    try append(o, dest: dest, to: &w, state: &result)
                }
                from = upTo
            }
            result.bytes = w.written
            try dest.commit(file)
        } catch {
            dest.abort(file)
            throw error
        }
        return result
    }

    /// Appends one task's file, or leaves it out (counted) when it is gone
    /// or, in CSV, its header differs.
    func append(_ o: OutputRecord, dest: Destination, to w: inout Writer, state: inout MergeState) throws {
        guard let file = try? dest.openExisting(o.path) else {
            handle.log.warning("a task's file to merge is gone from the destination; left out",
                               metadata: ["task.index": "\(o.idx)", "path": "\(Printable.escape(o.path))"])
            state.skipped += 1
            return
        }
        defer { close(file.fd) }
        switch spec.format {
        case .concat: try w.stream(from: file.fd, endLine: false)
        case .jsonl: try w.stream(from: file.fd, endLine: true)
        case .csv:
            if !(try csv(file.fd, into: &w, header: &state.header)) {
                handle.log.warning("a task's CSV header differs from the first file's (or its first line is over 64 KiB); left out",
                                   metadata: ["task.index": "\(o.idx)", "path": "\(Printable.escape(o.path))"])
                state.skipped += 1
            }
        }
    }

    /// Appends one CSV file: its header once (the first file's), then its
    /// rows; false (nothing written) when its header differs.
    func csv(_ fd: Int32, into w: inout Writer, header: inout String?) throws -> Bool {
        var head = [UInt8](repeating: 0, count: Self.headerBytes + 1)
        var have = 0
        var newline: Int?
        while have < head.count, newline == nil {
            let room = head.count - have
            let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress! + have, room) }
            if n < 0 { if errno == EINTR { continue }; throw FileOpError(w.target, "cannot read a file to merge: \(FileOps.plain(errno))") }
            if n == 0 { break }
            newline = head[have..<(have + n)].firstIndex(of: 0x0A)
            have += n
        }
        if have == 0 { return true }
        let end = newline ?? have
        guard end <= Self.headerBytes else { return false }
        let line = Array(head[..<end])
        // Compared without a CR before the newline; written as it came.
        let encoded = Data(line.last == 0x0D ? line.dropLast() : line[...]).base64EncodedString()
        if let header {
            guard header == encoded else { return false }
        } else {
            header = encoded
            try w.append(line + [0x0A])
        }
        let rest = newline.map { Array(head[($0 + 1)..<have]) } ?? []
        try w.append(rest)
        try w.stream(from: fd, endLine: true)
        return true
    }

    /// Writes to the temp file, counting bytes and remembering the last.
    struct Writer {
        let fd: Int32
        let target: String
        var written: Int64 = 0
        var last: UInt8 = 0x0A

        mutating func append(_ bytes: [UInt8]) throws {
            guard !bytes.isEmpty else { return }
            try bytes.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                    if n < 0 { if errno == EINTR { continue }; throw FileOpError(target, "cannot write: \(FileOps.plain(errno))") }
                    off += n
                }
            }
            written += Int64(bytes.count)
            last = bytes[bytes.count - 1]
        }

        /// The rest of `source`; with `endLine`, a newline after it unless it ends in one.
        mutating func stream(from source: Int32, endLine: Bool) throws {
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress!, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw FileOpError(target, "cannot read a file to merge: \(FileOps.plain(errno))") }
                if n == 0 { break }
                try append(Array(buffer[..<n]))
            }
            if endLine && last != 0x0A { try append([0x0A]) }
        }

        /// The first `bytes` of `source` (the merged file so far), in the kernel where it can.
        mutating func copy(from source: Int32, bytes: Int64) throws {
            var left = bytes
            while left > 0 {
                let n = batchd_copy_file_range(source, fd, UInt(min(left, 1 << 30)))
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP { break }
                    throw FileOpError(target, "cannot copy the merged file: \(FileOps.plain(errno))")
                }
                if n == 0 { throw FileOpError(target, "the merged file is shorter than recorded") }
                left -= Int64(n)
                written += Int64(n)
            }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while left > 0 {
                let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress!, Int(min(Int64($0.count), left))) }
                if n < 0 { if errno == EINTR { continue }; throw FileOpError(target, "cannot read the merged file: \(FileOps.plain(errno))") }
                if n == 0 { throw FileOpError(target, "the merged file is shorter than recorded") }
                try append(Array(buffer[..<n]))
                left -= Int64(n)
            }
            if bytes > 0 { last = 0x0A }
        }
    }
}
