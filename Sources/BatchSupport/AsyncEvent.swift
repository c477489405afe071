import Synchronization

/// A one-shot event with a value: many tasks may wait, one `fire` wakes them
/// all; a waiter that is cancelled stops waiting (and gets nil).
public final class AsyncEvent<Value: Sendable>: Sendable {
    struct State {
        var value: Value?
        var waiters: [Int: CheckedContinuation<Value?, Never>] = [:]
        var observers: [Int: @Sendable (Value) -> Void] = [:]
        var next = 0
    }
    let state = Mutex(State())

    /// A new, unfired event.
    public init() {}

    /// Fires the event (only the first call counts).
    public func fire(_ value: Value) {
        let (waiters, observers) = state.withLock { s -> ([CheckedContinuation<Value?, Never>], [@Sendable (Value) -> Void]) in
            guard s.value == nil else { return ([], []) }
            s.value = value
            defer { s.waiters = [:]; s.observers = [:] }
            return (Array(s.waiters.values), Array(s.observers.values))
        }
        for w in waiters { w.resume(returning: value) }
        for o in observers { o(value) }
    }

    /// Calls `callback` when the event fires (at once, on this thread, if it
    /// has): a way to wait for the first of several events without a task
    /// per event. Returns a token for `unobserve`, nil if it was called at once.
    @discardableResult
    public func observe(_ callback: @escaping @Sendable (Value) -> Void) -> Int? {
        let (token, fired) = state.withLock { s -> (Int?, Value?) in
            if let v = s.value { return (nil, v) }
            s.next += 1
            s.observers[s.next] = callback
            return (s.next, nil)
        }
        if let fired { callback(fired) }
        return token
    }

    /// Stops observing (the token `observe` returned).
    public func unobserve(_ token: Int?) {
        guard let token else { return }
        _ = state.withLock { $0.observers.removeValue(forKey: token) }
    }

    /// The value, if fired.
    public var value: Value? { state.withLock { $0.value } }

    /// Waits at most `timeout` seconds; nil if the event did not fire by then
    /// (or the waiting task was cancelled).
    public func wait(timeout: Double) async -> Value? {
        if let v = value { return v }
        return await withTaskGroup(of: Value?.self) { group in
            group.addTask { await self.wait() }
            group.addTask {
                try? await Task.sleep(for: .seconds(max(0, timeout)))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? self.value
        }
    }

    /// Waits for the value; nil if the waiting task is cancelled first.
    public func wait() async -> Value? {
        let id = state.withLock { s -> Int in s.next += 1; return s.next }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Value?, Never>) in
                let resumeNow: Value?? = state.withLock { s in
                    if let v = s.value { return .some(v) }
                    if Task.isCancelled { return .some(nil) }
                    s.waiters[id] = c
                    return .none
                }
                if let now = resumeNow { c.resume(returning: now) }
            }
        } onCancel: {
            let c = state.withLock { $0.waiters.removeValue(forKey: id) }
            c?.resume(returning: nil)
        }
    }
}
