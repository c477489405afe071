"""The chaos soak (issue 23): one job of N tasks through the Azure emulator
while its faults fire at random, seeded so that a run can be repeated, then
the checks a user relies on:

- every task succeeded, or failed with a reason the service gave;
- no run is unaccounted for: a task ran (its side effect, a line in a file
  of its own) at most once per attempt batchd recorded, plus the runs the
  service put back in its queue itself;
- every success's output is in the destination, once, with its bytes;
- nothing is left on the service: no active Batch job, no pool;
- polling stays within 0.05 Batch calls per task.

Faults: throttling bursts, dropped connections, latency, servererror and
timed-out add-collections, preempted nodes, Entra tokens expired, this
machine's clock 20 minutes off for a moment, running tasks deleted behind
batchd's back, the job's output container deleted (a task to run again
after its Batch job ended goes to the next one), a node that comes up
unusable (rebooted by batchd).

Usage: bench/chaos.py [--tasks N] [--seed S] [--faults a,b,...] [--out FILE] [--keep]
(make chaos: 2,000 tasks, result in bench/chaos.json and BENCHMARKS.md;
make test runs 200). The seed fixes which faults fire, in which order; when
they land depends on the machine. Exits 1 when a check fails.
"""
import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import conftest  # noqa: E402  (on the path through common)

# (name, weight): how often each fault is picked.
FAULTS = [("throttle", 5), ("latency", 2), ("drops", 2), ("preempt", 3), ("token", 2), ("skew", 1), ("vanish", 3), ("container", 1),
          ("unusable", 1)]
POLLING = ("batch.task_counts", "batch.list_tasks", "batch.get_job", "batch.get_pool", "batch.list_nodes")


class Chaos:
    """Fires faults until stopped, and remembers what it did."""

    def __init__(self, em, batch_job, container, seed, faults):
        self.em = em
        self.faults = [(n, w) for n, w in FAULTS if n in faults]
        # The job's current Batch job (a task run again after one ended goes to the next, -r<n>).
        self.batch_job = batch_job
        self.container = container
        self.rng = random.Random(seed)
        self.fired = {}
        self.stop = threading.Event()
        self.client = conftest.batch_client(em.url)
        self.blobs = conftest.blob_service(em.url)

    def fire(self, name):
        em, rng = self.em, self.rng
        if name == "throttle":
            em.admin("faults", {"error_burst": rng.randint(3, 12), "retry_after": 0.2})
        elif name == "latency":
            em.admin("faults", {"latency": rng.choice([0, 0, 0.03])})
        elif name == "drops":
            em.admin("faults", {"drop_rate": rng.choice([0, 0, 0.03])})
        elif name == "preempt":
            try:
                em.admin("preempt", {})
            except Exception:   # no node runs a task now: nothing preempted
                return
        elif name == "token":
            em.admin("tokens", {"expire": True})
        elif name == "skew":
            em.admin("faults", {"clock_offset": 1200})
            self.stop.wait(1.0)
            em.admin("faults", {"clock_offset": 0})
        elif name == "vanish":
            batch_job = self.batch_job()
            running = [t.id for t in self.client.list_tasks(batch_job, filter="state eq 'running'", select=["id"])]
            if not running:
                return
            self.client.delete_task(batch_job, rng.choice(running))
        elif name == "unusable":
            # The next node to start (a preempted one's replacement) is
            # unusable until batchd reboots it.
            em.admin("faults", {"unusable_nodes": 1})
        elif name == "container":
            try:
                self.blobs.delete_container(self.container)
            except Exception:   # already gone, or being deleted
                return
        self.fired[name] = self.fired.get(name, 0) + 1

    def run(self):
        names = [n for n, _ in self.faults]
        weights = [w for _, w in self.faults]
        while not self.stop.wait(self.rng.uniform(0.3, 1.2)):
            name = self.rng.choices(names, weights)[0]
            try:
                self.fire(name)
            except Exception as e:   # the job not made yet, or already gone
                self.fired.setdefault("skipped", 0)
                self.fired["skipped"] += 1
                if os.environ.get("CHAOS_DEBUG"):
                    print(f"chaos: {name}: {e}", file=sys.stderr)

    def calm(self):
        self.stop.set()
        self.em.admin("faults", {"error_burst": 0, "latency": 0, "drop_rate": 0, "clock_offset": 0})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--out", help="write the result here as JSON")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--keep", action="store_true", help="keep the daemon's directory (its log and database) to look at")
    ap.add_argument("--faults", default=",".join(n for n, _ in FAULTS), help="the faults that may fire, comma-separated")
    args = ap.parse_args()
    n = args.tasks

    em = conftest.Emulator("--allocation-delay", "0.1", "--deletion-delay", "0.5")
    d = common.Daemon(azure=em.url)
    with open(d.config) as f:
        config = f.read().replace("azure: {pollMinInterval: 1s}", "azure: {pollMinInterval: 0.5s, pollMaxInterval: 5s}")
    with open(d.config, "w") as f:
        f.write(config)
    # The daemon signs Batch with Entra ID tokens (so they can expire), Blob with the key.
    d.env.pop("AZURE_BATCH_ACCESS_KEY", None)
    d.env.update({"AZURE_TENANT_ID": conftest.TENANT, "AZURE_CLIENT_ID": conftest.CLIENT_ID,
                  "AZURE_CLIENT_SECRET": conftest.CLIENT_SECRET, "AZURE_AUTHORITY_HOST": em.url})
    marks = os.path.join(d.dir, "marks")
    os.makedirs(marks)
    result = {"tasks": n, "seed": args.seed, "faults": args.faults.split(","), "measuredOn": time.strftime("%Y-%m-%d")}
    failures = []
    try:
        d.start()
        path = common.manifest(d, "chaos", n, f"echo {{task}} >> {marks}/{{task}}; echo {{task}} > out-{{task}}.txt; sleep 0.2",
                               extra="retries: 3\npool: {dedicatedNodes: 4, slotsPerNode: 4}\n"
                                     "outputs: {patterns: ['out-*.txt'], destination: out}\n")
        # The submission's own faults: collections answered servererror or timed out.
        em.admin("faults", {"addcollection_servererror": 7, "addcollection_timeout": 1})
        before = dict(em.admin("stats")["requests"])
        t0 = time.monotonic()
        d.ctl("submit", "--backend", "azure", path)
        common.wait_for(lambda: (d.show("chaos") or {}).get("azure", {}).get("submitted"), 600)
        show = d.show("chaos")
        job_id = show["id"]
        chaos = Chaos(em, lambda: d.show(job_id)["azure"]["batchJob"], show["azure"]["outputContainer"], args.seed, args.faults.split(","))
        thread = threading.Thread(target=chaos.run, daemon=True)
        thread.start()
        waited = d.ctl("wait", job_id, "--timeout", str(int(args.timeout)), check=False)
        chaos.calm()
        thread.join()
        result["wallSeconds"] = round(time.monotonic() - t0, 1)
        result["faultsFired"] = chaos.fired
        used = {k: v - before.get(k, 0) for k, v in em.admin("stats")["requests"].items()}
        final = d.show(job_id) or {}
        result["state"] = final.get("state")
        result["reason"] = final.get("reason")
        records = task_records(d, job_id)
        ok = [t for t in records if t["state"] == "succeeded"]
        bad = [t for t in records if t["state"] != "succeeded"]
        result["succeeded"], result["failed"] = len(ok), len(bad)
        result["failedReasons"] = sorted({(t.get("detail") or "")[:120] for t in bad})
        if len(records) != n:
            failures.append(f"{len(records)} task records, not {n}")
        if waited.returncode != 0 and not bad:
            failures.append(f"the job did not end well though no task failed: {waited.stdout}{waited.stderr}")
        for t in bad:
            if not t.get("detail"):
                failures.append(f"task {t['taskId']} {t['state']} without a reason")
        # Every run accounted for (requeued ones in any of the job's Batch jobs).
        result["batchJobs"] = final.get("azure", {}).get("batchJob")
        requeued = {}
        for key, count in em.admin("requeues").items():
            batch_job, _, task = key.partition("/")
            if batch_job == show["azure"]["batchJob"] or batch_job.startswith(show["azure"]["batchJob"] + "-r"):
                requeued[task] = requeued.get(task, 0) + count
        unaccounted = []
        for t in records:
            runs = count_lines(os.path.join(marks, t["taskId"]))
            allowed = t["attempts"] + requeued.get(t["taskId"], 0)
            if runs > allowed or (t["state"] == "succeeded" and runs == 0):
                unaccounted.append(f"{t['taskId']}: {runs} runs, {allowed} allowed")
        result["runs"] = sum(count_lines(os.path.join(marks, t["taskId"])) for t in records)
        if unaccounted:
            failures.append(f"runs not accounted for: {unaccounted[:10]}")
        # Outputs: each success's, once, with its bytes.
        out = os.path.join(os.path.dirname(path), "out")
        files = set(os.listdir(out)) if os.path.isdir(out) else set()
        wrong = [t["taskId"] for t in ok if read(os.path.join(out, f"out-{t['taskId']}.txt")) != f"{t['taskId']}\n"]
        if wrong:
            failures.append(f"outputs missing or wrong: {wrong[:10]}")
        if len(files) != len(ok):
            failures.append(f"{len(files)} files in the destination for {len(ok)} successes")
        # Nothing left on the service.
        client = conftest.batch_client(em.url)
        pools = [p.id for p in client.list_pools() if p.state != "deleting"]
        jobs = [j.id for j in client.list_jobs() if j.state not in ("completed", "deleting")]
        if pools or jobs:
            failures.append(f"left on the service: pools {pools}, jobs {jobs}")
        polls = sum(used.get(op, 0) for op in POLLING)
        result["pollingCallsPerTask"] = round(polls / n, 4)
        result["requests"] = {k: v for k, v in sorted(used.items()) if v}
        # The budget is for a job of the full size: a small one's fixed polls
        # (a job's first listing, its quiet checks) weigh more per task.
        if n >= 1000 and polls / n > 0.05:
            failures.append(f"polling cost {polls / n:.3f} Batch calls per task (at most 0.05)")
    finally:
        if args.keep:
            d.kill()
            print(f"chaos: kept {d.dir}", file=sys.stderr)
        else:
            d.close()
        em.stop()
    result["checks"] = "passed" if not failures else failures
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    sys.exit(0 if not failures else 1)


def task_records(d, job_id):
    """Every task's id, state, attempts and detail, from the daemon's database."""
    import sqlite3
    db = sqlite3.connect(os.path.join(d.dir, "state", "batchd.db"))
    rows = db.execute("SELECT task_id, state, detail, (SELECT COUNT(*) FROM attempts a WHERE a.job_id = t.job_id AND a.idx = t.idx) "
                      "FROM tasks t WHERE job_id = ?", (job_id,)).fetchall()
    return [{"taskId": r[0], "state": r[1], "detail": r[2], "attempts": r[3]} for r in rows]


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    main()
