import BatchSupport
import Synchronization

/// Counts the local task slots shared by every job: `acquire` hands a slot
/// to each asker in turn (first come, first served), and gives up when its
/// stop fires; `resize` changes the limit while tasks run.
///
/// A slot is granted through a callback, not a suspended task: the running
/// phase waits for a slot without a task of its own per launch.
public final class SlotPool: Sendable {
    struct Waiter {
        let id: Int
        let grant: @Sendable (Bool) -> Void
        /// Stops observing the asker's stop (set once it observes).
        var forget: (@Sendable () -> Void)?
    }
    struct State {
        var limit: Int
        var used = 0
        /// In the order they asked: at most one per running job.
        var waiters: [Waiter] = []
        var next = 0
    }
    let state: Mutex<State>

    /// A pool of `limit` slots.
    public init(limit: Int) { state = Mutex(State(limit: max(1, limit))) }

    /// Slots in use and the limit.
    public var usage: (used: Int, limit: Int) { state.withLock { ($0.used, $0.limit) } }

    /// Askers waiting for a slot.
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// Calls `grant(true)`, holding a slot, as soon as one is free and every
    /// earlier asker has had theirs: at once, on this thread, when that is
    /// now; else on the thread that frees it. Calls `grant(false)`, with no
    /// slot, if `stop` fires first. `grant` is called once, and should only
    /// pass the answer on.
    public func acquire<Stop: Sendable>(until stop: AsyncEvent<Stop>, grant: @escaping @Sendable (Bool) -> Void) {
        if stop.value != nil { grant(false); return }
        let id: Int? = state.withLock { s in
            if s.used < s.limit && s.waiters.isEmpty { s.used += 1; return nil }
            s.next += 1
            s.waiters.append(Waiter(id: s.next, grant: grant))
            return s.next
        }
        guard let id else { grant(true); return }
        // Called at once if the stop fired meanwhile.
        let token = stop.observe { [self] _ in
            let abandoned = state.withLock { $0.remove(id) }
            abandoned?.grant(false)
        }
        guard let token else { return }
        let forget: @Sendable () -> Void = { stop.unobserve(token) }
        let waits = state.withLock { s -> Bool in
            guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return false }
            s.waiters[i].forget = forget
            return true
        }
        // The slot came first: nothing else will forget the observer.
        if !waits { forget() }
    }

    /// Takes a slot without waiting (for processes that already run, adopted
    /// after a restart); the pool may go over its limit until they end.
    public func take() { state.withLock { $0.used += 1 } }

    /// Gives a slot back.
    public func release() {
        let admitted = state.withLock { s -> [Waiter] in
            s.used -= 1
            return s.admit()
        }
        for w in admitted { w.forget?(); w.grant(true) }
    }

    /// Changes the number of slots; running tasks keep theirs.
    public func resize(_ limit: Int) {
        let admitted = state.withLock { s -> [Waiter] in
            s.limit = max(1, limit)
            return s.admit()
        }
        for w in admitted { w.forget?(); w.grant(true) }
    }
}

extension SlotPool.State {
    /// The waiters that now get a slot, in the order they asked.
    mutating func admit() -> [SlotPool.Waiter] {
        var out: [SlotPool.Waiter] = []
        while used < limit, !waiters.isEmpty {
            used += 1
            out.append(waiters.removeFirst())
        }
        return out
    }

    /// Removes a waiter that gives up; nil if it had its slot already.
    mutating func remove(_ id: Int) -> SlotPool.Waiter? {
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return waiters.remove(at: i)
    }
}
