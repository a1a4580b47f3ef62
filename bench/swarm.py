"""The server as a Swarm service, against the same by hand with the docker CLI; and writing the
Kubernetes manifests with offline validation.

By hand is what a careful user types: a secret for the token, `docker service create` with the
same options nbdock uses (dnsrr, a host-mode port, the secret as a file, a volume for the
notebooks, pinned to this node), then polling `/api` until Jupyter answers.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.common import (
    TOKEN,
    Row,
    docker_client,
    fmt,
    free_port,
    invoke,
    make_folder,
    median_of,
    met,
    run,
    table,
    wait_for_api,
)

NAME = "bench-swarm-by-hand"


def _by_hand_up(folder: Path, image: str, node: str, port: int) -> None:
    subprocess.run(["docker", "secret", "create", f"{NAME}-token", "-"], input=TOKEN, text=True, check=True,
                   capture_output=True)
    run(["docker", "service", "create", "--detach", "--name", NAME, "--endpoint-mode", "dnsrr",
         "--publish", f"mode=host,target=8888,published={port}", "--user", "1000:1000",
         "--secret", f"source={NAME}-token,target=jupyter_token,uid=1000,gid=1000,mode=0400",
         "--env", "JUPYTER_TOKEN_FILE=/run/secrets/jupyter_token",
         "--mount", f"type=volume,source={NAME}-notebooks,target=/home/nbdock/notebooks",
         "--constraint", f"node.id=={node}", "--init", image], folder)
    wait_for_api(port, token=TOKEN)


def _by_hand_down(folder: Path) -> None:
    subprocess.run(["docker", "service", "rm", NAME], capture_output=True)
    subprocess.run(["docker", "secret", "rm", f"{NAME}-token"], capture_output=True)
    for _ in range(100):  # the task lets go of the volume a moment after the service is gone
        if subprocess.run(["docker", "volume", "rm", f"{NAME}-notebooks"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)


def scenario(root: Path, base_image: str, runs: int) -> list[str]:
    client = docker_client()
    made_swarm = client.info()["Swarm"]["LocalNodeState"] != "active"
    if made_swarm:
        client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    node = client.info()["Swarm"]["NodeID"]
    folder = make_folder(root, "bench-swarm", base_image, "HOST_IP=0.0.0.0\n")
    print("swarm", flush=True)
    try:
        invoke(folder, "build")
        image = client.images.get("nbdock-bench-swarm:latest").id
        hand_port = free_port()
        up, warm = Row("`swarm.up` until the URL answers"), Row("`swarm.up` again, nothing changed")
        for _ in range(runs):
            up.times.setdefault("nbdock", []).append(median_of(1, lambda: invoke(folder, "swarm.up")))
            warm.times.setdefault("nbdock", []).append(median_of(1, lambda: invoke(folder, "swarm.up")))
            invoke(folder, "swarm.down", "--volumes")
            up.times.setdefault("by hand", []).append(
                median_of(1, lambda: _by_hand_up(folder, image, node, hand_port)))
            warm.times.setdefault("by hand", []).append(
                median_of(1, lambda: run(["docker", "service", "inspect", NAME], folder)))
            _by_hand_down(folder)
        ratio, over = up.ratio("nbdock", "by hand"), warm.over("nbdock", "by hand")
        rows = [
            [up.case, fmt(up.median("nbdock")), fmt(up.median("by hand")), "≤ 1.05x by hand",
             f"{ratio:.2f}x: {met(ratio <= 1.05)}"],
            [warm.case, fmt(warm.median("nbdock")), "`docker service inspect`: " + fmt(warm.median("by hand")),
             "≤ by hand + 0.3 s", f"{over:+.2f} s: {met(over <= 0.3)}"],
        ]
        rows.append(_manifests(folder, runs))
    finally:
        invoke(folder, "swarm.down", "--volumes")
        _by_hand_down(folder)
        invoke(folder, "down", "--image")
        if made_swarm:
            client.swarm.leave(force=True)
            for network in client.networks.list(names=["docker_gwbridge"]):
                network.remove()
    return table(["case", "nbdock", "by hand", "target", "result"], rows)


def _manifests(folder: Path, runs: int) -> list[str]:
    """`k8s.manifests --validate` with the image already pushed: its wall time."""
    case = "`k8s.manifests --validate` (image already pushed)"
    registry = "127.0.0.1:5000"
    try:
        run(["curl", "-fsS", f"http://{registry}/v2/"], folder)
    except RuntimeError:
        return [case, "(no registry on 127.0.0.1:5000)", "", "≤ 1 s", "not measured"]
    with (folder / ".env").open("a") as env:
        env.write(f"REGISTRY={registry}/bench\n")
    invoke(folder, "push")
    seconds = median_of(max(3, runs), lambda: invoke(folder, "k8s.manifests", "--validate"))
    return [case, fmt(seconds), "", "≤ 1 s", met(seconds <= 1.0)]
