/// A job's whole-job limits (`limits.wallClock`, `limits.coreHours`) as a
/// backend that runs the tasks itself enforces them. Pure: the caller says
/// what started and ended, and when.
///
/// - `wallClock` runs from the job's acceptance: past it the job is stopped
///   (running tasks included) and fails with that reason.
/// - `coreHours` counts each attempt's duration times the cores it holds
///   (one slot, one core, on the local backend), attempts of earlier runs of
///   the daemon included; once used up no new attempt starts, those running
///   finish, and the job fails with that reason.
public struct JobLimits: Sendable, Equatable {
    /// When the wall clock runs out (seconds since 1970), if limited.
    public let deadline: Double?
    /// Core-seconds allowed, if limited.
    public let coreSeconds: Double?
    /// The limits as written, for the reasons.
    let wallClock: Double?
    let coreHours: Double?
    /// Core-seconds of attempts that ended.
    public private(set) var used: Double
    /// Start times of attempts running now, by task index.
    var running: [Int: Double] = [:]

    /// The limits of a job accepted at `acceptedAt`, with `used`
    /// core-seconds spent by attempts that have ended.
    public init(_ limits: Limits, acceptedAt: Double, used: Double) {
        wallClock = limits.wallClockSeconds
        coreHours = limits.coreHours
        deadline = limits.wallClockSeconds.map { acceptedAt + $0 }
        coreSeconds = limits.coreHours.map { $0 * 3600 }
        self.used = used
    }

    /// An attempt of task `idx` started (or was taken over) at `at`.
    public mutating func started(_ idx: Int, at: Double) { running[idx] = at }

    /// The attempt of task `idx` ended at `at`.
    public mutating func ended(_ idx: Int, at: Double) {
        if let start = running.removeValue(forKey: idx) { used += max(0, at - start) }
    }

    /// Core-seconds used by `now`, running attempts included.
    public func usedBy(_ now: Double) -> Double {
        running.values.reduce(used) { $0 + max(0, now - $1) }
    }

    /// The reason a job stopped by its wall clock fails with.
    public var wallClockReason: String? {
        wallClock.map { "limits.wallClock (\(HumanDuration.format($0))) reached: the job was stopped" }
    }

    /// Why no new attempt may start at `now`, if one may not.
    public func refusal(at now: Double) -> String? {
        if let deadline, now >= deadline { return wallClockReason }
        if let coreSeconds, usedBy(now) >= coreSeconds, let coreHours {
            return "limits.coreHours (\(Self.hours(coreHours))) used up: no new task was started"
        }
        return nil
    }

    /// Seconds until the wall clock runs out (0 if it has), nil if unlimited.
    public func wallClockLeft(at now: Double) -> Double? { deadline.map { max(0, $0 - now) } }

    static func hours(_ h: Double) -> String {
        h == h.rounded() && h < 1e15 ? "\(Int(h)) h" : "\(h) h"
    }
}
