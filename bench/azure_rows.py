"""The Azure rows of the benchmark suite, against the project's emulator
(Tests/AzureEmulator), each beside what Microsoft's Python SDKs (the
versions the conformance suite pins) do with the same emulator in the same
run. Request counts come from the emulator's own counters."""
import math
import os
import resource
import time

from common import Daemon, manifest, median_spread, timed

import conftest  # noqa: E402  (on the path through common: the emulator launcher and SDK clients)


def stats(em):
    return dict(em.admin("stats")["requests"])


def delta(after, before):
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sdk_pool(client, pool_id, nodes, slots=1):
    import azure.batch.models as bm
    client.create_pool(bm.BatchPoolCreateOptions(
        id=pool_id, vm_size="STANDARD_D1_V2",
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy",
                                                     sku="22_04-lts", version="latest"),
            node_agent_sku_id="batch.node.ubuntu 22.04"),
        target_dedicated_nodes=nodes, task_slots_per_node=slots))


def sdk_tasks(n, command="/bin/sh -c true"):
    import azure.batch.models as bm
    return [bm.BatchTaskCreateOptions(id=f"t{i}", command_line=command) for i in range(n)]


def sdk_tasks_like_batchd(n, container_url):
    """Tasks with what batchd's carry (its four BATCHD_* variables, stdout
    and stderr sent to a container, a retry count), so both clients make the
    emulator check the same bodies."""
    import azure.batch.models as bm

    def log(i, name):
        return bm.OutputFile(file_pattern=f"../{name}", destination=bm.OutputFileDestination(
            container=bm.OutputFileBlobContainerDestination(container_url=container_url, path=f"t{i}/.batchd/{name}")),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition=bm.OutputFileUploadCondition.TASK_COMPLETION))
    return [bm.BatchTaskCreateOptions(
        id=f"t{i}", command_line="/bin/sh -c 'true'",
        environment_settings=[bm.EnvironmentSetting(name=k, value=v) for k, v in
                              (("BATCHD_JOB_ID", "20261203-000000-00000000"), ("BATCHD_JOB_NAME", "add"),
                               ("BATCHD_TASK_ID", f"t{i}"), ("BATCHD_TASK_INDEX", str(i)))],
        output_files=[log(i, "stdout.txt"), log(i, "stderr.txt")],
        constraints=bm.BatchTaskConstraints(max_task_retry_count=0)) for i in range(n)]


def row_azure_poll(runs, quick):
    """Polling a job to its end: batchd's shared poller against the Azure
    Batch tutorial's loop (list every task once a second); and the Blob
    requests batchd makes per completed task. Tasks sleep half a second, so
    the job lasts about a minute and the loop's cost shows."""
    n = 200 if quick else 2000
    ours, loop, blob = [], [], []
    for _ in range(runs):
        em = conftest.Emulator("--allocation-delay", "0.1")
        try:
            d = Daemon(azure=em.url)
            try:
                d.start()
                before = stats(em)
                d.ctl("submit", "--backend", "azure", manifest(d, "poll", n, "sleep 0.5", extra="pool: {dedicatedNodes: 4, slotsPerNode: 4}\n"), "--wait")
                used = delta(stats(em), before)
            finally:
                d.close()
            ours.append((used.get("batch.task_counts", 0) + used.get("batch.list_tasks", 0)) / n)
            # Every Blob request but the uploads the emulated nodes make of the tasks' logs.
            blob.append(sum(v for k, v in used.items() if not k.startswith("batch.") and k != "put.blob") / n)

            client = conftest.batch_client(em.url)
            sdk_pool(client, "tutorialpool", 4, 4)
            import azure.batch.models as bm
            client.create_job(bm.BatchJobCreateOptions(id="tutorialjob", pool_info=bm.BatchPoolInfo(pool_id="tutorialpool")))
            client.create_tasks("tutorialjob", sdk_tasks(n, "/bin/sh -c 'sleep 0.5'"))
            before = stats(em)
            while True:   # the tutorial's wait_for_tasks_to_complete
                if all(t.state == "completed" for t in client.list_tasks("tutorialjob")):
                    break
                time.sleep(1)
            loop.append(delta(stats(em), before).get("batch.list_tasks", 0) / n)
        finally:
            em.stop()
    o, t, b = median_spread(ours), median_spread(loop), median_spread(blob)
    return {
        "title": f"polling a {n:,}-task Azure job of `sleep 0.5` to its end (emulator, 4 nodes × 4 slots)",
        "measures": {"batchd Batch calls per task": o, "tutorial loop calls per task": t, "batchd Blob requests per completed task": b},
        "ratio": {"name": "batchd / tutorial loop, calls per task", "value": o["median"] / t["median"], "target": 1 / 20},
        "checks": [{"name": "Batch calls per task", "value": o["median"], "target": 0.05},
                   {"name": "Blob requests per task", "value": b["median"], "target": 0.1}],
    }


def row_azure_add(runs, quick):
    """Adding tasks to one job on a pool of no nodes (so nothing runs):
    batchd from `batchctl submit` to its last task collection (intake
    included) against azure-batch's create_tasks, at its default
    concurrency and at 8, with task bodies of the same shape."""
    n = 1000 if quick else 10_000
    collections = math.ceil(n / 100)
    ours_wall, ours_cpu, sdk = [], [], {None: ([], []), 8: ([], [])}
    for _ in range(runs):
        em = conftest.Emulator("--allocation-delay", "0.1")
        try:
            client = conftest.batch_client(em.url)
            sdk_pool(client, "addpool", 0)
            import azure.batch.models as bm
            for conc in sdk:
                job = f"add{conc or 'default'}"
                client.create_job(bm.BatchJobCreateOptions(id=job, pool_info=bm.BatchPoolInfo(pool_id="addpool")))
                tasks = sdk_tasks_like_batchd(n, f"{em.url}/{conftest.STORAGE}/out?sv=2021-08-06&sr=c&sp=wc&sig=x")
                t0, c0 = time.monotonic(), cpu()
                if conc:
                    client.create_tasks(job, tasks, max_concurrency=conc)
                else:
                    client.create_tasks(job, tasks)
                sdk[conc][0].append(time.monotonic() - t0)
                sdk[conc][1].append((cpu() - c0) / n * 1e6)
            d = Daemon(azure=em.url)
            try:
                d.start()
                before = stats(em)
                c0 = d.cpu_seconds()
                t0 = time.monotonic()
                d.ctl("submit", "--backend", "azure", manifest(d, "add", n, extra="pool: {dedicatedNodes: 0}\n"))
                while delta(stats(em), before).get("batch.add_task_collection", 0) < collections:
                    time.sleep(0.02)
                ours_wall.append(time.monotonic() - t0)
                ours_cpu.append((d.cpu_seconds() - c0) / n * 1e6)
            finally:
                d.close()
        finally:
            em.stop()
    w, c = median_spread(ours_wall), median_spread(ours_cpu)
    best = min(median_spread(sdk[k][0])["median"] for k in sdk)
    sdk_cpu = min(median_spread(sdk[k][1])["median"] for k in sdk)
    return {
        "title": f"{n:,} tasks added to one Azure job (emulator, pool of 0 nodes)",
        "measures": {"batchd wall s (submit → last collection)": w, "batchd daemon CPU µs per task": c,
                     "create_tasks wall s": median_spread(sdk[None][0]), "create_tasks CPU µs per task": median_spread(sdk[None][1]),
                     "create_tasks(max_concurrency=8) wall s": median_spread(sdk[8][0]),
                     "create_tasks(max_concurrency=8) CPU µs per task": median_spread(sdk[8][1])},
        "ratio": {"name": "batchd / SDK's best, wall", "value": w["median"] / best, "target": 0.8},
        "checks": [{"name": "CPU per task, batchd / SDK's lower", "value": c["median"] / sdk_cpu, "target": 0.2}],
    }


def row_azure_upload(runs, quick):
    """Staging inputs to Blob: batchd (hashing included, from `batchctl
    submit` to the end of staging) against azure-storage-blob's upload_blob
    (small files in 8 threads, the large one with max_concurrency=8) and,
    for the large file, curl putting the same bytes in one request."""
    import concurrent.futures
    import datetime
    import json
    import shutil
    import tempfile
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas
    small_n, small_size = (50, 64 << 10) if quick else (500, 64 << 10)
    large_size = (64 << 20) if quick else (512 << 20)
    data = tempfile.mkdtemp(prefix="batchd-bench-data.")
    try:
        os.makedirs(f"{data}/small")
        for i in range(small_n):
            with open(f"{data}/small/f{i:04d}.bin", "wb") as f:
                f.write(os.urandom(small_size))
        with open(f"{data}/large.bin", "wb") as f:
            for _ in range(large_size >> 20):
                f.write(os.urandom(1 << 20))
        results = {k: [] for k in ("bs", "bsc", "bl", "blc", "ss", "sl", "slc", "curl")}
        for _ in range(runs):
            em = conftest.Emulator("--allocation-delay", "0.1")
            try:
                svc = conftest.blob_service(em.url)
                # azure-storage-blob: the small files in 8 threads, then the large one.
                svc.create_container("sdk")
                def put(path):
                    with open(path, "rb") as f:
                        svc.get_blob_client("sdk", os.path.basename(path)).upload_blob(f, overwrite=True)
                t0, c0 = time.monotonic(), cpu()
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    list(pool.map(put, sorted(f"{data}/small/{n}" for n in os.listdir(f"{data}/small"))))
                results["ss"].append(time.monotonic() - t0)
                t0, c0 = time.monotonic(), cpu()
                with open(f"{data}/large.bin", "rb") as f:
                    svc.get_blob_client("sdk", "large.bin").upload_blob(f, overwrite=True, max_concurrency=8)
                results["sl"].append(time.monotonic() - t0)
                results["slc"].append(cpu() - c0)
                # curl: one Put Blob of the large file with a SAS.
                sas = generate_blob_sas(conftest.STORAGE, "sdk", "curl.bin", account_key=conftest.STORAGE_KEY,
                                        permission=BlobSasPermissions(write=True, create=True),
                                        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
                results["curl"].append(timed(["curl", "-sS", "-f", "-o", "/dev/null", "-X", "PUT", "-T", f"{data}/large.bin",
                                               "-H", "x-ms-blob-type: BlockBlob", "-H", "x-ms-version: 2021-08-06",
                                              f"{em.url}/{conftest.STORAGE}/sdk/curl.bin?{sas}"]))
                # batchd: a job per set of inputs, timed to the end of staging.
                for key, inputs in (("s", f"{data}/small/*.bin"), ("l", f"{data}/large.bin")):
                    d = Daemon(azure=em.url)
                    try:
                        d.start()
                        c0 = d.cpu_seconds()
                        since = d.log_size()
                        t0 = time.monotonic()
                        d.ctl("submit", "--backend", "azure",
                              manifest(d, "stage", 1, extra=f"inputs: {{shared: [{json.dumps(inputs)}]}}\npool: {{dedicatedNodes: 0}}\n"))
                        d.wait_log("inputs staged", since)
                        results[f"b{key}"].append(time.monotonic() - t0)
                        results[f"b{key}c"].append(d.cpu_seconds() - c0)
                    finally:
                        d.close()
            finally:
                em.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    m = {k: median_spread(v) for k, v in results.items() if v}
    mib = large_size >> 20
    return {
        "title": f"staging {small_n} × 64 KiB and 1 × {mib} MiB to Blob (emulator)",
        "measures": {"batchd small files s": m["bs"], "azure-storage-blob small files (8 threads) s": m["ss"],
                     "batchd large file s": m["bl"], "batchd large file CPU s": m["blc"],
                     "azure-storage-blob large file (max_concurrency=8) s": m["sl"], "azure-storage-blob large file CPU s": m["slc"],
                     "curl large file (one Put Blob) s": m["curl"]},
        "ratio": {"name": "batchd / SDK, small files wall", "value": m["bs"]["median"] / m["ss"]["median"], "target": 1 / 3},
        "checks": [{"name": "large file wall, batchd / SDK", "value": m["bl"]["median"] / m["sl"]["median"], "target": 0.8},
                   {"name": "large file CPU, batchd / SDK", "value": m["blc"]["median"] / m["slc"]["median"], "target": 1 / 3},
                   {"name": "large file wall, batchd / curl", "value": m["bl"]["median"] / m["curl"]["median"], "target": 1.25}],
    }

