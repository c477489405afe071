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
