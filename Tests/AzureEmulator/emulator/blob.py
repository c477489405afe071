"""Azure Blob Storage, path-style (/<account>/<container>/<blob>): containers,
block blobs (Put Blob, Put Block, Put Block List, Get Block List), Get Blob
with ranges, properties, listing with prefix/delimiter/marker/maxresults."""
import base64
import hashlib
import threading
import time
from urllib.parse import unquote
from xml.sax.saxutils import escape

from .auth import AuthError, TokenError, blob_string_to_sign, check_date, check_sas, check_shared_key
from .http import Response, http_date

VERSION = "2026-10-06"


class Blob:
    def __init__(self):
        self.data = b""
        self.content_type = "application/octet-stream"
        self.md5 = None
        self.etag = ""
        self.modified = 0.0
        self.committed = []        # [(block id, bytes)]
        self.uncommitted = {}      # block id -> bytes
        self.exists = False        # false while only uncommitted blocks exist


class Container:
    def __init__(self):
        self.blobs = {}
        self.etag = _etag()
        self.modified = time.time()


_counter = [0]
_counter_lock = threading.Lock()


def _etag():
    with _counter_lock:
        _counter[0] += 1
        return '"0x8DC%013X"' % (int(time.time() * 1000) * 16 + _counter[0] % 16)


class Refused(Exception):
    """An operation's error answer, raised from deep in a handler."""

    def __init__(self, response):
        super().__init__(response.headers.get("x-ms-error-code"))
        self.response = response


def error(status, code, message, headers=None):
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>{escape(message)}\nRequestId:emulator\nTime:{http_date()}</Message></Error>").encode()
    h = {"x-ms-error-code": code, "Content-Type": "application/xml"}
    h.update(headers or {})
    return Response(status, h, body)


class BlobService:
    def __init__(self, account, key, tokens, deletion_delay=0.0):
        self.account = account
        self.key = key
        self.tokens = tokens
        self.containers = {}
        # Deleted containers and when their name is free again: the service
        # refuses a new container of that name meanwhile (ContainerBeingDeleted).
        self.deletion_delay = deletion_delay
        self.deleting = {}
        self.lock = threading.RLock()

    # -- auth --------------------------------------------------------------
    def authorize(self, req, container, blob, needed):
        sas = {k: v for k, v in req.query.items() if k in ("sv", "sr", "sp", "st", "se", "sig", "spr", "si", "sip",
                                                             "ses", "rscc", "rscd", "rsce", "rscl", "rsct", "snapshot",
                                                             "skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid",
                                                             "scid", "skdutid", "sduoid", "srh", "srq")}
        if "sig" in sas:
            if needed == "":   # Get User Delegation Key takes Entra ID only
                raise AuthError("this operation must be authorized with Microsoft Entra ID")
            check_sas(sas, self.account, self.key, container, blob, needed)
            return
        header = req.headers.get("authorization", "")
        if header.startswith("Bearer "):
            req.principal = self.tokens.check(header, "https://storage.azure.com")
            return
        if needed == "":
            raise AuthError("this operation must be authorized with Microsoft Entra ID")
        if not header:
            raise AuthError("no Authorization header and no SAS")
        check_shared_key(header, self.account, self.key,
                         blob_string_to_sign(req.method, req.raw_path, req.raw_query, req.headers, self.account))
        check_date(req.headers, ["x-ms-date", "date"])

    # -- dispatch ----------------------------------------------------------
    def handle(self, req, rest):
        """`rest` is the decoded path after /<account>: '', '/c' or '/c/blob/name'."""
        parts = rest.lstrip("/").split("/", 1)
        container = parts[0] if parts[0] else None
        blob = parts[1] if len(parts) > 1 and parts[1] else None
        restype = req.query.get("restype")
        comp = req.query.get("comp")
        op, needed = self.operation(req.method, container, blob, restype, comp)
        if op is None:
            return error(400, "UnsupportedHttpVerb", f"{req.method} is not supported here"), "blob.unsupported"
        try:
            self.authorize(req, container, blob, needed)
        except TokenError as e:
            return error(401, "InvalidAuthenticationInfo", f"Server failed to authenticate the request. {e}",
                         {"WWW-Authenticate": e.challenge()}), op
        except AuthError as e:
            return error(403, "AuthenticationFailed",
                         f"Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature. {e}"), op
        with self.lock:
            try:
                resp = getattr(self, op.replace(".", "_"))(req, container, blob)
            except Refused as r:
                resp = r.response
        resp.headers.setdefault("x-ms-version", VERSION)
        resp.headers.setdefault("x-ms-request-id", "emulator")
        if "x-ms-client-request-id" in req.headers:
            resp.headers["x-ms-client-request-id"] = req.headers["x-ms-client-request-id"]
        return resp, op

    @staticmethod
    def operation(method, container, blob, restype, comp):
        """(operation name, SAS permissions that allow it)."""
        if container is None:
            if method == "GET" and comp == "list":
                return "list.containers", "l"
            if method in ("GET", "HEAD") and restype == "service" and comp == "properties":
                return "service.properties", "r"
            if method == "POST" and restype == "service" and comp == "userdelegationkey":
                return "user.delegation.key", ""
            return None, ""
        if blob is None:
            if restype == "container":
                if method == "PUT" and comp is None:
                    return "create.container", "c"
                if method == "DELETE":
                    return "delete.container", "d"
                if method in ("GET", "HEAD") and comp is None:
                    return "container.properties", "r"
                if method == "GET" and comp == "list":
                    return "list.blobs", "l"
            return None, ""
        if method == "PUT":
            if comp == "block":
                return "put.block", "wc"
            if comp == "blocklist":
                return "put.blocklist", "wc"
            if comp is None:
                return "put.blob", "wc"
        if method == "GET" and comp == "blocklist":
            return "get.blocklist", "r"
        if method == "GET" and comp is None:
            return "get.blob", "r"
        if method == "HEAD" and comp is None:
            return "blob.properties", "r"
        if method == "DELETE" and comp is None:
            return "delete.blob", "d"
        return None, ""

    # -- containers --------------------------------------------------------
    def create_container(self, req, container, _):
        if container in self.containers:
            return error(409, "ContainerAlreadyExists", "The specified container already exists.")
        if self.deleting.get(container, 0) > time.time():
            return error(409, "ContainerBeingDeleted", "The specified container is being deleted. Try operation later.")
        if not (3 <= len(container) <= 63) or not all(c.islower() or c.isdigit() or c == "-" for c in container):
            return error(400, "InvalidResourceName", "The specifed resource name contains invalid characters.")
        c = Container()
        self.containers[container] = c
        return Response(201, {"ETag": c.etag, "Last-Modified": http_date(c.modified)})

    def delete_container(self, req, container, _):
        if self.containers.pop(container, None) is None:
            return error(404, "ContainerNotFound", "The specified container does not exist.")
        self.deleting[container] = time.time() + self.deletion_delay
        return Response(202)

    def container_properties(self, req, container, _):
        c = self.containers.get(container)
        if c is None:
            return error(404, "ContainerNotFound", "The specified container does not exist.")
        return Response(200, {"ETag": c.etag, "Last-Modified": http_date(c.modified)})

    def service_properties(self, req, *_):
        return Response(200, {"Content-Type": "application/xml"},
                        b'<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties></StorageServiceProperties>')

    def list_containers(self, req, *_):
        prefix = req.query.get("prefix", "")
        names = sorted(n for n in self.containers if n.startswith(prefix))
        items = "".join(f"<Container><Name>{escape(n)}</Name><Properties><Last-Modified>{http_date(self.containers[n].modified)}"
                        f"</Last-Modified><Etag>{self.containers[n].etag}</Etag></Properties></Container>" for n in names)
        body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{req.base_url}/{self.account}/">'
                f"<Prefix>{escape(prefix)}</Prefix><Containers>{items}</Containers><NextMarker /></EnumerationResults>")
        return Response(200, {"Content-Type": "application/xml"}, body.encode())

    def list_blobs(self, req, container, _):
        c = self.containers.get(container)
        if c is None:
            return error(404, "ContainerNotFound", "The specified container does not exist.")
        prefix = req.query.get("prefix", "")
        delimiter = req.query.get("delimiter", "")
        marker = req.query.get("marker", "")
        try:
            maxresults = min(5000, int(req.query.get("maxresults", "5000")))
        except ValueError:
            return error(400, "InvalidQueryParameterValue", "maxresults is not a number")
        entries = []   # (sort key, xml)
        seen_prefixes = set()
        for name in sorted(n for n, b in c.blobs.items() if b.exists and n.startswith(prefix)):
            if delimiter:
                cut = name.find(delimiter, len(prefix))
                if cut >= 0:
                    p = name[: cut + len(delimiter)]
                    if p not in seen_prefixes:
                        seen_prefixes.add(p)
                        entries.append((p, f"<BlobPrefix><Name>{escape(p)}</Name></BlobPrefix>"))
                    continue
            b = c.blobs[name]
            md5 = f"<Content-MD5>{base64.b64encode(b.md5).decode()}</Content-MD5>" if b.md5 else "<Content-MD5 />"
            entries.append((name, f"<Blob><Name>{escape(name)}</Name><Properties><Last-Modified>{http_date(b.modified)}</Last-Modified>"
                                  f"<Etag>{b.etag.strip(chr(34))}</Etag><Content-Length>{len(b.data)}</Content-Length>"
                                  f"<Content-Type>{escape(b.content_type)}</Content-Type>{md5}<BlobType>BlockBlob</BlobType>"
                                  f"<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState></Properties></Blob>"))
        entries.sort(key=lambda e: e[0])
        entries = [e for e in entries if e[0] > marker] if marker else entries
        page, rest = entries[:maxresults], entries[maxresults:]
        next_marker = page[-1][0] if rest else ""
        body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{req.base_url}/{self.account}/" '
                f'ContainerName="{escape(container)}"><Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker>'
                f"<MaxResults>{maxresults}</MaxResults><Delimiter>{escape(delimiter)}</Delimiter><Blobs>{''.join(e[1] for e in page)}</Blobs>"
                f"<NextMarker>{escape(next_marker)}</NextMarker></EnumerationResults>")
        return Response(200, {"Content-Type": "application/xml"}, body.encode())

    # -- blobs -------------------------------------------------------------
    def _container(self, container):
        c = self.containers.get(container)
        if c is None:
            raise Refused(error(404, "ContainerNotFound", "The specified container does not exist."))
        return c

    @staticmethod
    def _write_refused(req, b):
        """The conditional headers of a write (If-Match, If-None-Match),
        checked against the blob as it is: None if the write may go on."""
        exists = b is not None and b.exists
        match, none_match = req.headers.get("if-match"), req.headers.get("if-none-match")
        if none_match == "*" and exists:
            return error(409, "BlobAlreadyExists", "The specified blob already exists.")
        if none_match and none_match != "*" and exists and none_match == b.etag:
            return error(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
        if match and (not exists or (match != "*" and match != b.etag)):
            return error(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
        return None

    def _commit(self, b, data, req, md5=None):
        b.data = data
        b.exists = True
        b.content_type = req.headers.get("x-ms-blob-content-type") or req.headers.get("content-type") or "application/octet-stream"
        given = req.headers.get("x-ms-blob-content-md5")
        b.md5 = base64.b64decode(given) if given else (md5 or hashlib.md5(data).digest())
        b.etag = _etag()
        b.modified = time.time()

    def _written(self, b, extra=None):
        h = {"ETag": b.etag, "Last-Modified": http_date(b.modified), "x-ms-request-server-encrypted": "true"}
        h.update(extra or {})
        return Response(201, h)

    def user_delegation_key(self, req, container, blob):
        """Get User Delegation Key: a key for signing SAS tokens, valid
        between Start and Expiry (at most 7 days ahead), for the principal
        of the Bearer token."""
        import xml.etree.ElementTree as ET
        from .auth import MAX_DELEGATION_SECONDS, delegation_key, _parse_time
        try:
            root = ET.fromstring(req.body)
            start, expiry = root.findtext("Start") or "", root.findtext("Expiry") or ""
            t0, t1 = (_parse_time(start) if start else time.time()), _parse_time(expiry)
        except Exception:
            return error(400, "InvalidXmlDocument", "XML specified is not syntactically valid.")
        if t1 <= t0 or t1 > time.time() + MAX_DELEGATION_SECONDS + 60:
            return error(400, "InvalidQueryParameterValue",
                         "The value for one of the XML nodes is not in the correct format (Expiry: after Start, at most 7 days ahead).")
        tid, oid = getattr(req, "principal", ("", ""))
        start = start or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
        value = delegation_key(self.key, oid, tid, start, expiry)
        body = (f'<?xml version="1.0" encoding="utf-8"?><UserDelegationKey><SignedOid>{escape(oid)}</SignedOid>'
                f"<SignedTid>{escape(tid)}</SignedTid><SignedStart>{escape(start)}</SignedStart><SignedExpiry>{escape(expiry)}</SignedExpiry>"
                f"<SignedService>b</SignedService><SignedVersion>{VERSION}</SignedVersion><Value>{value}</Value></UserDelegationKey>")
        return Response(200, {"Content-Type": "application/xml"}, body.encode())

    def put_blob(self, req, container, blob):
        c = self._container(container)
        if req.headers.get("x-ms-blob-type", "BlockBlob") != "BlockBlob":
            return error(400, "InvalidHeaderValue", "only BlockBlob is supported")
        refused = self._write_refused(req, c.blobs.get(blob))
        if refused:
            return refused
        md5 = req.headers.get("content-md5")
        digest = hashlib.md5(req.body).digest()
        if md5 and base64.b64decode(md5) != digest:
            return error(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
        b = c.blobs.setdefault(blob, Blob())
        b.uncommitted = {}
        b.committed = [("", req.body)]
        self._commit(b, req.body, req, digest)
        return self._written(b, {"Content-MD5": base64.b64encode(digest).decode()})

    def put_block(self, req, container, blob):
        c = self._container(container)
        block_id = req.query.get("blockid", "")
        try:
            raw = base64.b64decode(block_id, validate=True)
        except Exception:
            return error(400, "InvalidQueryParameterValue", "blockid is not base64")
        if not block_id or len(raw) > 64:
            return error(400, "InvalidQueryParameterValue", "blockid must be at most 64 bytes")
        b = c.blobs.setdefault(blob, Blob())
        if b.uncommitted and len(next(iter(b.uncommitted))) != len(block_id):
            return error(400, "InvalidBlobOrBlock", "The specified blob or block content is invalid (block ids of one blob must have the same length).")
        if len(b.uncommitted) >= 100_000:
            return error(409, "BlockCountExceedsLimit", "too many uncommitted blocks")
        headers = {"x-ms-request-server-encrypted": "true"}
        # A block sent with Content-MD5 is checked, and its MD5 returned; one
        # without is not hashed (the service answers with a CRC64 then, which
        # no client here reads), so staging a large file costs the emulator
        # no more than the bytes.
        given = req.headers.get("content-md5")
        if given:
            digest = hashlib.md5(req.body).digest()
            if base64.b64decode(given) != digest:
                return error(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
            headers["Content-MD5"] = base64.b64encode(digest).decode()
        b.uncommitted[block_id] = req.body
        return Response(201, headers)

    def put_blocklist(self, req, container, blob):
        import xml.etree.ElementTree as ET
        c = self._container(container)
        refused = self._write_refused(req, c.blobs.get(blob))
        if refused:
            return refused
        b = c.blobs.setdefault(blob, Blob())
        try:
            root = ET.fromstring(req.body)
        except ET.ParseError:
            return error(400, "InvalidXmlDocument", "XML specified is not syntactically valid.")
        committed = dict(b.committed)
        chosen = []
        for el in root:
            bid = (el.text or "").strip()
            where = el.tag
            if where in ("Uncommitted", "Latest") and bid in b.uncommitted:
                chosen.append((bid, b.uncommitted[bid]))
            elif where in ("Committed", "Latest") and bid in committed:
                chosen.append((bid, committed[bid]))
            else:
                return error(400, "InvalidBlockList", "The specified block list is invalid.")
        if len(chosen) > 50_000:
            return error(400, "InvalidBlockList", "more than 50,000 blocks")
        b.committed = chosen
        b.uncommitted = {}
        self._commit(b, b"".join(d for _, d in chosen), req)
        return self._written(b)

    def get_blocklist(self, req, container, blob):
        c = self._container(container)
        b = c.blobs.get(blob)
        if b is None:
            return error(404, "BlobNotFound", "The specified blob does not exist.")
        kind = req.query.get("blocklisttype", "committed").lower()
        def blocks(items):
            return "".join(f"<Block><Name>{bid}</Name><Size>{len(d)}</Size></Block>" for bid, d in items)
        committed = blocks(b.committed) if kind in ("committed", "all") and b.exists else ""
        uncommitted = blocks(b.uncommitted.items()) if kind in ("uncommitted", "all") else ""
        body = (f'<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks>{committed}</CommittedBlocks>'
                f"<UncommittedBlocks>{uncommitted}</UncommittedBlocks></BlockList>")
        h = {"Content-Type": "application/xml", "x-ms-blob-content-length": str(len(b.data))}
        if b.exists:
            h["ETag"] = b.etag
        return Response(200, h, body.encode())

    def _properties(self, b):
        h = {"ETag": b.etag, "Last-Modified": http_date(b.modified), "x-ms-blob-type": "BlockBlob",
             "Content-Type": b.content_type, "Accept-Ranges": "bytes", "x-ms-server-encrypted": "true",
             "x-ms-creation-time": http_date(b.modified), "x-ms-lease-state": "available", "x-ms-lease-status": "unlocked"}
        if b.md5:
            h["Content-MD5"] = base64.b64encode(b.md5).decode()
        return h

    def blob_properties(self, req, container, blob):
        c = self.containers.get(container)
        b = c.blobs.get(blob) if c else None
        if b is None or not b.exists:
            return Response(404, {"x-ms-error-code": "BlobNotFound"})
        h = self._properties(b)
        h["Content-Length"] = str(len(b.data))
        return Response(200, h)

    def get_blob(self, req, container, blob):
        c = self._container(container)
        b = c.blobs.get(blob)
        if b is None or not b.exists:
            return error(404, "BlobNotFound", "The specified blob does not exist.")
        h = self._properties(b)
        match = req.headers.get("if-match")
        if match and match != "*" and match != b.etag:
            return error(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
        rng = req.headers.get("x-ms-range") or req.headers.get("range")
        if not rng:
            return Response(200, h, b.data)
        try:
            unit, _, spec = rng.partition("=")
            start_s, _, end_s = spec.partition("-")
            start = int(start_s)
            end = int(end_s) if end_s else len(b.data) - 1
            assert unit == "bytes"
        except (ValueError, AssertionError):
            return error(400, "InvalidRange", "The range specified is invalid.")
        if start >= len(b.data) or start > end:
            return error(416, "InvalidRange", "The range specified is invalid for the current size of the resource.",
                         {"Content-Range": f"bytes */{len(b.data)}"})
        end = min(end, len(b.data) - 1)
        h["Content-Range"] = f"bytes {start}-{end}/{len(b.data)}"
        if req.headers.get("x-ms-range-get-content-md5") == "true":
            h["Content-MD5"] = base64.b64encode(hashlib.md5(b.data[start:end + 1]).digest()).decode()
        elif "Content-MD5" in h:
            h["x-ms-blob-content-md5"] = h.pop("Content-MD5")
        return Response(206, h, b.data[start:end + 1])

    def delete_blob(self, req, container, blob):
        c = self._container(container)
        b = c.blobs.get(blob)
        if b is None or not b.exists:
            return error(404, "BlobNotFound", "The specified blob does not exist.")
        del c.blobs[blob]
        return Response(202, {"x-ms-delete-type-permanent": "true"})
