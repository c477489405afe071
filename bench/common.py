"""What the benchmark rows share: a daemon on its own state directory,
job manifests, timing and waiting, medians with their spread."""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BATCHD_BIN") or os.path.join(ROOT, ".build", "release")
# The conformance suite's emulator launcher, account and SDK clients.
sys.path.insert(0, os.path.join(ROOT, "Tests", "AzureEmulator", "tests"))


def azure_env(url):
    """The environment that points batchd at the emulator's account."""
    import conftest
    return {
        "AZURE_BATCH_ACCOUNT": conftest.ACCOUNT, "AZURE_BATCH_ACCESS_KEY": conftest.KEY, "AZURE_BATCH_ENDPOINT": url,
        "AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;AccountName={conftest.STORAGE};"
                                           f"AccountKey={conftest.STORAGE_KEY};BlobEndpoint={url}/{conftest.STORAGE}",
    }


def median_spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


class Daemon:
    """A batchd on its own state directory; READY=1 arrives on a notify socket."""

    def __init__(self, slots=None, state=None, azure=None, extra=""):
        self.dir = state or tempfile.mkdtemp(prefix="batchd-bench.")
        self.config = os.path.join(self.dir, "batchd.yaml")
        with open(self.config, "w") as f:
            f.write(f"stateDirectory: {self.dir}/state\nruntimeDirectory: {self.dir}/run\n")
            f.write(f"local: {{slots: {slots or os.cpu_count()}}}\n")
            if azure:
                f.write("azure: {pollMinInterval: 1s}\n")
            f.write(extra)
        # The emulator's account, when given.
        self.env = azure_env(azure) if azure else {}
        self.proc = None

    def start(self, timeout=120):
        """Starts the daemon; returns seconds from exec to READY=1."""
        path = os.path.join(self.dir, "notify")
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(timeout)
        env = dict(os.environ, NOTIFY_SOCKET=path, **self.env)
        log = open(os.path.join(self.dir, "daemon.log"), "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([f"{BIN}/batchd", "--config", self.config], env=env, stdout=log, stderr=log)
        try:
            while True:
                msg = sock.recv(4096)
                if b"READY=1" in msg.split(b"\n"):
                    return time.monotonic() - t0
        except socket.timeout:
            raise SystemExit(f"bench: the daemon did not become ready in {timeout} s; see {self.dir}/daemon.log")
        finally:
            sock.close()

    def cpu_seconds(self):
        """The daemon's user + system CPU so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status(self, key):
        """A /proc/<pid>/status value in KiB (VmRSS, VmHWM)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def ctl(self, *args, check=True):
        return subprocess.run([f"{BIN}/batchctl", "--config", self.config, *args], capture_output=True, text=True, check=check)

    def show(self, job):
        r = self.ctl("show", job, "--json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def kill(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()

    def log_size(self):
        return os.path.getsize(os.path.join(self.dir, "daemon.log"))

    def wait_log(self, text, since=0, timeout=600):
        """Waits for `text` in the daemon's log after byte `since`: reading
        a file costs the machine less than asking batchctl over and over,
        so the wait does not slow what it times."""
        path = os.path.join(self.dir, "daemon.log")
        needle = text.encode()

        def seen():
            with open(path, "rb") as f:
                f.seek(since)
                return needle in f.read()
        return wait_for(seen, timeout, every=0.002)

    def close(self):
        self.kill()
        # Tasks left running by a SIGKILLed daemon, then the directory.
        subprocess.run(["pkill", "-KILL", "-f", f"batchd-exec {self.dir}/"], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def manifest(d, name, n, command="true", extra=""):
    path = os.path.join(d.dir, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(f"name: {name}\ntasks: {{forEachInteger: {{from: 1, to: {n}}}}}\ncommand: {json.dumps(command)}\n{extra}")
    return path


def wait_for(predicate, timeout, every=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise SystemExit("bench: gave up waiting")


def timed(cmd, **kw):
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, **kw)
    return time.monotonic() - t0
