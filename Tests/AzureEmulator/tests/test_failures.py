"""How the emulator fails the way the service does (issue 23), through
azure-batch 15.1.0 and azure-storage-blob: each behaviour as the REST spec
(BatchService.json) and Microsoft's docs describe it."""
from datetime import datetime, timedelta, timezone

import azure.batch.models as bm
from azure.batch.models._models import BatchJobTerminateOptions, BatchNodeRebootOptions, BatchNodeReimageOptions  # not exported by azure-batch 15.1.0

from conftest import STORAGE, STORAGE_KEY, batch_client
from test_batch import IMAGE, job, pool, wait_tasks


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


def test_servererror_inside_an_add_collection(emulator):
    client = batch_client(emulator.url)
    pool(client, nodes=1)
    job(client)
    emulator.admin("faults", {"addcollection_servererror": 2})
    result = client.create_task_collection("j", bm.BatchTaskGroup(task_values=[
        bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(5)]))
    # The SDK reads each status into its own enum.
    statuses = sorted(bm.BatchTaskAddStatus(r.status).value for r in result.result_values)
    assert statuses == ["servererror", "servererror", "success", "success", "success"], statuses
    failed = [r for r in result.result_values if r.status == "servererror"]
    assert {r.task_id for r in failed} == {"t0", "t1"} and all(r.error.code == "InternalError" for r in failed)
    # Not added: the SDK's own helper sends them again, and they go in.
    assert sorted(t.id for t in client.list_tasks("j")) == ["t2", "t3", "t4"]
    emulator.admin("faults", {"addcollection_servererror": 1})
    done = client.create_tasks("j", [bm.BatchTaskCreateOptions(id=f"u{i}", command_line="/bin/true") for i in range(3)])
    assert sorted(r.status for r in done.result_values) == ["success"] * 3


def _wait(predicate, timeout=10):
    import time
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline
        time.sleep(0.05)


def test_deleted_pools_jobs_and_containers_hold_their_names_a_while(emulator):
    import pytest
    from azure.core.exceptions import HttpResponseError

    from conftest import blob_service
    client = batch_client(emulator.url)
    pool(client, nodes=1)
    job(client)
    client.create_task("j", bm.BatchTaskCreateOptions(id="long", command_line="sleep 60"))
    _wait(lambda: client.get_task("j", "long").state == "running")
    client.begin_delete_pool("p")   # the request; the poller is not waited on
    assert client.get_pool("p").state == "deleting"
    with pytest.raises(HttpResponseError) as e:
        pool(client, nodes=1)
    assert e.value.status_code == 409 and e.value.error.code == "PoolBeingDeleted"
    # Its running task is requeued, not ended: its job may move to another pool.
    _wait(lambda: client.get_task("j", "long").state == "active")
    assert client.get_task("j", "long").execution_info.requeue_count == 1
    _wait(lambda: not _safe_exists(client, "p"))
    pool(client, nodes=1)   # the name is free again

    client.begin_delete_job("j")
    assert client.get_job("j").state == "deleting"
    with pytest.raises(HttpResponseError) as e:
        job(client)
    assert e.value.status_code == 409 and e.value.error.code == "JobBeingDeleted"

    blobs = blob_service(emulator.url)
    blobs.create_container("out")
    blobs.delete_container("out")
    with pytest.raises(HttpResponseError) as e:
        blobs.create_container("out")
    assert e.value.status_code == 409 and e.value.error_code == "ContainerBeingDeleted"
    _wait(lambda: _created(blobs, "out"))


def _safe_exists(client, pool_id):
    """pool_exists raises on the service's 404 (test_batch.py notes it); None then."""
    try:
        return client.pool_exists(pool_id)
    except Exception:
        return None


def _created(blobs, name):
    from azure.core.exceptions import HttpResponseError
    try:
        blobs.create_container(name)
        return True
    except HttpResponseError as e:
        assert e.error_code == "ContainerBeingDeleted"
        return False


def test_terminate_leaves_active_tasks_active_and_disable_requeues(emulator):
    client = batch_client(emulator.url)
    pool(client, nodes=1, slots=1)
    job(client)
    for i in ("long", "queued"):   # in this order: the one slot goes to the first
        client.create_task("j", bm.BatchTaskCreateOptions(id=i, command_line="sleep 60"))
    _wait(lambda: {t.id: t.state for t in client.list_tasks("j")} == {"long": "running", "queued": "active"})
    client.begin_terminate_job("j", options=BatchJobTerminateOptions(termination_reason="UserTerminate"))
    _wait(lambda: client.get_task("j", "long").state == "completed")
    long, queued = client.get_task("j", "long"), client.get_task("j", "queued")
    assert long.execution_info.result == "failure" and long.execution_info.failure_info.code == "TaskEnded"
    # The spec: "If there are any Tasks in the Job in the active state, they will remain in the active state."
    assert queued.state == "active" and queued.execution_info.failure_info is None
    j = client.get_job("j")
    assert j.state == "completed" and j.execution_info.termination_reason == "UserTerminate"

    job(client, job_id="d")
    client.create_task("d", bm.BatchTaskCreateOptions(id="t", command_line="sleep 60"))
    _wait(lambda: client.get_task("d", "t").state == "running")
    client.begin_disable_job("d", bm.BatchJobDisableOptions(disable_tasks="requeue"))
    _wait(lambda: client.get_task("d", "t").state == "active")
    assert client.get_job("d").state == "disabled" and client.get_task("d", "t").execution_info.requeue_count == 1
    client.begin_enable_job("d")
    _wait(lambda: client.get_task("d", "t").state == "running")


def test_account_quotas_refuse_with_the_service_codes(emulator):
    import pytest
    from azure.core.exceptions import HttpResponseError
    client = batch_client(emulator.url)
    emulator.admin("quotas", {"activeJobs": 1, "pools": 1})
    pool(client, nodes=1)
    with pytest.raises(HttpResponseError) as e:
        pool(client, pool_id="p2", nodes=1)
    assert e.value.status_code == 409 and e.value.error.code == "PoolQuotaReached"
    job(client, job_id="j1")
    with pytest.raises(HttpResponseError) as e:
        job(client, job_id="j2")
    assert e.value.status_code == 409 and e.value.error.code == "ActiveJobAndScheduleQuotaReached"
    # A completed job no longer counts; an existing id is still JobExists.
    client.begin_terminate_job("j1", options=BatchJobTerminateOptions(termination_reason="done"))
    job(client, job_id="j2")
    with pytest.raises(HttpResponseError) as e:
        job(client, job_id="j2")
    assert e.value.error.code == "JobExists"
    emulator.admin("quotas", {"activeJobs": None, "pools": None})
    job(client, job_id="j3")


def test_resize_errors_and_start_task_failures(emulator):
    client = batch_client(emulator.url)
    emulator.admin("faults", {"resize_error": "AccountCoreQuotaReached"})
    pool(client, nodes=2)
    emulator.admin("wait", {"pool": "p", "allocation": "steady"})
    p = client.get_pool("p")
    # Short of its target, and saying why.
    assert p.current_dedicated_nodes == 0 and p.target_dedicated_nodes == 2
    assert [e.code for e in p.resize_errors] == ["AccountCoreQuotaReached"] and "quota" in p.resize_errors[0].message
    emulator.admin("faults", {"resize_error": None, "start_task_fail": True})
    pool(client, pool_id="s", nodes=2, start=bm.BatchStartTask(command_line="/bin/true", wait_for_success=True))
    emulator.admin("wait", {"pool": "s", "allocation": "steady"})
    assert sorted(n.state for n in client.list_nodes("s")) == ["starttaskfailed", "starttaskfailed"]
    assert client.get_pool("s").resize_errors is None


def test_nodes_rebooted_reimaged_and_removed(emulator):
    import pytest
    from azure.core.exceptions import HttpResponseError
    client = batch_client(emulator.url)
    # The next start task fails, and the next node to start is unusable.
    emulator.admin("faults", {"start_task_fail": 1, "unusable_nodes": 1})
    pool(client, pool_id="r", nodes=3, start=bm.BatchStartTask(command_line="/bin/true", wait_for_success=True))
    emulator.admin("wait", {"pool": "r", "allocation": "steady"})
    nodes = {n.id: n.state for n in client.list_nodes("r")}
    assert sorted(nodes.values()) == ["idle", "starttaskfailed", "unusable"]
    failed = next(i for i, s in nodes.items() if s == "starttaskfailed")
    broken = next(i for i, s in nodes.items() if s == "unusable")
    # A reboot runs the start task again (it passes now); so does a reimage.
    # (azure-batch 15.1.0 cannot send a reboot without its options.)
    client.begin_reboot_node("r", failed, BatchNodeRebootOptions(node_reboot_kind="requeue"), polling_interval=0.1).result()
    client.begin_reimage_node("r", broken, BatchNodeReimageOptions(node_reimage_option="requeue"), polling_interval=0.1).result()
    _wait(lambda: sorted(n.state for n in client.list_nodes("r")) == ["idle", "idle", "idle"])
    with pytest.raises(HttpResponseError) as e:
        client.begin_reboot_node("r", "tvmps_nosuch_0000", BatchNodeRebootOptions(node_reboot_kind="requeue")).result()
    assert e.value.status_code == 404 and e.value.error.code == "NodeNotFound"
    # Removed: the pool is resizing, then steady with one node less and a lower target.
    client.begin_remove_nodes("r", bm.BatchNodeRemoveOptions(node_ids=[failed]), polling_interval=0.1).result()
    p = client.get_pool("r")
    assert p.allocation_state == "steady" and p.current_dedicated_nodes == 2 and p.target_dedicated_nodes == 2
    assert failed not in [n.id for n in client.list_nodes("r")]


def test_dedicated_core_quota_stops_a_pool_short_until_a_resize(emulator):
    client = batch_client(emulator.url)
    emulator.admin("quotas", {"dedicatedCores": 4})
    pool(client, pool_id="a", nodes=1)   # STANDARD_D2S_V3: 2 cores each
    emulator.admin("wait", {"pool": "a", "allocation": "steady"})
    pool(client, pool_id="b", nodes=2)
    emulator.admin("wait", {"pool": "b", "allocation": "steady"})
    b = client.get_pool("b")
    assert b.current_dedicated_nodes == 1 and b.target_dedicated_nodes == 2
    assert [e.code for e in b.resize_errors] == ["AccountCoreQuotaReached"]
    # Cores freed do not grow the pool by themselves; a resize does.
    client.begin_delete_pool("a", polling_interval=0.1).result()
    assert client.get_pool("b").current_dedicated_nodes == 1
    client.begin_resize_pool("b", bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0.1).result()
    emulator.admin("wait", {"pool": "b", "allocation": "steady"})
    b = client.get_pool("b")
    assert b.current_dedicated_nodes == 2 and not b.resize_errors


def test_an_auto_pool_that_cannot_be_made_completes_its_job_with_a_scheduling_error(emulator):
    import pytest
    from azure.core.exceptions import HttpResponseError
    client = batch_client(emulator.url)
    emulator.admin("quotas", {"pools": 0})
    auto = bm.BatchAutoPoolSpecification(auto_pool_id_prefix="a", pool_lifetime_option="job", pool=bm.BatchPoolSpecification(
        vm_size="STANDARD_D2S_V3", virtual_machine_configuration=IMAGE, target_dedicated_nodes=1))
    # Accepted, then completed with the pool's error: nothing was made.
    client.create_job(bm.BatchJobCreateOptions(id="ja", pool_info=bm.BatchPoolInfo(auto_pool_specification=auto)))
    j = client.get_job("ja")
    assert j.state == "completed"
    assert j.execution_info.scheduling_error.code == "PoolQuotaReached" and j.execution_info.scheduling_error.category == "usererror"
    assert list(client.list_pools()) == []
    with pytest.raises(HttpResponseError) as e:
        client.create_task("ja", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    assert e.value.status_code == 409 and e.value.error.code == "JobCompleted"


def test_task_counts_may_lag(emulator):
    client = batch_client(emulator.url)
    emulator.admin("faults", {"counts_lag": 30})
    pool(client, nodes=1)
    job(client)
    assert client.get_job_task_counts("j").task_counts.active == 0   # seen now: held for 30 s
    client.create_task("j", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    wait_tasks(client, "j")
    # The list is exact; the counts are what they were.
    assert [t.state for t in client.list_tasks("j")] == ["completed"]
    c = client.get_job_task_counts("j").task_counts
    assert (c.active, c.completed) == (0, 0)
    emulator.admin("faults", {"counts_lag": 0})
    assert client.get_job_task_counts("j").task_counts.completed == 1


def test_task_files_are_listed_from_the_node(emulator):
    client = batch_client(emulator.url)
    pool(client, nodes=1)
    job(client)
    client.create_task("j", bm.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'mkdir -p sub && echo hi > sub/a.txt && echo x > b.txt'"))
    wait_tasks(client, "j")
    files = {f.name: f for f in client.list_task_files("j", "t", recursive=True)}
    assert "wd/sub/a.txt" in files and "wd/b.txt" in files and files["wd/sub"].is_directory
    assert int(files["wd/sub/a.txt"].properties.content_length) == 3
    top = [f.name for f in client.list_task_files("j", "t")]
    assert "wd" in top and "wd/b.txt" not in top
