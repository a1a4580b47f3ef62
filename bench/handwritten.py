"""nbdock against what a user writes without it: a plain Dockerfile built and run with the docker CLI.

The hand-written Dockerfile is the one a careful user writes for the example project: FROM the same
base, a virtual environment, `pip install jupyterlab -r requirements.txt` in one step, the notebooks
copied in, Jupyter as the command (and, behind a TLS-intercepting proxy, the CA bundle pip needs).
Measured side by side with nbdock and with the docker CLI on nbdock's own Dockerfile: a cold `up`
(no image, no cache) and `up` after adding a package. Every cold start removes what was built on
the base, so this scenario runs after those that keep their images.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    EXAMPLE,
    TOKEN,
    Row,
    docker_client,
    fmt,
    free_port,
    make_folder,
    met,
    run,
    table,
    timed,
    wait_for_api,
)
from bench.updown import EXTRA_PACKAGES, DockerCli, Nbdock, Tool, down_all
from nbdock.settings import DEFAULT_JUPYTER_PACKAGES
from tests.helpers.images import remove_images_built_on

PROXY_CA = "ca.pem"


def handwritten_dockerfile(base_image: str, jupyter: str, with_ca: bool) -> str:
    """The Dockerfile a user writes by hand for the example project."""
    ca = [f"COPY {PROXY_CA} /etc/pip-ca.pem", "ENV PIP_CERT=/etc/pip-ca.pem"] if with_ca else []
    return "\n".join([
        f"FROM {base_image}",
        *ca,
        "RUN python3 -m venv /opt/venv",
        "ENV PATH=/opt/venv/bin:$PATH",
        "WORKDIR /home/notebooks",
        "COPY requirements.txt /tmp/requirements.txt",
        f"RUN pip install --no-cache-dir {jupyter} -r /tmp/requirements.txt",
        "COPY notebooks/ /home/notebooks/",
        "EXPOSE 8888",
        'CMD ["jupyter", "lab", "--no-browser", "--allow-root", "--ip=0.0.0.0", "--port=8888"]',
    ]) + "\n"


def make_handwritten_folder(root: Path, name: str, base_image: str) -> Path:
    folder = root / name
    folder.mkdir()
    shutil.copytree(EXAMPLE / "notebooks", folder / "notebooks")
    shutil.copy(EXAMPLE / "requirements.txt", folder / "requirements.txt")
    bundle = os.environ.get("PIP_CERT")
    if bundle:
        shutil.copy(bundle, folder / PROXY_CA)
    (folder / "Dockerfile").write_text(handwritten_dockerfile(base_image, DEFAULT_JUPYTER_PACKAGES, bool(bundle)))
    return folder


class HandWritten(DockerCli):
    """The hand-written Dockerfile, built and run with the docker CLI as its user would."""

    def up(self, recreate: bool = False) -> None:
        run(["docker", "build", "-q", "-t", f"{self.name}:latest", "."], self.folder)
        if self._state() and recreate:
            run(["docker", "rm", "-f", self.name], self.folder)
        if not self._state():
            run(["docker", "run", "-d", "--init", "--name", self.name, "-p", f"127.0.0.1:{self.port}:8888",
                 "-e", f"JUPYTER_TOKEN={TOKEN}", "-v", f"{self.folder / 'notebooks'}:/home/notebooks",
                 f"{self.name}:latest"], self.folder)
        elif self._state() != "running":
            run(["docker", "start", self.name], self.folder)
        wait_for_api(self.port)


def scenario(root: Path, base_image: str, base_id: str, runs: int) -> list[str]:
    """Cold `up` and `up` after adding a package: nbdock, the CLI on nbdock's Dockerfile, by hand."""
    client = docker_client()
    nbdock = Nbdock("bench-hw-nbdock", make_folder(root, "bench-hw-nbdock", base_image))
    cli = DockerCli("bench-hw-cli", make_folder(root, "bench-hw-cli", base_image), free_port())
    hand = HandWritten("bench-hw-hand", make_handwritten_folder(root, "bench-hw-hand", base_image), free_port())
    tools: list[Tool] = [nbdock, cli, hand]
    packages = iter(reversed(EXTRA_PACKAGES))  # not the ones `updown` adds, should both run
    rows: list[Row] = []

    def measure(case: str, members: list[Tool], action: Callable[[Tool], Callable[[], object]],
                prepare: Callable[[Tool], object]) -> Row:
        row = Row(case)
        for _ in range(runs):
            for tool in members:
                prepare(tool)
                row.times.setdefault(tool.name, []).append(timed(action(tool)))
        rows.append(row)
        print(f"  {case}: " + ", ".join(f"{n} {fmt(row.median(n))}" for n in row.times), flush=True)
        return row

    def start_cold(tool: Tool) -> None:
        for each in tools:
            each.down()
        remove_images_built_on(client, base_id)

    def add_package(tool: Tool) -> None:
        tool.up()  # what adding a package changes is measured from a built and running project
        tool.add_package(next(packages))

    try:
        print("nbdock against a hand-written Dockerfile: cold up", flush=True)
        cold = measure("cold `up` (no image, no cache)", tools, lambda t: t.up, prepare=start_cold)
        added = measure("`up` after adding a package to requirements.txt", [nbdock, hand],
                        lambda t: (lambda: hand.up(recreate=True)) if t is hand else t.up, prepare=add_package)
    finally:
        down_all(tools)
        for tool in tools:
            for image in client.images.list(name=tool.name):
                client.images.remove(image.id, force=True)
    to_hand = cold.ratio(nbdock.name, hand.name)
    to_cli = cold.ratio(nbdock.name, cli.name)
    to_hand_added = added.ratio(nbdock.name, hand.name)
    return table(
        ["case", "nbdock", "reference", "target", "result"],
        [
            [cold.case, fmt(cold.median(nbdock.name)), f"hand-written Dockerfile, docker CLI: "
             f"{fmt(cold.median(hand.name))}", "≤ 0.75x", f"{to_hand:.2f}x: {met(to_hand <= 0.75)}"],
            [cold.case, fmt(cold.median(nbdock.name)), f"nbdock's Dockerfile, docker CLI: "
             f"{fmt(cold.median(cli.name))}", "≤ 1.05x", f"{to_cli:.2f}x: {met(to_cli <= 1.05)}"],
            [added.case, fmt(added.median(nbdock.name)), f"hand-written Dockerfile rebuilt, docker CLI: "
             f"{fmt(added.median(hand.name))}", "≤ 0.5x", f"{to_hand_added:.2f}x: {met(to_hand_added <= 0.5)}"],
        ],
    )
