/// Exponential backoff with full jitter, as a pure function.
///
/// With base 0.5 s, factor 2 and cap 30 s the upper bounds are:
///
/// | attempt | 0   | 1 | 2 | 3 | 4 | 5  | 6+ |
/// |---------|-----|---|---|---|---|----|----|
/// | bound s | 0.5 | 1 | 2 | 4 | 8 | 16 | 30 |
///
/// The delay is `bound * jitter`, with `jitter` in [0.5, 1] drawn by the caller.
public struct Backoff: Sendable, Equatable {
    /// First delay bound, in seconds.
    public var base: Double
    /// Growth per attempt.
    public var factor: Double
    /// Largest delay bound.
    public var cap: Double

    /// A backoff policy.
    public init(base: Double = 0.5, factor: Double = 2, cap: Double = 30) {
        self.base = base
        self.factor = factor
        self.cap = cap
    }

    /// The delay before try `attempt` (0-based), given `jitter` in [0, 1].
    public func delay(attempt: Int, jitter: Double) -> Double {
        let bound = min(cap, base * pow2(factor, max(0, attempt)))
        return bound * (0.5 + 0.5 * min(1, max(0, jitter)))
    }

    private func pow2(_ f: Double, _ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<min(n, 64) { r *= f; if r > 1e9 { break } }
        return r
    }
}
