"""Starts the emulator for the conformance suite and builds the official SDK
clients against it. Nothing here reaches the internet."""
import base64
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "..", "azure-emulator")
ACCOUNT = "batchdacct"
KEY = base64.b64encode(b"emulator-batch-key-0123456789abcdef").decode()
STORAGE = "batchdstore"
STORAGE_KEY = base64.b64encode(b"emulator-storage-key-0123456789ab").decode()
TENANT, CLIENT_ID, CLIENT_SECRET = "tenant-1", "app-1", "not-a-real-secret"


class Emulator:
    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [sys.executable, EMULATOR, "--port", "0", "--account", ACCOUNT, "--key", KEY, "--storage-account", STORAGE,
             "--storage-key", STORAGE_KEY, "--allocation-delay", "0.3", "--client", f"{TENANT}:{CLIENT_ID}:{CLIENT_SECRET}", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()   # blocks until the emulator says it is ready
        m = re.search(r"ready on (http://127\.0\.0\.1:\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"emulator did not start: {line}{self.proc.stdout.read()}")
        self.url = m.group(1)
        self.spec_checked = "spec checked" in line
        self.output = []
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()

    def admin(self, name, body=None, method=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/_emulator/{name}", data=data, method=method or ("POST" if data else "GET"))
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def emulator():
    em = Emulator()
    yield em
    em.stop()


@pytest.fixture
def emulator_flaky():
    em = Emulator("--error-rate", "0.2", "--error-status", "503", "--retry-after", "0.05")
    yield em
    em.stop()


def batch_client(url, key=KEY, **kw):
    """azure-batch 15.1.0 retries 3 times by default; retry_total is azure-core's documented knob."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential
    return BatchClient(endpoint=url, credential=AzureNamedKeyCredential(ACCOUNT, key), **kw)


def blob_service(url, key=STORAGE_KEY, **kw):
    from azure.storage.blob import BlobServiceClient
    return BlobServiceClient(f"{url}/{STORAGE}", credential={"account_name": STORAGE, "account_key": key}, **kw)
