import BatchCore
import Testing

@Suite("Whole-job limits")
struct JobLimitsTests {
    func limits(wallClock: Double? = nil, coreHours: Double? = nil) -> Limits {
        var l = Limits()
        l.wallClockSeconds = wallClock
        l.coreHours = coreHours
        return l
    }

    @Test("the wall clock runs from acceptance; past it nothing starts, and the reason names the limit")
    func wallClock() {
        let l = JobLimits(limits(wallClock: 7200), acceptedAt: 1000, used: 0)
        #expect(l.wallClockLeft(at: 1000) == 7200 && l.wallClockLeft(at: 9000) == 0)
        #expect(l.refusal(at: 8199) == nil)
        #expect(l.refusal(at: 8200) == "limits.wallClock (2h) reached: the job was stopped")
        #expect(JobLimits(limits(), acceptedAt: 0, used: 0).refusal(at: 1e12) == nil, "no limits, no refusal")
    }

    @Test("core hours count ended attempts, earlier runs included, and the time of those running")
    func coreHours() {
        var l = JobLimits(limits(coreHours: 1), acceptedAt: 0, used: 1800)   // half an hour from before a restart
        l.started(1, at: 100)
        l.started(2, at: 100)
        #expect(l.refusal(at: 100 + 899) == nil)
        #expect(l.refusal(at: 100 + 900)?.hasPrefix("limits.coreHours (1 h) used up") == true, "two cores for 15 min use the other half")
        l.ended(1, at: 400)
        #expect(l.used == 2100)
        #expect(l.usedBy(1000) == 2100 + 900)
        l.ended(7, at: 500)   // not running: nothing counted
        #expect(l.used == 2100)
    }
}
