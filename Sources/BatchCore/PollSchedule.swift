/// How often to poll a cloud backend: quickly while tasks are changing,
/// backing off (×`growth`, with jitter, up to `maxInterval`) while nothing
/// changes, and slower still when the service throttles (a Retry-After is
/// never cut short). A failed poll is "unknown", never a change.
///
/// With the defaults (1 s min, ×1.5, 30 s cap) a quiet job is polled after
/// 1, 1.5, 2.25, 3.4, 5.1, 7.6, 11.4, 17.1, 25.6, 30, 30, … seconds.
public struct PollSchedule: Sendable, Equatable {
    /// Shortest interval, used right after a change.
    public var minInterval: Double
    /// Longest interval.
    public var maxInterval: Double
    /// Growth per quiet poll.
    public var growth: Double
    /// The interval now.
    public private(set) var interval: Double

    /// A schedule starting at `minInterval`.
    public init(minInterval: Double = 1, maxInterval: Double = 30, growth: Double = 1.5) {
        self.minInterval = minInterval
        self.maxInterval = maxInterval
        self.growth = growth
        interval = minInterval
    }

    /// What a poll found.
    public enum Result: Sendable, Equatable {
        /// Some task changed state.
        case changed
        /// Nothing changed.
        case quiet
        /// The service asked us to slow down, for at least this long (0 if it did not say).
        case throttled(retryAfter: Double)
        /// The poll failed (network, 5xx): nothing is known; try again later.
        case failed
    }

    /// Records a poll's result and returns the wait before the next one,
    /// `jitter` in [0, 1] spreading it by up to ±10 %.
    public mutating func next(after result: Result, jitter: Double) -> Double {
        switch result {
        case .changed:
            interval = minInterval
        case .quiet, .failed:
            interval = min(maxInterval, interval * growth)
        case .throttled(let wait):
            interval = min(maxInterval * 2, max(interval * 2, wait))
        }
        let spread = 1 + (min(1, max(0, jitter)) - 0.5) * 0.2
        if case .throttled(let wait) = result { return max(wait, interval * spread) }
        return interval * spread
    }
}

extension PollSchedule {
    /// How many tasks should end between two polls of a queue while many are
    /// live (the pollers of queue and batch-service backends).
    public static let endedPerPoll = 100

    /// For a stream of many tasks (a cluster queue polled for all at once):
    /// the interval follows the rate at which tasks end, so that a poll sees
    /// about `batch` of them end while many are live, and half of those
    /// still live near the end (at least one), never changing by more than
    /// ×2 a step, within the bounds; a poll that sees none end backs off as
    /// a quiet one does. Controller calls stay near (tasks ÷ batch), and the
    /// last tasks of a job are seen soon after they end. `ended` is how many
    /// tasks the poll found ended since the one before, `live` how many are
    /// still queued or running.
    public mutating func next(ended: Int, live: Int, batch: Int = PollSchedule.endedPerPoll, jitter: Double) -> Double {
        if ended == 0 {
            interval = min(maxInterval, interval * growth)
        } else {
            let wanted = Double(max(1, min(batch, live / 2)))
            let target = interval * wanted / Double(ended)
            interval = min(maxInterval, max(minInterval, min(interval * 2, max(interval / 2, target))))
        }
        let spread = 1 + (min(1, max(0, jitter)) - 0.5) * 0.2
        return interval * spread
    }
}
