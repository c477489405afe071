"""Authentication exactly as the services check it: Shared Key for Batch and
for Blob, service SAS for blobs and containers, and Bearer tokens issued by
the emulator's own Entra ID endpoint. See ../shared/azure/WIRE.md."""
import base64
import hashlib
import hmac
import secrets
import threading
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from .http import Clock


class AuthError(Exception):
    """Authentication failed; the message says why (never the secret)."""


class TokenError(AuthError):
    """A bearer token the service does not take (expired, revoked, never
    issued): answered 401 with a WWW-Authenticate challenge, as the
    service does, so a client knows to fetch a new one."""

    def __init__(self, message, code, tenant=None):
        super().__init__(message)
        self.code = code
        self.tenant = tenant or "common"

    def challenge(self):
        return (f'Bearer authorization_uri="https://login.microsoftonline.com/{self.tenant}", '
                f'error="invalid_token", error_description="{self}"')


# Shared Key requests carry their time; the services refuse one more than
# 15 minutes off their own clock (Storage: "Request date header too old").
MAX_CLOCK_SKEW = 15 * 60


def check_date(headers, names):
    """The request's time (the first of `names` present), as the services check it."""
    text = next((headers[n] for n in names if headers.get(n)), None)
    if text is None:
        raise AuthError(f"no {' or '.join(names)} header")
    try:
        sent = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        raise AuthError(f"the date header '{text}' is not an RFC 1123 date")
    now = Clock.now()
    if sent < now - MAX_CLOCK_SKEW:
        raise AuthError(f"Request date header too old: '{text}'")
    if sent > now + MAX_CLOCK_SKEW:
        raise AuthError(f"Request date header is too far in the future: '{text}'")


def _hmac(key_b64, text):
    key = base64.b64decode(key_b64)
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()).decode()


def parse_query(raw_query):
    """Query parameters as (name, decoded value) pairs, in order."""
    pairs = []
    if not raw_query:
        return pairs
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value.replace("+", "%20"))))
    return pairs


def _standard_slots(method, headers, blob):
    length = headers.get("content-length", "")
    if blob and length == "0":
        length = ""
    return [
        method,
        headers.get("content-encoding", ""),
        headers.get("content-language", ""),
        length,
        headers.get("content-md5", ""),
        headers.get("content-type", ""),
        headers.get("date", ""),
        headers.get("if-modified-since", ""),
        headers.get("if-match", ""),
        headers.get("if-none-match", ""),
        headers.get("if-unmodified-since", ""),
        headers.get("range", ""),
    ]


def batch_string_to_sign(method, raw_path, raw_query, headers, account):
    """The Batch Shared Key string to sign (headers: lower-case names)."""
    parts = "".join(s + "\n" for s in _standard_slots(method, headers, blob=False))
    ocp = sorted((k, v) for k, v in headers.items() if "ocp-" in k)
    parts += "".join(f"{k}:{v}\n" for k, v in ocp)
    parts += f"/{account}{raw_path}"
    for name, value in sorted(parse_query(raw_query), key=lambda p: p[0]):
        parts += f"\n{name}:{value}"
    return parts


def blob_string_to_sign(method, raw_path, raw_query, headers, account):
    """The Blob Shared Key string to sign (path-style URLs sign the account twice)."""
    parts = "".join(s + "\n" for s in _standard_slots(method, headers, blob=True))
    xms = sorted((k, v) for k, v in headers.items() if k.startswith("x-ms-"))
    parts += "".join(f"{k}:{v}\n" for k, v in xms)
    parts += f"/{account}{raw_path}"
    grouped = {}
    for name, value in parse_query(raw_query):
        grouped.setdefault(name.lower(), []).append(value)
    for name in sorted(grouped):
        parts += f"\n{name}:{','.join(sorted(grouped[name]))}"
    return parts


def check_shared_key(header, account, key, string_to_sign):
    if not header.startswith("SharedKey "):
        raise AuthError("the Authorization header is not SharedKey")
    who, _, sig = header[len("SharedKey "):].partition(":")
    if who != account:
        raise AuthError(f"the account '{who}' is not this account")
    expected = _hmac(key, string_to_sign)
    if not hmac.compare_digest(expected, sig):
        raise AuthError("the MAC signature found in the HTTP request is not the same as any computed signature")


SAS_FIELDS = ["sp", "st", "se", "canonicalizedresource", "si", "sip", "spr", "sv", "sr",
              "snapshot", "ses", "rscc", "rscd", "rsce", "rscl", "rsct"]


def _parse_time(text):
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise AuthError(f"the SAS time '{text}' is not in a valid format")


# A user delegation SAS (signed with a key from Get User Delegation Key, not
# the account key): its fields in signing order, before and from the version
# that added the delegated user and the signed request headers and query.
DELEGATION_FIELDS = ["sp", "st", "se", "canonicalizedresource", "skoid", "sktid", "skt", "ske", "sks", "skv",
                     "saoid", "suoid", "scid", "sip", "spr", "sv", "sr", "snapshot", "ses",
                     "rscc", "rscd", "rsce", "rscl", "rsct"]
DELEGATION_FIELDS_2025 = ["sp", "st", "se", "canonicalizedresource", "skoid", "sktid", "skt", "ske", "sks", "skv",
                          "saoid", "suoid", "scid", "skdutid", "sduoid", "sip", "spr", "sv", "sr", "snapshot", "ses",
                          "srh", "srq", "rscc", "rscd", "rsce", "rscl", "rsct"]
MAX_DELEGATION_SECONDS = 7 * 86400


def delegation_key(account_key, oid, tid, start, expiry):
    """The user delegation key's value for these fields: derived from the
    account key, so a token can be checked without remembering keys."""
    return _hmac(account_key, f"user-delegation|{oid}|{tid}|{start}|{expiry}")


def check_sas(params, account, key, container, blob, needed, now=None):
    """Checks a service SAS (sv 2020-12-06+), signed with the account key or
    with a user delegation key, for an operation needing the permission
    letters in `needed` (any one of them, e.g. "r" or "rl")."""
    now = now or Clock.now()
    sr = params.get("sr")
    if sr not in ("b", "c"):
        raise AuthError("the SAS has no valid signed resource (sr)")
    if sr == "b" and blob is None:
        raise AuthError("a blob SAS cannot be used on a container")
    resource = f"/blob/{account}/{container}" + (f"/{blob}" if sr == "b" else "")
    values = dict(params)
    values["canonicalizedresource"] = resource
    if "skoid" in params:
        for f in ("sktid", "skt", "ske", "sks", "skv"):
            if f not in params:
                raise AuthError(f"the user delegation SAS lacks {f}")
        if now > _parse_time(params["ske"]):
            raise AuthError("the user delegation key of this SAS has expired")
        signing_key = delegation_key(key, params["skoid"], params["sktid"], params["skt"], params["ske"])
        order = DELEGATION_FIELDS_2025 if params.get("sv", "") >= "2025-07-05" else DELEGATION_FIELDS
        fields = [values.get(f, "") for f in order]
    else:
        signing_key = key
        fields = [values.get(f, "") for f in SAS_FIELDS]
    if not hmac.compare_digest(_hmac(signing_key, "\n".join(fields)), params.get("sig", "")):
        raise AuthError("the SAS signature does not match")
    if "se" not in params:
        raise AuthError("the SAS has no expiry")
    if now > _parse_time(params["se"]):
        raise AuthError("the SAS has expired")
    if "st" in params and now + 300 < _parse_time(params["st"]):
        raise AuthError("the SAS is not valid yet")
    if params.get("spr") and "http" not in params["spr"].split(","):
        raise AuthError("the SAS does not allow http")
    granted = params.get("sp", "")
    if not any(p in granted for p in needed):
        raise AuthError(f"the SAS does not grant the permission this operation needs ({needed})")


class TokenIssuer:
    """The Entra ID client-credentials endpoint: tokens for registered clients,
    remembered with their audience and expiry."""

    def __init__(self, lifetime=3600):
        self.lifetime = lifetime
        self.clients = {}
        self.tokens = {}
        self.lock = threading.Lock()

    def register(self, tenant, client_id, secret):
        self.clients[(tenant, client_id)] = secret

    def expire(self):
        """Every token issued so far expires now (as if the daemon had slept past them)."""
        with self.lock:
            for token, (aud, _, tenant, client) in list(self.tokens.items()):
                self.tokens[token] = (aud, time.time() - 1, tenant, client)
            return len(self.tokens)

    def revoke(self):
        """Every token issued so far is revoked (an admin's "revoke sessions")."""
        with self.lock:
            n = len(self.tokens)
            self.tokens.clear()
            return n

    def issue(self, tenant, form):
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "only client_credentials"}
        secret = self.clients.get((tenant, form.get("client_id", "")))
        if secret is None or not hmac.compare_digest(secret, form.get("client_secret", "")):
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}
        scope = form.get("scope", "")
        audience = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = (audience.rstrip("/"), time.time() + self.lifetime, tenant, form.get("client_id", ""))
        return 200, {"token_type": "Bearer", "expires_in": self.lifetime, "ext_expires_in": self.lifetime, "access_token": token}

    def check(self, header, audience):
        if not header.startswith("Bearer "):
            raise AuthError("the Authorization header is not Bearer")
        with self.lock:
            entry = self.tokens.get(header[len("Bearer "):])
        if entry is None:
            raise TokenError("The access token is not valid or was revoked.", "InvalidAuthenticationToken")
        aud, expiry, tenant, client_id = entry
        if time.time() > expiry:
            raise TokenError(f"The access token expiry UTC time '{time.strftime('%m/%d/%Y %H:%M:%S', time.gmtime(expiry))}' "
                             "is earlier than current UTC time.", "ExpiredAuthenticationToken", tenant)
        if aud != audience.rstrip("/"):
            raise AuthError(f"the access token is for {aud}, not {audience}")
        return tenant, client_id   # the principal (its object id is the client id here)
