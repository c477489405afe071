import BatchCore
import Foundation
import Logging

/// One squeue per interval for every Slurm job of the daemon: the jobs ask
/// for the next answer, and the poller runs `squeue -t all` for the users
/// its jobs run as (their submitters) once for all of them, paced by `PollSchedule` (quick while the
/// answers change, backing off while they do not). A failed squeue is an
/// answer that says nothing ("unknown"), never a failure.
public actor SlurmPoller {
    /// One squeue answer.
    public struct Snapshot: Sendable {
        /// False when squeue failed; `entries` is then empty and means nothing.
        public var ok: Bool
        public var entries: [SlurmOutput.QueueEntry]
        /// Why squeue failed.
        public var why: String
    }

    let commands: SlurmCommands
    /// The users whose arrays are followed: the daemon's own, and each
    /// submitter a job was followed for (a handful; never forgotten).
    var users: Set<String>
    let logger: Logger
    var schedule: PollSchedule
    var waiting: [CheckedContinuation<Snapshot, Never>] = []
    var wake: CheckedContinuation<Void, Never>?
    var lastPoll: ContinuousClock.Instant?
    var interval: Double
    /// The live elements of the answer before, to count those that ended.
    var previousLive = Set<Element>()
    struct Element: Hashable { var array: String; var index: Int }

    init(commands: SlurmCommands, user: String, schedule: PollSchedule, logger: Logger) {
        self.commands = commands
        users = [user]
        self.schedule = schedule
        self.logger = logger
        interval = schedule.minInterval
    }

    /// Follows the arrays of `user` too.
    public func include(_ user: String) {
        users.insert(user)
    }

    /// The next squeue answer (one made after this call).
    public func next() async -> Snapshot {
        await withCheckedContinuation { c in
            waiting.append(c)
            wake?.resume()
            wake = nil
        }
    }

    /// Polls while anyone waits; returns when its task is cancelled.
    public func run() async {
        while !Task.isCancelled {
            if waiting.isEmpty {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { c in
                        if waiting.isEmpty && !Task.isCancelled { wake = c } else { c.resume() }
                    }
                } onCancel: {
                    Task { await self.cancelWake() }
                }
                continue
            }
            if let last = lastPoll {
                let due = last + .seconds(interval)
                if ContinuousClock.now < due { try? await Task.sleep(until: due) }
                if Task.isCancelled { break }
            }
            let snapshot = await poll()
            if snapshot.ok {
                var live = Set<Element>()
                for e in snapshot.entries where e.state.isLive {
                    if e.indices.isEmpty { live.insert(Element(array: e.arrayID, index: -1)) }
                    for i in e.indices { live.insert(Element(array: e.arrayID, index: i)) }
                }
                let ended = previousLive.subtracting(live).count
                previousLive = live
                interval = schedule.next(ended: ended, live: live.count, jitter: Double.random(in: 0...1))
                logger.debug("squeue", metadata: ["elements.live": "\(live.count)", "elements.ended": "\(ended)",
                                                  "next.in": "\(HumanDuration.format(interval))"])
            } else {
                interval = schedule.next(after: .failed, jitter: Double.random(in: 0...1))
            }
            lastPoll = .now
            let ready = waiting
            waiting = []
            for c in ready { c.resume(returning: snapshot) }
        }
        let ready = waiting
        waiting = []
        for c in ready { c.resume(returning: Snapshot(ok: false, entries: [], why: "the daemon is stopping")) }
    }

    func cancelWake() {
        wake?.resume()
        wake = nil
    }

    func poll() async -> Snapshot {
        let out = await commands.run("squeue", ["--noheader", "--states=all", "--user=\(users.sorted().joined(separator: ","))",
                                                "--format=\(SlurmOutput.queueFormat)"])
        guard out.ok else {
            logger.warning("squeue failed; task states are unknown until it answers", metadata: ["error": "\(out.why)"])
            return Snapshot(ok: false, entries: [], why: out.why)
        }
        let (entries, skipped) = SlurmOutput.queue(out.stdout)
        if skipped > 0 { logger.warning("squeue lines not understood were skipped", metadata: ["lines": "\(skipped)"]) }
        return Snapshot(ok: true, entries: entries, why: "")
    }
}
