"""Container tasks, as Azure Batch runs them on a container-enabled pool
(BatchService.json; learn.microsoft.com, "Run container applications on
Azure Batch"), run here through podman when it is installed:

- A pool's `containerConfiguration.containerImageNames` are pulled as each
  node starts: from the engine's own images, else from a registry of its
  `containerRegistries` (the tests' own, on loopback) with that registry's
  login; nothing else is reachable. A node that cannot get one is
  `unusable`, with the error in its `errors` (`ContainerInvalidImage`; the
  service's code for a refused login is not documented, so the emulator
  reports the same, with the engine's words as a detail).
- A container-enabled pool runs only tasks with `containerSettings`, and a
  pool without it none ("this must be set as well" / "this must not be
  set", the spec's words on containerSettings): such a task fails when it
  would start.
- The task's command line runs in the container and overrides the image's
  ENTRYPOINT (an empty command line keeps it); its environment settings
  are mapped in; `containerHostBatchBindMounts` says what of the node's
  Batch directories is mounted (absent: all of AZ_BATCH_NODE_ROOT_DIR);
  `workingDirectory` is the task's (the default) or the image's own.
- `containerRunOptions` are passed to the engine's create, as Batch passes
  them to `docker create`.

The failure codes are the service's where its docs or the spec name them
(ContainerInvalidImage); where they only say "must", the code is this
emulator's own, named so (EmulatorContainer...)."""
import base64
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import uuid

ENGINE = os.environ.get("AZURE_EMULATOR_CONTAINER_ENGINE", "podman")
LABEL = "azure-emulator.task"

INVALID_IMAGE = ("ContainerInvalidImage", "One or more container images specified are invalid")


def pool_images(pool_body):
    """The images a pool was made to pull, or None when it is not container-enabled."""
    config = (pool_body.get("virtualMachineConfiguration") or {}).get("containerConfiguration")
    if config is None:
        return None
    return list(config.get("containerImageNames") or [])


def has_image(name):
    if shutil.which(ENGINE) is None:
        return False
    return subprocess.call([ENGINE, "image", "exists", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def pull(name, registries):
    """Pulls `name` with the login of the registry of `registries` that
    serves it (its host), if one does: None when done, else the engine's words."""
    host = name.split("/")[0] if "/" in name and ("." in name.split("/")[0] or ":" in name.split("/")[0]) else None
    login = next((r for r in registries if r.get("registryServer") == host), None)
    if login is None or shutil.which(ENGINE) is None:
        return "no registry is reachable from the emulator"
    with tempfile.TemporaryDirectory() as d:
        token = base64.b64encode(f"{login.get('username', '')}:{login.get('password', '')}".encode()).decode()
        auth = os.path.join(d, "auth.json")
        with open(os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            json.dump({"auths": {host: {"auth": token}}}, f)
        p = subprocess.run([ENGINE, "pull", "--quiet", "--authfile", auth, name], capture_output=True, text=True, timeout=600)
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["the pull failed"])[-1]


def node_errors(pool_body):
    """The errors of a node of this pool once it has tried to pull the
    pool's images: empty when it has them all."""
    config = (pool_body.get("virtualMachineConfiguration") or {}).get("containerConfiguration") or {}
    failed = []
    for name in pool_images(pool_body) or []:
        if not has_image(name):
            why = pull(name, config.get("containerRegistries") or [])
            if why:
                failed.append((name, why))
    if not failed:
        return []
    code, message = INVALID_IMAGE
    return [{"code": code, "message": message,
             "errorDetails": [d for name, why in failed for d in ({"name": "ImageName", "value": name}, {"name": "Message", "value": why})]}]


def refusal(task_body, pool_body):
    """Why a task cannot run on its pool as a container task (or as a bare
    one): (category, code, message), or None."""
    settings = task_body.get("containerSettings")
    images = pool_images(pool_body)
    if settings is not None and images is None:
        return ("usererror", "EmulatorContainerPoolNotSupported",
                "The task has containerSettings and its pool has no containerConfiguration")
    if settings is None and images is not None:
        return ("usererror", "EmulatorContainerSettingsRequired",
                "The pool has a containerConfiguration and the task has no containerSettings")
    if settings is not None and not has_image(settings["imageName"]):
        code, message = INVALID_IMAGE
        return ("usererror", code, message)
    return None


def mounts(settings, node_dir, task_dir):
    """Host directories mounted into the task's container, at the same path."""
    entries = settings.get("containerHostBatchBindMounts")
    if entries is None:
        return [(node_dir, False)]
    where = {"task": task_dir, "shared": os.path.join(node_dir, "shared"), "startup": os.path.join(node_dir, "startup"),
             "vfsmounts": os.path.join(node_dir, "fsmounts"), "applications": os.path.join(node_dir, "applications"),
             "jobprep": os.path.join(os.path.dirname(task_dir), "jobpreparation")}
    out = []
    for e in entries:
        path = where[e["source"].lower()]
        os.makedirs(path, exist_ok=True)
        out.append((path, bool(e.get("isReadOnly", False))))
    return out


def engine_environment(env):
    """The engine's own environment: the task's, which it passes on by
    name, and what the engine needs of the emulator's (its PATH and HOME,
    its CONTAINERS_* settings, XDG_RUNTIME_DIR) over it."""
    own = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "XDG_RUNTIME_DIR") or k.startswith("CONTAINERS_")}
    return {**env, **own}


def command(task_body, argv, env, node_dir, task_dir, wd):
    """The engine's command line for a container task (its name, its argv).
    Values of the environment reach the container by name only, from the
    engine's own environment (engine_environment), so none is on a command line."""
    settings = task_body["containerSettings"]
    name = f"batch-{uuid.uuid4().hex[:12]}"
    out = [ENGINE, "run", "--rm", "--pull=never", "--name", name, "--label", f"{LABEL}={task_body['id']}"]
    for path, read_only in mounts(settings, node_dir, task_dir):
        out += ["--volume", f"{path}:{path}" + (":ro" if read_only else "")]
    if (settings.get("workingDirectory") or "taskWorkingDirectory").lower() == "taskworkingdirectory":
        out += ["--workdir", wd]
    for key in sorted(env):
        if key not in ("PATH", "HOME"):
            out += ["--env", key]
    out += shlex.split(settings.get("containerRunOptions") or "")
    if argv:
        out += ["--entrypoint", argv[0], settings["imageName"]] + argv[1:]
    else:
        out += [settings["imageName"]]
    return name, out


def remove(name, client=None):
    """Stops and removes a task's container (killing the engine's client
    leaves it running), in the background: callers hold the service's lock.
    Once the client (`client`, already signalled) has exited: a stop that
    came while it was still making the container would find none yet."""
    def work():
        if client is not None:
            try:
                client.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        subprocess.call([ENGINE, "rm", "--force", "--time", "0", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threading.Thread(target=work, daemon=True).start()
