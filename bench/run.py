"""Benchmark nbdock against the plain docker CLI and docker-compose on the example project.

    python -m bench.run [--runs N] [--quick] [--base-image NAME] [--write]

Each tool gets its own copy of the example project and the same Dockerfile (the one nbdock
renders), builds on the same local base image, publishes on 127.0.0.1 and mounts the notebooks.
Every time is the median of N runs measured in this one run, and each nbdock figure is compared
with the docker CLI's (the reference). `--write` also stores the table in bench/RESULTS.md.
"""

from __future__ import annotations

import abc
import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from nbdock.context import build_context
from nbdock.dockerfile import CA_CERT_IN_CONTEXT, render
from nbdock.settings import load_settings
from tests.conftest import remove_images_built_on

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
OWNER = (1234, 1234)  # under root, the projects belong to a user, as a checkout would
TOKEN = "bench-token"
EXECUTE_NOTEBOOKS = 4
# Small pure-Python packages, one per (tool, run), so that no tool reuses another's pip layer.
EXTRA_PACKAGES = [
    "toolz", "termcolor", "colorama", "more-itertools", "appdirs", "tomli-w", "docopt-ng",
    "iniconfig", "multidict", "cachetools", "xmltodict", "humanize", "inflection", "pytz",
    "simplejson", "ordered-set", "sortedcontainers", "toml", "pyyaml",
]


def run(command: list[str], cwd: Path, **env: str) -> str:
    completed = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("NBDOCK_")}, **env},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_api(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port}")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


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
        self.last_output = run([sys.executable, "-m", "invoke", "up"], self.folder)

    def stop(self) -> None:
        run([sys.executable, "-m", "invoke", "stop"], self.folder)

    def down(self) -> None:
        run([sys.executable, "-m", "invoke", "down"], self.folder)


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
            uid, gid = OWNER if os.getuid() == 0 else (os.getuid(), os.getgid())
            run(["docker", "run", "-d", "--init", "--name", self.name, "-u", f"{uid}:{gid}",
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
        uid, gid = OWNER if os.getuid() == 0 else (os.getuid(), os.getgid())
        (self.folder / "docker-compose.yml").write_text(
            "version: '2.4'\n"
            "services:\n"
            "  notebook:\n"
            "    build: .\n"
            f"    image: {self.name}:latest\n"
            f"    container_name: {self.name}\n"
            "    init: true\n"
            f"    user: '{uid}:{gid}'\n"
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


@dataclass
class Row:
    case: str
    times: dict[str, list[float]] = field(default_factory=dict)
    target: str = ""
    verdict: str = ""

    def median(self, tool: str) -> float:
        return statistics.median(self.times[tool])


def make_folder(root: Path, name: str, base_image: str) -> Path:
    folder = root / name
    folder.mkdir()
    shutil.copytree(REPO / "notebooks", folder / "notebooks")
    shutil.copy(REPO / "requirements.txt", folder)
    shutil.copy(REPO / "tasks.py", folder)
    (folder / ".env").write_text(f"PROJECT_NAME={name}\nBASE_IMAGE={base_image}\nHOST_PORT=0\n")
    settings = load_settings(folder)
    (folder / "Dockerfile").write_text(render(settings))
    if settings.ca_cert is not None:
        (folder / CA_CERT_IN_CONTEXT).parent.mkdir()
        shutil.copy(settings.ca_cert, folder / CA_CERT_IN_CONTEXT)
    if os.getuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, *OWNER)
    return folder


def du(client: Any, image: str, path: str) -> int:
    output = client.containers.run(image, ["du", "-sb", path], remove=True, user="0")
    return int(output.decode().split()[0])


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fmt(seconds: float) -> str:
    return f"{seconds:.2f} s"


def execute_rows(root: Path, base_image: str, runs: int) -> list[str]:
    """K small notebooks: `invoke execute` serially and with --jobs 2, and papermill on the host."""
    folder = make_folder(root, "bench-execute", base_image)
    with (folder / ".env").open("a") as env:
        env.write("EXECUTE=true\n")
    shutil.rmtree(folder / "notebooks")
    (folder / "notebooks").mkdir()
    small = REPO / "tests" / "data" / "execute" / "greet.ipynb"
    for index in range(EXECUTE_NOTEBOOKS):
        shutil.copy(small, folder / "notebooks" / f"n{index}.ipynb")
    if os.getuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, *OWNER)
    run([sys.executable, "-m", "invoke", "build"], folder)
    host_outputs = Path(tempfile.mkdtemp(prefix="nbdock-bench-papermill-"))

    def on_host() -> None:
        for notebook in sorted((folder / "notebooks").glob("*.ipynb")):
            run([sys.executable, "-m", "papermill", "--no-progress-bar", str(notebook),
                 str(host_outputs / notebook.name)], folder)

    def median(action: Callable[[], object]) -> float:
        return statistics.median(timed(action) for _ in range(runs))

    serial = median(lambda: run([sys.executable, "-m", "invoke", "execute"], folder))
    parallel = median(lambda: run([sys.executable, "-m", "invoke", "execute", "--jobs", "2"], folder))
    host = median(on_host)
    shutil.rmtree(host_outputs, ignore_errors=True)
    run([sys.executable, "-m", "invoke", "down", "--image"], folder)
    per_notebook = (serial - host) / EXECUTE_NOTEBOOKS
    return [
        "",
        f"| {EXECUTE_NOTEBOOKS} small notebooks | time | vs papermill on the host |",
        "|---|---|---|",
        f"| papermill on the host, one after another | {fmt(host)} | 1.00x |",
        f"| `invoke execute` | {fmt(serial)} | {serial / host:.2f}x "
        f"({per_notebook:+.2f} s per notebook for its container) |",
        f"| `invoke execute --jobs 2` | {fmt(parallel)} | {parallel / host:.2f}x |",
    ]


def benchmark(runs: int, base_image: str) -> list[str]:
    client = docker.from_env()
    try:
        base_id = client.images.get(base_image).id
    except docker.errors.ImageNotFound:
        print(f"building the base image {base_image}", flush=True)
        run([sys.executable, "-m", "nbdock", "base", "--tag", base_image], REPO)
        base_id = client.images.get(base_image).id
    root = Path(tempfile.mkdtemp(prefix="nbdock-bench-"))
    nbdock = Nbdock("bench-nbdock", make_folder(root, "bench-nbdock", base_image))
    cli = DockerCli("bench-cli", make_folder(root, "bench-cli", base_image), free_port())
    compose = Compose("bench-compose", make_folder(root, "bench-compose", base_image), free_port())
    compose.write_compose_file()
    tools: list[Tool] = [nbdock, cli, compose]
    packages = iter(EXTRA_PACKAGES)
    rows: list[Row] = []
    lines: list[str] = []

    def measure(case: str, action: Callable[[Tool, int], Callable[[], object]],
                prepare: Callable[[Tool, int], object] | None = None,
                who: list[Tool] = tools) -> Row:
        row = Row(case)
        for index in range(runs):
            for tool in who:
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
        print("1. cold up", flush=True)
        cold = measure("cold `up` (no image, no cache)", lambda t, i: t.up, prepare=start_cold)
        cold.target = "≤ 1.05x docker CLI"
        for tool in tools:  # each cold start above removed the other tools' images
            tool.up()
        print("2. warm up", flush=True)
        warm = measure("warm `up`, container running", lambda t, i: t.up)
        warm.target = "≤ docker CLI + 0.25 s"
        stopped = measure("warm `up`, container stopped", lambda t, i: t.up,
                          prepare=lambda t, i: t.stop())
        stopped.target = "≤ docker CLI + 0.25 s"
        print("3. notebook edited", flush=True)
        edit = measure("`up` after editing a notebook", lambda t, i: t.up,
                       prepare=lambda t, i: t.edit_notebook(f"{t.name} {i}"))
        edit.target = "≤ 10% of nbdock's cold `up`"
        reused = all(
            line.strip() == "---> Using cache"
            for block in nbdock.last_output.split("Step ")[1:] if block.split(" : ", 1)[1].startswith("RUN")
            for line in block.splitlines()[1:2]
        )
        print("4. package added", flush=True)
        added = measure(
            "`up` after adding a package to requirements.txt",
            lambda t, i: (lambda: cli.up(recreate=True)) if t is cli else t.up,
            prepare=lambda t, i: t.add_package(next(packages)),
        )
        added.target = "≤ 1.05x docker CLI"
        print("5. down", flush=True)
        down = measure("`down` (stop and remove)", lambda t, i: t.down, prepare=lambda t, i: t.up())
        down.target = "≤ 1 s"

        for row in (cold, warm, stopped, added):
            ratio = row.median("bench-nbdock") / row.median("bench-cli")
            extra = row.median("bench-nbdock") - row.median("bench-cli")
            if "+ 0.25" in row.target:
                row.verdict = f"{extra:+.2f} s: " + ("met" if extra <= 0.25 else "not met")
            else:
                row.verdict = f"{ratio:.2f}x: " + ("met" if ratio <= 1.05 else "not met")
        share = edit.median("bench-nbdock") / cold.median("bench-nbdock")
        edit.verdict = (f"{share:.1%} of cold, dependency layers "
                        f"{'reused' if reused else 'REBUILT'}: "
                        + ("met" if share <= 0.10 and reused else "not met"))
        down.verdict = ("met" if down.median("bench-nbdock") <= 1.0 else "not met")

        lines += ["| case | nbdock | docker CLI | docker-compose | target | result |",
                  "|---|---|---|---|---|---|"]
        for row in rows:
            cells = [fmt(row.median(t.name)) for t in tools]
            lines.append(f"| {row.case} | {' | '.join(cells)} | {row.target} | {row.verdict} |")

        print("6. context and image size", flush=True)
        for leftover in (".git", ".venv", "outputs"):
            target = nbdock.folder / leftover
            if leftover == ".venv":
                subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
            else:
                target.mkdir()
            (target / "data.bin").write_bytes(os.urandom(2_000_000))
        settings = load_settings(nbdock.folder)
        ours = len(build_context(settings, render(settings)))
        plain = len(docker.utils.tar(str(nbdock.folder)).read())
        floor = sum(
            (settings.project_dir / name).stat().st_size for name in ("requirements.txt", "Dockerfile")
        ) + folder_bytes(settings.notebooks_path)
        if settings.ca_cert is not None:
            floor += settings.ca_cert.stat().st_size
        image = client.images.get(settings.image_name)
        image_floor = (client.images.get(base_image).attrs["Size"]
                       + du(client, image.id, "/opt/nbdock/venv") + folder_bytes(settings.notebooks_path))
        size_over = (image.attrs["Size"] - image_floor) / 2**20
        lines += [
            "",
            "| size | nbdock | reference | target | result |",
            "|---|---|---|---|---|",
            f"| build context with .git, .venv and outputs/ present | {ours / 1024:.1f} KiB "
            f"| plain `docker build .`: {plain / 1024:.1f} KiB | ≤ files needed ({floor / 1024:.1f} KiB) "
            f"+ a few KiB | {'met' if ours <= floor + 8 * 1024 else 'not met'} |",
            f"| final image | {image.attrs['Size'] / 2**20:.1f} MiB | floor (base + venv + notebooks): "
            f"{image_floor / 2**20:.1f} MiB | ≤ floor + 5 MB | {size_over:+.1f} MiB: "
            f"{'met' if size_over <= 5 else 'not met'} |",
        ]

        print("8. start-up", flush=True)
        startup_runs = max(3, runs * 5)

        def startup(command: list[str]) -> float:
            return statistics.median(timed(lambda: run(command, nbdock.folder)) for _ in range(startup_runs))

        floor_time = startup([sys.executable, "-c", "pass"])
        listing = startup([sys.executable, "-m", "invoke", "--list"])
        helping = startup([sys.executable, "-m", "nbdock", "--help"])
        lines += [
            "",
            "| start-up | time | over `python -c pass` | target | result |",
            "|---|---|---|---|---|",
            f"| `python -c pass` | {fmt(floor_time)} | | | |",
        ]
        for label, seconds in (("`invoke --list`", listing), ("`nbdock --help`", helping)):
            over = seconds - floor_time
            lines.append(f"| {label} | {fmt(seconds)} | {over:+.2f} s | ≤ 0.35 s | "
                         f"{'met' if over <= 0.35 else 'not met'} |")

        print("9. execute", flush=True)
        lines += execute_rows(root, base_image, runs)
    finally:
        for tool in tools:
            try:
                tool.down()
            except RuntimeError as error:
                print(f"cleanup: {error}", file=sys.stderr)
        for name in ("bench-nbdock", "bench-cli", "bench-compose", "bench-execute"):
            for image in client.images.list(name=name):
                client.images.remove(image.id, force=True)
        shutil.rmtree(root, ignore_errors=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case (median is reported)")
    parser.add_argument("--quick", action="store_true", help="one run per case, as in CI")
    parser.add_argument("--base-image", default="nbdock-base", help="local base image to build on")
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS.relative_to(REPO)}")
    arguments = parser.parse_args()
    runs = 1 if arguments.quick else arguments.runs
    lines = benchmark(runs, arguments.base_image)
    header = [
        f"Measured {datetime.date.today()} on {platform.node() or 'this machine'}: {os.cpu_count()} cores, "
        f"{platform.platform()}, Docker {docker.from_env().version()['Version']}; "
        f"median of {runs} run(s); `python -m bench.run{' --quick' if arguments.quick else ''}`.",
        "",
    ]
    print("\n".join(header + lines))
    if arguments.write:
        RESULTS.write_text("# Benchmark results\n\n" + "\n".join(header + lines) + "\n")


if __name__ == "__main__":
    main()
