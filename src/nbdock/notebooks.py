"""Notebooks and papermill, for every workload that runs them (headless runs and training).

Which notebooks a project has, a file given on the command line as a path inside
NOTEBOOKS_DIR, papermill's parameters and arguments, and the cell that failed in an executed
notebook.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nbdock import console, jupyter
from nbdock.errors import NbdockError
from nbdock.settings import Settings

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


@dataclass(frozen=True)
class Failure:
    """The cell that raised (or during which the kernel died), as the executed notebook records it."""

    source: str
    name: str
    value: str
    traceback: str


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


def find_notebooks(settings: Settings, chosen: Sequence[str]) -> list[str]:
    """Paths relative to NOTEBOOKS_DIR: the chosen ones, or every notebook in a stable order.

    Raises NbdockError for a notebook that does not exist or lies outside NOTEBOOKS_DIR, and
    when OUTPUT_DIR would overwrite the notebooks.
    """
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


PAPERMILL = tuple(jupyter.console_script("papermill.cli", "papermill"))
NBCONVERT = tuple(jupyter.console_script("nbconvert.nbconvertapp", "main"))


def papermill_args(notebook: str, output: str, kernel: str, parameters: Sequence[tuple[str, str]],
                   source: str | None = None) -> list[str]:
    """papermill's arguments to run `notebook` (a path in the container) into `output`, in the
    notebook's own folder, its log shown, with `kernel` and the `parameters`; read from `source`
    instead of `notebook` when given (a copy nbdock prepared)."""
    arguments = [source or notebook, output, "--cwd", notebook.rsplit("/", 1)[0] or "/", "--log-output",
                 "--no-progress-bar", "-k", kernel]
    for name, value in parameters:
        arguments += ["-p", name, value]
    return arguments


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


def failing_cell_lines(failure: Failure, indent: str = "") -> list[str]:
    """The failing cell for people: its source, the exception, its traceback, each line under
    `indent` (the source and traceback one step deeper)."""
    deeper = indent + "  "
    return [f"{indent}failing cell:", *(f"{deeper}{line}" for line in failure.source.splitlines()),
            f"{indent}{failure.name}: {failure.value}", *(f"{deeper}{line}" for line in failure.traceback.splitlines())]
