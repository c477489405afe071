import BatchBackend
import BatchControl
import BatchCore
import BatchStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Pools outside jobs (`batchctl pool create | resize | delete`) and the
/// idle rule: a named pool this daemon made, used by no unfinished job for
/// its idle timeout, is resized to zero nodes.
extension AzureBackend {
    /// The pool defaults of the config.
    var poolDefaults: BatchBodies.PoolDefaults {
        var d = BatchBodies.PoolDefaults()
        d.vmSize = settings.vmSize
        d.image = settings.image
        d.containerImage = settings.containerImage
        d.nodeAgentSku = settings.nodeAgentSku
        d.dedicatedNodes = settings.dedicatedNodes
        return d
    }

    /// Does what `change` asks; what was done, or throws why not.
    func managePool(_ change: PoolChange) async throws -> String {
        switch change {
        case .create(let spec):
            guard let id = spec.id, Template.isIdentifier(id, max: 64) else {
                throw AzureError.badRequest("a pool needs an id of 1-64 letters, digits, '-' and '_'")
            }
            // batchctl checks with the manifest's rules; the socket may carry anything.
            if let problem = Self.problem(spec) { throw AzureError.badRequest(problem) }
            if let existing = try await batch.pool(id) {
                let theirs = BatchBodies.metadata(existing)[BatchBodies.ownerKey]
                throw AzureError.badRequest(theirs == owner ? "pool \(id) exists already (batchctl pool resize changes its size)"
                                                            : "pool \(id) exists and is not this batchd's (\(Self.ownerWords(theirs))): pick another id")
            }
            let body = BatchBodies.pool(id: id, spec, defaults: poolDefaults, owner: owner)
            guard try await batch.createPool(body) else { throw AzureError.badRequest("pool \(id) was made by someone else meanwhile") }
            logger.notice("pool created", metadata: ["pool.id": "\(id)", "pool.dedicated": "\(body["targetDedicatedNodes"] ?? 0)",
                                                     "pool.spot": "\(body["targetLowPriorityNodes"] ?? 0)", "message.id": "\(MessageID.poolCreated)"])
            return "created pool \(id)"
        case .resize(let id, let dedicated, let spot):
            guard (0...AzurePoolOptions.nodes).contains(dedicated), (0...AzurePoolOptions.nodes).contains(spot) else {
                throw AzureError.badRequest("node counts are 0 to \(AzurePoolOptions.nodes)")
            }
            _ = try await ownedPool(id)
            try await batch.resizePool(id, dedicated: dedicated, spot: spot)
            logger.notice("pool resized", metadata: ["pool.id": "\(id)", "pool.dedicated": "\(dedicated)", "pool.spot": "\(spot)",
                                                     "reason": "batchctl pool resize", "message.id": "\(MessageID.poolResized)"])
            return "resizing pool \(id) to \(dedicated) dedicated and \(spot) spot nodes"
        case .delete(let id):
            _ = try await ownedPool(id)
            let users = try await jobsUsing(id)
            guard users.isEmpty else {
                throw AzureError.badRequest("pool \(id) is used by unfinished job \(users.joined(separator: ", ")): cancel it first, or wait for it")
            }
            _ = try await batch.deletePool(id)
            await quota.freed()
            logger.notice("pool deleted", metadata: ["pool.id": "\(id)", "reason": "batchctl pool delete", "message.id": "\(MessageID.poolDeleted)"])
            return "deleting pool \(id)"
        }
    }

    /// What is out of bounds in a pool asked for over the control socket, if anything.
    static func problem(_ p: PoolSpec) -> String? {
        let known = Set(AzurePoolOptions.declared.map(\.key))
        if let other = p.options.keys.sorted().first(where: { !known.contains($0) }) { return "pool option \(other) is not one of Azure's" }
        let nodes = AzurePoolOptions.nodes
        if let n = p.dedicatedNodes, !(0...nodes).contains(n) { return "dedicated nodes are 0 to \(nodes)" }
        if let n = p.spotNodes, !(0...nodes).contains(n) { return "spot nodes are 0 to \(nodes)" }
        if let n = p.slotsPerNode, !(1...Bounds.slotsPerNode).contains(n) { return "slots per node are 1 to \(Bounds.slotsPerNode)" }
        if let v = p.vmSize, !Template.isIdentifier(v, max: 64) { return "the VM size is 1-64 letters, digits, '-' and '_'" }
        for (name, text, max) in [("image", p.image, Bounds.shortText), ("node agent SKU", p.nodeAgentSku, Bounds.shortText),
                                  ("start task", p.startTask, AzurePoolOptions.startTaskBytes)] {
            if let t = text, t.utf8.count > max || t.unicodeScalars.contains(where: { Printable.isUnsafe($0) && $0 != "\n" && $0 != "\t" }) {
                return "the \(name) is longer than \(max) bytes or holds control characters"
            }
        }
        if let s = p.idleTimeoutSeconds, !(s >= Bounds.minDurationSeconds && s <= Bounds.durationSeconds) {
            return "the idle timeout is 1ms to 365d"
        }
        return nil
    }

    /// The pool, if this daemon made it; else the reason it may not be touched.
    func ownedPool(_ id: String) async throws -> [String: Any] {
        guard let pool = try await batch.pool(id) else { throw AzureError.badRequest("no pool \(id) on the Batch account") }
        let meta = BatchBodies.metadata(pool)
        guard meta[BatchBodies.ownerKey] == owner else {
            throw AzureError.badRequest("pool \(id) is not this batchd's (\(Self.ownerWords(meta[BatchBodies.ownerKey]))); it is left alone")
        }
        if let job = meta[BatchBodies.jobKey] {
            throw AzureError.badRequest("pool \(id) is job \(job)'s auto-pool: it goes with its job")
        }
        return pool
    }

    /// Unfinished jobs of this daemon on pool `id`.
    func jobsUsing(_ id: String) async throws -> [String] {
        let unfinished = try await ledger.unfinishedJobIDs()
        return try await azureRecords().filter { $0.poolId == id && unfinished.contains($0.jobId) }.map(\.jobId)
    }

    /// Resizes to zero each named pool of this daemon that still has (or
    /// wants) nodes and that no unfinished job has used for its idle
    /// timeout: the pool's own (`pool.idleTimeout` when it was made), else
    /// `azure.poolIdleTimeout`. Idle since the last of its jobs ended, or
    /// since it was made.
    func resizeIdlePools(now: Date = Date()) async {
        do {
            // Only jobs that ran on a named pool matter here, read one by one.
            let onNamedPools = try await azureRecords().filter { !$0.autoPool && $0.poolId != nil }
            for pool in try await batch.pools() {
                let meta = BatchBodies.metadata(pool)
                guard meta[BatchBodies.ownerKey] == owner, meta[BatchBodies.jobKey] == nil, let id = pool["id"] as? String,
                      pool["state"] as? String == "active", pool["allocationState"] as? String == "steady" else { continue }
                let nodes = (pool["targetDedicatedNodes"] as? Int ?? 0) + (pool["targetLowPriorityNodes"] as? Int ?? 0)
                guard nodes > 0 else { continue }
                let timeout = meta[BatchBodies.idleKey].flatMap(Double.init) ?? settings.poolIdleTimeout
                guard timeout > 0 else { continue }
                var users: [JobRecord] = []
                for r in onNamedPools where r.poolId == id {
                    if let job = try await ledger.job(r.jobId) { users.append(job) }
                }
                if users.contains(where: { $0.finishedAt == nil }) { continue }
                let created = (pool["creationTime"] as? String).flatMap(Self.parseISO)?.timeIntervalSince1970 ?? 0
                let since = max(users.compactMap(\.finishedAt).max() ?? 0, created)
                guard now.timeIntervalSince1970 - since >= timeout else { continue }
                try await batch.resizePool(id, dedicated: 0, spot: 0)
                logger.notice("pool resized", metadata: ["pool.id": "\(id)", "pool.dedicated": "0", "pool.spot": "0",
                                                         "reason": "idle for \(HumanDuration.format(now.timeIntervalSince1970 - since)) (idle timeout \(HumanDuration.format(timeout)))",
                                                         "message.id": "\(MessageID.poolResized)"])
            }
        } catch {
            logger.warning("could not look for idle pools", metadata: ["error": "\(error)"])
        }
    }

    static func ownerWords(_ owner: String?) -> String {
        owner.map { "its \(BatchBodies.ownerKey) is '\($0)'" } ?? "it has no \(BatchBodies.ownerKey) tag"
    }

    /// `2026-12-03T03:52:52.0139513Z` (any number of fractional digits, as
    /// the service writes them) to a date; nil if it is not one.
    static func parseISO(_ s: String) -> Date? {
        let u = Array(s.utf8)
        guard u.count >= 20 else { return nil }
        func num(_ from: Int, _ count: Int) -> Int32? {
            var n: Int32 = 0
            for b in u[from..<(from + count)] {
                guard b >= 48, b <= 57 else { return nil }
                n = n * 10 + Int32(b - 48)
            }
            return n
        }
        guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2), let se = num(17, 2),
              u[4] == 45, u[7] == 45, u[10] == 84, u[13] == 58, u[16] == 58, u.last == 90 else { return nil }
        var tm = Glibc.tm()
        tm.tm_year = y - 1900
        tm.tm_mon = mo - 1
        tm.tm_mday = d
        tm.tm_hour = h
        tm.tm_min = mi
        tm.tm_sec = se
        return Date(timeIntervalSince1970: Double(timegm(&tm)))
    }
}
