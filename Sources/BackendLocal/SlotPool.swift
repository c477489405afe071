
import Synchronization

/// Counts the local task slots shared by every job: `acquire` waits for a
/// free one (first come, first served) and can be cancelled; `resize` changes
/// the limit while tasks run.
public final class SlotPool: Sendable {
    struct State {
        var limit: Int
        var used = 0
        var waiters: [(id: Int, c: CheckedContinuation<Bool, Never>)] = []
        var next = 0
    }
    let state: Mutex<State>

    /// A pool of `limit` slots.
    public init(limit: Int) { state = Mutex(State(limit: max(1, limit))) }

    /// Slots in use and the limit.
    public var usage: (used: Int, limit: Int) { state.withLock { ($0.used, $0.limit) } }

    /// Waits for a slot; false (and no slot) if the task was cancelled first.
    public func acquire() async -> Bool {
        let id = state.withLock { s -> Int in s.next += 1; return s.next }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let now: Bool? = state.withLock { s in
                    if Task.isCancelled { return false }
                    if s.used < s.limit && s.waiters.isEmpty { s.used += 1; return true }
                    s.waiters.append((id, c))
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            let c: CheckedContinuation<Bool, Never>? = state.withLock { s in
                guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: i).c
            }
            c?.resume(returning: false)
        }
    }

    /// Takes a slot if one is free and nobody waits; false otherwise.
    public func tryAcquire() -> Bool {
        state.withLock { s in
            guard s.used < s.limit && s.waiters.isEmpty else { return false }
            s.used += 1
            return true
        }
    }

    /// Takes a slot without waiting (for processes that already run, adopted
    /// after a restart); the pool may go over its limit until they end.
    public func take() { state.withLock { $0.used += 1 } }

    /// Gives a slot back.
    public func release() {
        let wake = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.used -= 1
            return s.admit()
        }
        for c in wake { c.resume(returning: true) }
    }

    /// Changes the number of slots; running tasks keep theirs.
    public func resize(_ limit: Int) {
        let wake = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.limit = max(1, limit)
            return s.admit()
        }
        for c in wake { c.resume(returning: true) }
    }
}

extension SlotPool.State {
    mutating func admit() -> [CheckedContinuation<Bool, Never>] {
        var out: [CheckedContinuation<Bool, Never>] = []
        while used < limit, !waiters.isEmpty {
            used += 1
            out.append(waiters.removeFirst().c)
        }
        return out
    }
}
