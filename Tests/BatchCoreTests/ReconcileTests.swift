import BatchCore
import Testing

/// What the daemon does with an attempt it finds unfinished at start, as a table.
@Suite("Reconcile after a restart")
struct ReconcileTests {
    struct Row: Sendable, CustomTestStringConvertible {
        let recorded: TaskOutcome?
        let alive: Bool
        let strikes: Int
        let decision: Reconcile.Decision
        var testDescription: String { "recorded \(recorded.map(\.kind) ?? "none"), alive \(alive), strikes \(strikes) → \(decision)" }
    }

    @Test("each set of facts gives its decision", arguments: [
        // A status file wins over everything: the attempt ended while we were away.
        Row(recorded: .exited(code: 0), alive: false, strikes: 0, decision: .finished(.exited(code: 0))),
        Row(recorded: .exited(code: 3), alive: true, strikes: 5, decision: .finished(.exited(code: 3))),
        Row(recorded: .signaled(signal: 9), alive: false, strikes: 2, decision: .finished(.signaled(signal: 9))),
        // Two launches or adoptions the daemon died in: set aside, alive or not.
        Row(recorded: nil, alive: true, strikes: 2, decision: .setAside),
        Row(recorded: nil, alive: false, strikes: 3, decision: .setAside),
        // Otherwise: still running is adopted, gone is lost (and runs again for free).
        Row(recorded: nil, alive: true, strikes: 1, decision: .adopt),
        Row(recorded: nil, alive: false, strikes: 1, decision: .lost),
        Row(recorded: nil, alive: false, strikes: 0, decision: .lost),
    ])
    func decide(_ row: Row) {
        #expect(Reconcile.decide(recorded: row.recorded, alive: row.alive, strikes: row.strikes) == row.decision)
    }
}
