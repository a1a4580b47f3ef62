"""`swarm.up` through a remote manager on a real three-node swarm (the test suite's cluster:
three engines in namespaces of their own and a registry every node pulls from), against the same
by hand: `docker push` from the build engine, then `docker secret create` and `docker service
create` on the manager with the options nbdock uses, then polling the node's address until Jupyter
answers. Both push to a registry that already holds the layers and run on a node that already has
the image (one untimed `swarm.up` first), so what is compared is nbdock's own work.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.common import TOKEN, Row, docker_client, fmt, invoke, make_folder, met, run, table, timed
from tests.helpers.cluster import Cluster, cluster_root, default_storage_driver, unavailable

NAME = "bench-cluster-by-hand"
PORT = 18890  # nbdock's server
HAND_PORT = 18891  # the one by hand


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


def scenario(root: Path, base_image: str, runs: int) -> list[str]:
    reason = unavailable(default_storage_driver())
    if reason is not None:
        return table(["case", "nbdock", "by hand", "target", "result"],
                     [["`swarm.up` on three nodes", f"({reason})", "", "≤ 1.05x by hand", "not measured"]])
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
    finally:
        with contextlib.suppress(Exception):
            invoke(root / "bench-cluster", "swarm.down", "--volumes")
        _by_hand_down(cluster)
        cluster.close()
    return table(["case", "nbdock", "by hand", "target", "result"], rows)
