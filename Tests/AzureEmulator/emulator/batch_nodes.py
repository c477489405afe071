"""The Batch service's node operations: reboot, reimage and remove nodes;
a task's files on its node."""
import os
import time
from email.utils import formatdate
from urllib.parse import quote, unquote

from .batch_model import BatchError, new_etag, now_iso
from .http import Response


class NodeRoutes:
    """Mixed into BatchService (its pools, runner, lock and errors)."""

    def _node(self, p, node_id):
        for n in p.nodes:
            if n.id == node_id:
                return n
        raise BatchError(404, "NodeNotFound", "The specified node does not exist.")

    def get_node(self, req, body, pool, node):
        return self.ok(200, self._node(self._pool(pool), node).json())

    # The spec says a node may be rebooted or reimaged "only if it is in an
    # idle or running state"; the service's node-error guidance (and Batch
    # Shipyard's node recovery) reboots `starttaskfailed` and `unusable` nodes
    # too, which is what a reboot is for. Taken here as the service does.
    RESTARTABLE = ("idle", "running", "starttaskfailed", "unusable")

    def reboot_node(self, req, body, pool, node):
        return self._restart(pool, node, "rebooting", (body or {}).get("nodeRebootOption", "requeue"))

    def reimage_node(self, req, body, pool, node):
        return self._restart(pool, node, "reimaging", (body or {}).get("nodeReimageOption", "requeue"))

    def _restart(self, pool, node, state, option):
        p = self._pool(pool)
        n = self._node(p, node)
        if n.state not in self.RESTARTABLE:
            raise BatchError(409, "NodeNotReady" if n.state in ("starting", "creating") else "OperationInvalidForCurrentState",
                             f"The node is {n.state}; it can be {'rebooted' if state == 'rebooting' else 'reimaged'} when idle, running, "
                             "starttaskfailed or unusable.")
        self.runner.restart_node(p, n, state, option)
        return self.ok(202)

    def remove_nodes(self, req, body, pool):
        """Removes the listed nodes (at most 100), requeueing their running
        tasks, and lowers the pool's targets by as many: only while steady."""
        p = self._pool(pool)
        ids = (body or {}).get("nodeList") or []
        if len(ids) > 100:
            raise BatchError(400, "InvalidPropertyValue", "The value provided for one of the properties in the request body is invalid.",
                             [{"key": "PropertyName", "value": "nodeList"}])
        if p.state == "deleting":
            raise BatchError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
        if p.allocation != "steady":
            raise BatchError(409, "PoolNotSteady", "The specified pool is not in steady allocation state.")
        nodes = [self._node(p, i) for i in ids]
        for n in nodes:
            for task in list(n.running.values()):
                task.stop_reason = "requeued"
                self.runner.kill(task)
            n.state = "leavingpool"
            n.state_time = time.time()
        p.target_dedicated = max(0, p.target_dedicated - sum(1 for n in nodes if not n.low_priority))
        p.target_low = max(0, p.target_low - sum(1 for n in nodes if n.low_priority))
        p.allocation = "resizing"
        p.allocation_time = time.time()
        p.etag = new_etag()

        def done():
            for n in nodes:
                if n in p.nodes:
                    p.nodes.remove(n)
            p.allocation = "steady"
            p.allocation_time = time.time()
        self.runner.later(self.allocation_delay, done)
        return self.ok(202, etag=p.etag)

    def _task_dir(self, job, task):
        j = self._job(job)
        t = j.tasks.get(task)
        if t is None:
            raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
        root = getattr(t, "dir", None)
        if not root or not os.path.isdir(root):
            raise BatchError(404, "NodeNotFound", "The node the task ran on, or its files, no longer exist.")
        return root

    def get_task_file(self, req, body, job, task, path):
        """One file of the task's directory on its node (Get Task File):
        `stdout.txt`, `wd/out.txt`. Nothing outside the directory is served."""
        root = self._task_dir(job, task)
        rel = unquote(path)
        full = os.path.realpath(os.path.join(root, rel))
        if not full.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(full):
            raise BatchError(404, "FileNotFound", "The specified file does not exist.")
        with open(full, "rb") as f:
            data = f.read()
        st = os.stat(full)
        return Response(200, {"Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                              "ocp-batch-file-isdirectory": "false", "ocp-batch-file-mode": oct(st.st_mode & 0o7777)[2:],
                              "ocp-creation-time": formatdate(st.st_mtime, usegmt=True),
                              "Last-Modified": formatdate(st.st_mtime, usegmt=True)}, data)

    def list_task_files(self, req, body, job, task):
        """The files in the task's directory on the node where it last ran
        (`recursive=true`: all the way down), named relative to it
        (`wd/out.txt`, `stdout.txt`). Gone with the node, or never run: 404."""
        root = self._task_dir(job, task)
        recursive = req.query.get("recursive", "false").lower() == "true"
        items = []
        for here, dirs, files in os.walk(root):
            rel = os.path.relpath(here, root)
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(here, name)
                st = os.lstat(path)
                is_dir = os.path.isdir(path)
                named = name if rel == "." else f"{rel}/{name}"
                items.append({"name": named, "isDirectory": is_dir,
                              "url": f"{req.base_url}/jobs/{job}/tasks/{task}/files/{quote(named, safe='')}",
                              "properties": {"lastModified": now_iso(st.st_mtime), "contentLength": str(0 if is_dir else st.st_size),
                                             "fileMode": oct(st.st_mode & 0o7777)[2:]}})
            if not recursive:
                break
        return self.page(req, "files", items)
