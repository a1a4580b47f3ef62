"""Run notebooks headless in the project's image, with papermill: each job in one container.

The image for headless runs is the serving image plus papermill, nbconvert and ipykernel, built
on demand and cached (the serving image stays lean). The notebooks folder is mounted read-only;
executed copies (and HTML, through nbconvert) land in OUTPUT_DIR on the host. Each notebook gets
a fresh kernel; every container is removed afterwards, whatever happens.
"""

from __future__ import annotations

import json
import secrets
import shlex
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nbdock import console, contract, image
from nbdock.engine import Container
from nbdock.errors import NbdockError
from nbdock.notebooks import (
    DEFAULT_KERNEL,
    EXPECTED_ERROR_TAG,
    NBCONVERT,
    PAPERMILL,
    Failure,
    allows_errors,
    expected_errors,
    failing_cell_lines,
    failure_in,
    find_notebooks,
    papermill_args,
    parse_parameters,
    remove_added_tags,
    write_tagged_copy,
)
from nbdock.project import Project
from nbdock.workload import Mount, Workload

# papermill, then (with --html) nbconvert even when papermill failed; the exit code is papermill's.
RUN_SCRIPT = (f'{shlex.join(PAPERMILL)} "$@"; status=$?; if [ -n "$NBDOCK_HTML" ]; then '
              f'{shlex.join(NBCONVERT)} --to html --log-level=WARN "$2"; fi; exit $status')

Status = Literal["ok", "failed", "timed out", "killed"]


@dataclass(frozen=True)
class Outcome:
    notebook: str
    status: Status
    seconds: float
    output: Path
    failure: Failure | None = None
    log: list[str] = field(default_factory=list)
    note: str = ""
    cause: str = ""


def choose_kernel(notebook: Path, kernels: set[str], chosen: str) -> tuple[str | None, str]:
    """(kernel to run `notebook` with, a note for the summary); kernel None when none fits.

    `chosen` (the --kernel flag or KERNEL) wins. A Python notebook whose kernel the image lacks
    (saved elsewhere, e.g. `conda-env-analysis-py`) runs with the image's Python kernel.
    """
    try:
        content = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return None, f"is not a notebook nbdock can read ({str(error).splitlines()[0]})"
    if not isinstance(content, dict) or "cells" not in content:
        return None, "is not a notebook (no cells)"
    if chosen:
        return chosen, ""
    metadata = content.get("metadata") or {}
    spec = metadata.get("kernelspec") or {}
    name = spec.get("name", "")
    language = (spec.get("language") or (metadata.get("language_info") or {}).get("name") or "python").lower()
    if name in kernels:
        return name, ""
    if language != "python":
        return None, f"needs a {language} kernel ({name or 'unnamed'}), which the image does not have"
    if not name:
        return DEFAULT_KERNEL, ""
    return DEFAULT_KERNEL, f"ran with {DEFAULT_KERNEL}: the notebook's kernel {name} is not in the image"


def killed_cause(container: Container | None, project: Project) -> str:
    """Why a run's kernel or container died, and which setting to raise."""
    settings = project.settings
    env = settings.env_file
    if container is not None and container.oom_killed:
        limit = f"MEMORY={settings.memory // 2**20}m" if settings.memory else "the machine's memory"
        return f"it ran out of memory ({limit}); raise MEMORY in {env} or use less"
    return (f"the kernel died: out of shared memory (/dev/shm, SHM_SIZE={settings.shm_size // 2**20}m), "
            f"out of memory, or a crash in native code; raise SHM_SIZE or MEMORY in {env}")


class Execution:
    """One `execute` run: each of its jobs runs notebooks one after another, each with papermill
    (a fresh kernel) in the job's own container; every container is removed at the end.

    A notebook that runs past the timeout or whose kernel dies takes its container with it (the
    container is killed, and is the only place that says whether memory ran out): the job's next
    notebook starts in a new one.
    """

    def __init__(self, project: Project, image_id: str, parameters: list[tuple[str, str]], html: bool,
                 timeout: float, kernels: dict[str, tuple[str | None, str]]) -> None:
        self.project = project
        self.image_id = image_id
        self.parameters = parameters
        self.html = html
        self.timeout = timeout
        self.kernels = kernels
        self.run_id = secrets.token_hex(3)
        self._containers: list[str] = []
        self._idle: list[str] = []
        self._started = 0
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
            containers, self._containers, self._idle = self._containers, [], []
        for container in containers:
            self.project.engine.remove(container)

    def _prepare_output(self, notebook: str) -> Path:
        output = self.project.settings.output_path / notebook
        created = []
        for folder in reversed([output.parent, *output.parent.parents]):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        self.project.identity.hand_over(created)
        return output

    def workload(self, number: int) -> Workload:
        """The container a job runs its notebooks in: it idles until the job is done."""
        project = self.project
        return project.workload(
            f"{project.settings.container_name}-execute-{self.run_id}-{number}", self.image_id, "execute",
            command=("sleep", "infinity"),
            environment={**project.environment_variables(), "NBDOCK_HTML": "1" if self.html else ""},
            mounts=(*project.mounts(notebooks_read_only=True),
                    Mount(str(project.settings.output_path), contract.OUTPUTS)),
            health_check=False,
        )

    def _take_container(self) -> str:
        """An idle container of this run, or a new one."""
        with self._lock:
            if self._stopping:
                raise NbdockError("stopped before all notebooks ran")
            if self._idle:
                return self._idle.pop()
            self._started += 1
            number = self._started
        with self.project.refusals():
            container = self.project.engine.run(self.workload(number))
        with self._lock:
            if not self._stopping:
                self._containers.append(container.id)
                return container.id
        self.project.engine.remove(container.id)
        raise NbdockError("stopped before all notebooks ran")

    def _give_back(self, container: str) -> None:
        with self._lock:
            if container in self._containers:
                self._idle.append(container)

    def _discard(self, container: str) -> Container | None:
        """Stop and remove a container whose notebook went wrong; the engine's last record of it."""
        engine = self.project.engine
        with self._lock:
            if container in self._containers:
                self._containers.remove(container)
        engine.kill(container)
        engine.wait(container, 30)
        final = engine.container(container)
        engine.remove(container)
        return final

    def _tagged_copy(self, notebook: str, output: Path) -> None:
        write_tagged_copy(self.project.settings.notebooks_path / notebook, output)
        self.project.identity.hand_over([output])  # the run's user overwrites it with the executed copy

    def run_one(self, notebook: str, output: Path) -> Outcome:
        kernel, note = self.kernels[notebook]
        if kernel is None:
            return Outcome(notebook, "failed", 0.0, output, note=note)
        allowed = allows_errors(self.project.settings.notebooks_path / notebook)
        if allowed:
            self._tagged_copy(notebook, output)
        arguments = papermill_args(f"{contract.NOTEBOOKS}/{notebook}", f"{contract.OUTPUTS}/{notebook}", kernel,
                                   self.parameters, source=f"{contract.OUTPUTS}/{notebook}" if allowed else None)
        container = self._take_container()
        started = time.monotonic()
        code, log = self.project.engine.exec_run(container, ("sh", "-c", RUN_SCRIPT, "papermill", *arguments),
                                                 self.timeout)
        seconds = time.monotonic() - started
        died = code == 137 or any("Kernel died" in line for line in log)
        final = None
        if code is None or died:
            final = self._discard(container)
        else:
            self._give_back(container)
        if allowed:
            remove_added_tags(output)
        died = died or (final is not None and final.oom_killed)
        failure = failure_in(output, died=died, everything=allowed)
        if code is None:
            return Outcome(notebook, "timed out", seconds, output, failure, log, note)
        if code == 0:
            return Outcome(notebook, "ok", seconds, output, note=note)
        if died:
            cause = killed_cause(final, self.project)
            return Outcome(notebook, "killed", seconds, output, failure, log, note, cause)
        expected = expected_errors(output, everything=allowed) if failure is None else 0
        if expected:
            why = "allow_errors" if allowed else EXPECTED_ERROR_TAG
            return Outcome(notebook, "ok", seconds, output, note=_joined(note, f"{expected} expected error(s) ({why})"))
        return Outcome(notebook, "failed", seconds, output, failure, log, note)


def _joined(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def execute(project: Project, notebooks: Sequence[str], parameters: Sequence[str], jobs: int,
            html: bool, timeout: float, kernel: str = "") -> list[Outcome]:
    """Build the execution image if it is stale, then run the notebooks, `jobs` at a time.

    Raises NbdockError for bad input (a missing notebook, a bad parameter, a kernel the image
    lacks) before anything is built.
    """
    chosen = find_notebooks(project.settings, notebooks)
    typed = parse_parameters(parameters)
    if jobs < 1:
        raise NbdockError(f"--jobs {jobs} runs nothing; give 1 or more")
    project.identity.require_writable(project.settings.output_path, "OUTPUT_DIR")
    project.mounts(notebooks_read_only=True)
    image_id = image.build(project, execute=True)
    kernels = image.kernels(project, image_id)
    if kernel and kernel not in kernels:
        raise NbdockError(
            f"the kernel {kernel} is not in the image (it has {', '.join(sorted(kernels))}); "
            "pick one of those with --kernel (or KERNEL in .env)"
        )
    root = project.settings.notebooks_path
    plan = {notebook: choose_kernel(root / notebook, kernels, kernel) for notebook in chosen}
    return Execution(project, image_id, typed, html, timeout, plan).run_all(chosen, jobs)


def summary(outcomes: Sequence[Outcome], project_dir: Path) -> list[str]:
    """A table: notebook, status, duration, output path, and a note (a kernel substituted)."""
    rows = [("notebook", "status", "seconds", "output", "note")]
    for outcome in outcomes:
        try:
            shown = outcome.output.relative_to(project_dir).as_posix()
        except ValueError:
            shown = str(outcome.output)
        if not outcome.output.exists():
            shown = "-"
        rows.append((outcome.notebook, outcome.status, f"{outcome.seconds:.1f}", shown, outcome.note))
    table = console.table([row[:4] for row in rows])
    return [line + (f"  {row[4]}" if row[4] else "") for line, row in zip(table, rows, strict=True)]


def explain(outcome: Outcome) -> list[str]:
    """What went wrong with one notebook, readably: the cell, the exception, its traceback."""
    lines = [f"{outcome.notebook}: {outcome.status}"]
    if outcome.status == "timed out":
        lines.append(f"  stopped after {outcome.seconds:.0f} s (EXECUTE_TIMEOUT)")
    if outcome.cause:
        lines.append(f"  {outcome.cause}")
    if outcome.note and outcome.status != "ok":
        lines.append(f"  {outcome.note}")
    failure = outcome.failure
    if failure is not None:
        lines += failing_cell_lines(failure, "  ")
    elif outcome.status != "ok" and outcome.log:
        lines.append("  the container's last lines:")
        lines += [f"    {line}" for line in outcome.log]
    return lines
