"""Request and response values shared by the services."""
from dataclasses import dataclass, field
from email.utils import formatdate


@dataclass
class Request:
    method: str
    raw_path: str            # as sent, still URL-encoded
    raw_query: str
    headers: dict            # lower-case names
    body: bytes
    query: dict = field(default_factory=dict)   # decoded, first value per name
    base_url: str = ""       # http://127.0.0.1:PORT


@dataclass
class Response:
    status: int
    headers: dict = field(default_factory=dict)
    body: bytes = b""


class Clock:
    """The service's clock: the machine's, moved by `offset` seconds (the
    `clock_offset` fault: a client whose clock is off by -offset)."""
    offset = 0.0

    @classmethod
    def now(cls):
        import time
        return time.time() + cls.offset


def http_date(ts=None):
    return formatdate(ts if ts is not None else Clock.now(), usegmt=True)
