import Logging
import SystemdSupport
import Testing

@Suite("journald fields")
struct JournalLogHandlerTests {
    @Test func fieldNames() {
        #expect(JournalLogHandler.field(for: "job.id") == "BATCHD_JOB")
        #expect(JournalLogHandler.field(for: "task.id") == "BATCHD_TASK")
        #expect(JournalLogHandler.field(for: "pool.id") == "BATCHD_POOL")
        #expect(JournalLogHandler.field(for: "backend") == "BATCHD_BACKEND")
        #expect(JournalLogHandler.field(for: "attempt") == "BATCHD_ATTEMPT")
        #expect(JournalLogHandler.field(for: "job.phase") == "BATCHD_JOB_PHASE")
        #expect(JournalLogHandler.field(for: "message.id") == nil)
    }

    @Test func priorities() {
        #expect(JournalLogHandler.priority(.critical) == 2)
        #expect(JournalLogHandler.priority(.error) == 3)
        #expect(JournalLogHandler.priority(.warning) == 4)
        #expect(JournalLogHandler.priority(.info) == 6)
        #expect(JournalLogHandler.priority(.debug) == 7)
    }

    @Test func plainLine() {
        let line = JournalLogHandler.line("task finished", ["task.id": "a", "outcome": "exited with code 0", "message.id": "x"])
        #expect(line == "task finished outcome=\"exited with code 0\" task.id=a")
    }

    @Test("a value's control characters are escaped: one event, one line, nothing raw reaches a terminal")
    func controlCharacters() {
        let line = JournalLogHandler.line("manifest rejected", ["file": "\u{1b}[2J.yaml", "reason": "a\nb\u{7}"])
        #expect(line == "manifest rejected file=\\u{1b}[2J.yaml reason=a\\nb\\u{7}")
        #expect(!line.unicodeScalars.contains { $0.value < 0x20 })
    }
}
