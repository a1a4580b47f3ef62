"""`swarm.up` and `train --workers 3` through a remote manager on a real three-node swarm (the
test suite's cluster: three engines in namespaces of their own and a registry every node pulls
from), against the same by hand.

`swarm.up` by hand: `docker push` from the build engine, then `docker secret create` and `docker
service create` on the manager with the options nbdock uses, then polling the node's address until
Jupyter answers. Training by hand: `docker push`, an attachable overlay network and three `docker
service create` on the manager (one a node, hand-written TF_CONFIG, the script from the image),
polling until all three tasks complete, then removing them; nbdock also brings the chief's outputs
and every worker's log back, which by hand is left out. Both push to a registry that already holds
the layers and run on nodes that already have the image (one untimed run first), so what is
compared is nbdock's own work.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from pathlib import Path

from bench import train
from bench.common import TOKEN, Row, docker_client, fmt, invoke, make_folder, met, run, table, timed
from tests.helpers.cluster import Cluster, cluster_root, default_storage_driver, unavailable

NAME = "bench-cluster-by-hand"
PORT = 18890  # nbdock's server
HAND_PORT = 18891  # the one by hand
THREE = "train_three.py"


def _wait_for(host: str, port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"http://{host}:{port}/api/status?token={TOKEN}", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on {host}:{port}")


def _by_hand_up(folder: Path, cluster: Cluster, image: str, target: str) -> None:
    manager = ["docker", "-H", cluster.manager_host]
    run(["docker", "tag", image, target], folder)
    run(["docker", "push", target], folder)
    subprocess.run([*manager, "secret", "create", f"{NAME}-token", "-"], input=TOKEN, text=True, check=True,
                   capture_output=True)
    run([*manager, "service", "create", "--detach", "--name", NAME, "--endpoint-mode", "dnsrr",
         "--publish", f"mode=host,target=8888,published={HAND_PORT}", "--user", "1000:1000",
         "--secret", f"source={NAME}-token,target=jupyter_token,uid=1000,gid=1000,mode=0400",
         "--env", "JUPYTER_TOKEN_FILE=/run/secrets/jupyter_token",
         "--mount", f"type=volume,source={NAME}-notebooks,target=/home/nbdock/notebooks",
         "--constraint", f"node.hostname=={cluster.manager.hostname}", "--init", target], folder)
    _wait_for(cluster.manager.address, HAND_PORT)


def _by_hand_down(cluster: Cluster) -> None:
    manager = ["docker", "-H", cluster.manager_host]
    subprocess.run([*manager, "service", "rm", NAME], capture_output=True)
    subprocess.run([*manager, "secret", "rm", f"{NAME}-token"], capture_output=True)
    for _ in range(100):  # the task lets go of the volume a moment after the service is gone
        if subprocess.run([*manager, "volume", "rm", f"{NAME}-notebooks"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)


def _train_by_hand(folder: Path, cluster: Cluster, image: str, target: str) -> None:
    manager = ["docker", "-H", cluster.manager_host]
    names = [f"{NAME}-train-{index}" for index in range(len(cluster.nodes))]
    hosts = [f"{name}:2222" for name in names]
    run(["docker", "tag", image, target], folder)
    run(["docker", "push", target], folder)
    run([*manager, "network", "create", "-d", "overlay", "--attachable", f"{NAME}-train"], folder)
    try:
        for index, (name, node) in enumerate(zip(names, cluster.nodes, strict=True)):
            run([*manager, "service", "create", "--detach", "--name", name, "--network", f"{NAME}-train",
                 "--restart-condition", "none", "--endpoint-mode", "dnsrr", "--no-healthcheck",
                 "--user", "1000:1000", "--env", f"TF_CONFIG={train.tf_config(hosts, index)}",
                 "--env", "NBDOCK_OUTPUT=/tmp/out", "--constraint", f"node.hostname=={node.hostname}",
                 target, *train.worker_command(names, THREE)], folder)
        train.wait_until_complete(manager, names, folder)
    finally:
        subprocess.run([*manager, "service", "rm", *names], capture_output=True)
        for _ in range(300):  # the network goes once the tasks' containers are gone on every node
            if subprocess.run([*manager, "network", "rm", f"{NAME}-train"], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)


def _train_rows(root: Path, cluster: Cluster, base_image: str, registry: str, runs: int) -> list[list[str]]:
    folder = make_folder(root, "bench-cluster-train", base_image,
                         f"SWARM_HOST={cluster.manager_host}\nREGISTRY={registry}\n",
                         notebooks=train.EXAMPLE / "notebooks", requirements=train.EXAMPLE / "requirements.txt")
    # The example's global batch (64) splits over 1, 2 or 4 workers; three need one that 3 divides.
    script = (folder / "notebooks" / "train.py").read_text().replace('"BATCH_SIZE", 64', '"BATCH_SIZE", 96')
    (folder / "notebooks" / THREE).write_text(script)
    command = ("train", "--workers", "3", "--script", THREE, "--backend", "swarm")
    try:
        invoke(folder, *command)  # untimed: builds the image, the layers reach the registry and the nodes
        image = docker_client().images.get("nbdock-bench-cluster-train:execute").id
        row = Row("`train --workers 3` across three nodes via SWARM_HOST, push included")
        for _ in range(runs):
            row.times.setdefault("nbdock", []).append(timed(lambda: invoke(folder, *command)))
            row.times.setdefault("by hand", []).append(
                timed(lambda: _train_by_hand(folder, cluster, image, f"{registry}/by-hand-train:latest")))
        over = row.over("nbdock", "by hand")
        return [[row.case, fmt(row.median("nbdock")), fmt(row.median("by hand")), "≤ by hand + 2 s",
                 f"{over:+.2f} s: {met(over <= 2)}"]]
    finally:
        with contextlib.suppress(Exception):
            invoke(folder, "down", "--image")


def scenario(root: Path, base_image: str, runs: int) -> list[str]:
    reason = unavailable(default_storage_driver())
    if reason is not None:
        return table(["case", "nbdock", "by hand", "target", "result"],
                     [["`swarm.up` on three nodes", f"({reason})", "", "≤ 1.05x by hand", "not measured"],
                      ["`train --workers 3` across three nodes", f"({reason})", "", "≤ by hand + 2 s",
                       "not measured"]])
    cluster = Cluster.start(cluster_root(root), root, default_storage_driver())
    print("cluster", flush=True)
    try:
        registry = f"{cluster.registry}/bench"
        folder = make_folder(root, "bench-cluster", base_image,
                             f"HOST_IP=0.0.0.0\nSWARM_HOST={cluster.manager_host}\nREGISTRY={registry}\n")
        (folder / ".env").write_text((folder / ".env").read_text().replace("HOST_PORT=0\n", f"HOST_PORT={PORT}\n")
                                     + f"JUPYTER_TOKEN={TOKEN}\n")
        invoke(folder, "swarm.up")  # untimed: the layers reach the registry and the node once
        invoke(folder, "swarm.down", "--volumes")
        image = docker_client().images.get("nbdock-bench-cluster:latest").id
        up = Row("`swarm.up` on three nodes via SWARM_HOST, push included, until the URL answers")
        for _ in range(runs):
            up.times.setdefault("nbdock", []).append(timed(lambda: invoke(folder, "swarm.up")))
            invoke(folder, "swarm.down", "--volumes")
            up.times.setdefault("by hand", []).append(
                timed(lambda: _by_hand_up(folder, cluster, image, f"{registry}/by-hand:latest")))
            _by_hand_down(cluster)
        ratio = up.ratio("nbdock", "by hand")
        rows = [[up.case, fmt(up.median("nbdock")), fmt(up.median("by hand")), "≤ 1.05x by hand",
                 f"{ratio:.2f}x: {met(ratio <= 1.05)}"]]
        rows += _train_rows(root, cluster, base_image, registry, runs)
    finally:
        with contextlib.suppress(Exception):
            invoke(root / "bench-cluster", "swarm.down", "--volumes")
        _by_hand_down(cluster)
        cluster.close()
    return table(["case", "nbdock", "by hand", "target", "result"], rows)
