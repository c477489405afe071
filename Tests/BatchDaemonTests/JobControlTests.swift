import BatchBackend
import BatchSupport
import Testing

@Suite("a job's control signals")
struct JobControlTests {
    /// A runner woken by `halt` decides at once between acting on a cancel
    /// and saving its place for a shutdown; reading "shutdown" after a
    /// cancel left the job running with nobody watching it.
    @Test("whoever wakes on halt after a cancel sees a cancel, never a shutdown")
    func haltWakersSeeTheCancel() async {
        var wrong = 0
        for _ in 0..<20_000 {
            let control = JobControl()
            let registered = AsyncEvent<Void>()
            let seen = Task.detached { () -> Bool in
                async let woke: Void? = control.halt.wait()
                registered.fire(())
                _ = await woke
                return control.isCancelled && !control.isShuttingDown
            }
            _ = await registered.wait()
            control.cancel()
            if await !seen.value { wrong += 1 }
        }
        #expect(wrong == 0, "\(wrong) of 20,000 wakers took the cancel for a shutdown")
    }

    @Test("a shutdown is not a cancel, and a cancelled job still learns of a shutdown")
    func shutdownAndCancel() {
        let control = JobControl()
        control.shutDown()
        #expect(control.isShuttingDown && !control.isCancelled && control.halt.value != nil)
        let cancelled = JobControl()
        cancelled.cancel()
        #expect(cancelled.isCancelled && !cancelled.isShuttingDown)
        cancelled.shutDown()
        #expect(cancelled.isShuttingDown)
    }
}
