#!/usr/bin/env python3
"""batchd's benchmark suite: every row beside its peer, in one run.

    bench/run.py [--quick] [--runs N] [--rows a,b] [--out DIR] [--render]

Each row starts its own daemon (the release build, or $BATCHD_BIN) on a fresh state
directory under /tmp, runs the workload `--runs` times (default 3; 1 with
--quick) and records the median with its spread (min, max). Peers run in the
same invocation, alternating with batchd, so both see the same machine.
Writes bench/results.json, BENCHMARKS.md and bench/ratios.png (with --quick
into --out, default /tmp/batchd-bench-quick, so CI never rewrites the
committed results). No row asserts a time: the targets are reported, not
tested (docs/testing.md).
"""
import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, ROOT, Daemon, manifest, median_spread, timed, wait_for  # noqa: E402


# ---------------------------------------------------------------- rows

def row_local_true(runs, quick):
    n = 500 if quick else 5000
    p = os.cpu_count()
    seq = "\n".join(str(i) for i in range(1, n + 1)) + "\n"
    batchd, cpu, xargs_sh, xargs_true, parallel = [], [], [], [], []
    for _ in range(runs):
        d = Daemon()
        try:
            d.start()
            path = manifest(d, "true", n)
            before = d.cpu_seconds()
            batchd.append(timed([f"{BIN}/batchctl", "--config", d.config, "submit", path, "--wait"], capture_output=True))
            # The daemon's own CPU per task (intake, launching, following, recording).
            cpu.append((d.cpu_seconds() - before) * 1e6 / n)
        finally:
            d.close()
        xargs_sh.append(timed(["xargs", "-P", str(p), "-I{}", "sh", "-c", "true"], input=seq, text=True))
        xargs_true.append(timed(["xargs", "-P", str(p), "-n", "1", "true"], input=seq, text=True, stdout=subprocess.DEVNULL))
        if shutil.which("parallel"):
            parallel.append(timed(["parallel", "-j", str(p), "true"], input=seq, text=True, stdout=subprocess.DEVNULL))
    b, x = median_spread(batchd), median_spread(xargs_sh)
    return {
        "title": f"{n:,} local tasks of `true`, {p} slots",
        "measures": {"batchd wall s": b, "batchd daemon CPU µs per task": median_spread(cpu), "xargs -P sh -c true wall s": x, "xargs -P true wall s": median_spread(xargs_true),
                     **({"GNU parallel wall s": median_spread(parallel)} if parallel else {})},
        "ratio": {"name": "batchd / xargs (sh -c)", "value": b["median"] / x["median"], "target": 1.5},
    }


def row_local_big(runs, quick):
    n = 5000 if quick else 100_000
    peaks, shows = [], []
    for _ in range(runs):
        d = Daemon()
        try:
            d.start()
            d.ctl("submit", manifest(d, "big", n))
            wait_for(lambda: (d.show("big") or {}).get("tasks", {}).get("succeeded", 0) > 0, 120)
            for _ in range(10):
                t0 = time.monotonic()
                d.ctl("show", "big")
                shows.append(time.monotonic() - t0)
                time.sleep(0.2)
            wait_for(lambda: (d.show("big") or {}).get("state") in ("succeeded", "failed"), 3600, every=1)
            peaks.append(d.status("VmHWM") / 1024)
        finally:
            d.close()
    rss, show = median_spread(peaks), median_spread(shows)
    return {
        "title": f"{n:,}-task local job",
        "measures": {"peak RSS MiB": rss, "batchctl show s (while running)": show},
        "checks": [{"name": "peak RSS MiB", "value": rss["median"], "target": 150},
                   {"name": "show ms", "value": show["median"] * 1000, "target": 100}],
    }


def row_million(runs, quick):
    n = 50_000 if quick else 1_000_000
    accepts, peaks, shows, cancels = [], [], [], []
    for _ in range(runs):
        d = Daemon()
        try:
            d.start()
            t0 = time.monotonic()
            d.ctl("submit", manifest(d, "million", n))
            wait_for(lambda: d.show("million"), 600, every=0.05)
            accepts.append(time.monotonic() - t0)
            for _ in range(5):
                t1 = time.monotonic()
                d.ctl("show", "million")
                shows.append(time.monotonic() - t1)
            t2 = time.monotonic()
            d.ctl("cancel", "million")
            wait_for(lambda: (d.show("million") or {}).get("state") == "cancelled", 600, every=0.05)
            cancels.append(time.monotonic() - t2)
            peaks.append(d.status("VmHWM") / 1024)
        finally:
            d.close()
    a, r, s, c = median_spread(accepts), median_spread(peaks), median_spread(shows), median_spread(cancels)
    return {
        "title": f"{n:,}-task job: accept, show, cancel",
        "measures": {"accepted s (submit → visible)": a, "peak RSS MiB": r, "show s": s, "cancel s (request → cancelled)": c},
        "checks": [{"name": "accept s", "value": a["median"], "target": 10}, {"name": "peak RSS MiB", "value": r["median"], "target": 300},
                   {"name": "show ms", "value": s["median"] * 1000, "target": 100}, {"name": "cancel s", "value": c["median"], "target": 5}],
    }


def row_idle(runs, quick):
    rss, files, anon = [], [], []
    for _ in range(runs):
        d = Daemon()
        try:
            d.start()
            time.sleep(2)
            rss.append(d.status("VmRSS") / 1024)
            with open(f"/proc/{d.proc.pid}/smaps_rollup") as f:
                rollup = {l.split(":")[0]: int(l.split()[1]) for l in f if l.split()[-1] == "kB"}
            anon.append(rollup.get("Anonymous", 0) / 1024)
            files.append(rollup.get("Rss", 0) / 1024 - anon[-1])
        finally:
            d.close()
    m = median_spread(rss)
    return {
        "title": "idle daemon",
        "measures": {"RSS MiB": m, "of which file-backed (libraries) MiB": median_spread(files), "of which anonymous MiB": median_spread(anon)},
        "checks": [{"name": "RSS MiB", "value": m["median"], "target": 30}],
    }


def row_wait_cpu(runs, quick):
    """What waiting costs: `batchctl submit --wait` on a job of many short
    tasks (a change every few ms), its CPU against the daemon's own. It
    waits on the daemon's events (issue 24); it used to read the database
    five times a second, at 2.7-2.9x the daemon's CPU on a long Slurm job."""
    n = 200 if quick else 2000
    waiter, ratio, per_minute = [], [], []
    for _ in range(runs):
        d = Daemon()
        try:
            d.start()
            path = manifest(d, "waited", n, "sleep 0.05")
            before = d.cpu_seconds()
            t0 = time.monotonic()
            p = subprocess.Popen([f"{BIN}/batchctl", "--config", d.config, "submit", path, "--wait"], stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            wall = time.monotonic() - t0
            daemon = d.cpu_seconds() - before
            cpu = usage.ru_utime + usage.ru_stime
            waiter.append(cpu)
            ratio.append(cpu / daemon if daemon > 0 else 0)
            per_minute.append(cpu * 60 / wall)
        finally:
            d.close()
    r = median_spread(ratio)
    return {
        "title": f"batchctl submit --wait on {n:,} tasks of `sleep 0.05`",
        "measures": {"batchctl CPU s": median_spread(waiter), "batchctl CPU s per minute waited": median_spread(per_minute),
                     "batchctl CPU / daemon CPU": r},
        "checks": [{"name": "batchctl CPU / daemon CPU", "value": r["median"], "target": 0.25}],
    }


def row_ready(runs, quick):
    n = 5000 if quick else 100_000
    readies = []
    for _ in range(runs):
        d = Daemon()
        try:
            d.start()
            d.ctl("submit", manifest(d, "running", n, "sleep 0.05"))
            wait_for(lambda: (d.show("running") or {}).get("tasks", {}).get("succeeded", 0) > 10, 120)
            d.kill(signal.SIGKILL)
            readies.append(d.start())
        finally:
            d.close()
    m = median_spread(readies)
    return {
        "title": f"start → READY with a {n:,}-task job running (after kill -9)",
        "measures": {"start → READY s": m},
        "checks": [{"name": "READY s", "value": m["median"], "target": 2}],
    }


from azure_rows import row_azure_add, row_azure_poll, row_azure_upload  # noqa: E402
from container_rows import row_container  # noqa: E402

ROWS = {"local-true": row_local_true, "local-big": row_local_big, "million": row_million, "idle": row_idle, "ready": row_ready,
        "wait-cpu": row_wait_cpu, "container": row_container,
        "azure-poll": row_azure_poll, "azure-add": row_azure_add, "azure-upload": row_azure_upload}

# Rows of the issue not measured yet, shown as such rather than left out.
PENDING = {}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    fs = subprocess.run(["stat", "-f", "-c", "%T", tempfile.gettempdir()], capture_output=True, text=True).stdout.strip()
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {"cpus": os.cpu_count(), "cpu": cpu, "memoryMiB": mem, "kernel": platform.release(), "tmpFilesystem": fs,
            "swift": swift[0] if swift else "?", "date": time.strftime("%Y-%m-%d"),
            "build": "debug" if "/debug" in os.path.realpath(BIN) else "release"}


def write_markdown(path, results):
    m = results["machine"]
    out = ["# Benchmarks", "",
           f"Measured by `make bench` ({'quick sizes' if results['quick'] else 'full sizes'}, {results['runs']} runs per row, median with "
           "min–max) on " + f"{m['cpus']} × {m['cpu']}, {m['memoryMiB']:,} MiB, Linux {m['kernel']}, /tmp on {m['tmpFilesystem']}, "
           f"{m['swift']}, {m.get('build', 'release')} build, {m['date']}. Peers ran in the same invocation. "
           "The chart is `bench/ratios.png`.", "",
           "| row | measure | median | min–max | target | met |", "|---|---|---|---|---|---|"]
    for key, row in results["rows"].items():
        targets = {c["name"]: c for c in row.get("checks", [])}
        first = True
        on = row.get("measuredOn", m)
        title = row["title"]
        if (on["cpu"], on["date"]) != (m["cpu"], m["date"]):
            title += f" (measured on {on['cpus']} × {on['cpu']}, {on['date']})"
        for name, v in row["measures"].items():
            out.append(f"| {title if first else ''} | {name} | {v['median']:.3f} | {v['min']:.3f}–{v['max']:.3f} | | |")
            first = False
        if "ratio" in row:
            r = row["ratio"]
            out.append(f"| | **{r['name']}** | **{r['value']:.2f}** | | ≤ {r['target']:.3g} | {'yes' if r['value'] <= r['target'] else '**no**'} |")
        for c in targets.values():
            out.append(f"| | **{c['name']}** | **{c['value']:.3g}** | | < {c['target']:.3g} | {'yes' if c['value'] < c['target'] else '**no**'} |")
    if PENDING:
        out += ["", "Not measured yet:", ""] + [f"- {v}" for v in PENDING.values()]
    out += chaos_section()
    limits = os.path.join(os.path.dirname(os.path.abspath(__file__)), "limits.md")
    if os.path.exists(limits):
        with open(limits) as f:
            out += ["", f.read().rstrip()]
    out.append("")
    with open(path, "w") as f:
        f.write("\n".join(out))


def chaos_section():
    """The last full chaos soak (`make chaos`, bench/chaos.py), when there is one."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaos.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        c = json.load(f)
    fired = ", ".join(f"{k} {v}" for k, v in sorted(c.get("faultsFired", {}).items()))
    checks = "all passed" if c.get("checks") == "passed" else "; ".join(c.get("checks", []))
    reasons = "; ".join(c.get("failedReasons", [])) or "none"
    return ["", "## Chaos soak", "",
            f"`make chaos` ({c.get('measuredOn', 'this machine')}): one job of {c['tasks']:,} tasks through the Azure emulator, "
            f"seed {c['seed']}, with faults firing at random: {fired}.", "",
            "| measure | value |", "|---|---|",
            f"| wall s, submit → end | {c.get('wallSeconds')} |",
            f"| job | {c.get('state')}: {c.get('succeeded')} succeeded, {c.get('failed')} failed |",
            f"| why tasks failed | {reasons} |",
            f"| task runs (side effects) | {c.get('runs')} |",
            f"| Batch polling calls per task | {c.get('pollingCallsPerTask')} (at most 0.05) |",
            f"| checks | {checks} |"] + (["", "Other full runs:", ""] + [f"- {r}" for r in c["otherRuns"]] if c.get("otherRuns") else [])


def write_chart(path, results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is missing (make bench installs it); no chart", file=sys.stderr)
        return
    labels, values = [], []
    for key, row in results["rows"].items():
        if "ratio" in row:
            labels.append(f"{key}: {row['ratio']['name']}")
            values.append(row["ratio"]["value"] / row["ratio"]["target"])
        for c in row.get("checks", []):
            labels.append(f"{key}: {c['name']}")
            values.append(c["value"] / c["target"])
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.2))
    ax.barh(labels, values, color=["#3a7" if v <= 1 else "#c44" for v in values])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("measured / target (left of the line: target met; log scale)")
    ax.set_title("batchd against its targets (BENCHMARKS.md)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated; the other rows keep their last results")
    ap.add_argument("--out")
    ap.add_argument("--render", action="store_true", help="only write BENCHMARKS.md and the chart again from results.json")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    out = args.out or ("/tmp/batchd-bench-quick" if args.quick else ROOT)
    if args.render:
        with open(os.path.join(out, "bench", "results.json")) as f:
            results = json.load(f)
        write_markdown(os.path.join(out, "BENCHMARKS.md"), results)
        write_chart(os.path.join(out, "bench", "ratios.png"), results)
        return
    os.makedirs(os.path.join(out, "bench"), exist_ok=True)
    for tool in ("batchd", "batchctl", "batchd-exec"):
        if not os.access(f"{BIN}/{tool}", os.X_OK):
            raise SystemExit(f"bench: {BIN}/{tool} is missing; run `swift build -c release` (make bench does)")
    results = {"quick": args.quick, "runs": runs, "machine": machine(), "rows": {}, "pending": PENDING}
    previous = os.path.join(out, "bench", "results.json")
    if set(args.rows.split(",")) != set(ROWS) and os.path.exists(previous):
        # Some rows only: the others keep their last results.
        with open(previous) as f:
            old = json.load(f)
        if old.get("quick") == args.quick:
            results["rows"] = {k: v for k, v in old.get("rows", {}).items() if k in ROWS}
            # Rows kept from an earlier run say where and when they were measured.
            for v in results["rows"].values():
                v.setdefault("measuredOn", old["machine"])
    for key in args.rows.split(","):
        print(f"bench: {key} …", file=sys.stderr, flush=True)
        results["rows"][key] = ROWS[key](runs, args.quick)
        results["rows"][key]["measuredOn"] = results["machine"]
        print(json.dumps(results["rows"][key], indent=1), file=sys.stderr)
    with open(os.path.join(out, "bench", "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_markdown(os.path.join(out, "BENCHMARKS.md"), results)
    write_chart(os.path.join(out, "bench", "ratios.png"), results)
    print(f"bench: wrote {out}/bench/results.json, {out}/BENCHMARKS.md, {out}/bench/ratios.png", file=sys.stderr)


if __name__ == "__main__":
    main()
