"""How the emulator fails the way the service does (issue 23), through
azure-batch 15.1.0 and azure-storage-blob: each behaviour as the REST spec
(BatchService.json) and Microsoft's docs describe it."""
from datetime import datetime, timedelta, timezone

import azure.batch.models as bm

from conftest import STORAGE, STORAGE_KEY, batch_client
from test_batch import job, pool, wait_tasks


def container_url(emulator, name):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
    sas = generate_container_sas(STORAGE, name, account_key=STORAGE_KEY, permission=ContainerSasPermissions(write=True, create=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    return f"{emulator.url}/{STORAGE}/{name}?{sas}"


def test_upload_failure_fails_the_task_whatever_its_exit_code(emulator):
    client = batch_client(emulator.url)
    pool(client, nodes=1)
    job(client)
    out = bm.OutputFile(file_pattern="out.txt",
                        destination=bm.OutputFileDestination(container=bm.OutputFileBlobContainerDestination(
                            container_url=container_url(emulator, "never-made"))),
                        upload_options=bm.OutputFileUploadConfiguration(upload_condition="tasksuccess"))
    client.create_task("j", bm.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'echo hi > out.txt'", output_files=[out]))
    info = wait_tasks(client, "j")["t"].execution_info
    # The command exited 0, but its output is not in any container.
    assert info.exit_code == 0 and info.result == "failure"
    assert info.failure_info.code == "FileUploadMiscError" and info.failure_info.category == "usererror"
    details = {d.name: d.value for d in info.failure_info.details}
    assert details == {"FilePath": "out.txt", "HttpStatusCode": "404", "StorageErrorCode": "ContainerNotFound"}
    counts = client.get_job_task_counts("j").task_counts
    assert counts.failed == 1 and counts.succeeded == 0


def _bearer(url, token):
    """GET with a bearer token (the SDKs send one over https only): status, headers, JSON body."""
    import json
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def test_expired_or_revoked_token_is_401_with_a_challenge(emulator):
    from test_auth import _token
    pools = f"{emulator.url}/pools?api-version=2025-06-01"
    _, body = _token(emulator)
    assert _bearer(pools, body["access_token"])[0] == 200
    assert emulator.admin("tokens", {"expire": True})["expired"] >= 1
    status, headers, err = _bearer(pools, body["access_token"])
    assert status == 401 and err["code"] == "ExpiredAuthenticationToken"
    challenge = headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization_uri=") and 'error="invalid_token"' in challenge
    # A new token works; a revoked one is refused the same way.
    _, fresh = _token(emulator)
    assert _bearer(pools, fresh["access_token"])[0] == 200
    emulator.admin("tokens", {"revoke": True})
    status, headers, err = _bearer(pools, fresh["access_token"])
    assert status == 401 and err["code"] == "InvalidAuthenticationToken" and "invalid_token" in headers["WWW-Authenticate"]


def test_shared_key_with_a_skewed_clock_is_refused(emulator):
    import pytest
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    from conftest import blob_service
    client = batch_client(emulator.url)
    assert list(client.list_pools()) == []
    # The service's clock 20 minutes ahead of the client's: both services
    # refuse a Shared Key request more than 15 minutes off.
    emulator.admin("faults", {"clock_offset": 1200})
    try:
        with pytest.raises(HttpResponseError) as e:
            list(client.list_pools())
        assert e.value.status_code == 403 and e.value.error.code == "AuthenticationFailed"
        assert "Request date header too old" in str(e.value)
        with pytest.raises((HttpResponseError, ClientAuthenticationError)) as e:
            blob_service(emulator.url).create_container("skew")
        assert e.value.status_code == 403 and "Request date header too old" in str(e.value)
        # 10 minutes off is within the service's tolerance.
        emulator.admin("faults", {"clock_offset": 600})
        assert list(client.list_pools()) == []
    finally:
        emulator.admin("faults", {"clock_offset": 0})
