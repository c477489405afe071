import BackendLocal
import BatchSupport
import Synchronization
import Testing

@Suite("Slot pool: the local slots every job shares")
struct SlotPoolTests {
    /// What each asker was told, in the order the pool answered.
    final class Answers: Sendable {
        let list = Mutex<[(String, Bool)]>([])
        func grant(_ name: String) -> @Sendable (Bool) -> Void { { got in self.list.withLock { $0.append((name, got)) } } }
        var all: [String] { list.withLock { $0.map { "\($0.0):\($0.1)" } } }
    }

    @Test func freeSlotsAreGrantedAtOnceThenInTurn() {
        let pool = SlotPool(limit: 2)
        let answers = Answers()
        let never = AsyncEvent<Void>()
        for name in ["a", "b", "c", "d"] { pool.acquire(until: never, grant: answers.grant(name)) }
        #expect(answers.all == ["a:true", "b:true"])
        #expect(pool.usage == (2, 2) && pool.waiting == 2)
        pool.release()
        #expect(answers.all == ["a:true", "b:true", "c:true"])
        // A slot freed while someone waits goes to them, not to a newcomer.
        pool.acquire(until: never, grant: answers.grant("e"))
        pool.release()
        #expect(answers.all == ["a:true", "b:true", "c:true", "d:true"])
        #expect(pool.usage == (2, 2) && pool.waiting == 1)
    }

    @Test func aStopEndsTheWaitWithoutASlot() {
        let pool = SlotPool(limit: 1)
        let answers = Answers()
        let never = AsyncEvent<Void>()
        let stop = AsyncEvent<Void>()
        pool.acquire(until: never, grant: answers.grant("a"))
        pool.acquire(until: stop, grant: answers.grant("b"))
        pool.acquire(until: never, grant: answers.grant("c"))
        stop.fire(())
        #expect(answers.all == ["a:true", "b:false"])
        pool.release()
        #expect(answers.all == ["a:true", "b:false", "c:true"])
        #expect(pool.usage == (1, 1) && pool.waiting == 0)
        // Asked after its stop fired: refused at once.
        pool.acquire(until: stop, grant: answers.grant("d"))
        #expect(answers.all.last == "d:false" && pool.waiting == 0)
    }

    @Test func aGrantedWaiterNoLongerWatchesItsStop() {
        let pool = SlotPool(limit: 1)
        let answers = Answers()
        let stop = AsyncEvent<Void>()
        pool.acquire(until: stop, grant: answers.grant("a"))
        pool.acquire(until: stop, grant: answers.grant("b"))
        pool.release()
        // b had its slot: the stop, fired later, tells it nothing more.
        stop.fire(())
        #expect(answers.all == ["a:true", "b:true"])
        #expect(pool.usage == (1, 1))
    }

    @Test func growingThePoolAdmitsWaiters() {
        let pool = SlotPool(limit: 1)
        let answers = Answers()
        let never = AsyncEvent<Void>()
        for name in ["a", "b", "c"] { pool.acquire(until: never, grant: answers.grant(name)) }
        pool.resize(3)
        #expect(answers.all == ["a:true", "b:true", "c:true"])
        // Shrinking keeps running tasks' slots: the next waits until the
        // three in use are down to none, below the new limit of one.
        pool.resize(1)
        pool.acquire(until: never, grant: answers.grant("d"))
        pool.release()
        pool.release()
        #expect(answers.all.count == 3)
        pool.release()
        #expect(answers.all.last == "d:true")
        #expect(pool.usage == (1, 1))
    }
}
