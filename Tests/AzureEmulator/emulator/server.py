"""One loopback port for everything: Batch at /, Blob at /<storage-account>/...,
Entra ID at /<tenant>/oauth2/v2.0/token, and the emulator's own admin API
under /_emulator/ (faults, counters, preemption)."""
import json
import random
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

from .auth import parse_query
from .http import Clock, Request, Response, http_date


class Faults:
    """Faults on demand, set by flags or POST /_emulator/faults."""

    def __init__(self):
        self.error_rate = 0.0        # share of requests answered 503/429 with Retry-After
        self.retry_after = 1.0       # seconds the throttling answers ask for
        self.latency = 0.0           # seconds added to every request
        self.drop_rate = 0.0         # share of connections dropped mid-response
        self.error_status = 0        # 429 or 503 only; 0 for half each
        self.error_burst = 0         # the next N requests all get the throttling answer
        self.outage_after = -1       # after N more requests, every one gets it until reset (-1: off)
        self.lock = threading.Lock()
        self.rng = random.Random(0)

    def update(self, values):
        for key in ("error_rate", "retry_after", "latency", "drop_rate"):
            if key in values:
                setattr(self, key, float(values[key]))
        if "error_status" in values:
            self.error_status = int(values["error_status"])
        if "error_burst" in values:
            self.error_burst = int(values["error_burst"])
        if "outage_after" in values:
            self.outage_after = int(values["outage_after"])
        if "clock_offset" in values:
            Clock.offset = float(values["clock_offset"])

    def json(self):
        return {"error_rate": self.error_rate, "retry_after": self.retry_after, "latency": self.latency,
                "drop_rate": self.drop_rate, "error_status": self.error_status, "outage_after": self.outage_after,
                "clock_offset": Clock.offset}

    def roll(self, rate):
        with self.lock:
            return rate > 0 and self.rng.random() < rate

    def throttle_now(self):
        """Whether this request gets a throttling answer (a burst first, then the rate)."""
        with self.lock:
            if self.outage_after == 0:
                return True
            if self.outage_after > 0:
                self.outage_after -= 1
            if self.error_burst > 0:
                self.error_burst -= 1
                return True
        return self.roll(self.error_rate)

    def retry_after_header(self):
        """Integer seconds, as the service sends; a fraction only when set so (faster tests)."""
        v = self.retry_after
        return str(int(v)) if v == int(v) else f"{v:g}"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.requests = defaultdict(int)
        self.statuses = defaultdict(lambda: defaultdict(int))
        self.bytes_in = 0
        self.bytes_out = 0
        self.faults = defaultdict(int)
        self.writes = defaultdict(int)

    def wrote(self, container):
        """A blob (or a block of one) was written into `container`."""
        with self.lock:
            self.writes[container] += 1

    def count(self, op, n_in, n_out, status=None):
        with self.lock:
            self.requests[op] += 1
            if status is not None:
                self.statuses[op][str(status)] += 1
            self.bytes_in += n_in
            self.bytes_out += n_out

    def json(self):
        with self.lock:
            return {"requests": dict(self.requests), "total": sum(self.requests.values()),
                    "statuses": {op: dict(s) for op, s in self.statuses.items()}, "bytesIn": self.bytes_in,
                    "bytesOut": self.bytes_out, "faults": dict(self.faults),
                    "writesByContainer": dict(self.writes)}


class Emulator:
    def __init__(self, batch, blob, tokens, storage_account):
        self.batch = batch
        self.blob = blob
        self.tokens = tokens
        self.storage_account = storage_account
        self.faults = Faults()
        self.stats = Stats()

    def dispatch(self, req):
        path = unquote(req.raw_path)
        if path.startswith("/_emulator/"):
            return self.admin(req, path), None
        parts = path.split("/")
        if len(parts) >= 5 and parts[2:5] == ["oauth2", "v2.0", "token"] and req.method == "POST":
            form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
            status, body = self.tokens.issue(parts[1], form)
            return Response(status, {"Content-Type": "application/json"}, json.dumps(body).encode()), "token"
        if self.faults.latency:
            time.sleep(self.faults.latency)
        if self.faults.throttle_now():
            status = self.faults.error_status or (503 if self.faults.rng.random() < 0.5 else 429)
            self.stats.faults[str(status)] += 1
            ms = int(self.faults.retry_after * 1000)
            return Response(status, {"Retry-After": self.faults.retry_after_header(), "retry-after-ms": str(ms),
                                     "x-ms-retry-after-ms": str(ms), "Content-Type": "application/json",
                                     "x-ms-error-code": "ServerBusy" if status == 503 else "TooManyRequests"},
                            json.dumps({"code": "ServerBusy" if status == 503 else "TooManyRequests",
                                        "message": {"lang": "en-US", "value": "The server is busy."}}).encode()), f"fault.{status}"
        if parts[1] == self.storage_account and self.blob is not None:
            return self.blob.handle(req, path[len(self.storage_account) + 1:])
        return self.batch.handle(req, path)

    def admin(self, req, path):
        name = path[len("/_emulator/"):].strip("/")
        body = json.loads(req.body or b"{}") if req.method == "POST" else {}
        if name == "stats":
            if req.method == "DELETE":
                self.stats.reset()
            return self.json(self.stats.json())
        if name == "faults":
            if req.method == "POST":
                self.faults.update(body)
                if "addcollection_timeout" in body:
                    self.batch.faults["addcollection_timeout"] = int(body["addcollection_timeout"])
                if "deletion_delay" in body:
                    self.batch.deletion_delay = float(body["deletion_delay"])
                    if self.blob is not None:
                        self.blob.deletion_delay = float(body["deletion_delay"])
                if "addcollection_servererror" in body:
                    self.batch.faults["addcollection_servererror"] = int(body["addcollection_servererror"])
                if "lose_upload" in body:
                    self.batch.faults["lose_upload"] = body["lose_upload"] or None
                if "counts_lag" in body:
                    self.batch.faults["counts_lag"] = float(body["counts_lag"] or 0)
                    self.batch.freeze_counts()
                if "resize_error" in body:
                    self.batch.faults["resize_error"] = body["resize_error"]
                # true: every start task fails, every node starts unusable;
                # an integer: the next N do (a reboot then recovers the node).
                for key in ("start_task_fail", "unusable_nodes"):
                    if key in body:
                        v = body[key]
                        self.batch.faults[key] = v if isinstance(v, int) else bool(v)
            return self.json(dict(self.faults.json(), deletion_delay=self.batch.deletion_delay, **self.batch.faults))
        if name == "preempt" and req.method == "POST":
            with self.batch.lock:
                nodes = [(p, n) for p in self.batch.pools.values() for n in p.nodes
                         if (body.get("node") in (None, n.id)) and (body.get("pool") in (None, p.id)) and n.running]
            if not nodes:
                return self.json({"preempted": None}, 404)
            pool, node = nodes[0]
            self.batch.runner.preempt(pool, node)
            return self.json({"preempted": node.id, "pool": pool.id})
        if name == "wait" and req.method == "POST":
            # Blocks until a pool reaches an allocation state (a test waits on
            # the emulator's own condition instead of polling it).
            pool_id, want, deadline = body.get("pool"), body.get("allocation", "steady"), time.time() + float(body.get("timeout", 10))
            with self.batch.runner.wake:
                while True:
                    p = self.batch.pools.get(pool_id)
                    if p is not None and p.allocation == want:
                        break
                    left = deadline - time.time()
                    if left <= 0:
                        break
                    self.batch.runner.wake.wait(left)
                found = p is not None and p.allocation == want
                return self.json({"reached": found, "allocation": p.allocation if p else None,
                                  "dedicated": sum(1 for n in p.nodes if not n.low_priority) if p else None,
                                  "spot": sum(1 for n in p.nodes if n.low_priority) if p else None})
        if name == "requeues":
            # Every run put back in its queue so far (a node preempted, a pool
            # deleted, a job disabled with requeue), by "job/task".
            with self.batch.lock:
                return self.json(dict(self.batch.requeues))
        if name == "quotas":
            # The account's quotas: {"activeJobs": 2, "pools": 1, "dedicatedCores": 4}; null lifts one.
            if req.method == "POST":
                with self.batch.lock:
                    for key in ("activeJobs", "pools", "dedicatedCores"):
                        if key in body:
                            self.batch.quotas[key] = None if body[key] is None else int(body[key])
            return self.json(self.batch.quotas)
        if name == "tokens" and req.method == "POST":
            # Entra ID tokens issued so far: expired now, or revoked.
            if body.get("revoke"):
                return self.json({"revoked": self.tokens.revoke()})
            if body.get("expire"):
                return self.json({"expired": self.tokens.expire()})
            return self.json({"error": "say expire or revoke"}, 400)
        if name == "clients" and req.method == "POST":
            self.tokens.register(body["tenant"], body["client_id"], body["client_secret"])
            return self.json({"registered": body["client_id"]})
        return self.json({"error": f"unknown admin request {req.method} {name}"}, 404)

    @staticmethod
    def json(obj, status=200):
        return Response(status, {"Content-Type": "application/json"}, json.dumps(obj).encode())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AzureEmulator/1.0"
    emulator = None   # set by serve()

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def _handle(self):
        raw_path, _, raw_query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(self.command, raw_path, raw_query, headers, body,
                      query={k: v for k, v in reversed(parse_query(raw_query))},
                      base_url=f"http://{self.server.server_address[0]}:{self.server.server_address[1]}")
        em = self.emulator
        try:
            resp, op = em.dispatch(req)
        except Exception as e:  # a bug in the emulator: say so loudly, as a 500
            import traceback
            traceback.print_exc()
            resp, op = Response(500, {"Content-Type": "application/json"}, json.dumps({"code": "InternalError", "message": {"value": str(e)}}).encode()), "error"
        drop = op is not None and op != "token" and em.faults.roll(em.faults.drop_rate)
        # Counted before the answer goes out: a client that reads the stats
        # right after its last answer must see that request in them.
        if op is not None:
            em.stats.count(op, len(body), len(resp.body), resp.status)
            if op in ("put.blob", "put.block", "put.blocklist") and resp.status == 201:
                em.stats.wrote(unquote(raw_path).split("/")[2])
            if drop:
                with em.stats.lock:
                    em.stats.faults["drop"] += 1
        self.send(resp, drop)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

    def send(self, resp, drop=False):
        """Status line, headers and body in one send (no delayed-ACK stalls)."""
        lines = [f"HTTP/1.1 {resp.status} {self.responses.get(resp.status, ('',))[0]}"]
        headers = dict(resp.headers)
        headers.setdefault("Date", http_date())
        headers.setdefault("Server", self.server_version)
        headers["Content-Length"] = str(len(resp.body)) if self.command != "HEAD" or "Content-Length" not in headers else headers["Content-Length"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (resp.body if self.command != "HEAD" else b"")
        if drop:
            self.wfile.write(payload[: max(1, len(payload) // 2)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True


def serve(emulator, port):
    handler = type("BoundHandler", (Handler,), {"emulator": emulator})
    return Server(("127.0.0.1", port), handler)
