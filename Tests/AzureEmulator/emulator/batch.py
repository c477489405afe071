"""Azure Batch data plane: pools, jobs, tasks (see WIRE.md's table)."""
import json
import re
import threading
import time
import uuid
from urllib.parse import quote

from .auth import AuthError, TokenError, batch_string_to_sign, check_date, check_shared_key
from .batch_model import BatchError, Job, Pool, Task, duration_seconds, new_etag, now_iso
from .batch_nodes import NodeRoutes
from .batch_runner import Runner
from .http import Response, http_date
from .odata import FilterError, compile_filter, select
from .spec import SpecError

JSON = "application/json; odata=minimalmetadata"
MAX_BODY = 1024 * 1024
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BatchService(NodeRoutes):
    def __init__(self, account, key, tokens, root, spec=None, allocation_delay=1.0, deletion_delay=0.0):
        self.account = account
        self.key = key
        self.tokens = tokens
        self.spec = spec
        self.allocation_delay = allocation_delay
        # How long a deleted pool or job stays `deleting` before it is gone.
        self.deletion_delay = deletion_delay
        # Runs the service put back in the queue (preempted, requeued), by "job/task".
        self.requeues = {}
        # The account's quotas (None: no limit), set at run time.
        self.quotas = {"activeJobs": None, "pools": None, "dedicatedCores": None}
        self.lock = threading.RLock()
        self.pools = {}
        self.jobs = {}
        self.faults = {}
        self.runner = Runner(self, root)

    def take_fault(self, name):
        """Whether fault `name` fires now: on for good (true), or for its next
        N uses (an integer, counted down). Called with the lock held."""
        v = self.faults.get(name)
        if v is True:
            return True
        if isinstance(v, int) and v > 0:
            self.faults[name] = v - 1
            return True
        return False

    # -- plumbing ----------------------------------------------------------
    def error(self, req, e):
        body = {"odata.metadata": f"{req.base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
                "code": e.code, "message": {"lang": "en-US", "value": f"{e.message}\nRequestId:{uuid.uuid4()}\nTime:{now_iso()}"}}
        if e.values:
            body["values"] = e.values
        return Response(e.status, {"Content-Type": JSON}, json.dumps(body).encode())

    def authorize(self, req):
        header = req.headers.get("authorization", "")
        if header.startswith("Bearer "):
            self.tokens.check(header, "https://batch.core.windows.net")
            return
        if not header:
            raise AuthError("no Authorization header")
        check_shared_key(header, self.account, self.key,
                         batch_string_to_sign(req.method, req.raw_path, req.raw_query, req.headers, self.account))
        check_date(req.headers, ["ocp-date", "date"])

    ROUTES = [
        ("GET", r"/pools", "list_pools"), ("POST", r"/pools", "create_pool"),
        ("GET", r"/pools/(?P<pool>[^/]+)", "get_pool"), ("HEAD", r"/pools/(?P<pool>[^/]+)", "pool_exists"),
        ("DELETE", r"/pools/(?P<pool>[^/]+)", "delete_pool"), ("POST", r"/pools/(?P<pool>[^/]+)/resize", "resize_pool"),
        ("GET", r"/pools/(?P<pool>[^/]+)/nodes", "list_nodes"),
        ("GET", r"/pools/(?P<pool>[^/]+)/nodes/(?P<node>[^/]+)", "get_node"),
        ("POST", r"/pools/(?P<pool>[^/]+)/nodes/(?P<node>[^/]+)/reboot", "reboot_node"),
        ("POST", r"/pools/(?P<pool>[^/]+)/nodes/(?P<node>[^/]+)/reimage", "reimage_node"),
        ("POST", r"/pools/(?P<pool>[^/]+)/removenodes", "remove_nodes"),
        ("GET", r"/jobs", "list_jobs"), ("POST", r"/jobs", "create_job"),
        ("GET", r"/jobs/(?P<job>[^/]+)", "get_job"), ("DELETE", r"/jobs/(?P<job>[^/]+)", "delete_job"),
        ("PATCH", r"/jobs/(?P<job>[^/]+)", "patch_job"),
        ("POST", r"/jobs/(?P<job>[^/]+)/terminate", "terminate_job"),
        ("POST", r"/jobs/(?P<job>[^/]+)/disable", "disable_job"), ("POST", r"/jobs/(?P<job>[^/]+)/enable", "enable_job"),
        ("GET", r"/jobs/(?P<job>[^/]+)/taskcounts", "task_counts"),
        ("POST", r"/jobs/(?P<job>[^/]+)/addtaskcollection", "add_task_collection"),
        ("POST", r"/jobs/(?P<job>[^/]+)/tasks", "add_task"), ("GET", r"/jobs/(?P<job>[^/]+)/tasks", "list_tasks"),
        ("GET", r"/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)", "get_task"),
        ("GET", r"/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)/files", "list_task_files"),
        ("GET", r"/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)/files/(?P<path>.+)", "get_task_file"),
        ("DELETE", r"/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)", "delete_task"),
        ("POST", r"/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)/terminate", "terminate_task"),
    ]
    COMPILED = [(m, re.compile("^" + p + "$"), h) for m, p, h in ROUTES]

    def handle(self, req, path):
        for method, regex, name in self.COMPILED:
            m = regex.match(path)
            if m and method == req.method:
                break
        else:
            return self.error(req, BatchError(404, "ResourceNotFound" if req.method != "POST" else "InvalidUri",
                                              f"The specified resource does not exist: {req.method} {path}")), "batch.unknown"
        op = "batch." + name
        try:
            self.authorize(req)
        except TokenError as e:
            resp = self.error(req, BatchError(401, e.code, str(e)))
            resp.headers["WWW-Authenticate"] = e.challenge()
            return resp, op
        except AuthError as e:
            return self.error(req, BatchError(403, "AuthenticationFailed",
                                              "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
                                              [{"key": "AuthenticationErrorDetail", "value": str(e)}])), op
        if "api-version" not in req.query:
            return self.error(req, BatchError(400, "MissingRequiredQueryParameter", "A query parameter that's mandatory for this request is not specified.",
                                              [{"key": "QueryParameterName", "value": "api-version"}])), op
        body = None
        try:
            if req.method in ("POST", "PATCH"):
                if len(req.body) > MAX_BODY:
                    raise BatchError(413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit.",
                                     [{"key": "MaxLimit", "value": str(MAX_BODY)}])
                try:
                    body = json.loads(req.body or b"{}")
                except ValueError:
                    raise BatchError(400, "InvalidRequestBody", "The specified Request Body is not syntactically valid.")
                if self.spec is not None:
                    schema, _ = self.spec.body_schema(req.method, path)
                    if schema is not None:
                        try:
                            self.spec.validate(body, schema)
                        except SpecError as e:
                            raise BatchError(400, "InvalidRequestBody", "The specified Request Body is not syntactically valid.",
                                             [{"key": "Reason", "value": e.reason}, {"key": "PropertyName", "value": e.path}])
            with self.lock:
                resp = getattr(self, name)(req, body, **m.groupdict())
                self.runner.wake.notify_all()
        except BatchError as e:
            return self.error(req, e), op
        resp.headers.setdefault("request-id", str(uuid.uuid4()))
        if req.headers.get("return-client-request-id", "").lower() == "true" and "client-request-id" in req.headers:
            resp.headers["client-request-id"] = req.headers["client-request-id"]
        return resp, op

    @staticmethod
    def ok(status, obj=None, etag=None, modified=None, location=None):
        h = {"Content-Type": JSON} if obj is not None else {}
        if etag:
            h["ETag"] = etag
        if modified:
            h["Last-Modified"] = http_date(modified)
        if location:
            h["Location"] = location
            h["DataServiceId"] = location
        return Response(status, h, json.dumps(obj).encode() if obj is not None else b"")

    def page(self, req, kind, items):
        """A list answer: $filter, $select, maxresults and odata.nextLink paging."""
        try:
            keep = compile_filter(req.query["$filter"]) if req.query.get("$filter") else (lambda e: True)
        except (FilterError, ValueError) as e:
            raise BatchError(400, "InvalidQueryParameterValue", f"$filter is not valid: {e}", [{"key": "QueryParameterName", "value": "$filter"}])
        try:
            size = min(1000, max(1, int(req.query.get("maxresults", "1000"))))
            skip = int(req.query.get("$skiptoken", "0"))
        except ValueError:
            raise BatchError(400, "InvalidQueryParameterValue", "maxresults must be a number")
        matched = [e for e in items if keep(e)]
        body = {"odata.metadata": f"{req.base_url}/$metadata#{kind}",
                "value": [select(e, req.query.get("$select")) for e in matched[skip:skip + size]]}
        if skip + size < len(matched):
            query = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in req.query.items() if k != "$skiptoken")
            body["odata.nextLink"] = f"{req.base_url}{req.raw_path}?{query}&$skiptoken={skip + size}"
        return self.ok(200, body)

    def _pool(self, pool_id):
        p = self.pools.get(pool_id)
        if p is None:
            raise BatchError(404, "PoolNotFound", "The specified pool does not exist.")
        return p

    def _job(self, job_id):
        j = self.jobs.get(job_id)
        if j is None:
            raise BatchError(404, "JobNotFound", "The specified job does not exist.")
        return j

    # -- pools -------------------------------------------------------------
    def make_pool(self, body, auto_for=None):
        if not ID.match(body.get("id", "")):
            raise BatchError(400, "InvalidPropertyValue", "The value provided for one of the properties in the request body is invalid.",
                             [{"key": "PropertyName", "value": "id"}])
        if body["id"] in self.pools:
            if self.pools[body["id"]].state == "deleting":
                raise BatchError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
            raise BatchError(409, "PoolExists", "The specified pool already exists.")
        limit = self.quotas.get("pools")
        if limit is not None and sum(1 for p in self.pools.values() if p.state != "deleting") >= limit:
            raise BatchError(409, "PoolQuotaReached", "The specified account has reached its quota of pools.")
        pool = Pool(body, auto_for)
        self.pools[pool.id] = pool
        self.runner.allocate(pool, self.allocation_delay)
        return pool

    def create_pool(self, req, body):
        pool = self.make_pool(body)
        return self.ok(201, etag=pool.etag, modified=pool.modified, location=f"{req.base_url}/pools/{pool.id}")

    def list_pools(self, req, body):
        return self.page(req, "pools", [p.json(req.base_url) for p in self.pools.values()])

    def get_pool(self, req, body, pool):
        p = self._pool(pool)
        return self.ok(200, p.json(req.base_url), p.etag, p.modified)

    def pool_exists(self, req, body, pool):
        p = self.pools.get(pool)
        return Response(200 if p else 404, {"ETag": p.etag} if p else {})

    def delete_pool(self, req, body, pool):
        p = self._pool(pool)
        if p.state == "deleting":
            raise BatchError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
        self.remove_pool(p)
        return self.ok(202)

    def remove_pool(self, p):
        """As the spec says: the pool is `deleting`, its running tasks are
        terminated and requeued (as a resize with the default requeue option:
        their job may be moved to another pool), and after a while it is gone."""
        if p.state == "deleting":
            return
        for node in p.nodes:
            for task in list(node.running.values()):
                task.stop_reason = "requeued"
                self.runner.kill(task)
        p.state = "deleting"
        p.state_time = time.time()
        p.etag = new_etag()
        self.runner.later(self.deletion_delay, lambda: self.pools.pop(p.id, None) if self.pools.get(p.id) is p else None)

    def resize_pool(self, req, body, pool):
        p = self._pool(pool)
        if p.state == "deleting":
            raise BatchError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
        if p.allocation == "resizing":
            raise BatchError(409, "PoolNotSteady", "The specified pool is not in steady allocation state.")
        p.target_dedicated = int(body.get("targetDedicatedNodes", p.target_dedicated) or 0)
        p.target_low = int(body.get("targetLowPriorityNodes", p.target_low) or 0)
        p.allocation = "resizing"
        p.allocation_time = time.time()
        p.etag = new_etag()
        self.runner.allocate(p, self.allocation_delay)
        return self.ok(202, etag=p.etag)

    def list_nodes(self, req, body, pool):
        return self.page(req, f"pools/{pool}/nodes", [n.json() for n in self._pool(pool).nodes])

    # -- jobs --------------------------------------------------------------
    def create_job(self, req, body):
        if not ID.match(body.get("id", "")):
            raise BatchError(400, "InvalidPropertyValue", "The job id is not valid.", [{"key": "PropertyName", "value": "id"}])
        if body["id"] in self.jobs:
            if self.jobs[body["id"]].state == "deleting":
                raise BatchError(409, "JobBeingDeleted", "The specified job has been marked for deletion and is being garbage collected.")
            raise BatchError(409, "JobExists", "The specified job already exists.")
        limit = self.quotas.get("activeJobs")
        if limit is not None and sum(1 for j in self.jobs.values() if j.state not in ("completed", "deleting")) >= limit:
            raise BatchError(409, "ActiveJobAndScheduleQuotaReached",
                             "The specified account has reached its quota of active jobs and job schedules.")
        info = body.get("poolInfo") or {}
        if info.get("poolId"):
            pool_id = info["poolId"]
        elif info.get("autoPoolSpecification"):
            spec = info["autoPoolSpecification"]
            pool_body = dict(spec.get("pool") or {})
            pool_body["id"] = f"{spec.get('autoPoolIdPrefix', '')}_{uuid.uuid4().hex[:20]}".lstrip("_")[:64]
            try:
                pool_id = self.make_pool(pool_body, auto_for=body["id"]).id
            except BatchError as e:
                # As the spec says: the job is accepted, and if its auto-pool
                # cannot be made it is moved to completed, with the pool's
                # error as its schedulingError.
                job = Job(body, None)
                job.scheduling_error = {"category": "usererror" if e.status < 500 else "servererror", "code": e.code, "message": e.message,
                                        "details": [{"name": v["key"], "value": v["value"]} for v in e.values]}
                job.state, job.end_time = "completed", time.time()
                job.state_time = job.end_time
                self.jobs[job.id] = job
                return self.ok(201, etag=job.etag, modified=job.modified, location=f"{req.base_url}/jobs/{job.id}")
        else:
            raise BatchError(400, "MissingRequiredProperty", "A required property was not specified in the request body.",
                             [{"key": "PropertyName", "value": "poolInfo"}])
        job = Job(body, pool_id)
        self.jobs[job.id] = job
        return self.ok(201, etag=job.etag, modified=job.modified, location=f"{req.base_url}/jobs/{job.id}")

    def list_jobs(self, req, body):
        return self.page(req, "jobs", [j.json(req.base_url) for j in self.jobs.values()])

    def get_job(self, req, body, job):
        j = self._job(job)
        return self.ok(200, j.json(req.base_url), j.etag, j.modified)

    def delete_job(self, req, body, job):
        j = self._job(job)
        if j.state == "deleting":
            raise BatchError(409, "JobBeingDeleted", "The specified job has been marked for deletion and is being garbage collected.")
        self.end_job(j, None)
        self.runner.later(self.deletion_delay, lambda: self.jobs.pop(j.id, None) if self.jobs.get(j.id) is j else None)
        return self.ok(202)

    def patch_job(self, req, body, job):
        """Job_Patch: replaces only the properties given. Setting
        onAllTasksComplete to terminatejob when every task is already
        complete ends the job at once, as the service does."""
        j = self._job(job)
        if j.state != "active":
            raise BatchError(409, "JobNotActive" if j.state != "completed" else "JobCompleted", "The job is not active.")
        for key in ("priority", "maxParallelTasks", "allowTaskPreemption", "constraints", "metadata", "onAllTasksComplete"):
            if key in body:
                j.body[key] = body[key]
        if "constraints" in body:
            constraints = body.get("constraints") or {}
            j.max_wall = duration_seconds(constraints.get("maxWallClockTime"))
            j.max_retries = constraints.get("maxTaskRetryCount", j.max_retries)
        if "onAllTasksComplete" in body:
            j.on_all_complete = (body.get("onAllTasksComplete") or "noaction").lower()
        j.etag = new_etag()
        j.modified = time.time()
        self.task_completed(j)
        return self.ok(200, etag=j.etag, modified=j.modified)

    def terminate_job(self, req, body, job):
        j = self._job(job)
        if j.state == "deleting":
            raise BatchError(409, "JobBeingDeleted", "The specified job has been marked for deletion and is being garbage collected.")
        if j.state == "completed":
            raise BatchError(409, "JobCompleted", "The specified job is already in a completed state.")
        self.end_job(j, (body or {}).get("terminateReason") or "UserTerminate")
        return self.ok(202, etag=j.etag)

    def end_job(self, j, reason):
        """Terminate (or delete) as the spec says: running tasks are
        terminated; tasks still active remain active, in a job that will
        never run them."""
        for task in j.tasks.values():
            if task.state == "running":
                task.stop_reason = "terminated"
                self.runner.kill(task)
        j.state = "completed" if reason else "deleting"
        j.terminate_reason = reason
        j.end_time = time.time()
        j.state_time = j.end_time
        j.etag = new_etag()
        auto = self.pools.get(j.pool_id)
        if auto is not None and auto.auto_for == j.id:
            self.remove_pool(auto)

    def disable_job(self, req, body, job):
        """Disable: no task starts until it is enabled; its running tasks are
        requeued, terminated, or left to finish (`disableTasks`)."""
        j = self._job(job)
        if j.state not in ("active", "disabling", "disabled"):
            raise BatchError(409, "JobNotActive", "The specified job is not in the active state.")
        how = (body or {}).get("disableTasks", "requeue")
        for task in j.tasks.values():
            if task.state == "running" and how in ("requeue", "terminate"):
                task.stop_reason = "requeued" if how == "requeue" else "terminated"
                self.runner.kill(task)
        j.state = "disabled"
        j.state_time = time.time()
        j.etag = new_etag()
        return self.ok(202, etag=j.etag)

    def enable_job(self, req, body, job):
        j = self._job(job)
        if j.state not in ("disabled", "disabling", "enabling"):
            raise BatchError(409, "JobNotDisabled", "The specified job is not in the disabled state.")
        j.state = "active"
        j.state_time = time.time()
        j.etag = new_etag()
        return self.ok(202, etag=j.etag)

    def task_completed(self, j):
        """Called by the runner (lock held) when one of the job's tasks completes."""
        if j.state == "active" and j.on_all_complete == "terminatejob" and all(t.state == "completed" for t in j.tasks.values()):
            self.end_job(j, "AllTasksComplete")

    def task_counts(self, req, body, job):
        """The job's task counts. The spec says they may lag ("the numbers
        returned may not always be up to date"): under the `counts_lag` fault
        (seconds) they are computed afresh only that often, counting from
        when the fault was set."""
        j = self._job(job)
        lag = self.faults.get("counts_lag") or 0
        cached = getattr(j, "counts_seen", None)
        if not lag or cached is None or time.time() - cached[0] >= lag:
            j.counts_seen = (time.time(), j.counts())
        return self.ok(200, j.counts_seen[1])

    def freeze_counts(self):
        """Every job's counts as they are now, for `counts_lag` to hold."""
        with self.lock:
            for j in self.jobs.values():
                j.counts_seen = (time.time(), j.counts())

    # -- tasks -------------------------------------------------------------
    def _check_open(self, j):
        if j.state != "active":
            raise BatchError(409, "JobCompleted" if j.state == "completed" else "JobNotActive",
                             "The specified job is already in a completed state." if j.state == "completed" else "The job is not active.")

    def _new_task(self, j, body):
        if not isinstance(body, dict) or not ID.match(str(body.get("id", ""))):
            raise BatchError(400, "InvalidPropertyValue", "The task id is not valid.", [{"key": "PropertyName", "value": "id"}])
        if not body.get("commandLine"):
            raise BatchError(400, "MissingRequiredProperty", "A required property was not specified in the request body.",
                             [{"key": "PropertyName", "value": "commandLine"}])
        if body["id"].lower() in j.task_ids:   # ids are unique regardless of case
            raise BatchError(409, "TaskExists", "The specified task already exists.")
        task = Task(body, j)
        j.tasks[task.id] = task
        j.task_ids.add(task.id.lower())
        return task

    def add_task(self, req, body, job):
        j = self._job(job)
        self._check_open(j)
        task = self._new_task(j, body)
        return self.ok(201, etag=task.etag, modified=task.modified, location=f"{req.base_url}/jobs/{j.id}/tasks/{task.id}")

    def add_task_collection(self, req, body, job):
        j = self._job(job)
        self._check_open(j)
        items = body.get("value") or []
        if len(items) > 100:
            raise BatchError(413, "RequestBodyTooLarge", "The number of tasks in the collection exceeds the maximum of 100.",
                             [{"key": "MaxLimit", "value": "100"}])
        results = []
        for item in items:
            if self.faults.get("addcollection_servererror", 0) > 0:
                # The service's own trouble with one task: not added, and
                # the client may send it again (the spec's TaskAddStatus).
                self.faults["addcollection_servererror"] -= 1
                results.append({"status": "servererror", "taskId": (item or {}).get("id", ""),
                                "error": {"code": "InternalError", "message": {"lang": "en-US", "value": "The server encountered an internal error. Please retry the request."}}})
                continue
            try:
                task = self._new_task(j, item)
                results.append({"status": "success", "taskId": task.id, "eTag": task.etag,
                                "lastModified": now_iso(task.modified), "location": f"{req.base_url}/jobs/{j.id}/tasks/{task.id}"})
            except BatchError as e:
                results.append({"status": "clienterror", "taskId": (item or {}).get("id", ""),
                                "error": {"code": e.code, "message": {"lang": "en-US", "value": e.message}, "values": e.values}})
        if self.faults.get("addcollection_timeout", 0) > 0:
            self.faults["addcollection_timeout"] -= 1
            raise BatchError(500, "OperationTimedOut", "The operation could not be completed within the permitted time (the tasks may have been added).")
        return self.ok(200, {"value": results})

    def list_tasks(self, req, body, job):
        j = self._job(job)
        return self.page(req, f"jobs/{job}/tasks", [t.json(req.base_url) for t in j.tasks.values()])

    def get_task(self, req, body, job, task):
        t = self._job(job).tasks.get(task)
        if t is None:
            raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
        return self.ok(200, t.json(req.base_url), t.etag, t.modified)

    def delete_task(self, req, body, job, task):
        j = self._job(job)
        t = j.tasks.pop(task, None)
        if t is not None:
            j.task_ids.discard(t.id.lower())
        if t is None:
            raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
        t.stop_reason = "deleted"
        self.runner.kill(t)
        return self.ok(200)

    def terminate_task(self, req, body, job, task):
        t = self._job(job).tasks.get(task)
        if t is None:
            raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
        if t.state == "running":
            t.stop_reason = "terminated"
            self.runner.kill(t)
        elif t.state == "active":
            t.set_state("completed")
            t.result = "failure"
            t.failure = {"category": "usererror", "code": "TaskEnded", "message": "The task was terminated"}
        return self.ok(204)
