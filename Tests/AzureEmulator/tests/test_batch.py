"""Batch behaviour through azure-batch 15.1.0: collections and their limits,
paging, filters, errors, retries, task outcomes, and the faults on demand."""
import time

import azure.batch.models as bm
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.core.rest import HttpRequest

from conftest import batch_client

IMAGE = bm.VirtualMachineConfiguration(
    image_reference=bm.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts", version="latest"),
    node_agent_sku_id="batch.node.ubuntu 22.04")


def pool(client, pool_id="p", nodes=2, slots=4, start=None):
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="STANDARD_D2S_V3", virtual_machine_configuration=IMAGE,
                                                 target_dedicated_nodes=nodes, task_slots_per_node=slots, start_task=start))


def job(client, job_id="j", pool_id="p", terminate=False):
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id),
                                               all_tasks_complete_mode="terminatejob" if terminate else None))


def wait_tasks(client, job_id, timeout=60):
    deadline = time.time() + timeout
    while True:
        tasks = list(client.list_tasks(job_id))
        if tasks and all(t.state == "completed" for t in tasks):
            return {t.id: t for t in tasks}
        assert time.time() < deadline, sorted({str(t.state) for t in tasks})
        time.sleep(0.1)


def test_250_task_collection_then_paging(emulator):
    client = batch_client(emulator.url)
    pool(client)
    job(client)
    tasks = [bm.BatchTaskCreateOptions(id=f"t{i:03d}", command_line="/bin/true") for i in range(250)]
    result = client.create_tasks("j", tasks)   # the SDK's helper: collections of at most 100
    assert len(result.result_values) == 250 and all(r.status == "success" for r in result.result_values)
    assert emulator.admin("stats")["requests"]["batch.add_task_collection"] == 3
    listed = list(client.list_tasks("j", max_results=100))
    assert sorted(t.id for t in listed) == [f"t{i:03d}" for i in range(250)]
    assert emulator.admin("stats")["requests"]["batch.list_tasks"] == 3    # followed odata.nextLink twice
    done = wait_tasks(client, "j")
    counts = client.get_job_task_counts("j")
    assert counts.task_counts.completed == 250 and counts.task_counts.succeeded == 250
    assert all(t.execution_info.exit_code == 0 for t in done.values())


def test_collection_limits(emulator):
    client = batch_client(emulator.url)
    pool(client)
    job(client)
    with pytest.raises(HttpResponseError) as e:
        client.create_task_collection("j", bm.BatchTaskGroup(task_values=[bm.BatchTaskCreateOptions(id=f"x{i}", command_line="/bin/true") for i in range(101)]))
    assert e.value.status_code == 413 and e.value.error.code == "RequestBodyTooLarge"
    big = "x" * 20000
    tasks = [bm.BatchTaskCreateOptions(id=f"b{i}", command_line="/bin/true",
                                       environment_settings=[bm.EnvironmentSetting(name="PAD", value=big)]) for i in range(60)]
    with pytest.raises(HttpResponseError) as e:
        client.create_task_collection("j", bm.BatchTaskGroup(task_values=tasks))
    assert e.value.error.code == "RequestBodyTooLarge"
    # The SDK's helper splits on RequestBodyTooLarge and gets them all in.
    result = client.create_tasks("j", tasks)
    assert sum(r.status == "success" for r in result.result_values) == 60


def test_conflicts(emulator):
    client = batch_client(emulator.url)
    pool(client)
    with pytest.raises(ResourceExistsError) as e:
        pool(client)
    assert e.value.error.code == "PoolExists"
    job(client)
    with pytest.raises(ResourceExistsError) as e:
        job(client)
    assert e.value.error.code == "JobExists"
    client.create_task("j", bm.BatchTaskCreateOptions(id="same", command_line="/bin/true"))
    result = client.create_task_collection("j", bm.BatchTaskGroup(task_values=[bm.BatchTaskCreateOptions(id="same", command_line="/bin/true")]))
    assert result.result_values[0].status == "clienterror" and result.result_values[0].error.code == "TaskExists"


def test_filter_and_select(emulator):
    client = batch_client(emulator.url)
    pool(client)
    job(client)
    client.create_tasks("j", [bm.BatchTaskCreateOptions(id="ok", command_line="/bin/true"),
                              bm.BatchTaskCreateOptions(id="bad", command_line="/bin/sh -c 'exit 3'")])
    wait_tasks(client, "j")
    failed = list(client.list_tasks("j", filter="executionInfo/result eq 'failure'", select=["id", "executionInfo"]))
    assert [t.id for t in failed] == ["bad"]
    assert failed[0].execution_info.exit_code == 3
    assert failed[0].execution_info.failure_info.code == "FailureExitCode"
    assert failed[0].state is None          # not selected


def test_spec_refuses_unknown_properties(emulator):
    if not emulator.spec_checked:
        pytest.skip("../shared/azure/BatchService.json is not present")
    client = batch_client(emulator.url)
    with pytest.raises(HttpResponseError) as e:
        client.send_request(HttpRequest("POST", "/jobs?api-version=2025-06-01",
                                        json={"id": "j2", "poolInfo": {"poolId": "p"}, "bogusProperty": 1}))
    assert e.value.status_code == 400 and e.value.error.code == "InvalidRequestBody"
    assert any(d.code == "PropertyName" and d.message == "body.bogusProperty" for d in e.value.error.details)


def test_sdk_rides_out_a_429_storm(emulator):
    client = batch_client(emulator.url)
    pool(client)
    job(client)
    # Three 429s in a row, each with Retry-After: the SDK's three retries see it through.
    for call in (lambda: client.create_tasks("j", [bm.BatchTaskCreateOptions(id=f"s{i}", command_line="/bin/true") for i in range(20)]),
                 lambda: client.get_job_task_counts("j"),
                 lambda: list(client.list_tasks("j"))):
        emulator.admin("faults", {"error_burst": 3, "error_status": 429, "retry_after": 0.05})
        call()
    assert len(wait_tasks(client, "j")) == 20
    assert emulator.admin("stats")["faults"] == {"429": 9}


def test_retries_wall_clock_and_terminatejob(emulator):
    client = batch_client(emulator.url)
    pool(client)
    job(client, terminate=True)
    client.create_tasks("j", [
        bm.BatchTaskCreateOptions(id="flaky", command_line="/bin/sh -c 'exit 5'", constraints=bm.BatchTaskConstraints(max_task_retry_count=2)),
        bm.BatchTaskCreateOptions(id="slow", command_line="/bin/sleep 30", constraints=bm.BatchTaskConstraints(max_wall_clock_time="PT0.5S")),
        bm.BatchTaskCreateOptions(id="env", command_line="/bin/sh -c 'test \"$AZ_BATCH_TASK_ID\" = env && test -d \"$AZ_BATCH_NODE_SHARED_DIR\"'"),
    ])
    done = wait_tasks(client, "j")
    assert done["flaky"].execution_info.retry_count == 2 and done["flaky"].execution_info.exit_code == 5
    assert done["slow"].execution_info.failure_info.code == "MaxWallClockTimeExpiry"
    assert done["env"].execution_info.result == "success"
    deadline = time.time() + 10
    while client.get_job("j").state != "completed":
        assert time.time() < deadline
        time.sleep(0.05)
    assert client.get_job("j").execution_info.termination_reason == "AllTasksComplete"


def test_update_job_to_terminatejob_after_the_tasks_are_added(emulator):
    """The careful client's order: create with noaction, add every task, then
    PATCH to terminatejob. A job whose tasks all finished meanwhile ends at once."""
    client = batch_client(emulator.url)
    pool(client)
    job(client)
    client.create_tasks("j", [bm.BatchTaskCreateOptions(id="quick", command_line="/bin/true")])
    wait_tasks(client, "j")
    assert client.get_job("j").state == "active"      # noaction: nothing ends it yet
    client.update_job("j", bm.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob",
                                                     constraints=bm.BatchJobConstraints(max_wall_clock_time="PT1H")))
    ended = client.get_job("j")
    assert ended.state == "completed" and ended.execution_info.termination_reason == "AllTasksComplete"
    assert ended.constraints.max_wall_clock_time.total_seconds() == 3600
    with pytest.raises(HttpResponseError) as e:
        client.update_job("j", bm.BatchJobUpdateOptions(priority=5))
    assert e.value.status_code == 409 and e.value.error.code == "JobCompleted"


def test_preempted_node_requeues_its_task(emulator):
    client = batch_client(emulator.url)
    pool(client, nodes=1, slots=1)
    job(client)
    client.create_task("j", bm.BatchTaskCreateOptions(id="long", command_line="/bin/sleep 1"))
    deadline = time.time() + 20
    while client.get_task("j", "long").state != "running":
        assert time.time() < deadline
        time.sleep(0.05)
    assert emulator.admin("preempt", {"pool": "p"})["preempted"]
    done = wait_tasks(client, "j")
    assert done["long"].execution_info.requeue_count == 1
    assert done["long"].execution_info.result == "success"


def test_failing_start_task_keeps_tasks_off_the_node(emulator):
    emulator.admin("faults", {"start_task_fail": True})
    client = batch_client(emulator.url)
    pool(client, nodes=1, start=bm.BatchStartTask(command_line="/bin/true", wait_for_success=True))
    deadline = time.time() + 10
    while client.get_pool("p").allocation_state != "steady":
        assert time.time() < deadline
        time.sleep(0.05)
    assert [n.state for n in client.list_nodes("p")] == ["starttaskfailed"]


def test_timed_out_collection_was_applied_and_resending_is_safe(emulator):
    client = batch_client(emulator.url)
    pool(client)
    job(client)
    emulator.admin("faults", {"addcollection_timeout": 1})
    tasks = [bm.BatchTaskCreateOptions(id=f"r{i}", command_line="/bin/true") for i in range(5)]
    result = client.create_task_collection("j", bm.BatchTaskGroup(task_values=tasks))   # the SDK resends after the 500
    assert {r.error.code for r in result.result_values} == {"TaskExists"}
    assert sorted(t.id for t in client.list_tasks("j")) == [f"r{i}" for i in range(5)]
    assert emulator.admin("stats")["requests"]["batch.add_task_collection"] == 2


def test_container_resource_files_and_dropped_connections(emulator):
    import datetime
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
    from conftest import STORAGE, STORAGE_KEY, blob_service
    blobs = blob_service(emulator.url)
    c = blobs.create_container("inputs")
    for name in ("data/a.txt", "data/b.txt", "other/c.txt"):
        c.upload_blob(name, name.encode())
    sas = generate_container_sas(STORAGE, "inputs", account_key=STORAGE_KEY, permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    client = batch_client(emulator.url)
    pool(client)
    job(client)
    emulator.admin("faults", {"drop_rate": 0.3})     # connections cut mid-response: GETs are retried
    client.create_task("j", bm.BatchTaskCreateOptions(
        id="fetch", command_line="/bin/sh -c 'test \"$(cat in/data/a.txt in/data/b.txt)\" = data/a.txtdata/b.txt && test ! -e in/other'",
        resource_files=[bm.ResourceFile(storage_container_url=f"{emulator.url}/{STORAGE}/inputs?{sas}", blob_prefix="data/", file_path="in")]))
    done = wait_tasks(client, "j")
    emulator.admin("faults", {"drop_rate": 0})
    assert done["fetch"].execution_info.result == "success", done["fetch"].execution_info.failure_info
    assert emulator.admin("stats")["faults"].get("drop", 0) > 0


def test_job_wall_clock_terminates_the_job(emulator):
    client = batch_client(emulator.url)
    pool(client)
    client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="p"),
                                               constraints=bm.BatchJobConstraints(max_wall_clock_time="PT1S")))
    client.create_task("j", bm.BatchTaskCreateOptions(id="forever", command_line="/bin/sleep 60"))
    deadline = time.time() + 20
    while client.get_job("j").state != "completed":
        assert time.time() < deadline
        time.sleep(0.1)
    assert client.get_job("j").execution_info.termination_reason == "MaxWallClockTimeExpiry"
    assert wait_tasks(client, "j")["forever"].execution_info.result == "failure"


def test_resize_exists_autopool_and_transition_time_filter(emulator):
    client = batch_client(emulator.url)
    pool(client, nodes=1, slots=2)
    assert client.pool_exists("p")
    deadline = time.time() + 10
    while client.get_pool("p").allocation_state != "steady":
        assert time.time() < deadline
        time.sleep(0.05)
    client.begin_resize_pool("p", bm.BatchPoolResizeOptions(target_dedicated_nodes=3)).result()
    while client.get_pool("p").allocation_state != "steady" or client.get_pool("p").current_dedicated_nodes != 3:
        assert time.time() < deadline + 10
        time.sleep(0.05)
    assert len(list(client.list_nodes("p"))) == 3

    # An auto-pool lives and dies with its job.
    spec = bm.BatchAutoPoolSpecification(auto_pool_id_prefix="auto", pool_lifetime_option="job",
                                         pool=bm.BatchPoolSpecification(vm_size="STANDARD_D2S_V3", virtual_machine_configuration=IMAGE,
                                                                        target_dedicated_nodes=1))
    client.create_job(bm.BatchJobCreateOptions(id="aj", pool_info=bm.BatchPoolInfo(auto_pool_specification=spec),
                                               all_tasks_complete_mode="terminatejob"))
    auto_id = client.get_job("aj").execution_info.pool_id
    assert auto_id.startswith("auto_") and client.get_pool(auto_id).state == "active"
    client.create_task("aj", bm.BatchTaskCreateOptions(id="one", command_line="/bin/true"))
    first = wait_tasks(client, "aj")["one"]
    while client.get_job("aj").state != "completed":
        assert time.time() < deadline + 30
        time.sleep(0.05)
    assert auto_id not in [p.id for p in client.list_pools() if p.state != "deleting"]

    # Only tasks that changed since a moment are listed.
    stamp = first.state_transition_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    job(client, "later")
    client.create_task("later", bm.BatchTaskCreateOptions(id="two", command_line="/bin/true"))
    wait_tasks(client, "later")
    assert [t.id for t in client.list_tasks("later", filter=f"stateTransitionTime gt datetime'{stamp}'")] == ["two"]
    assert list(client.list_tasks("aj", filter=f"stateTransitionTime gt datetime'{stamp}'")) == []
