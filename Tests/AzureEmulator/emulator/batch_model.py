"""The Batch entities the emulator keeps: pools with nodes, jobs, tasks."""
import itertools
import threading
import time
from datetime import datetime, timezone

_seq = itertools.count(1)


def now_iso(ts=None):
    dt = datetime.fromtimestamp(ts if ts is not None else time.time(), tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_etag():
    return "0x8DC%013X" % (int(time.time() * 1000) * 1000 + next(_seq) % 1000)


def duration_seconds(text):
    """ISO 8601 duration (PT1H30M, P1D, PT0.5S) to seconds; None for none."""
    import re
    if not text:
        return None
    m = re.match(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", text)
    if not m:
        return None
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)



class BatchError(Exception):
    """An error the service answers with: status, code, message and details."""

    def __init__(self, status, code, message, values=None):
        super().__init__(message)
        self.status, self.code, self.message, self.values = status, code, message, values or []

class Node:
    def __init__(self, pool, index, slots, low_priority):
        self.id = f"tvmps_{pool.id[:20]}_{index:04d}"
        self.pool = pool
        self.slots = slots
        self.low_priority = low_priority
        self.state = "starting"
        self.running = {}          # (job id, task id) -> Task
        self.errors = []           # as the service reports them (a pull that failed)
        self.state_time = time.time()

    @property
    def free(self):
        return self.slots - sum(t.required_slots for t in self.running.values()) if self.state in ("idle", "running") else 0

    def json(self):
        return {"id": self.id, "state": self.state, "stateTransitionTime": now_iso(self.state_time),
                "isDedicated": not self.low_priority, "taskSlotsPerNode": self.slots,
                "runningTasksCount": len(self.running), "runningTaskSlotsCount": sum(t.required_slots for t in self.running.values()),
                **({"errors": self.errors} if self.errors else {})}


class Pool:
    def __init__(self, body, auto_for=None):
        self.body = body
        self.id = body["id"]
        self.auto_for = auto_for
        self.state = "active"
        self.allocation = "resizing"
        self.target_dedicated = int(body.get("targetDedicatedNodes") or 0)
        self.target_low = int(body.get("targetLowPriorityNodes") or 0)
        self.slots = int(body.get("taskSlotsPerNode") or 1)
        self.nodes = []
        self.created = time.time()
        self.state_time = self.created
        self.allocation_time = self.created
        self.etag = new_etag()
        self.modified = self.created
        self.node_index = itertools.count()
        self.resize_errors = []

    def json(self, base):
        j = {k: v for k, v in self.body.items() if k not in ("targetDedicatedNodes", "targetLowPriorityNodes")}
        # A registry's password is x-ms-secret in the spec: never given back.
        config = (j.get("virtualMachineConfiguration") or {}).get("containerConfiguration")
        if config and config.get("containerRegistries"):
            j["virtualMachineConfiguration"] = dict(j["virtualMachineConfiguration"],
                                                    containerConfiguration=dict(config, containerRegistries=[
                                                        {k: v for k, v in r.items() if k != "password"} for r in config["containerRegistries"]]))
        j.update({
            "url": f"{base}/pools/{self.id}", "eTag": self.etag, "lastModified": now_iso(self.modified),
            "creationTime": now_iso(self.created), "state": self.state, "stateTransitionTime": now_iso(self.state_time),
            "allocationState": self.allocation, "allocationStateTransitionTime": now_iso(self.allocation_time),
            "currentDedicatedNodes": sum(1 for n in self.nodes if not n.low_priority),
            "currentLowPriorityNodes": sum(1 for n in self.nodes if n.low_priority),
            "targetDedicatedNodes": self.target_dedicated, "targetLowPriorityNodes": self.target_low,
            "taskSlotsPerNode": self.slots, "enableAutoScale": bool(self.body.get("enableAutoScale", False)),
            "resizeTimeout": self.body.get("resizeTimeout", "PT15M"),
            "taskSchedulingPolicy": self.body.get("taskSchedulingPolicy", {"nodeFillType": "spread"}),
        })
        if self.resize_errors:
            j["resizeErrors"] = self.resize_errors
        return j


class Job:
    def __init__(self, body, pool_id):
        self.body = body
        self.id = body["id"]
        self.pool_id = pool_id
        self.state = "active"
        self.created = time.time()
        self.state_time = self.created
        self.etag = new_etag()
        self.modified = self.created
        self.tasks = {}
        self.task_ids = set()   # lower-cased, for the case-blind uniqueness check
        self.terminate_reason = None
        self.end_time = None
        self.scheduling_error = None
        self.on_all_complete = (body.get("onAllTasksComplete") or "noaction").lower()
        constraints = body.get("constraints") or {}
        self.max_wall = duration_seconds(constraints.get("maxWallClockTime"))
        self.max_retries = constraints.get("maxTaskRetryCount", 0)

    def json(self, base):
        j = dict(self.body)
        info = {"startTime": now_iso(self.created)}
        if self.pool_id:
            info["poolId"] = self.pool_id
        if self.end_time:
            info["endTime"] = now_iso(self.end_time)
        if self.terminate_reason:
            info["terminateReason"] = self.terminate_reason
        if self.scheduling_error:
            info["schedulingError"] = self.scheduling_error
        j.update({"url": f"{base}/jobs/{self.id}", "eTag": self.etag, "lastModified": now_iso(self.modified),
                  "creationTime": now_iso(self.created), "state": self.state, "stateTransitionTime": now_iso(self.state_time),
                  "executionInfo": info, "onAllTasksComplete": self.on_all_complete,
                  "poolInfo": {"poolId": self.pool_id} if "poolId" in (self.body.get("poolInfo") or {}) else self.body.get("poolInfo")})
        return j

    def counts(self):
        """Its tasks counted by state, and their slots (the taskcounts answer)."""
        counts = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
        slots = dict(counts)
        for t in self.tasks.values():
            counts[t.state if t.state in counts else "active"] += 1
            slots[t.state if t.state in slots else "active"] += t.required_slots
            if t.state == "completed":
                key = "succeeded" if t.result == "success" else "failed"
                counts[key] += 1
                slots[key] += t.required_slots
        return {"taskCounts": counts, "taskSlotCounts": slots}


class Task:
    def __init__(self, body, job):
        self.body = body
        self.id = body["id"]
        self.job = job
        self.state = "active"
        self.created = time.time()
        self.state_time = self.created
        self.etag = new_etag()
        self.modified = self.created
        self.required_slots = int(body.get("requiredSlots") or 1)
        constraints = body.get("constraints") or {}
        self.max_wall = duration_seconds(constraints.get("maxWallClockTime"))
        self.max_retries = constraints.get("maxTaskRetryCount", job.max_retries)
        self.retry_count = 0
        self.requeue_count = 0
        self.start_time = None
        self.end_time = None
        self.exit_code = None
        self.result = None
        self.failure = None
        self.node = None
        self.process = None
        self.container = None      # the engine's name for its container, while one runs
        self.stop_reason = None    # "preempted", "terminated", "deleted"
        self.lock = threading.Lock()

    def set_state(self, state):
        self.state = state
        self.state_time = time.time()
        self.modified = self.state_time
        self.etag = new_etag()

    def json(self, base):
        j = dict(self.body)
        info = {"retryCount": self.retry_count, "requeueCount": self.requeue_count}
        if self.start_time:
            info["startTime"] = now_iso(self.start_time)
        if self.end_time:
            info["endTime"] = now_iso(self.end_time)
        if self.exit_code is not None:
            info["exitCode"] = self.exit_code
        if self.result:
            info["result"] = self.result
        if self.failure:
            info["failureInfo"] = self.failure
        j.update({"url": f"{base}/jobs/{self.job.id}/tasks/{self.id}", "eTag": self.etag,
                  "lastModified": now_iso(self.modified), "creationTime": now_iso(self.created),
                  "state": self.state, "stateTransitionTime": now_iso(self.state_time),
                  "executionInfo": info, "requiredSlots": self.required_slots})
        if self.node is not None:
            j["nodeInfo"] = {"poolId": self.node.pool.id, "nodeId": self.node.id, "affinityId": self.node.id}
        return j
