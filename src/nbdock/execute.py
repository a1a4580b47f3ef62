"""Run notebooks headless in the project's image, with papermill, each in its own container.

The image for headless runs is the serving image plus papermill, nbconvert and ipykernel, built
on demand and cached (the serving image stays lean). The notebooks folder is mounted read-only;
executed copies (and HTML, through nbconvert) land in OUTPUT_DIR on the host. Every container
is removed afterwards, whatever happens.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nbdock import cache, console, contract
from nbdock.engine import Container
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.workload import Mount, Workload

# papermill, then (with --html) nbconvert even when papermill failed; the exit code is papermill's.
RUN_SCRIPT = 'papermill "$@"; status=$?; if [ -n "$NBDOCK_HTML" ]; then jupyter nbconvert ' \
    '--to html --log-level=WARN "$2"; fi; exit $status'
DEFAULT_KERNEL = "python3"
# Jupyter's tag for a cell whose error is expected (nbclient runs on past it); papermill still
# exits 1 for it, and marks the executed copy with cells of its own tag.
EXPECTED_ERROR_TAG = "raises-exception"
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
# Notebook metadata by which documentation tools let a whole notebook show errors (nbsphinx,
# MyST-NB): nbclient's allow_errors for that notebook. Papermill has no such option, so such a
# notebook runs from a copy whose cells nbdock tags (marked, and untagged again afterwards).
ALLOW_ERRORS_METADATA = (("nbsphinx", "allow_errors"), ("mystnb", "execution_allow_errors"))
TAGGED_BY_NBDOCK = "nbdock_allows_errors"

Status = Literal["ok", "failed", "timed out", "killed"]


@dataclass(frozen=True)
class Failure:
    """The cell that raised (or during which the kernel died), as the executed notebook records it."""

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
    note: str = ""
    cause: str = ""


def parse_parameters(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """`name=value` pairs; papermill types the values (3 is an int, 0.5 a float, True a bool).

    Raises NbdockError for a pair that is not name=value with a Python name.
    """
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
    """Paths relative to NOTEBOOKS_DIR: the chosen ones, or every notebook in a stable order.

    Raises NbdockError for a notebook that does not exist or lies outside NOTEBOOKS_DIR, and
    when OUTPUT_DIR would overwrite the notebooks.
    """
    settings = project.settings
    root = settings.require_notebooks()
    output = settings.output_path
    if output == root or output in root.parents:
        raise NbdockError(
            f"OUTPUT_DIR ({output}) holds the notebooks folder {root}; set OUTPUT_DIR to a folder of its "
            "own, so that executed copies never overwrite your notebooks"
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
    return [notebook_in(root, name) for name in chosen]


def notebook_in(root: Path, name: str, suffixes: tuple[str, ...] = (".ipynb",)) -> str:
    """`name` (absolute, or relative to the current folder or to `root`) relative to `root`.

    Raises NbdockError when it does not exist, has another suffix, or lies outside `root`.
    """
    kinds = " or ".join(suffixes)
    candidates = [(root / name).resolve(), Path(name).resolve()]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise NbdockError(f"the file {name} does not exist; give a {kinds} path under {root}")
    if root not in path.parents:
        raise NbdockError(
            f"{path} is outside NOTEBOOKS_DIR ({root}); only files in that folder reach the container"
        )
    if path.suffix not in suffixes:
        raise NbdockError(f"{path} is not a {kinds} file; give a {kinds} path under {root}")
    return path.relative_to(root).as_posix()


def failure_in(executed: Path, died: bool = False, everything: bool = False) -> Failure | None:
    """The first cell whose output is an error, from an executed notebook file; when the kernel
    `died`, the last cell papermill started (it stops there, and marks nothing else)."""
    try:
        notebook = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    started = None
    for cell in notebook.get("cells", []):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        for output in [] if everything or _expects_error(cell) else cell.get("outputs", []):
            if output.get("output_type") == "error":
                return Failure(
                    source=source,
                    name=output.get("ename", ""),
                    value=output.get("evalue", ""),
                    traceback=console.plain("\n".join(output.get("traceback", []))),
                )
        if cell.get("metadata", {}).get("papermill", {}).get("start_time"):
            started = source
    if died and started is not None:
        return Failure(source=started, name="DeadKernelError", value="the kernel died running this cell",
                       traceback="")
    return None


def _expects_error(cell: dict[str, object]) -> bool:
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return isinstance(tags, list) and EXPECTED_ERROR_TAG in tags


def expected_errors(executed: Path, everything: bool = False) -> int:
    """How many cells raised as their `raises-exception` tag says, when those are the only errors
    in an executed notebook that ran to its end (papermill exits 1 for them); else 0.

    The marker cells papermill adds for those errors are taken out of the executed copy, which
    is nbdock's own output file: nothing failed.
    """
    try:
        notebook = json.loads(executed.read_text(encoding="utf-8"))
        cells = [cell for cell in notebook["cells"] if isinstance(cell, dict)]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    ran = [cell for cell in cells if cell.get("cell_type") == "code"]
    raised = [cell for cell in ran if any(o.get("output_type") == "error" for o in cell.get("outputs", []))]
    runs = [cell.get("metadata", {}).get("papermill", {}) for cell in ran]
    ended = all(run.get("start_time") and run.get("status") == "completed" for run in runs)
    if not raised or not ended or not (everything or all(_expects_error(cell) for cell in raised)):
        return 0
    notebook["cells"] = [cell for cell in cells if PAPERMILL_ERROR_TAG not in cell.get("metadata", {}).get("tags", [])]
    executed.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(raised)


def allows_errors(notebook: Path) -> bool:
    """True when the notebook's metadata lets every cell raise (see ALLOW_ERRORS_METADATA)."""
    try:
        metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(metadata.get(tool), dict) and metadata[tool].get(key) is True
               for tool, key in ALLOW_ERRORS_METADATA)


def write_tagged_copy(notebook: Path, copy: Path) -> None:
    """Write `notebook` to `copy` with every code cell tagged raises-exception (marked as nbdock's)."""
    content = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in content.get("cells", []):
        metadata = cell.setdefault("metadata", {})
        if cell.get("cell_type") == "code" and EXPECTED_ERROR_TAG not in metadata.get("tags", []):
            metadata["tags"] = [*metadata.get("tags", []), EXPECTED_ERROR_TAG]
            metadata[TAGGED_BY_NBDOCK] = True
    copy.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def remove_added_tags(executed: Path) -> None:
    """Take the tags write_tagged_copy added out of the executed copy again."""
    try:
        content = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for cell in content.get("cells", []):
        metadata = cell.get("metadata", {})
        if metadata.pop(TAGGED_BY_NBDOCK, False):
            metadata["tags"] = [tag for tag in metadata.get("tags", []) if tag != EXPECTED_ERROR_TAG]
            if not metadata["tags"]:
                del metadata["tags"]
    executed.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def image_kernels(project: Project, image_id: str) -> set[str]:
    """The Jupyter kernels the image has, probed once per image id."""
    known = cache.read("kernels", image_id)
    if known is None:
        image_user = f"{contract.IMAGE_UID}:{contract.IMAGE_GID}"
        code, output = project.engine.probe(image_id, ["jupyter", "kernelspec", "list", "--json"], image_user)
        try:
            names = sorted(json.loads(output[output.index("{"):])["kernelspecs"]) if code == 0 else []
        except (ValueError, KeyError):
            names = []
        known = " ".join(names or [DEFAULT_KERNEL])
        cache.write("kernels", image_id, known)
    return set(known.split())


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
    """One `execute` run: starts containers, waits for them, and removes every one of them."""

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
        self._lock = threading.Lock()
        self._stopping = False

    def run_all(self, notebooks: list[str], jobs: int) -> list[Outcome]:
        # Output folders are made here, one after another: parallel workers making the same
        # folder would race.
        outputs = {notebook: self._prepare_output(notebook) for notebook in notebooks}
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            futures = [
                pool.submit(self.run_one, index, notebook, outputs[notebook])
                for index, notebook in enumerate(notebooks)
            ]
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
            self.project.engine.remove(container)

    def _track(self, container: str) -> None:
        with self._lock:
            if not self._stopping:
                self._containers.append(container)
                return
        self.project.engine.remove(container)
        raise NbdockError("stopped before all notebooks ran")

    def _prepare_output(self, notebook: str) -> Path:
        output = self.project.settings.output_path / notebook
        created = []
        for folder in reversed([output.parent, *output.parent.parents]):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        identity = self.project.identity
        if os.getuid() == 0 and not identity.is_root:
            for folder in created:  # folders nbdock just made, handed to the user who writes there
                os.chown(folder, identity.uid, identity.gid)
        return output

    def workload(self, index: int, notebook: str, kernel: str, from_output: bool = False) -> Workload:
        project = self.project
        in_container = f"{contract.NOTEBOOKS}/{notebook}"
        source = f"{contract.OUTPUTS}/{notebook}" if from_output else in_container
        arguments = [source, f"{contract.OUTPUTS}/{notebook}", "--cwd", str(Path(in_container).parent),
                     "--log-output", "--no-progress-bar", "-k", kernel]
        for name, value in self.parameters:
            arguments += ["-p", name, value]
        return project.workload(
            f"{project.settings.container_name}-execute-{self.run_id}-{index}", self.image_id, "execute",
            command=("sh", "-c", RUN_SCRIPT, "papermill", *arguments),
            environment={**project.environment_variables(), "NBDOCK_HTML": "1" if self.html else ""},
            mounts=(*project.mounts(notebooks_read_only=True),
                    Mount(str(project.settings.output_path), contract.OUTPUTS)),
            health_check=False,
        )

    def _tagged_copy(self, notebook: str, output: Path) -> None:
        write_tagged_copy(self.project.settings.notebooks_path / notebook, output)
        identity = self.project.identity
        if os.getuid() == 0 and not identity.is_root:  # the run's user overwrites it with the executed copy
            os.chown(output, identity.uid, identity.gid)

    def run_one(self, index: int, notebook: str, output: Path) -> Outcome:
        kernel, note = self.kernels[notebook]
        if kernel is None:
            return Outcome(notebook, "failed", 0.0, output, note=note)
        engine = self.project.engine
        started = time.monotonic()
        allowed = allows_errors(self.project.settings.notebooks_path / notebook)
        if allowed:
            self._tagged_copy(notebook, output)
        workload = self.workload(index, notebook, kernel, from_output=allowed)
        with self.project.refusals():
            container = engine.create(workload)
            self._track(container.id)
            engine.start(container.id)
        code = engine.wait(container.id, self.timeout)
        seconds = time.monotonic() - started
        log = engine.logs(container.id, tail=40)
        final = engine.container(container.id)
        engine.remove(container.id)
        if allowed:
            remove_added_tags(output)
        died = (final is not None and final.oom_killed) or code == 137 or any("Kernel died" in line for line in log)
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
    chosen = find_notebooks(project, notebooks)
    typed = parse_parameters(parameters)
    if jobs < 1:
        raise NbdockError(f"--jobs {jobs} runs nothing; give 1 or more")
    project.identity.require_writable(project.settings.output_path, "OUTPUT_DIR")
    project.mounts(notebooks_read_only=True)
    image_id = project.build(execute=True)
    kernels = image_kernels(project, image_id)
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
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)).rstrip()
            + (f"  {row[4]}" if row[4] else "") for row in rows]


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
        lines.append("  failing cell:")
        lines += [f"    {line}" for line in failure.source.splitlines()]
        lines.append(f"  {failure.name}: {failure.value}")
        lines += [f"    {line}" for line in failure.traceback.splitlines()]
    elif outcome.status != "ok" and outcome.log:
        lines.append("  the container's last lines:")
        lines += [f"    {line}" for line in outcome.log]
    return lines
