"""The Azure Batch tutorial's whole workflow through Microsoft's SDKs: three
containers, inputs uploaded and shared by SAS, a pool with a start task, a
job, tasks added as a collection, wait, outputs downloaded, everything deleted."""
import datetime
import os
import time

import azure.batch.models as bm
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, ExponentialRetry, ContainerSasPermissions, generate_blob_sas, generate_container_sas

from conftest import STORAGE, STORAGE_KEY, batch_client, blob_service

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
EXAMPLE = os.path.join(REPO, "examples", "wordcount")


def expected_top3(text):
    import re
    from collections import Counter
    words = (w.strip("'") for w in re.findall(r"[a-z0-9']+", text.lower()))
    counts = Counter(w for w in words if w)
    return "".join(f"{w}\t{c}\n" for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3])


def run_tutorial(url, retries=3):
    # azure-storage-blob backs off from 15 s by default whatever Retry-After says;
    # a shorter ExponentialRetry keeps the suite quick without changing what is tested.
    blobs = blob_service(url, retry_policy=ExponentialRetry(initial_backoff=0.2, increment_base=2, retry_total=retries))
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    for name in ("application", "input", "output"):
        blobs.create_container(name)

    def upload(container, path):
        name = os.path.basename(path)
        with open(path, "rb") as f:
            blobs.get_blob_client(container, name).upload_blob(f, overwrite=True)
        sas = generate_blob_sas(STORAGE, container, name, account_key=STORAGE_KEY,
                                permission=BlobSasPermissions(read=True), expiry=expiry)
        return bm.ResourceFile(http_url=f"{url}/{STORAGE}/{container}/{name}?{sas}", file_path=name)

    app = upload("application", os.path.join(EXAMPLE, "wordcount.py"))
    inputs = [upload("input", os.path.join(EXAMPLE, "texts", f"taskdata{i}.txt")) for i in range(3)]
    output_sas = generate_container_sas(STORAGE, "output", account_key=STORAGE_KEY,
                                        permission=ContainerSasPermissions(write=True), expiry=expiry)
    output_url = f"{url}/{STORAGE}/output?{output_sas}"

    client = batch_client(url, retry_total=retries)
    pool_id, job_id = "PythonTutorialPool", "PythonTutorialJob"
    client.create_pool(bm.BatchPoolCreateOptions(
        id=pool_id, vm_size="STANDARD_D1_V2",
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy",
                                                     sku="22_04-lts", version="latest"),
            node_agent_sku_id="batch.node.ubuntu 22.04"),
        target_dedicated_nodes=2,
        start_task=bm.BatchStartTask(command_line="/bin/sh -c 'cp -p wordcount.py $AZ_BATCH_NODE_SHARED_DIR'",
                                     resource_files=[app], wait_for_success=True)))
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
    tasks = [bm.BatchTaskCreateOptions(
        id=f"Task{i}",
        command_line=f"/bin/sh -c \"python3 $AZ_BATCH_NODE_SHARED_DIR/wordcount.py --filepath {rf.file_path} --numwords 3\"",
        resource_files=[rf],
        output_files=[bm.OutputFile(
            file_pattern="*_OUTPUT.txt",
            destination=bm.OutputFileDestination(container=bm.OutputFileBlobContainerDestination(container_url=output_url)),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition="tasksuccess"))])
        for i, rf in enumerate(inputs)]
    result = client.create_task_collection(job_id, bm.BatchTaskGroup(task_values=tasks))
    assert [r.status for r in result.result_values] == ["success"] * 3

    deadline = time.time() + 60
    while True:   # the tutorial's own wait: poll until every task completed
        listed = list(client.list_tasks(job_id))
        if all(t.state == "completed" for t in listed):
            break
        assert time.time() < deadline, [t.state for t in listed]
        time.sleep(0.2)
    assert all(t.execution_info.result == "success" and t.execution_info.exit_code == 0 for t in listed)

    outputs = {}
    for b in blobs.get_container_client("output").list_blobs():
        outputs[b.name] = blobs.get_blob_client("output", b.name).download_blob().readall().decode()
    for i in range(3):
        with open(os.path.join(EXAMPLE, "texts", f"taskdata{i}.txt"), encoding="utf-8") as f:
            assert outputs[f"taskdata{i}_OUTPUT.txt"] == expected_top3(f.read())

    for name in ("application", "input", "output"):
        blobs.delete_container(name)
    client.begin_delete_job(job_id).result()
    client.begin_delete_pool(pool_id).result()
    # azure-batch 15.1.0's error policy raises on every non-2xx answer, so
    # pool_exists() cannot return False for the service's 404: ask get_pool.
    with pytest.raises(ResourceNotFoundError):
        client.get_pool(pool_id)
    assert [c.name for c in blobs.list_containers()] == []


def test_tutorial_flow(emulator):
    run_tutorial(emulator.url)
    stats = emulator.admin("stats")
    assert stats["requests"]["batch.add_task_collection"] == 1
    assert stats["requests"]["put.blob"] >= 4 + 3   # 4 inputs, 3 outputs uploaded by the nodes


def test_tutorial_flow_rides_out_a_20_percent_503_rate(emulator_flaky):
    # At 20% a call fails only if all of its tries do: 0.2^11 with ten retries.
    run_tutorial(emulator_flaky.url, retries=10)
    faults = emulator_flaky.admin("stats")["faults"]
    # The emulator's draws are seeded (Random(0)): this run gets 503s, all of which the SDK rode out.
    assert faults.get("503", 0) >= 1 and "429" not in faults
