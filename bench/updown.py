"""`up` and `down` on the example project: nbdock against the docker CLI by hand and docker-compose.

Each tool gets its own copy of the project and the same Dockerfile (the one nbdock writes), builds
on the same local base image, publishes on 127.0.0.1 and mounts the notebooks. Also measured:
the build context with leftovers present, the image size against its floor, and start-up.
"""

from __future__ import annotations

import abc
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
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
    timed,
    user_spec,
    wait_for_api,
)
from nbdock.context import plan_context
from nbdock.environment import read_environment
from nbdock.settings import load_settings
from tests.helpers.images import remove_images_built_on

# Small pure-Python packages, one per (tool, run), so that no tool reuses another's pip layer.
EXTRA_PACKAGES = [
    "toolz", "termcolor", "colorama", "more-itertools", "appdirs", "tomli-w", "docopt-ng",
    "iniconfig", "multidict", "cachetools", "xmltodict", "humanize", "inflection", "pytz",
    "simplejson", "ordered-set", "sortedcontainers", "toml", "pyyaml",
]


@dataclass
class Tool(abc.ABC):
    """One way of running the project: nbdock, the docker CLI by hand, or docker-compose."""

    name: str
    folder: Path
    port: int = 0
    last_output: str = ""

    @abc.abstractmethod
    def up(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def down(self) -> None: ...

    def edit_notebook(self, marker: str) -> None:
        path = self.folder / "notebooks" / "hello.ipynb"
        notebook = json.loads(path.read_text())
        notebook["cells"][0]["source"] = [f"# Edited {marker}\n"]
        path.write_text(json.dumps(notebook, indent=1))

    def add_package(self, package: str) -> None:
        with (self.folder / "requirements.txt").open("a") as requirements:
            requirements.write(f"{package}\n")


class Nbdock(Tool):
    def up(self) -> None:
        self.last_output = invoke(self.folder, "up")

    def stop(self) -> None:
        invoke(self.folder, "stop")

    def down(self) -> None:
        invoke(self.folder, "down")


class DockerCli(Tool):
    """What a careful user types: build, then run (or start) the container, then poll /api."""

    def _state(self) -> str:
        completed = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Status}}", self.name], capture_output=True, text=True
        )
        return completed.stdout.strip() if completed.returncode == 0 else ""

    def up(self, recreate: bool = False) -> None:
        run(["docker", "build", "-q", "-t", f"{self.name}:latest", "."], self.folder)
        state = self._state()
        if state and recreate:
            run(["docker", "rm", "-f", self.name], self.folder)
            state = ""
        if not state:
            run(["docker", "run", "-d", "--init", "--name", self.name, "-u", user_spec(),
                 "-p", f"127.0.0.1:{self.port}:8888", "-e", f"JUPYTER_TOKEN={TOKEN}",
                 "-v", f"{self.folder / 'notebooks'}:/home/nbdock/notebooks",
                 f"{self.name}:latest"], self.folder)
        elif state != "running":
            run(["docker", "start", self.name], self.folder)
        wait_for_api(self.port)

    def stop(self) -> None:
        run(["docker", "stop", self.name], self.folder)

    def down(self) -> None:
        if self._state():
            run(["docker", "stop", self.name], self.folder)
            run(["docker", "rm", self.name], self.folder)


class Compose(Tool):
    def write_compose_file(self) -> None:
        (self.folder / "docker-compose.yml").write_text(
            "version: '2.4'\n"
            "services:\n"
            "  notebook:\n"
            "    build: .\n"
            f"    image: {self.name}:latest\n"
            f"    container_name: {self.name}\n"
            "    init: true\n"
            f"    user: '{user_spec()}'\n"
            f"    ports: ['127.0.0.1:{self.port}:8888']\n"
            f"    environment: ['JUPYTER_TOKEN={TOKEN}']\n"
            "    volumes: ['./notebooks:/home/nbdock/notebooks']\n"
        )

    def up(self) -> None:
        run(["docker-compose", "up", "-d", "--build"], self.folder)
        wait_for_api(self.port)

    def stop(self) -> None:
        run(["docker-compose", "stop"], self.folder)

    def down(self) -> None:
        run(["docker-compose", "down"], self.folder)


def down_all(tools: list[Tool]) -> None:
    """Stop and remove what each tool started; a failure is reported and the rest go on."""
    for tool in tools:
        try:
            tool.down()
        except RuntimeError as error:
            print(f"cleanup: {error}", file=sys.stderr)


def _dependency_layers_reused(build_output: str) -> bool:
    """True when every RUN step of the last build came from the cache."""
    return all(
        [line.strip() for line in block.splitlines()[1:] if line.strip()][:1] == ["---> Using cache"]
        for block in build_output.split("Step ")[1:] if block.split(" : ", 1)[1].startswith("RUN")
    )


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def scenario(root: Path, base_image: str, base_id: str, runs: int) -> list[str]:
    """Cold, warm and stopped `up`, an edited notebook, an added package, `down`; sizes; start-up."""
    client = docker_client()
    nbdock = Nbdock("bench-nbdock", make_folder(root, "bench-nbdock", base_image))
    cli = DockerCli("bench-cli", make_folder(root, "bench-cli", base_image), free_port())
    compose = Compose("bench-compose", make_folder(root, "bench-compose", base_image), free_port())
    compose.write_compose_file()
    tools: list[Tool] = [nbdock, cli, compose]
    packages = iter(EXTRA_PACKAGES)
    rows: list[Row] = []

    def measure(case: str, action: Callable[[Tool, int], Callable[[], object]],
                prepare: Callable[[Tool, int], object] | None = None) -> Row:
        row = Row(case)
        for index in range(runs):
            for tool in tools:
                if prepare is not None:
                    prepare(tool, index)
                row.times.setdefault(tool.name, []).append(timed(action(tool, index)))
        rows.append(row)
        print(f"  {case}: " + ", ".join(f"{n} {fmt(row.median(n))}" for n in row.times), flush=True)
        return row

    def start_cold(tool: Tool, index: int) -> None:
        for each in tools:
            each.down()
        remove_images_built_on(client, base_id)

    try:
        print("up and down: cold up", flush=True)
        cold = measure("cold `up` (no image, no cache)", lambda t, i: t.up, prepare=start_cold)
        cold.target = "≤ 1.05x docker CLI"
        for tool in tools:  # each cold start above removed the other tools' images
            tool.up()
        warm = measure("warm `up`, container running", lambda t, i: t.up)
        warm.target = "≤ docker CLI + 0.25 s"
        stopped = measure("warm `up`, container stopped", lambda t, i: t.up, prepare=lambda t, i: t.stop())
        stopped.target = "≤ docker CLI + 0.25 s"
        edit = measure("`up` after editing a notebook", lambda t, i: t.up,
                       prepare=lambda t, i: t.edit_notebook(f"{t.name} {i}"))
        edit.target = "≤ 10% of nbdock's cold `up`"
        reused = _dependency_layers_reused(nbdock.last_output)
        added = measure(
            "`up` after adding a package to requirements.txt",
            lambda t, i: (lambda: cli.up(recreate=True)) if t is cli else t.up,
            prepare=lambda t, i: t.add_package(next(packages)),
        )
        added.target = "≤ 1.05x docker CLI"
        down = measure("`down` (stop and remove)", lambda t, i: t.down, prepare=lambda t, i: t.up())
        down.target = "≤ 1 s"

        for row in (cold, warm, stopped, added):
            if "+ 0.25" in row.target:
                extra = row.over(nbdock.name, cli.name)
                row.verdict = f"{extra:+.2f} s: " + met(extra <= 0.25)
            else:
                ratio = row.ratio(nbdock.name, cli.name)
                row.verdict = f"{ratio:.2f}x: " + met(ratio <= 1.05)
        share = edit.median(nbdock.name) / cold.median(nbdock.name)
        edit.verdict = (f"{share:.1%} of cold, dependency layers {'reused' if reused else 'REBUILT'}: "
                        + met(share <= 0.10 and reused))
        down.verdict = met(down.median(nbdock.name) <= 1.0)
        lines = table(
            ["case", "nbdock", "docker CLI", "docker-compose", "target", "result"],
            [[row.case, *(fmt(row.median(t.name)) for t in tools), row.target, row.verdict] for row in rows],
        )
        lines += ["", *sizes(client, nbdock.folder, base_image), "", *startup(nbdock.folder, runs)]
    finally:
        down_all(tools)
        for name in ("bench-nbdock", "bench-cli", "bench-compose"):
            for image in client.images.list(name=name):
                client.images.remove(image.id, force=True)
    return lines


def sizes(client: object, folder: Path, base_image: str) -> list[str]:
    """The build context with leftovers present, against plain `docker build .`; the image
    against its floor (base + virtual environment + notebooks)."""
    import docker

    for leftover in (".git", ".venv", "outputs"):
        target = folder / leftover
        if leftover == ".venv":
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
        else:
            target.mkdir()
        (target / "data.bin").write_bytes(os.urandom(2_000_000))
    settings = load_settings(folder)
    plan = plan_context(settings, read_environment(folder))
    ours = plan.size + (folder / "Dockerfile").stat().st_size
    plain = len(docker.utils.tar(str(folder)).read())
    floor = sum((folder / name).stat().st_size for name in ("requirements.txt", "Dockerfile"))
    floor += folder_bytes(settings.notebooks_path)
    if settings.ca_cert is not None:
        ours += settings.ca_cert.stat().st_size
        floor += settings.ca_cert.stat().st_size
    engine = docker_client()
    image = engine.images.get(settings.image_name)
    venv = int(engine.containers.run(image.id, ["du", "-sb", "/opt/nbdock"], remove=True, user="0",
                                     entrypoint=[]).decode().split()[0])
    image_floor = engine.images.get(base_image).attrs["Size"] + venv + folder_bytes(settings.notebooks_path)
    over = (image.attrs["Size"] - image_floor) / 2**20
    return table(
        ["size", "nbdock", "reference", "target", "result"],
        [
            ["build context with .git, .venv and outputs/ present", f"{ours / 1024:.1f} KiB",
             f"plain `docker build .`: {plain / 1024:.1f} KiB",
             f"≤ files needed ({floor / 1024:.1f} KiB) + a few KiB", met(ours <= floor + 8 * 1024)],
            ["final image", f"{image.attrs['Size'] / 2**20:.1f} MiB",
             f"floor (base + /opt/nbdock + notebooks): {image_floor / 2**20:.1f} MiB", "≤ floor + 5 MB",
             f"{over:+.1f} MiB: {met(over <= 5)}"],
        ],
    )


def startup(folder: Path, runs: int) -> list[str]:
    """`invoke --list` and `nbdock --help` against the interpreter alone."""
    count = max(3, runs * 5)
    floor = median_of(count, lambda: run([sys.executable, "-c", "pass"], folder))
    rows = [["`python -c pass`", fmt(floor), "", "", ""]]
    commands = {"`invoke --list`": ["invoke", "--list"], "`nbdock --help`": ["nbdock", "--help"]}
    for label, command in commands.items():
        seconds = median_of(count, functools.partial(run, [sys.executable, "-m", *command], folder))
        over = seconds - floor
        rows.append([label, fmt(seconds), f"{over:+.2f} s", "≤ 0.35 s", met(over <= 0.35)])
    return table(["start-up", "time", "over `python -c pass`", "target", "result"], rows)
