import BatchCore

/// What `batchctl watch` draws: a bar with counts, rate and ETA on a
/// terminal, or one plain line per change elsewhere. Pure, so it is tested
/// without a terminal.
public struct Progress: Sendable, Equatable {
    /// Task counts now.
    public var counts: TaskCounts
    /// The job's phase now.
    public var phase: JobPhase
    /// Tasks finished per second, measured while watching; nil before two samples.
    public var rate: Double?
    /// Input bytes staged so far (sent or found already stored), while staging to a cloud store.
    public var stagedBytes: Int?
    /// Input bytes to stage.
    public var totalBytes: Int?
    /// Bytes of downloads under way, and what has come of them, from a cloud store.
    public var downloading: (size: Int, received: Int)?

    public static func == (a: Progress, b: Progress) -> Bool {
        a.counts == b.counts && a.phase == b.phase && a.rate == b.rate && a.stagedBytes == b.stagedBytes && a.totalBytes == b.totalBytes
            && a.downloading?.size == b.downloading?.size && a.downloading?.received == b.downloading?.received
    }

    /// A progress sample.
    public init(counts: TaskCounts, phase: JobPhase, rate: Double?) {
        self.counts = counts
        self.phase = phase
        self.rate = rate
    }

    /// Finished tasks (succeeded, failed or cancelled).
    public var done: Int { counts.succeeded + counts.failed + counts.cancelled }

    /// Whole percent of tasks finished.
    public var percent: Int { counts.total == 0 ? 0 : done * 100 / counts.total }

    /// Seconds left at the current rate, when known.
    public var eta: Double? {
        guard let rate, rate > 0, !phase.isTerminal else { return nil }
        return Double(counts.total - done) / rate
    }

    /// `[=========>          ]  45%  90/200 done · 8 running · 2 failed · 12.5/s · ETA 9s · running`
    public func bar(width: Int = 30) -> String {
        let filled = counts.total == 0 ? 0 : min(width, done * width / counts.total)
        var inner = String(repeating: "=", count: filled)
        if filled < width { inner += ">" + String(repeating: " ", count: width - filled - 1) }
        return "[\(inner)] \(String(repeating: " ", count: max(0, 3 - "\(percent)".count)))\(percent)%  " + details
    }

    /// The counts, rate, ETA and phase, without the bar: the plain line.
    public var details: String {
        var parts = ["\(done)/\(counts.total) done", "\(counts.running) running"]
        if counts.failed > 0 { parts.append("\(counts.failed) failed") }
        if counts.cancelled > 0 { parts.append("\(counts.cancelled) cancelled") }
        if let rate { parts.append(rate >= 10 ? "\(Int(rate.rounded()))/s" : "\((rate * 10).rounded() / 10)/s") }
        if let eta { parts.append("ETA \(HumanDuration.format(max(1, eta)))") }
        if phase == .staging, let staged = stagedBytes, let total = totalBytes, total > 0 {
            parts.append("inputs \(Self.bytes(staged))/\(Self.bytes(total))")
        }
        if phase == .running, let d = downloading, d.size > 0 {
            parts.append("outputs \(Self.bytes(d.received))/\(Self.bytes(d.size))")
        }
        parts.append(phase.rawValue)
        return parts.joined(separator: " · ")
    }

    /// `512 B`, `3.1 KiB`, `12.0 MiB`, `1.5 GiB`.
    public static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : "\((v * 10).rounded() / 10) \(units[u])"
    }
}
