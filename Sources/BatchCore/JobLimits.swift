/// A job's whole-job limits (`limits.wallClock`, `limits.coreHours`), the
/// same on every backend (the shared running phase enforces them). Pure: the
/// caller says what started and ended, and when.
///
/// - `wallClock` runs from the job's acceptance: past it the job is stopped
///   (running tasks included) and fails with that reason.
/// - `coreHours` counts each attempt's run time times the cores a task holds
///   (`cores`, as the backend counts them: one per local slot, the CPUs a
///   task asks a cluster for, a VM's cores per task slot), attempts of earlier runs of the
///   daemon included; once used up no new attempt starts (one handed to a
///   service but not running yet is stopped), those running finish, and the
///   job fails with that reason.
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
    /// Cores one task holds.
    public let cores: Double
    /// Start times of attempts running now, by task index.
    var running: [Int: Double] = [:]

    /// The limits of a job accepted at `acceptedAt`, with `used`
    /// core-seconds spent by attempts that have ended, each task holding
    /// `cores` cores.
    public init(_ limits: Limits, acceptedAt: Double, used: Double, cores: Double = 1) {
        wallClock = limits.wallClockSeconds
        coreHours = limits.coreHours
        deadline = limits.wallClockSeconds.map { acceptedAt + $0 }
        coreSeconds = limits.coreHours.map { $0 * 3600 }
        self.used = used
        self.cores = cores
    }

    /// An attempt of task `idx` started (or was taken over) at `at`.
    public mutating func started(_ idx: Int, at: Double) { if running[idx] == nil { running[idx] = at } }

    /// The attempt of task `idx` ended at `at`, after running `ranFor`
    /// seconds when the backend knows (else since it was seen starting).
    public mutating func ended(_ idx: Int, at: Double, ranFor: Double? = nil) {
        let start = running.removeValue(forKey: idx)
        if let ranFor { used += cores * max(0, ranFor) } else if let start { used += cores * max(0, at - start) }
    }

    /// Core-seconds used by `now`, running attempts included.
    public func usedBy(_ now: Double) -> Double {
        running.values.reduce(used) { $0 + cores * max(0, now - $1) }
    }

    /// Which limit is reached at `now`, if one is.
    public func reached(at now: Double) -> LimitReached? {
        if let deadline, now >= deadline, let r = wallClockReason { return .wallClock(r) }
        if let coreSeconds, usedBy(now) >= coreSeconds, let coreHours {
            return .coreHours("limits.coreHours (\(Self.hours(coreHours))) used up: no new task was started")
        }
        return nil
    }

    /// Seconds from `now` until a limit may be reached if nothing changes
    /// (nil: never, as things stand).
    public func secondsUntilReached(at now: Double) -> Double? {
        var next: Double? = deadline.map { max(0, $0 - now) }
        if let coreSeconds, !running.isEmpty {
            let left = max(0, coreSeconds - usedBy(now)) / (cores * Double(running.count))
            next = min(next ?? left, left)
        }
        return next
    }

    /// The reason a job stopped by its wall clock fails with.
    public var wallClockReason: String? {
        wallClock.map { "limits.wallClock (\(HumanDuration.format($0))) reached: the job was stopped" }
    }

    /// Why no new attempt may start at `now`, if one may not.
    public func refusal(at now: Double) -> String? { reached(at: now)?.reason }

    /// Seconds until the wall clock runs out (0 if it has), nil if unlimited.
    public func wallClockLeft(at now: Double) -> Double? { deadline.map { max(0, $0 - now) } }

    static func hours(_ h: Double) -> String {
        h == h.rounded() && h < 1e15 ? "\(Int(h)) h" : "\(h) h"
    }
}

/// A job's limit, reached.
public enum LimitReached: Sendable, Equatable {
    /// The wall clock ran out: everything is stopped.
    case wallClock(String)
    /// The core-hours are used up: nothing new starts; what runs finishes.
    case coreHours(String)

    /// The reason the job fails with.
    public var reason: String {
        switch self {
        case .wallClock(let r), .coreHours(let r): return r
        }
    }

    /// Whether running attempts are stopped too.
    public var stopsRunning: Bool { if case .wallClock = self { return true }; return false }
}
