import BatchAccess
import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import BatchSupport
import Foundation
import Logging

/// What putting one file did, by its index among the sources.
struct PutOutcome: Sendable {
    let index: Int
    let file: PutFile?
    let error: String?
}

/// `batchctl files put` and `prune`: the backends' input stores outside any
/// job. A put reads as the user who asked (the control socket's peer) and
/// stores through the backend's own staging code, so a job that later uses
/// the files sends nothing; a prune removes only what no unfinished job
/// uses and nothing used within the given age (docs/operations.md, "Input
/// stores").
struct FilesControl: Sendable {
    let ctx: JobContext

    var logger: Logger { ctx.logger }

    /// The backend called `name` (the config's default if nil) and its store.
    func backend(_ name: String?) throws -> (BackendKind, any InputFiles) {
        let kind = BackendKind(rawValue: name ?? ctx.config.defaultBackend)
        switch ctx.backends.lookup(kind) {
        case .failure(let missing): throw DaemonError(missing.description)
        case .success(let b):
            guard let files = b.inputFiles else { throw DaemonError("backend '\(kind.rawValue)' keeps no input store") }
            return (kind, files)
        }
    }

    /// The regular files `paths` name, as `uid` may read them: a file as
    /// itself, a directory walked as a job's `DIR/**/*` would be (hidden
    /// names and symlinked directories skipped).
    func sources(_ paths: [String], policy: AccessPolicy) throws -> [String] {
        guard !paths.isEmpty else { throw DaemonError("name at least one file or directory to put") }
        guard paths.count <= Bounds.putPaths else { throw DaemonError("\(paths.count) paths named; at most \(Bounds.putPaths) per put") }
        let fs = LocalFileSystem(policy: policy)
        var found = Set<String>()
        for path in paths {
            guard path.hasPrefix("/"), path.utf8.count <= Bounds.pathBytes, !path.utf8.contains(0) else {
                throw DaemonError("\(Printable.escape(String(path.prefix(200)))): give an absolute path of at most \(Bounds.pathBytes) bytes")
            }
            do {
                if policy.kind(of: path) == .directory {
                    found.formUnion(try fs.glob("**/*", base: path))
                } else {
                    try policy.checkReadable(path)
                    found.insert(URL(fileURLWithPath: path).standardizedFileURL.path)
                }
            } catch {
                throw DaemonError("\(error)")
            }
            guard found.count <= Bounds.putFiles else {
                throw DaemonError("more than \(Bounds.putFiles) files to put; put fewer directories at a time")
            }
        }
        return found.sorted()
    }

    /// Puts `paths` into a backend's store for `uid`.
    func put(_ paths: [String], backend name: String?, uid: UInt32?) async -> ControlReply {
        guard let uid else { return .refused("cannot tell who asked (no peer credentials on the socket), so nothing is read") }
        let kind: BackendKind, files: any InputFiles, sources: [String]
        let policy = AccessPolicy(submitter: Submitter.lookup(uid: uid), protected: ctx.protected)
        do {
            (kind, files) = try backend(name)
            sources = try self.sources(paths, policy: policy)
        } catch {
            return .refused("\(error)")
        }
        let cache: [String: FileHashRecord]
        do { cache = try await ctx.store.cachedHashes(paths: sources) } catch { return .refused("cannot read the hash cache: \(error)") }
        await ctx.gate.enter()
        let width = files.width
        // Each child answers with its index and outcome in a struct (a
        // `(Int, Result<PutFile, Error>)` child result came back with a
        // garbage index in the -O build of Swift 6.3.1).
        let ended = await withTaskGroup(of: PutOutcome.self, returning: [PutOutcome].self) { g in
            var done: [PutOutcome] = []
            var next = 0
            while next < sources.count || !g.isEmpty {
                while next < sources.count && next - done.count < width {
                    let i = next, source = sources[i], cached = cache[source]
                    next += 1
                    g.addTask {
                        do { return PutOutcome(index: i, file: try await files.put(source, policy: policy, cached: cached), error: nil) } catch {
                            return PutOutcome(index: i, file: nil, error: "\(error)")
                        }
                    }
                }
                guard let r = await g.next() else { break }
                done.append(r)
                if r.error != nil {
                    g.cancelAll()
                    while let rest = await g.next() { done.append(rest) }
                    break
                }
            }
            return done
        }
        var results = [PutOutcome?](repeating: nil, count: sources.count)
        for r in ended {
            precondition(results.indices.contains(r.index), "files put: index \(r.index) of \(results.count)")
            results[r.index] = r
        }
        await ctx.gate.leave()
        var hashes: [FileHashRecord] = [], records: [PutFileRecord] = [], items: [ControlReply.FileItem] = []
        var bytes = 0, sent = 0
        var failure: String?
        for (i, r) in results.enumerated() {
            guard let r else { continue }
            switch (r.file, r.error) {
            case (nil, let e):
                failure = failure ?? "\(Printable.escape(sources[i])) could not be put: \(e ?? "no answer")"
            case (let p?, _):
                if let h = p.hashed { hashes.append(h) }
                records.append(PutFileRecord(backend: kind.rawValue, source: sources[i], sha256: p.sha256, size: Int(p.size), blob: p.blob, uid: uid))
                bytes += Int(p.size)
                sent += Int(p.sent)
                if items.count < ControlReply.FileItem.listed {
                    items.append(.init(backend: kind.rawValue, sha256: p.sha256, size: Int(p.size), names: [sources[i]], sent: Int(p.sent)))
                }
            }
        }
        // What was stored before a failure is recorded too: a put again sends only the rest.
        if let failed = await finishPut(kind, records, hashes, failure: failure) { return failed }
        logger.info("files put", metadata: ["backend": "\(kind.rawValue)", "files": "\(records.count)", "bytes": "\(bytes)", "bytes.sent": "\(sent)",
                                            "uid": "\(uid)"])
        var reply = ControlReply(ok: true)
        reply.files = items
        reply.fileTotals = .init(files: records.count, bytes: bytes, moved: sent)
        return reply
    }

    /// Records what a put stored; the refusal to send (the failure, or why
    /// the records could not be written), nil when all is well.
    func finishPut(_ kind: BackendKind, _ records: [PutFileRecord], _ hashes: [FileHashRecord], failure: String?) async -> ControlReply? {
        do {
            try await ctx.store.saveHashes(hashes)
            try await ctx.store.recordPut(records)
        } catch {
            return .refused("\(failure.map { "\($0); " } ?? "")cannot record the files put: \(error)")
        }
        return failure.map { .refused("\($0) (\(records.count) other files were put)") }
    }

    /// Removes (or, on a dry run, lists) what the stores hold that no
    /// unfinished job uses and nothing used for `unusedFor` seconds.
    func prune(unusedFor: Double, apply: Bool, backend name: String?) async -> ControlReply {
        guard unusedFor.isFinite, unusedFor >= 0, unusedFor <= Bounds.durationSeconds else {
            return .refused("--unused-for must be between 0s and 365d")
        }
        var targets: [(BackendKind, any InputFiles)] = []
        if name != nil {
            do { targets = [try backend(name)] } catch { return .refused("\(error)") }
        } else {
            for kind in ctx.backends.names {
                if case .success(let b) = ctx.backends.lookup(kind), let files = b.inputFiles { targets.append((kind, files)) }
            }
        }
        if apply, let busy = await ctx.gate.beginPrune() {
            return .refused("\(busy == 1 ? "a job is" : "\(busy) jobs are") staging inputs now; prune again once staging has ended")
        }
        let cutoff = ctx.clock() - unusedFor
        var items: [ControlReply.FileItem] = []
        var count = 0, bytes = 0, freed = 0
        var failure: String?
        outer: for (kind, files) in targets {
            let candidates: [PruneCandidate]
            do { candidates = try await ctx.store.pruneCandidates(backend: kind.rawValue, usedBefore: cutoff) } catch {
                failure = "cannot read the \(kind.rawValue) input store's records: \(error)"
                break
            }
            var removed: [String] = []
            for c in candidates {
                if apply {
                    do {
                        if try await files.remove(sha256: c.sha256, blob: c.blob) { freed += c.size }
                    } catch {
                        failure = "cannot remove \(c.sha256.prefix(12)) from the \(kind.rawValue) input store: \(error)"
                    }
                    if failure != nil { break }
                    removed.append(c.sha256)
                }
                count += 1
                bytes += c.size
                if items.count < ControlReply.FileItem.listed {
                    items.append(.init(backend: kind.rawValue, sha256: c.sha256, size: c.size, names: c.names, lastUsed: c.lastUsed))
                }
            }
            if apply, !removed.isEmpty {
                do { try await ctx.store.markPruned(backend: kind.rawValue, sha256s: removed) } catch {
                    failure = "removed \(removed.count) files from the \(kind.rawValue) input store but could not record it: \(error)"
                }
            }
            if failure != nil { break outer }
        }
        if apply { await ctx.gate.endPrune() }
        if apply, count > 0 {
            logger.notice("files pruned", metadata: ["files": "\(count)", "bytes": "\(bytes)", "bytes.freed": "\(freed)",
                                                     "unused.for.seconds": "\(Int(unusedFor))"])
        }
        if let failure { return .refused(failure) }
        var reply = ControlReply(ok: true)
        reply.files = items
        reply.fileTotals = .init(files: count, bytes: bytes, moved: apply ? freed : 0)
        return reply
    }
}
