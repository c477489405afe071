/// Keeps `batchctl files prune` from removing content a job is staging:
/// staging (a job's, or `files put`) and removing never overlap. A prune
/// is refused while anything stages; staging that starts during a prune
/// waits for it to end. (A job's recorded inputs protect it after staging:
/// prune never removes what an unfinished job uses.)
actor StagingGate {
    private var staging = 0
    private var pruning = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    /// Staging begins (after any prune under way).
    func enter() async {
        while pruning { await withCheckedContinuation { waiting.append($0) } }
        staging += 1
    }

    /// Staging ended.
    func leave() { staging -= 1 }

    /// A prune begins, unless something stages: then how many do.
    func beginPrune() -> Int? {
        guard staging == 0, !pruning else { return max(staging, 1) }
        pruning = true
        return nil
    }

    /// The prune ended; staging that waited goes on.
    func endPrune() {
        pruning = false
        let w = waiting
        waiting = []
        for c in w { c.resume() }
    }
}
