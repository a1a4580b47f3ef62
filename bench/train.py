"""`train --workers 2` on the distributed TensorFlow example, against the same by hand with the
docker CLI, on the local engine and on Swarm, with the same image. Two workers on two cores
measure nbdock's overhead, not a speed-up.

By hand on the local engine: an internal network, two `docker run` with hand-written TF_CONFIG and
the notebooks mounted read-only, `docker wait` for both, remove them and the network. On Swarm:
an attachable overlay network, two `docker service create` (no restart, dnsrr, pinned to this
node), polling until both tasks complete, then removing them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import REPO, Row, docker_client, fmt, invoke, make_folder, met, run, table, timed, user_spec

EXAMPLE = REPO / "examples" / "distributed-tf"
NAME = "bench-train-by-hand"


def tf_config(hosts: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def worker_command(names: list[str], script: str = "train.py") -> list[str]:
    """What a careful user runs in each worker: wait until the peers resolve, then train."""
    wait = " ".join(f"until getent hosts {name} >/dev/null; do sleep 0.2; done;" for name in names)
    return ["sh", "-c", f"{wait} exec python /home/nbdock/notebooks/{script}"]


def _local_by_hand(folder: Path, image: str) -> None:
    names = [f"{NAME}-{index}" for index in range(2)]
    hosts = [f"{name}:2222" for name in names]
    run(["docker", "network", "create", "--internal", NAME], folder)
    try:
        for index, name in enumerate(names):
            run(["docker", "run", "-d", "--init", "--no-healthcheck", "--name", name, "--network", NAME,
                 "-u", user_spec(),
                 "--group-add", "1000", "-e", f"TF_CONFIG={tf_config(hosts, index)}", "-e", "NBDOCK_OUTPUT=/tmp/out",
                 "-v", f"{folder / 'notebooks'}:/home/nbdock/notebooks:ro", image, *worker_command(names)], folder)
        codes = [run(["docker", "wait", name], folder).strip() for name in names]
        assert codes == ["0", "0"], codes
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
        subprocess.run(["docker", "network", "rm", NAME], capture_output=True)


def _tasks_left(services: list[str], folder: Path) -> bool:
    """Whether a task container of `services` is still there (it lingers after `service rm`)."""
    label = "--filter=label=com.docker.swarm.service.name={}"
    return any(run(["docker", "ps", "-aq", label.format(name)], folder).strip() for name in services)


def wait_until_complete(docker: list[str], services: list[str], folder: Path) -> None:
    """Poll `docker service ps` (through the `docker` command given) until every task of
    `services` completed; an AssertionError when one failed or was rejected."""
    while True:
        states = [run([*docker, "service", "ps", "--format", "{{.CurrentState}}", name], folder).split()[0]
                  for name in services]
        if all(state == "Complete" for state in states):
            return
        assert not any(state in ("Failed", "Rejected") for state in states), states
        time.sleep(0.25)


def _swarm_by_hand(folder: Path, image: str, node: str) -> None:
    names = [f"{NAME}-{index}" for index in range(2)]
    hosts = [f"{name}:2222" for name in names]
    run(["docker", "network", "create", "-d", "overlay", "--attachable", NAME], folder)
    try:
        for index, name in enumerate(names):
            run(["docker", "service", "create", "--detach", "--name", name, "--network", NAME,
                 "--restart-condition", "none", "--endpoint-mode", "dnsrr", "--no-healthcheck", "--user", user_spec(),
                 "--group", "1000", "--env", f"TF_CONFIG={tf_config(hosts, index)}", "--env", "NBDOCK_OUTPUT=/tmp/out",
                 "--mount", f"type=bind,source={folder / 'notebooks'},target=/home/nbdock/notebooks,readonly",
                 "--constraint", f"node.id=={node}", image, *worker_command(names)], folder)
        wait_until_complete(["docker"], names, folder)
    finally:
        subprocess.run(["docker", "service", "rm", *names], capture_output=True)
        while _tasks_left(names, folder) or subprocess.run(["docker", "network", "rm", NAME],
                                                           capture_output=True).returncode:
            time.sleep(0.2)


def scenario(root: Path, base_image: str, runs: int) -> list[str]:
    client = docker_client()
    folder = make_folder(root, "bench-train", base_image, notebooks=EXAMPLE / "notebooks",
                         requirements=EXAMPLE / "requirements.txt")
    print("train", flush=True)
    made_swarm = client.info()["Swarm"]["LocalNodeState"] != "active"
    try:
        invoke(folder, "train", "--workers", "2", "--script", "train.py")  # builds the image once
        image = client.images.get("nbdock-bench-train:execute").id
        if made_swarm:
            client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        node = client.info()["Swarm"]["NodeID"]
        local, swarm = Row("2 workers on the local engine"), Row("2 workers on Swarm")
        for _ in range(runs):
            local.times.setdefault("nbdock", []).append(
                timed(lambda: invoke(folder, "train", "--workers", "2", "--script", "train.py")))
            local.times.setdefault("by hand", []).append(timed(lambda: _local_by_hand(folder, image)))
            swarm.times.setdefault("nbdock", []).append(timed(lambda: invoke(
                folder, "train", "--workers", "2", "--script", "train.py", "--backend", "swarm")))
            swarm.times.setdefault("by hand", []).append(timed(lambda: _swarm_by_hand(folder, image, node)))
        rows = []
        for row in (local, swarm):
            over = row.over("nbdock", "by hand")
            rows.append([row.case, fmt(row.median("nbdock")), fmt(row.median("by hand")), "≤ by hand + 2 s",
                         f"{over:+.2f} s: {met(over <= 2)}"])
    finally:
        invoke(folder, "down", "--image")
        if made_swarm and client.info()["Swarm"]["LocalNodeState"] == "active":
            client.swarm.leave(force=True)
            for network in client.networks.list(names=["docker_gwbridge"]):
                network.remove()
        shutil.rmtree(folder / "outputs", ignore_errors=True)
    return table(["`train --script train.py`", "nbdock", "by hand", "target", "result"], rows)
