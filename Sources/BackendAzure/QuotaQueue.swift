import BatchSupport

/// Jobs waiting for one of the account's quotas (active Batch jobs, pools),
/// a queue per quota, in the order the jobs were accepted. Only the first
/// tries again: when one of this daemon's Batch jobs or pools goes (the
/// likeliest capacity to free: `freed`), or after a while without word
/// (someone else's may have gone). A job behind it does not try at all: no
/// busy loop, and no job overtakes one accepted before it.
public actor QuotaQueue {
    struct Waiter {
        let job: String
        let order: Double
        /// Fires when the waiter is first and may try.
        var turn = AsyncEvent<Void>()
    }
    var queues: [String: [Waiter]] = [:]

    public init() {}

    /// Jobs accepted before `job` (at `order`) that wait for `quota`.
    public func ahead(_ quota: String, _ job: String, order: Double) -> Int {
        queues[quota]?.filter { $0.job != job && ($0.order, $0.job) < (order, job) }.count ?? 0
    }

    /// Waits for `job`'s turn at `quota`. At once when no job accepted before
    /// it waits there, unless it was just `refused`; else when it is first and
    /// capacity may have freed, or, being first, after `wait` seconds. False
    /// when `stop` fired first.
    public func turn(_ quota: String, _ job: String, order: Double, refused: Bool, wait: Double, stop: AsyncEvent<Void>) async -> Bool {
        if !refused, ahead(quota, job, order: order) == 0 { return true }
        var q = queues[quota, default: []]
        // In the queue, in acceptance order, with a fresh event to wait on.
        q.removeAll { $0.job == job }
        let w = Waiter(job: job, order: order)
        q.insert(w, at: q.firstIndex { ($0.order, $0.job) > (order, job) } ?? q.endIndex)
        queues[quota] = q
        let first = q.first?.job == job
        return await Self.first(of: w.turn, stop: stop, timeout: first ? wait : nil)
    }

    /// `job` got through, or gave up: it leaves the queue, and the next may try.
    public func leave(_ quota: String, _ job: String) {
        guard var q = queues[quota] else { return }
        let wasFirst = q.first?.job == job
        q.removeAll { $0.job == job }
        queues[quota] = q.isEmpty ? nil : q
        if wasFirst { q.first?.turn.fire(()) }
    }

    /// Capacity may have freed (one of this daemon's Batch jobs or pools
    /// went): the first of each queue may try again.
    public func freed() {
        for q in queues.values { q.first?.turn.fire(()) }
    }

    /// Whichever comes first: `turn` (true), `stop` (false), or `timeout` seconds (true).
    static func first(of turn: AsyncEvent<Void>, stop: AsyncEvent<Void>, timeout: Double?) async -> Bool {
        let woken = AsyncEvent<Bool>()
        let a = turn.observe { _ in woken.fire(true) }
        let b = stop.observe { _ in woken.fire(false) }
        defer { turn.unobserve(a); stop.unobserve(b) }
        if let timeout { return await woken.wait(timeout: timeout) ?? true }
        return await woken.wait() ?? false
    }
}
