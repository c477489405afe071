"""The container row (issue 25): what running a task in an image costs,
per task, against the same task bare, beside `podman run` alone.

The tests' image (localhost/batchd-test:1, scripts/container-image.sh) and
the shipped containers.conf; podman as root (a rootful engine)."""
import os
import subprocess

from common import BIN, ROOT, Daemon, manifest, median_spread, timed

IMAGE = "localhost/batchd-test:1"
CONF = os.path.join(ROOT, "etc", "batchd", "containers.conf")


def row_container(runs, quick):
    n = 10 if quick else 60
    p = os.cpu_count()
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "container-image.sh"), CONF], check=True, capture_output=True)
    env = dict(os.environ, CONTAINERS_CONF=CONF)
    extra = f"containers: {{environment: {{CONTAINERS_CONF: {CONF}}}}}\n"
    bare, boxed, alone = [], [], []
    for _ in range(runs):
        for kind, into in (("bare", bare), ("boxed", boxed)):
            d = Daemon(slots=p, extra=extra)
            try:
                d.start()
                more = f"container: {{image: {IMAGE}}}\n" if kind == "boxed" else ""
                path = manifest(d, kind, n, "true", extra=more)
                into.append(timed([f"{BIN}/batchctl", "--config", d.config, "submit", path, "--wait"], capture_output=True) / n)
            finally:
                d.close()
        # The engine alone, as many at once as batchd runs.
        seq = "\n".join(str(i) for i in range(n)) + "\n"
        alone.append(timed(["xargs", "-P", str(p), "-I{}", "podman", "run", "--rm", "--pull=never", "--entrypoint", "/bin/sh", IMAGE, "-c", "true"],
                           input=seq, text=True, env=env, stdout=subprocess.DEVNULL) / n)
    b, c, a = median_spread(bare), median_spread(boxed), median_spread(alone)
    return {
        "title": f"{n} local tasks of `true` in a container, {p} slots (podman, rootful)",
        "measures": {"batchd bare wall s per task": b, "batchd in the image wall s per task": c,
                     f"podman run --rm alone (xargs -P {p}) wall s per run": a},
        "ratio": {"name": "batchd in the image / podman run alone", "value": c["median"] / a["median"], "target": 1.5},
    }
