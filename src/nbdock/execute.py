"""Run notebooks headless in the project's image, with papermill, each in its own container.

The notebooks folder is mounted read-only; executed copies (and HTML, through nbconvert) land in
OUTPUT_DIR on the host. Every container is removed afterwards, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nbdock import engine, jupyter
from nbdock.errors import NbdockError
from nbdock.project import Project

if TYPE_CHECKING:
    from docker.models.containers import Container

OUTPUTS = f"{jupyter.HOME}/outputs"
LABEL_ROLE = "io.nbdock.role"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# papermill, then (with --html) nbconvert even when papermill failed; the exit code is papermill's.
_RUN_SCRIPT = 'papermill "$@"; status=$?; if [ -n "$NBDOCK_HTML" ]; then jupyter nbconvert ' \
    '--to html --log-level=WARN "$2"; fi; exit $status'

Status = Literal["ok", "failed", "timed out"]


@dataclass(frozen=True)
class Failure:
    """The cell that raised, as the executed notebook records it."""

    source: str
    name: str
    value: str
    traceback: str


@dataclass(frozen=True)
class Outcome:
    notebook: str
    status: Status
    seconds: float
    output: Path
    failure: Failure | None = None
    log: list[str] = field(default_factory=list)


def parse_parameters(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """`name=value` pairs; papermill types the values (3 is an int, 0.5 a float, True a bool)."""
    parsed = []
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name.strip().isidentifier():
            raise NbdockError(
                f"the parameter {pair!r} is not name=value with a Python name; "
                "write it like -p samples=5"
            )
        parsed.append((name.strip(), value))
    return parsed


def find_notebooks(project: Project, chosen: Sequence[str]) -> list[str]:
    """Paths relative to NOTEBOOKS_DIR: the chosen ones, or every notebook in a stable order."""
    settings = project.settings
    root = settings.require_notebooks()
    output = settings.output_path
    if output == root:
        raise NbdockError(
            f"OUTPUT_DIR and NOTEBOOKS_DIR are both {root}; set OUTPUT_DIR to another folder "
            "so executed copies never overwrite your notebooks"
        )
    if not chosen:
        found = sorted(
            path.relative_to(root).as_posix()
            for path in root.rglob("*.ipynb")
            if ".ipynb_checkpoints" not in path.parts and output not in path.parents
        )
        if not found:
            raise NbdockError(f"there is no notebook (*.ipynb) in {root}; add one or set NOTEBOOKS_DIR")
        return found
    relative = []
    for name in chosen:
        candidates = [Path(name).resolve(), (root / name).resolve()]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None or path.suffix != ".ipynb":
            raise NbdockError(f"the notebook {name} does not exist; give a .ipynb path under {root}")
        if root not in path.parents:
            raise NbdockError(
                f"{path} is outside NOTEBOOKS_DIR ({root}); only notebooks in that folder reach the "
                "container"
            )
        relative.append(path.relative_to(root).as_posix())
    return relative


def failure_in(executed: Path) -> Failure | None:
    """The first cell whose output is an error, from an executed notebook file."""
    try:
        notebook = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                source = cell.get("source", "")
                return Failure(
                    source="".join(source) if isinstance(source, list) else source,
                    name=output.get("ename", ""),
                    value=output.get("evalue", ""),
                    traceback=_ANSI.sub("", "\n".join(output.get("traceback", []))),
                )
    return None


class Execution:
    """One `execute` run: starts containers, waits for them, and removes every one of them."""

    def __init__(self, project: Project, parameters: list[tuple[str, str]], html: bool,
                 timeout: float) -> None:
        self.project = project
        self.parameters = parameters
        self.html = html
        self.timeout = timeout
        self._containers: list[Container] = []
        self._lock = threading.Lock()
        self._stopping = False

    def run_all(self, notebooks: list[str], jobs: int) -> list[Outcome]:
        # Output folders are made here, one after another: parallel workers making the same
        # folder would race.
        outputs = {notebook: self._prepare_output(notebook) for notebook in notebooks}
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            futures = [pool.submit(self.run_one, notebook, outputs[notebook]) for notebook in notebooks]
            return [future.result() for future in futures]
        finally:
            # On Ctrl-C or an error: removing the containers ends the waits of the workers.
            self.remove_all()
            pool.shutdown(wait=True, cancel_futures=True)

    def remove_all(self) -> None:
        with self._lock:
            self._stopping = True
            containers, self._containers = self._containers, []
        for container in containers:
            engine.remove(container)

    def _track(self, container: Container) -> None:
        with self._lock:
            if not self._stopping:
                self._containers.append(container)
                return
        engine.remove(container)
        raise NbdockError("stopped before all notebooks ran")

    def _prepare_output(self, notebook: str) -> Path:
        settings = self.project.settings
        output = settings.output_path / notebook
        created = []
        for folder in reversed([output.parent, *output.parent.parents]):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        user = self.project.server_user
        if os.getuid() == 0 and not user.startswith("0:"):
            uid, gid = (int(part) for part in user.split(":"))
            for folder in created:  # folders nbdock just made, handed to the user who writes there
                os.chown(folder, uid, gid)
        return output

    def run_one(self, notebook: str, output: Path) -> Outcome:
        settings = self.project.settings
        in_container = f"{jupyter.NOTEBOOKS}/{notebook}"
        arguments = [in_container, f"{OUTPUTS}/{notebook}", "--cwd", str(Path(in_container).parent),
                     "--log-output", "--no-progress-bar"]
        for name, value in self.parameters:
            arguments += ["-p", name, value]
        options: dict[str, Any] = {
            "image": settings.image_name,
            "command": ["sh", "-c", _RUN_SCRIPT, "papermill", *arguments],
            "detach": True,
            "init": True,
            "healthcheck": {"test": ["NONE"]},  # no server to probe in a headless run
            "user": self.project.server_user,
            "labels": {**settings.labels, LABEL_ROLE: "execute"},
            "environment": {"NBDOCK_HTML": "1" if self.html else ""},
            "volumes": {
                str(settings.notebooks_path): {"bind": jupyter.NOTEBOOKS, "mode": "ro"},
                str(settings.output_path): {"bind": OUTPUTS, "mode": "rw"},
            },
        }
        started = time.monotonic()
        with engine.translated(f"starting a container for {notebook}"):
            container = self.project.client.containers.create(**options)
        self._track(container)
        with engine.translated(f"running {notebook}"):
            container.start()
        code = engine.wait(container, self.timeout)
        seconds = time.monotonic() - started
        log = engine.log_tail(container, 40)
        engine.remove(container)
        if code is None:
            return Outcome(notebook, "timed out", seconds, output, failure_in(output), log)
        if code != 0:
            return Outcome(notebook, "failed", seconds, output, failure_in(output), log)
        return Outcome(notebook, "ok", seconds, output)


def execute(project: Project, notebooks: Sequence[str], parameters: Sequence[str], jobs: int,
            html: bool, timeout: float) -> list[Outcome]:
    """Build the image if it is stale, then run the notebooks, `jobs` at a time."""
    settings = project.settings
    if not settings.execute:
        raise NbdockError(
            "this project's image has no execution layer; set EXECUTE=true in "
            f"{settings.project_dir / '.env'} (it adds papermill, nbconvert and ipykernel) "
            "and run again"
        )
    chosen = find_notebooks(project, notebooks)
    typed = parse_parameters(parameters)
    project.build()
    return Execution(project, typed, html, timeout).run_all(chosen, jobs)


def summary(outcomes: Sequence[Outcome], project_dir: Path) -> list[str]:
    """A table: notebook, status, duration, output path."""
    rows = [("notebook", "status", "seconds", "output")]
    for outcome in outcomes:
        try:
            shown = outcome.output.relative_to(project_dir).as_posix()
        except ValueError:
            shown = str(outcome.output)
        rows.append((outcome.notebook, outcome.status, f"{outcome.seconds:.1f}", shown))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
            for row in rows]


def explain(outcome: Outcome) -> list[str]:
    """What went wrong with one notebook, readably: the cell, the exception, its traceback."""
    lines = [f"{outcome.notebook}: {outcome.status}"]
    if outcome.status == "timed out":
        lines.append(f"  stopped after {outcome.seconds:.0f} s (EXECUTE_TIMEOUT)")
    failure = outcome.failure
    if failure is not None:
        lines.append("  failing cell:")
        lines += [f"    {line}" for line in failure.source.splitlines()]
        lines.append(f"  {failure.name}: {failure.value}")
        lines += [f"    {line}" for line in failure.traceback.splitlines()]
    elif outcome.status == "failed":
        lines.append("  the container's last lines:")
        lines += [f"    {line}" for line in outcome.log]
    return lines
