@testable import BackendSlurm
import BatchCore
import Testing

/// Slurm's output as it was printed (Slurm 22.05 on Debian 12, the test
/// cluster of scripts/slurm-cluster.sh, unless a line says otherwise).
@Suite("Slurm output, parsed")
struct SlurmOutputTests {
    @Test("sbatch's job id: --parsable, on a federation, and the chatty form")
    func submitted() {
        #expect(SlurmOutput.submittedID("1\n") == "1")
        #expect(SlurmOutput.submittedID("4242;cluster-b\n") == "4242")
        #expect(SlurmOutput.submittedID("Submitted batch job 77\n") == "77")
        #expect(SlurmOutput.submittedID("sbatch: warning: can't honor --ntasks-per-node\n123\n") == "123")
        #expect(SlurmOutput.submittedID("sbatch: error: Batch job submission failed: Invalid partition name specified\n") == nil)
        #expect(SlurmOutput.submittedID("") == nil)
        #expect(SlurmOutput.submittedID("12a\n") == nil)
    }

    @Test("squeue -t all: finished, running and a pending range in one answer")
    func queue() {
        // Captured: an array of 10 with %2, element 0 running, 1-9 pending; an
        // earlier array whose elements ended four ways; a job that is no array.
        let text = """
            6|1-9%2|batchd-J3-a1|PENDING|Resources|alice|(null)
            6|0|batchd-J3-a1|RUNNING|None|alice|(null)
            1|3|batchd-J1-a1|CANCELLED|None|bob|batchd owner=me
            1|0|batchd-J1-a1|COMPLETED|None|bob|batchd owner=me
            1|2|batchd-J1-a1|FAILED|JobLaunchFailure|bob|batchd owner=me
            1|1|batchd-J1-a1|FAILED|NonZeroExitCode|bob|batchd owner=me
            5|N/A|batchd-J2-a1|RUNNING|None|batchd|(null)
            """
        let (entries, skipped) = SlurmOutput.queue(text)
        #expect(skipped == 0)
        #expect(entries.count == 7)
        #expect(entries[0] == .init(arrayID: "6", indices: Array(1...9), name: "batchd-J3-a1", state: .pending, reason: "Resources", comment: "",
                                    user: "alice"))
        #expect(entries[2].state == .cancelled && entries[2].comment == "batchd owner=me" && entries[2].user == "bob")
        #expect(entries[4].reason == "JobLaunchFailure" && entries[4].state == .failed)
        #expect(entries[6].indices.isEmpty && entries[6].state == .running)
    }

    @Test("squeue lines batchd cannot read are skipped, not guessed")
    func queueGarbage() {
        let (entries, skipped) = SlurmOutput.queue("slurm_load_jobs error: Unable to contact slurm controller\n7|0|n|RUNNING|None|u|x\nabc|0|n|R|r|u|c\n")
        #expect(entries.count == 1 && skipped == 2)
        #expect(SlurmOutput.queue("8|0-99999999|n|PENDING|Priority|u|c\n").skipped == 1, "past the index bound")
    }

    @Test("array index lists and ranges", arguments: [
        ("3", [3]), ("4-9%2", [4, 5, 6, 7, 8, 9]), ("[1,3,5-7]", [1, 3, 5, 6, 7]), ("[0-2]", [0, 1, 2]), ("0", [0]),
    ])
    func indices(_ text: String, _ expected: [Int]) {
        #expect(SlurmOutput.arrayIndices(text) == expected)
    }

    @Test("not index lists", arguments: ["", "N/A", "5-3", "1-", "-1", "a", "1,,2", "[1-2", "1%x", "1234567890"])
    func notIndices(_ text: String) {
        #expect(SlurmOutput.arrayIndices(text) == nil)
    }

    @Test("sacct -X --parsable2: array elements, a pending range, a cluster suffix, CANCELLED by 0, code:signal")
    func accounting() {
        // Shapes from sacct(1) on a cluster with slurmdbd.
        let text = """
            123_4|batchd-J-1|COMPLETED|0:0
            123_5|batchd-J-1|FAILED|3:0
            123_6|batchd-J-1|CANCELLED by 0|0:15
            123_7|batchd-J-1|TIMEOUT|0:0
            123_8|batchd-J-1|NODE_FAIL|0:0
            123_9|batchd-J-1|OUT_OF_MEMORY|0:125
            123_10|batchd-J-1|PREEMPTED|0:0
            123_[11-20%4]|batchd-J-1|PENDING|0:0
            124;other|batchd-J-2|RUNNING|0:0
            garbage
            """
        let e = SlurmOutput.accounting(text)
        #expect(e.count == 9)
        #expect(e[0].indices == [4] && e[0].state == .completed && e[0].exitCode == 0)
        #expect(e[1].exitCode == 3 && e[1].state == .failed)
        #expect(e[2].state == .cancelled && e[2].signal == 15)
        #expect(e[3].state == .timeout && e[4].state == .nodeFail && e[5].state == .outOfMemory && e[6].state == .preempted)
        #expect(e[7].indices == Array(11...20) && e[7].state == .pending)
        #expect(e[8].arrayID == "124" && e[8].indices.isEmpty)
    }

    @Test("scontrol show config: the array size, how long finished jobs stay, whether sacct has a database")
    func config() {
        let text = """
            Configuration data as of 2026-12-02T20:37:20
            AccountingStorageType   = accounting_storage/none
            ClusterName             = batchdtest
            JobCompType             = jobcomp/filetxt
            MaxArraySize            = 1001
            MaxJobCount             = 10000
            MinJobAge               = 300 sec
            SLURM_VERSION           = 22.05.8
            """
        let c = SlurmOutput.clusterConfig(text)
        #expect(c == .init(maxArraySize: 1001, minJobAge: 300, accounting: false, clusterName: "batchdtest", version: "22.05.8"))
        let db = SlurmOutput.clusterConfig("AccountingStorageType = accounting_storage/slurmdbd\nMinJobAge = 2 hours\nMaxArraySize = 40001\n")
        #expect(db.accounting && db.minJobAge == 7200 && db.maxArraySize == 40001)
    }

    @Test("states, by name and by squeue's short code")
    func states() {
        #expect(SlurmState("PD") == .pending && SlurmState("CG") == .completing && SlurmState("OOM") == .outOfMemory)
        #expect(SlurmState("CANCELLED by 1001") == .cancelled)
        #expect(SlurmState("REVOKED") == .other("REVOKED"))
        #expect(SlurmState.pending.isLive && SlurmState.completing.isLive && !SlurmState.completed.isLive && !SlurmState.nodeFail.isLive)
        #expect(SlurmState.other("SPECIAL").isLive, "an unknown state is not taken for an end")
    }
}

@Suite("Slurm rules")
struct SlurmRulesTests {
    func spec(_ edit: (inout Manifest) -> Void = { _ in }) -> JobSpec {
        var m = Manifest(name: "j", tasks: .list([TaskEntry(command: "true")]))
        edit(&m)
        return JobSpec(m, backend: SlurmJobBackend.name, baseDirectory: "/b", destination: "/d", submitterUID: 0, sharedInputs: [])
    }

    @Test("the manifest's pool and timeout become sbatch options, each one argument")
    func arguments() {
        let s = spec {
            $0.pool.partition = "gpu"
            $0.pool.cpusPerTask = 4
            $0.pool.memoryMiB = 4096
            $0.pool.maxRunning = 50
            $0.timeoutSeconds = 90
        }
        let args = SlurmRules.sbatchArguments(spec: s, defaults: .init(partition: "debug", account: "lab"), name: "batchd-J-1",
                                             comment: "batchd owner=me", count: 1000, script: "/s/a.sh", logDirectory: "/s/logs")
        #expect(args == ["--parsable", "--job-name=batchd-J-1", "--comment=batchd owner=me", "--array=0-999%50",
                         "--output=/s/logs/slurm-%A_%a.out", "--no-requeue", "--export=NONE", "--partition=gpu", "--account=lab",
                         "--cpus-per-task=4", "--mem=4096M", "--time=2", "/s/a.sh"])
        let plain = SlurmRules.sbatchArguments(spec: spec(), defaults: .init(), name: "n", comment: "c", count: 3, script: "/x", logDirectory: "/l")
        #expect(plain.contains("--array=0-2") && !plain.contains { $0.hasPrefix("--partition") || $0.hasPrefix("--time") })
    }

    @Test("the throttle: maxRunning, else slots × nodes, else none; never past the array")
    func throttle() {
        #expect(SlurmRules.throttle(spec { $0.pool.maxRunning = 7; $0.pool.slotsPerNode = 2 }.pool) == 7)
        #expect(SlurmRules.throttle(spec { $0.pool.slotsPerNode = 4; $0.pool.options["dedicatedNodes"] = .int(3) }.pool) == 12)
        #expect(SlurmRules.throttle(spec { $0.pool.slotsPerNode = 4 }.pool) == 4)
        #expect(SlurmRules.throttle(spec().pool) == nil)
        let args = SlurmRules.sbatchArguments(spec: spec { $0.pool.maxRunning = 500 }, defaults: .init(), name: "n", comment: "c", count: 3,
                                             script: "/x", logDirectory: "/l")
        #expect(args.contains("--array=0-2%3"))
    }

    @Test("intake asks sbatch --test-only with the job's options, and names the field sbatch refused")
    func intakeCheck() {
        let args = SlurmRules.testArguments(spec: spec { $0.pool.partition = "gpu"; $0.pool.memoryMiB = 512; $0.timeoutSeconds = 600 },
                                            defaults: .init(account: "lab"))
        #expect(args == ["--test-only", "--job-name=batchd-check", "--output=/dev/null", "--partition=gpu", "--account=lab", "--mem=512M",
                         "--time=10", "--wrap=true"])
        // Captured from sbatch --test-only on the test cluster.
        #expect(SlurmRules.refusedField("sbatch: error: invalid partition specified: nope\nallocation failure: Invalid partition name specified\n") == "pool.partition")
        #expect(SlurmRules.refusedField("allocation failure: Requested node configuration is not available\n") == "pool")
        #expect(SlurmRules.refusedField("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified") == "pool.account")
        #expect(SlurmRules.refusedField("sbatch: error: Batch job submission failed: Invalid qos specification") == "pool.qos")
    }

    @Test("which failed commands are worth repeating")
    func transient() {
        #expect(SlurmRules.isTransient(1, "squeue: error: Unable to contact slurm controller (connect failure)"))
        #expect(SlurmRules.isTransient(1, "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"))
        #expect(SlurmRules.isTransient(124, "squeue took longer than 60s"))
        #expect(!SlurmRules.isTransient(1, "sbatch: error: Batch job submission failed: Invalid partition name specified"))
        #expect(!SlurmRules.isTransient(1, "sbatch: error: invalid partition specified: nope"))
    }

    @Test("time limits round up to whole minutes")
    func time() {
        #expect(SlurmRules.timeLimit(1) == "1" && SlurmRules.timeLimit(60) == "1" && SlurmRules.timeLimit(61) == "2" && SlurmRules.timeLimit(86400) == "1440")
    }

    @Test("a job's tasks cut by MaxArraySize")
    func arrays() {
        #expect(SlurmRules.arrays(Array(0..<2000), maxArraySize: 1001).map(\.count) == [1001, 999])
        #expect(SlurmRules.arrays(Array(0..<3), maxArraySize: 1001).count == 1)
        #expect(SlurmRules.arrays([Int](), maxArraySize: 10).isEmpty)
    }

    struct Row: Sendable, CustomStringConvertible {
        let recorded: TaskOutcome?
        let state: SlurmState?
        let ours: Bool
        let expected: TaskOutcome?
        var description: String { "\(recorded.map { $0.summary } ?? "no status") + \(state?.name ?? "nothing from Slurm")" }
    }

    static let rows: [Row] = [
        Row(recorded: .exited(code: 0), state: .completed, ours: false, expected: .exited(code: 0)),
        Row(recorded: .exited(code: 3), state: .failed, ours: false, expected: .exited(code: 3)),
        Row(recorded: .exited(code: 0), state: nil, ours: false, expected: .exited(code: 0)),
        Row(recorded: .signaled(signal: 15), state: .timeout, ours: false, expected: .timedOut(seconds: 60)),
        Row(recorded: nil, state: .timeout, ours: false, expected: .timedOut(seconds: 60)),
        Row(recorded: nil, state: .nodeFail, ours: false, expected: .lost),
        Row(recorded: nil, state: .preempted, ours: false, expected: .lost),
        Row(recorded: .signaled(signal: 9), state: .outOfMemory, ours: false,
            expected: .launchFailed(reason: "Slurm stopped the task: OUT_OF_MEMORY (it went past pool.memory)")),
        Row(recorded: .signaled(signal: 15), state: .cancelled, ours: true, expected: .cancelled),
        Row(recorded: nil, state: .cancelled, ours: false, expected: .launchFailed(reason: "cancelled outside batchd before it ran (Slurm: CANCELLED)")),
        Row(recorded: nil, state: .completed, ours: false, expected: nil),
        Row(recorded: nil, state: .failed, ours: false, expected: nil),
        Row(recorded: nil, state: nil, ours: false, expected: nil),
    ]

    @Test("what an ended element means", arguments: rows)
    func outcome(_ row: Row) {
        #expect(SlurmRules.outcome(recorded: row.recorded, state: row.state, timeout: 60, cancelledByUs: row.ours) == row.expected)
    }
}
