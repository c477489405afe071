"""Where Batch tasks really run: a scheduler places active tasks on free node
slots; each task runs as a local process in its own directory, after its
resource files are downloaded over HTTP with the SAS they carry, and its
output files are uploaded to their container SAS URLs on the stated condition."""
import glob
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit, urlunsplit
import xml.etree.ElementTree as ET

from . import batch_containers as containers
from .batch_model import Node


def _http(method, url, data=None, headers=None, attempts=8):
    """A node's own HTTP client: retries throttling like a real node agent."""
    for attempt in range(attempts):
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            if e.code in (429, 500, 503) and attempt + 1 < attempts:
                time.sleep(min(2.0, float(e.headers.get("retry-after-ms", "0") or 0) / 1000 or 0.05 * (attempt + 1)))
                continue
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if attempt + 1 < attempts:
                time.sleep(0.05 * (attempt + 1))
                continue
            raise


def _blob_url(container_url, name):
    parts = urlsplit(container_url)
    path = parts.path.rstrip("/") + "/" + quote(name)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


# A pool's resizeErrors as the service words them (error codes of the Batch
# docs' "Batch status and error codes": the pool stays short of its target).
RESIZE_ERRORS = {
    "AccountCoreQuotaReached": {
        "code": "AccountCoreQuotaReached",
        "message": "The specified account has reached its quota of dedicated cores, so the desired number of nodes could not be allocated.",
        "values": [{"name": "QuotaType", "value": "DedicatedCores"}]},
    "AllocationFailed": {
        "code": "AllocationFailed",
        "message": "Desired number of dedicated nodes could not be allocated due to a lack of capacity for this VM size in the region."},
    "AllocationTimedout": {
        "code": "AllocationTimedout",
        "message": "Desired number of dedicated nodes could not be allocated as the resize timeout was reached."},
}


def vm_cores(vm_size):
    """A VM size's vCPUs, as its name says (Standard_D2s_v3: 2, Standard_F8s_v2: 8)."""
    m = re.match(r"(?i)^standard_[a-z]+(\d+)", vm_size or "")
    return int(m.group(1)) if m else 1


class TaskFailure(Exception):
    def __init__(self, category, code, message):
        super().__init__(message)
        self.info = {"category": category, "code": code, "message": message}


class Runner:
    def __init__(self, service, root):
        self.service = service
        self.root = root
        self.wake = threading.Condition(service.lock)
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, name="scheduler", daemon=True)
        self.thread.start()

    def later(self, delay, action):
        """Runs `action` (with the service's lock held) after `delay` seconds."""
        def work():
            time.sleep(delay)
            with self.wake:
                action()
                self.wake.notify_all()
        threading.Thread(target=work, name="later", daemon=True).start()

    def poke(self):
        with self.wake:
            self.wake.notify_all()

    # -- scheduling --------------------------------------------------------
    def loop(self):
        with self.wake:
            while not self.stopping:
                self.schedule()
                self.wake.wait(timeout=0.5)

    def schedule(self):
        svc = self.service
        for job in list(svc.jobs.values()):
            if job.state == "active" and job.max_wall and time.time() > job.created + job.max_wall:
                svc.end_job(job, "MaxWallClockTimeExpiry")
            if job.state != "active":
                continue
            pool = svc.pools.get(job.pool_id)
            if pool is None or pool.state != "active":
                continue
            for task in list(job.tasks.values()):
                if task.state != "active":
                    continue
                node = max((n for n in pool.nodes if n.free >= task.required_slots), key=lambda n: n.free, default=None)
                if node is None:
                    break
                task.node = node
                node.running[(job.id, task.id)] = task
                node.state = "running"
                task.set_state("running")
                task.start_time = time.time()
                task.stop_reason = None
                threading.Thread(target=self.run_task, args=(task, node), name=f"task-{task.id}", daemon=True).start()

    # -- pools -------------------------------------------------------------
    def allocate(self, pool, delay):
        """Brings a pool to its target size after `delay`, running the start task on new nodes."""
        def work():
            time.sleep(delay)
            with self.wake:
                if pool.state != "active":
                    return
                want = [(False, pool.target_dedicated), (True, pool.target_low)]
                # The `resize_error` fault: the pool stays short of its
                # target (no node is added) and says why, as the service does.
                refusal = self.service.faults.get("resize_error")
                pool.resize_errors = [RESIZE_ERRORS[refusal]] if refusal in RESIZE_ERRORS else []
                # The account's dedicated-core quota: nodes are added while
                # they fit; short of the target, the pool says so. Cores that
                # free later do not grow it: a new resize does.
                cores, limit = vm_cores(pool.body.get("vmSize")), self.service.quotas.get("dedicatedCores")
                used = sum(vm_cores(p.body.get("vmSize")) for p in self.service.pools.values() if p.state != "deleting"
                           for n in p.nodes if not n.low_priority)
                for low, target in want:
                    have = [n for n in pool.nodes if n.low_priority == low]
                    for n in have[target:]:
                        if not n.running:
                            pool.nodes.remove(n)
                            used -= 0 if low else cores
                    for _ in range(0 if pool.resize_errors else target - len(have)):
                        if not low and limit is not None and used + cores > limit:
                            pool.resize_errors = [RESIZE_ERRORS["AccountCoreQuotaReached"]]
                            break
                        used += 0 if low else cores
                        pool.nodes.append(Node(pool, next(pool.node_index), pool.slots, low))
                fresh = [n for n in pool.nodes if n.state == "starting"]
            for n in fresh:
                self.start_node(pool, n)
            with self.wake:
                pool.allocation = "steady"
                pool.allocation_time = time.time()
                self.wake.notify_all()
        threading.Thread(target=work, name=f"allocate-{pool.id}", daemon=True).start()

    def start_node(self, pool, node):
        """A node joins its pool (or comes back from a reboot or reimage):
        unusable under the `unusable_nodes` fault, else its start task runs."""
        start = pool.body.get("startTask")
        state = "idle"
        with self.wake:
            unusable = self.service.take_fault("unusable_nodes")
        errors = [] if unusable else containers.node_errors(pool.body)
        if unusable or errors:
            state = "unusable"
        elif start:
            node_dir = os.path.join(self.root, pool.id, node.id)
            wd = os.path.join(node_dir, "startup", "wd")
            os.makedirs(wd, exist_ok=True)
            env = self.env(pool, node, None, start.get("environmentSettings"), wd)
            try:
                self.fetch(start.get("resourceFiles") or [], wd)
                fetched = True
            except TaskFailure:
                fetched = False
            with self.wake:
                failing = self.service.take_fault("start_task_fail")
            if failing or not fetched:
                code = 1
            else:
                with open(os.path.join(node_dir, "startup", "stdout.txt"), "wb") as out, \
                        open(os.path.join(node_dir, "startup", "stderr.txt"), "wb") as err:
                    try:
                        code = subprocess.call(shlex.split(start["commandLine"]), cwd=wd, env=env, stdout=out, stderr=err,
                                               start_new_session=True, timeout=600)
                    except (OSError, subprocess.TimeoutExpired):
                        code = 1
            if code != 0 and start.get("waitForSuccess", True):
                state = "starttaskfailed"
        with self.wake:
            node.state = state
            node.errors = errors
            node.state_time = time.time()

    def preempt(self, pool, node):
        """A spot node goes away: its running tasks are requeued; a new node replaces it later."""
        with self.wake:
            for task in list(node.running.values()):
                task.stop_reason = "preempted"
                self.kill(task)
            node.state = "preempted"
            node.state_time = time.time()
        self.allocate_replacement(pool, node)

    def restart_node(self, pool, node, state, option):
        """Reboot or reimage (`state` rebooting or reimaging): running tasks
        are requeued (the default, and `taskcompletion`/`retaineddata`, which
        this emulator takes as requeue) or, with `terminate`, completed as
        failed; then the start task runs again."""
        for task in list(node.running.values()):
            task.stop_reason = "terminated" if option == "terminate" else "requeued"
            self.kill(task)
        node.state = state
        node.state_time = time.time()

        def work():
            time.sleep(self.service.allocation_delay)
            with self.wake:
                if node not in pool.nodes or node.state != state:
                    return
            self.start_node(pool, node)
            self.poke()
        threading.Thread(target=work, daemon=True).start()

    def allocate_replacement(self, pool, node):
        def work():
            time.sleep(self.service.allocation_delay)
            with self.wake:
                if node in pool.nodes:
                    pool.nodes.remove(node)
                fresh = Node(pool, next(pool.node_index), pool.slots, node.low_priority)
                pool.nodes.append(fresh)
            self.start_node(pool, fresh)
            self.poke()
        threading.Thread(target=work, daemon=True).start()

    # -- tasks -------------------------------------------------------------
    @staticmethod
    def kill(task):
        p = task.process
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if getattr(task, "container", None):
            containers.remove(task.container, p)

    def env(self, pool, node, task, settings, wd):
        node_dir = os.path.join(self.root, pool.id, node.id)
        shared = os.path.join(node_dir, "shared")
        os.makedirs(shared, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": wd, "LANG": "C.UTF-8",
               "AZ_BATCH_NODE_SHARED_DIR": shared, "AZ_BATCH_NODE_ROOT_DIR": node_dir, "AZ_BATCH_POOL_ID": pool.id,
               "AZ_BATCH_NODE_ID": node.id, "AZ_BATCH_ACCOUNT_NAME": self.service.account,
               "AZ_BATCH_TASK_WORKING_DIR": wd, "AZ_BATCH_NODE_IS_DEDICATED": "false" if node.low_priority else "true"}
        if task is not None:
            env.update({"AZ_BATCH_JOB_ID": task.job.id, "AZ_BATCH_TASK_ID": task.id,
                        "AZ_BATCH_TASK_DIR": os.path.dirname(wd)})
        for item in settings or []:
            env[item["name"]] = item.get("value", "")
        return env

    def run_task(self, task, node):
        pool = node.pool
        task_dir = os.path.join(self.root, pool.id, node.id, "workitems", task.job.id, "job-1", task.id)
        task.dir = task_dir   # where `list_task_files` looks
        wd = os.path.join(task_dir, "wd")
        os.makedirs(wd, exist_ok=True)
        code, failure = None, None
        while True:
            try:
                self.download(task, wd)
                code = self.execute(task, node, task_dir, wd)
            except TaskFailure as f:
                code, failure = None, f.info
            if task.stop_reason in ("preempted", "requeued"):
                with self.wake:
                    node.running.pop((task.job.id, task.id), None)
                    task.requeue_count += 1
                    # Kept after the job is gone: the chaos soak accounts for every run.
                    key = f"{task.job.id}/{task.id}"
                    self.service.requeues[key] = self.service.requeues.get(key, 0) + 1
                    task.node = None
                    task.process = None
                    task.set_state("active")
                    self.wake.notify_all()
                return
            if task.stop_reason in ("terminated", "deleted"):
                failure = failure or {"category": "usererror", "code": "TaskEnded", "message": "The task was terminated"}
                break
            if code is not None and code != 0 and (task.max_retries == -1 or task.retry_count < task.max_retries) and not task.stop_reason:
                task.retry_count += 1
                continue
            break
        if code is not None and code != 0 and failure is None:
            failure = {"category": "usererror", "code": "FailureExitCode",
                       "message": "The task process exited with an unexpected exit code",
                       "details": [{"name": "Message", "value": f"The task process exited with an unexpected exit code: {code}"}]}
        try:
            self.upload(task, task_dir, wd, success=(code == 0 and failure is None))
        except TaskFailure as f:
            failure = failure or f.info
        with self.wake:
            node.running.pop((task.job.id, task.id), None)
            if not node.running and node.state == "running":
                node.state = "idle"
            task.exit_code = code
            task.result = "success" if code == 0 and failure is None else "failure"
            task.failure = failure
            task.end_time = time.time()
            task.process = None
            task.set_state("completed")
            self.service.task_completed(task.job)
            self.wake.notify_all()

    def execute(self, task, node, task_dir, wd):
        env = self.env(node.pool, node, task, task.body.get("environmentSettings"), wd)
        try:
            argv = shlex.split(task.body["commandLine"])
        except ValueError as e:
            raise TaskFailure("usererror", "CommandLineParseError", str(e))
        limits = [t for t in (task.max_wall and task.start_time + task.max_wall,
                              task.job.max_wall and task.job.created + task.job.max_wall) if t]
        deadline = min(limits) if limits else None
        refused = containers.refusal(task.body, node.pool.body)
        if refused:
            raise TaskFailure(*refused)
        task.container = None
        if task.body.get("containerSettings") is not None:
            task.container, argv = containers.command(task.body, argv, env, os.path.join(self.root, node.pool.id, node.id), task_dir, wd)
            env = containers.engine_environment(env)
        with open(os.path.join(task_dir, "stdout.txt"), "ab") as out, open(os.path.join(task_dir, "stderr.txt"), "ab") as err:
            try:
                p = subprocess.Popen(argv, cwd=wd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as e:
                raise TaskFailure("usererror", "CommandProgramNotFound", f"The specified command program is not found: {e}")
            # A stop (disable, terminate, node removal) that came between the
            # task turning "running" and this spawn found no process to kill.
            with self.wake:
                task.process = p
                stopped = task.stop_reason is not None
            if stopped:
                self.kill(task)
            try:
                return p.wait(timeout=max(0, deadline - time.time()) if deadline else None)
            except subprocess.TimeoutExpired:
                self.kill(task)
                p.wait()
                raise TaskFailure("usererror", "MaxWallClockTimeExpiry",
                                  "The task ran longer than the maximum time allowed by its constraints")

    def download(self, task, wd):
        self.fetch(task.body.get("resourceFiles") or [], wd)

    def fetch(self, resource_files, wd):
        for rf in resource_files:
            target = rf.get("filePath", "")
            if rf.get("httpUrl"):
                status, data = _http("GET", rf["httpUrl"])
                if status != 200:
                    raise TaskFailure("usererror", "ResourceContainerAccessDenied" if status == 403 else "BlobDownloadMiscError",
                                      f"downloading {target or rf['httpUrl'].split('?')[0]} failed with HTTP {status}")
                self.save(wd, target or os.path.basename(urlsplit(rf["httpUrl"]).path), data, rf.get("fileMode"))
            elif rf.get("storageContainerUrl"):
                url = rf["storageContainerUrl"]
                parts = urlsplit(url)
                prefix = rf.get("blobPrefix", "")
                marker = ""
                while True:
                    q = parts.query + "&restype=container&comp=list" + (f"&prefix={quote(prefix)}" if prefix else "") + (f"&marker={quote(marker)}" if marker else "")
                    status, body = _http("GET", urlunsplit((parts.scheme, parts.netloc, parts.path, q.lstrip("&"), "")))
                    if status != 200:
                        raise TaskFailure("usererror", "ResourceContainerAccessDenied" if status == 403 else "ResourceContainerListMiscError",
                                          f"listing the container failed with HTTP {status}")
                    root = ET.fromstring(body)
                    for name in [b.findtext("Name") for b in root.iter("Blob")]:
                        status, data = _http("GET", _blob_url(url, name))
                        if status != 200:
                            raise TaskFailure("usererror", "BlobDownloadMiscError", f"downloading {name} failed with HTTP {status}")
                        self.save(wd, os.path.join(target, name) if target else name, data, rf.get("fileMode"))
                    marker = root.findtext("NextMarker") or ""
                    if not marker:
                        break
            else:
                raise TaskFailure("usererror", "ResourceFileSourceNotSupported", "autoStorageContainerName is not supported by the emulator")

    @staticmethod
    def save(wd, rel, data, mode):
        path = os.path.normpath(os.path.join(wd, rel))
        if not path.startswith(os.path.normpath(wd) + os.sep):
            raise TaskFailure("usererror", "ResourceFilePathInvalid", f"{rel} is outside the task's directory")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        if mode:
            os.chmod(path, int(mode, 8))

    def upload(self, task, task_dir, wd, success):
        """Uploads the task's output files, as the node agent does: each file
        it sends is logged in fileuploadout.txt, each failure in
        fileuploaderr.txt (both in the task directory); the first failure
        fails the task with FileUploadMiscError, whatever its exit code."""
        out_log = os.path.join(task_dir, "fileuploadout.txt")
        err_log = os.path.join(task_dir, "fileuploaderr.txt")

        def log(path, line):
            with open(path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")
        failure = None
        for of in task.body.get("outputFiles") or []:
            condition = ((of.get("uploadOptions") or {}).get("uploadCondition") or "tasksuccess").lower()
            if condition == "tasksuccess" and not success or condition == "taskfailure" and success:
                continue
            pattern = of["filePattern"]
            container = (((of.get("destination") or {}).get("container")) or {})
            url, path = container.get("containerUrl"), container.get("path", "")
            if not url:
                continue
            matches = sorted(m for m in glob.glob(os.path.join(wd, pattern), recursive=True) if os.path.isfile(m))
            wildcard = any(c in pattern for c in "*?[")
            for m in matches:
                rel = os.path.relpath(m, wd) if not os.path.relpath(m, wd).startswith("..") else os.path.basename(m)
                name = (path.rstrip("/") + "/" + rel if path else rel) if wildcard else (path or rel)
                with open(m, "rb") as f:
                    data = f.read()
                lost = self.service.faults.get("lose_upload")
                try:
                    if lost and name.endswith(lost):
                        # The `lose_upload` fault: reported sent, but not in
                        # the container (as if deleted right after).
                        status, body = 201, b""
                    else:
                        status, body = _http("PUT", _blob_url(url, name), data=data,
                                             headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2026-10-06"})
                except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                    status, body = 0, str(e).encode()
                if status == 201:
                    log(out_log, f"Uploaded {os.path.relpath(m, wd)} to {name} ({len(data)} bytes)")
                    continue
                try:
                    code = ET.fromstring(body).findtext("Code") if body.startswith(b"<") else None
                except ET.ParseError:
                    code = None
                log(err_log, f"Failed to upload {os.path.relpath(m, wd)} to {name}: HTTP {status} {code or ''}".rstrip())
                if failure is None:
                    failure = TaskFailure("usererror", "FileUploadMiscError", "The compute node could not upload one or more output files")
                    failure.info["details"] = [{"name": "FilePath", "value": os.path.relpath(m, wd)},
                                               {"name": "HttpStatusCode", "value": str(status)}] + \
                                              ([{"name": "StorageErrorCode", "value": code}] if code else [])
        if failure is not None:
            raise failure
