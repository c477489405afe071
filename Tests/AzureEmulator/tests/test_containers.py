"""Container pools and tasks through azure-batch 15.1.0, as the service
takes them: the spec's fields checked, the task run in its image through
podman, and the failures the service reports (emulator/batch_containers.py)."""
import os
import subprocess
import time

import azure.batch.models as bm
import pytest
from azure.core.exceptions import HttpResponseError

from conftest import batch_client, Emulator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
IMAGE = "batchd.test/batchd-test:1"   # scripts/container-image.sh
HPC = bm.BatchVmImageReference(publisher="microsoft-dsvm", offer="ubuntu-hpc", sku="2204", version="latest")


@pytest.fixture(scope="module")
def image():
    os.environ["CONTAINERS_CONF"] = os.path.join(REPO, "etc", "batchd", "containers.conf")
    subprocess.run(["bash", os.path.join(REPO, "scripts", "container-image.sh")], check=True, timeout=300)
    return IMAGE


@pytest.fixture
def engine_emulator(image):
    em = Emulator()   # inherits CONTAINERS_CONF
    yield em
    em.stop()


def container_pool(client, pool_id, images, container=True):
    config = bm.BatchContainerConfiguration(type="dockerCompatible", container_image_names=images) if container else None
    client.create_pool(bm.BatchPoolCreateOptions(
        id=pool_id, vm_size="STANDARD_D2S_V3", target_dedicated_nodes=1,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(image_reference=HPC, node_agent_sku_id="batch.node.ubuntu 22.04",
                                                                     container_configuration=config)))
    client.create_job(bm.BatchJobCreateOptions(id=f"j-{pool_id}", pool_info=bm.BatchPoolInfo(pool_id=pool_id)))


def settings(image, **kw):
    return bm.BatchTaskContainerSettings(image_name=image, working_directory="taskWorkingDirectory",
                                         container_host_batch_bind_mounts=[bm.ContainerHostBatchBindMountEntry(source="Task", is_read_only=False)],
                                         **kw)


def wait(predicate, timeout=60):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def done(client, job_id, task_id):
    return wait(lambda: (t := client.get_task(job_id, task_id)).state == "completed" and t)


def read(client, job_id, task_id, path):
    return b"".join(client.download_task_file(job_id, task_id, path)).decode()


def test_a_task_runs_in_its_image_with_its_directory_and_environment(engine_emulator, image):
    client = batch_client(engine_emulator.url)
    container_pool(client, "cp", [image])
    task = bm.BatchTaskCreateOptions(
        id="t1", container_settings=settings(image, container_run_options="--memory=256m"),
        environment_settings=[bm.EnvironmentSetting(name="GREETING", value="hello from the host")],
        command_line="/bin/sh -c 'cat /etc/batchd-image; echo \"$GREETING\" > out.txt; pwd'")
    client.create_task("j-cp", task)
    t = done(client, "j-cp", "t1")
    assert t.execution_info.result == "success", read(client, "j-cp", "t1", "stderr.txt")
    out = read(client, "j-cp", "t1", "stdout.txt")
    assert "batchd-test image" in out            # the image's file, not the host's
    assert out.strip().endswith("/wd")           # the task's working directory, mounted
    assert read(client, "j-cp", "t1", "wd/out.txt") == "hello from the host\n"
    assert not os.path.exists("/etc/batchd-image")


def test_the_image_working_directory_and_an_unknown_run_option(engine_emulator, image):
    client = batch_client(engine_emulator.url)
    container_pool(client, "cw", [image])
    client.create_task("j-cw", bm.BatchTaskCreateOptions(
        id="own", command_line="/bin/sh -c pwd",
        container_settings=bm.BatchTaskContainerSettings(image_name=image, working_directory="containerImageDefault")))
    done(client, "j-cw", "own")
    assert read(client, "j-cw", "own", "stdout.txt").strip() == "/srv"   # the image's WORKDIR
    client.create_task("j-cw", bm.BatchTaskCreateOptions(id="bad", command_line="/bin/true",
                                                         container_settings=settings(image, container_run_options="--no-such-option")))
    t = done(client, "j-cw", "bad")
    assert t.execution_info.result == "failure" and t.execution_info.exit_code != 0


def test_the_spec_refuses_what_it_does_not_define(engine_emulator, image):
    client = batch_client(engine_emulator.url)
    container_pool(client, "cs", [image])
    for bad in ({"id": "x", "commandLine": "/bin/true", "containerSettings": {"workingDirectory": "taskWorkingDirectory"}},
                {"id": "x", "commandLine": "/bin/true", "containerSettings": {"imageName": image, "workingDirectory": "somewhere"}},
                {"id": "x", "commandLine": "/bin/true", "containerSettings": {"imageName": image,
                                                                              "containerHostBatchBindMounts": [{"source": "Root"}]}}):
        with pytest.raises(HttpResponseError) as e:
            client.send_request(_post(engine_emulator.url, "/jobs/j-cs/tasks", bad)).raise_for_status()
        assert e.value.status_code == 400
    with pytest.raises(HttpResponseError) as e:
        client.send_request(_post(engine_emulator.url, "/pools", {
            "id": "np", "vmSize": "STANDARD_D2S_V3",
            "virtualMachineConfiguration": {"imageReference": {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204"},
                                            "nodeAgentSKUId": "batch.node.ubuntu 22.04",
                                            "containerConfiguration": {"type": "podman"}}})).raise_for_status()
    assert e.value.status_code == 400


def _post(url, path, body):
    from azure.core.rest import HttpRequest
    return HttpRequest("POST", f"{url}{path}?api-version=2025-06-01.21.0", json=body)


def test_an_image_no_node_can_pull_leaves_the_nodes_unusable_and_fails_its_tasks(engine_emulator, image):
    client = batch_client(engine_emulator.url)
    container_pool(client, "gone", ["batchd.test/no-such-image:1"])
    nodes = wait(lambda: [n for n in client.list_nodes("gone") if n.state == "unusable"])
    assert nodes[0].errors[0].code == "ContainerInvalidImage"
    container_pool(client, "cp2", [image])
    client.create_task("j-cp2", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true",
                                                          container_settings=settings("batchd.test/no-such-image:1")))
    t = done(client, "j-cp2", "t")
    assert t.execution_info.result == "failure" and t.execution_info.failure_info.code == "ContainerInvalidImage"


def test_container_and_bare_tasks_do_not_mix_with_the_other_kind_of_pool(engine_emulator, image):
    client = batch_client(engine_emulator.url)
    container_pool(client, "bare", [], container=False)
    client.create_task("j-bare", bm.BatchTaskCreateOptions(id="c", command_line="/bin/true", container_settings=settings(image)))
    container_pool(client, "boxed", [image])
    client.create_task("j-boxed", bm.BatchTaskCreateOptions(id="b", command_line="/bin/true"))
    for job_id, task_id in (("j-bare", "c"), ("j-boxed", "b")):
        t = done(client, job_id, task_id)
        assert t.execution_info.result == "failure" and t.execution_info.failure_info.category == "usererror"


def test_terminating_a_container_task_removes_its_container(engine_emulator, image):
    client = batch_client(engine_emulator.url)
    container_pool(client, "ct", [image])
    client.create_task("j-ct", bm.BatchTaskCreateOptions(id="long", command_line="/bin/sh -c 'sleep 300'", container_settings=settings(image)))
    wait(lambda: _ours("long"))
    client.terminate_task("j-ct", "long")
    done(client, "j-ct", "long")
    wait(lambda: not _ours("long"), timeout=30)


def _ours(task_id):
    out = subprocess.run(["podman", "ps", "-a", "--filter", f"label=azure-emulator.task={task_id}", "--format", "{{.Names}}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_a_registry_password_is_never_given_back(engine_emulator, image):
    client = batch_client(engine_emulator.url)
    login = bm.ContainerRegistryReference(registry_server="registry.example.com", username="puller", password="s3cret")
    config = bm.BatchContainerConfiguration(type="dockerCompatible", container_image_names=[image], container_registries=[login])
    client.create_pool(bm.BatchPoolCreateOptions(
        id="reg", vm_size="STANDARD_D2S_V3", target_dedicated_nodes=0,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(image_reference=HPC, node_agent_sku_id="batch.node.ubuntu 22.04",
                                                                     container_configuration=config)))
    got = client.get_pool("reg").virtual_machine_configuration.container_configuration.container_registries[0]
    assert got.registry_server == "registry.example.com" and got.username == "puller" and got.password is None
