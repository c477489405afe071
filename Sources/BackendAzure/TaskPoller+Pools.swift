import Foundation
import Logging

/// What the poller learns of a Batch job that does not run its open tasks
/// (read on quiet confirming polls only): ended outside batchd, its pool
/// gone or unable to run a task, nodes to recover, cores to wait for.
extension TaskPoller {
    /// Why a Batch job's open tasks do not run.
    enum JobTrouble {
        /// It can no longer run them (ended, disabled, deleted, its pool gone).
        case ended(String)
        /// Its pool cannot run a task now (it may recover).
        case pool(String)
        /// Some of its pool's nodes cannot run tasks (batchd reboots them).
        case nodes(String)
        /// Its pool has no node for want of the account's cores (quota `code`).
        case quota(pool: String, code: String, words: String)
    }

    /// Resize errors of a pool kept short by the account's core quotas.
    static let coreQuotas: Set<String> = ["AccountCoreQuotaReached", "AccountLowPriorityCoreQuotaReached", "AccountSpotCoreQuotaReached"]

    /// Why the Batch job does not run its open tasks, when the service
    /// says; nil while it can. A job the service ended because its tasks
    /// all completed is not one.
    func jobTrouble(_ jobID: String) async throws -> JobTrouble? {
        guard let job = try await client.job(jobID) else { return .ended("Batch job \(jobID) no longer exists (deleted outside batchd)") }
        let info = job["executionInfo"] as? [String: Any] ?? [:]
        let reason = info["terminateReason"] as? String
        switch job["state"] as? String ?? "" {
        case "completed", "terminating":
            if reason == "AllTasksComplete" { return nil }
            if reason == "MaxWallClockTimeExpiry" { return .ended("Batch job \(jobID) reached its maxWallClockTime and ended") }
            return .ended("Batch job \(jobID) was ended outside batchd (terminateReason: \(reason.map(AzureRules.serviceWords) ?? "none"))")
        case "disabling", "disabled": return .ended("Batch job \(jobID) was disabled outside batchd; no task of it starts until it is enabled")
        case "deleting": return .ended("Batch job \(jobID) is being deleted outside batchd")
        default:
            guard let poolID = info["poolId"] as? String ?? (job["poolInfo"] as? [String: Any])?["poolId"] as? String else { return nil }
            guard let pool = try await client.pool(poolID), pool["state"] as? String != "deleting" else {
                return .ended("pool \(poolID) of Batch job \(jobID) was deleted outside batchd; its tasks wait for a pool that will not come")
            }
            return try await poolTrouble(poolID, pool)
        }
    }

    /// Node states that run no task until the node is rebooted (or replaced).
    static let unhealthy: Set<String> = ["starttaskfailed", "unusable"]
    /// Node states on the way back from a reboot.
    static let restarting: Set<String> = ["rebooting", "reimaging", "starting", "waitingforstarttask"]

    /// Why a pool cannot run any task now, in the service's words: no node
    /// and a resize error (a core quota, no capacity, a timeout), or every
    /// node unusable, failed in its start task or coming back from a reboot
    /// batchd made; or which of its nodes cannot run tasks. Such nodes are
    /// rebooted (`recover`).
    func poolTrouble(_ poolID: String, _ pool: [String: Any]) async throws -> JobTrouble? {
        let current = (pool["currentDedicatedNodes"] as? Int ?? 0) + (pool["currentLowPriorityNodes"] as? Int ?? 0)
        if current == 0 {
            // A pool short of cores is still waiting while it resizes again.
            if let short = shortOfCores[poolID], pool["allocationState"] as? String == "resizing" { return short }
            guard pool["allocationState"] as? String == "steady", let e = (pool["resizeErrors"] as? [[String: Any]])?.first else {
                shortOfCores[poolID] = nil
                return nil
            }
            let words = AzureRules.serviceWords([e["code"] as? String, e["message"] as? String].compactMap { $0 }.joined(separator: ": "))
            if let code = e["code"] as? String, Self.coreQuotas.contains(code) {
                let short = JobTrouble.quota(pool: poolID, code: code, words: "pool \(poolID) has no node (\(words))")
                shortOfCores[poolID] = short
                return short
            }
            shortOfCores[poolID] = nil
            return .pool("pool \(poolID) has no node and cannot get one (\(words))")
        }
        shortOfCores[poolID] = nil
        var imageError: String?
        let nodes = try await client.nodes(poolID).compactMap { n -> (id: String, state: String)? in
            guard let id = n["id"] as? String, let state = n["state"] as? String else { return nil }
            for e in n["errors"] as? [[String: Any]] ?? [] {
                if let code = e["code"] as? String, AzureContainers.isImageError(code), imageError == nil {
                    imageError = AzureRules.serviceWords([code, e["message"] as? String].compactMap { $0 }.joined(separator: ": "))
                }
            }
            return (id, state)
        }
        // A node that cannot pull the pool's image is not mended by a reboot.
        if let imageError, nodes.allSatisfy({ Self.unhealthy.contains($0.state) }) {
            return .pool("pool \(poolID)'s nodes cannot pull or start its container image (\(imageError)): "
                         + "check container.image, and that the nodes can reach its registry")
        }
        let bad = nodes.filter { Self.unhealthy.contains($0.state) }
        let down = nodes.filter { Self.unhealthy.contains($0.state) || Self.restarting.contains($0.state) && reboots["\(poolID)/\($0.id)"] != nil }
        guard !nodes.isEmpty, !down.isEmpty else { return nil }
        for node in bad { await recover(poolID, node, othersUp: down.count < nodes.count) }
        let counts = Dictionary(grouping: down.map(\.state), by: { $0 }).map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ")
        // Every node down, and rebooted as often as batchd does: the pool
        // cannot run the job (its grace starts). Until then it is recovering.
        if down.count == nodes.count, down.allSatisfy({ reboots["\(poolID)/\($0.id)", default: 0] >= nodeRecoveries }) {
            return .pool("pool \(poolID) cannot run a task: all \(nodes.count) of its nodes are \(counts)"
                         + (down.contains { $0.state == "starttaskfailed" } ? " (its start task fails)" : "")
                         + (nodeRecoveries > 0 ? ", after \(nodeRecoveries) reboot\(nodeRecoveries == 1 ? "" : "s") each (azure.nodeRecoveries)" : ""))
        }
        return .nodes("pool \(poolID): \(counts) of its \(nodes.count) nodes; batchd reboots such a node up to \(nodeRecoveries) "
                      + "time\(nodeRecoveries == 1 ? "" : "s") (azure.nodeRecoveries), then removes it if other nodes can run the tasks")
    }

    /// Reboots a node that cannot run tasks, at most `nodeRecoveries` times
    /// (as Batch Shipyard's node recovery does); then, when other nodes of
    /// the pool can run the tasks, removes it, so it no longer bills.
    func recover(_ poolID: String, _ node: (id: String, state: String), othersUp: Bool) async {
        let key = "\(poolID)/\(node.id)"
        let done = reboots[key, default: 0]
        let meta: Logger.Metadata = ["pool.id": "\(poolID)", "node.id": "\(node.id)", "node.state": "\(node.state)"]
        if done < nodeRecoveries {
            reboots[key] = done + 1
            do { try await client.rebootNode(poolID, node.id) } catch {
                reboots[key] = done
                logger.warning("cannot reboot a node", metadata: meta.merging(["error": "\(error)"]) { a, _ in a })
                return
            }
            logger.notice("node rebooted", metadata: meta.merging(["node.reboots": "\(done + 1) of \(nodeRecoveries)"]) { a, _ in a })
        } else if othersUp, !removed.contains(key) {
            do { try await client.removeNodes(poolID, [node.id]) } catch {
                logger.warning("cannot remove a node", metadata: meta.merging(["error": "\(error)"]) { a, _ in a })
                return
            }
            removed.insert(key)
            logger.notice("node removed from its pool", metadata: meta.merging(["node.reboots": "\(done)"]) { a, _ in a })
        }
    }
}
