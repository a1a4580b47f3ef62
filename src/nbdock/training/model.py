"""What a training run is, on any backend: what to train, each worker's TF_CONFIG and command,
the run folder, the outcomes, and the `Backend` interface every backend implements.

Every worker waits until every peer name resolves before TensorFlow starts. A worker on a
backend without the project folder (Kubernetes) writes its outputs to its log at the end, as a
tar between two marker lines, and the run loop unpacks them into the run folder: so the chief's
outputs come back without shared storage.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from nbdock import console, contract
from nbdock.errors import NbdockError
from nbdock.identity import Identity
from nbdock.notebooks import DEFAULT_KERNEL, PAPERMILL, notebook_in, papermill_args, parse_parameters
from nbdock.project import Project
from nbdock.workload import Mount, Workload

PEER_WAIT = 120.0
WORKER_PREFIX = "[worker {index}] "
OUTPUTS_TO_LOG = "NBDOCK_OUTPUTS_TO_LOG"
OUTPUTS_BEGIN = "--- nbdock outputs: tar.gz, base64 ---"
OUTPUTS_END = "--- nbdock outputs end ---"
# Run by python in every worker: wait until each peer's name resolves, then become the command.
# A name that never resolves ends the worker with one line instead of a silent hang in TensorFlow.
# With NBDOCK_OUTPUTS_TO_LOG set, run the command instead, then write NBDOCK_OUTPUT to the log.
WAIT_FOR_PEERS = f"""\
import os, socket, sys, time
seconds, rest = float(sys.argv[1]), sys.argv[2:]
peers, command = rest[:rest.index("--")], rest[rest.index("--") + 1:]
output = os.environ.get("NBDOCK_OUTPUT", ".")
os.makedirs(output, exist_ok=True)
deadline = time.monotonic() + seconds
for peer in peers:
    host = peer.rsplit(":", 1)[0]
    while True:
        try:
            socket.getaddrinfo(host, None)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nbdock: the peer {{host}} did not resolve within {{seconds:g}} s; is it running?")
            time.sleep(0.2)
if not os.environ.get("{OUTPUTS_TO_LOG}"):
    os.execvp(command[0], command)
import base64, io, subprocess, tarfile
code = subprocess.call(command)
packed = io.BytesIO()
with tarfile.open(fileobj=packed, mode="w:gz") as archive:
    archive.add(output, arcname=".")
sys.stderr.flush()
text = base64.b64encode(packed.getvalue()).decode()
print("{OUTPUTS_BEGIN}", *(text[i:i + 76] for i in range(0, len(text), 76)), "{OUTPUTS_END}", sep="\\n", flush=True)
sys.exit(code)
"""

WorkerStatus = Literal["ok", "failed", "timed out", "stopped"]


def tf_config(hosts: Sequence[str], index: int) -> str:
    """TF_CONFIG for worker `index` of a cluster of `hosts` ("name:port"); worker 0 is the chief."""
    return json.dumps({"cluster": {"worker": list(hosts)}, "task": {"type": "worker", "index": index}},
                      separators=(",", ":"))


@dataclass(frozen=True)
class Training:
    """What to train: a script or a notebook (relative to NOTEBOOKS_DIR), its papermill
    parameters, the number of workers, their port and the run's time limit in seconds."""

    path: str
    notebook: bool
    parameters: tuple[tuple[str, str], ...]
    workers: int
    port: int
    timeout: float
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2))

    def command(self, hosts: Sequence[str], output: str) -> tuple[str, ...]:
        """A worker's command: wait for the peers, then run the script (python) or the notebook
        (papermill, its executed copy written to `output`)."""
        in_container = PurePosixPath(contract.NOTEBOOKS) / self.path
        if self.notebook:
            run = [*PAPERMILL, *papermill_args(str(in_container), f"{output}/{in_container.name}", DEFAULT_KERNEL,
                                                self.parameters)]
        else:
            run = ["python", str(in_container)]
        return ("python", "-c", WAIT_FOR_PEERS, f"{PEER_WAIT:g}", *hosts, "--", *run)


@dataclass(frozen=True)
class WorkerOutcome:
    index: int
    host: str
    node: str
    status: WorkerStatus
    seconds: float
    log: list[str]
    detail: list[str] = field(default_factory=list)


class Backend(Protocol):
    """Starts N workers somewhere, tells when each ends, stops them, removes everything.

    `hosts` are the workers' "name:port" as their peers reach them; `outputs_in_log` is true when
    the workers cannot write to the run folder and write their outputs to their logs instead.
    """

    hosts: list[str]
    outputs_in_log: bool

    def start(self, folder: Path) -> None:
        """Start every worker; those that can write to `folder` (the run folder) do."""

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        """(worker index, exit code) as each worker ends."""

    def node(self, index: int) -> str:
        """Where worker `index` runs: a Swarm node's hostname, a Kubernetes node's name, the
        engine's host; "-" while that is not known."""

    def logs(self, index: int) -> list[str]:
        """Worker `index`'s whole log so far, as lines."""

    def follow(self, index: int) -> Iterator[str]:
        """Worker `index`'s log as it is written, in text pieces, until it ends."""

    def stop_all(self) -> None:
        """Stop every worker still running, at once."""

    def remove_all(self) -> None:
        """Remove everything the backend made for the run."""


def prepare(project: Project, script: str | None, notebook: str | None, parameters: Sequence[str],
            workers: int, port: int, timeout: float) -> Training:
    """Check what the user asked for, before anything is built or started.

    Raises NbdockError for no (or two) files to run, a file outside NOTEBOOKS_DIR, parameters
    given to a script, or bad parameters.
    """
    if bool(script) == bool(notebook):
        raise NbdockError("say what to train: --script PATH (a .py file) or --notebook PATH (a .ipynb "
                          "file), one of them, in NOTEBOOKS_DIR")
    root = project.settings.require_notebooks()
    path = notebook_in(root, notebook, (".ipynb",)) if notebook else notebook_in(root, str(script), (".py",))
    typed = parse_parameters(parameters)
    project.identity.require_writable(project.settings.output_path, "OUTPUT_DIR")
    if typed and not notebook:
        raise NbdockError("-p parameters fill a notebook's `parameters` cell; a script reads its own "
                          "settings (environment variables or arguments in the script)")
    return Training(path, bool(notebook), tuple(typed), workers, port, timeout)


def run_folder(project: Project, training: Training) -> Path:
    """OUTPUT_DIR/train/<run id>/, made now and given to the user the workers run as."""
    folder = project.settings.output_path / "train" / training.run_id
    created = [p for p in reversed([folder, *folder.parents]) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, training.workers):
        (folder / f"worker-{index}").mkdir()
        created.append(folder / f"worker-{index}")
    project.identity.hand_over(created)
    return folder


def worker_output(index: int) -> str:
    """Where worker `index` writes (NBDOCK_OUTPUT): the run folder for the chief, a folder of its own
    below it for the others."""
    return contract.OUTPUTS if index == 0 else f"{contract.OUTPUTS}/worker-{index}"


def worker_folder(folder: Path, index: int) -> Path:
    """Where worker `index`'s outputs land on the host: the run folder for the chief, worker-<i> below it."""
    return folder if index == 0 else folder / f"worker-{index}"


def engine_names(project: Project, training: Training) -> tuple[str, list[str]]:
    """(network, worker names) of a run on a Docker engine: worker i is named
    `<CONTAINER_NAME>-train-<run id>-<i>` (a DNS label), on a network named without the index."""
    network = contract.dns_label(f"{project.settings.container_name}-train-{training.run_id}")
    return network, [f"{network}-{index}" for index in range(training.workers)]


def worker_workload(project: Project, training: Training, hosts: Sequence[str], name: str, index: int,
                    image: str, folder: Path, network: str) -> Workload:
    """Worker `index` as a workload of the project's image on a Docker engine: its TF_CONFIG, the
    notebooks read-only, and the run folder mounted where it writes."""
    output = worker_output(index)
    workload = project.workload(
        name, image, "train",
        command=training.command(hosts, output),
        environment={**project.environment_variables(), "TF_CONFIG": tf_config(hosts, index),
                     "NBDOCK_OUTPUT": output},
        mounts=(*project.mounts(notebooks_read_only=True), Mount(str(folder), contract.OUTPUTS)),
        network=network, health_check=False,
    )
    return replace(workload, labels={**workload.labels, contract.LABEL_RUN: training.run_id})


def split_outputs(lines: Sequence[str]) -> tuple[list[str], bytes | None]:
    """(the log without the outputs a worker wrote to it, those outputs as a tar.gz or None)."""
    if OUTPUTS_BEGIN not in lines:
        return list(lines), None
    begin = len(lines) - 1 - list(reversed(lines)).index(OUTPUTS_BEGIN)
    if OUTPUTS_END not in lines[begin:]:  # stopped while writing them: nothing whole to unpack
        return list(lines[:begin]), None
    end = lines.index(OUTPUTS_END, begin)
    try:
        archive = base64.b64decode("".join(lines[begin + 1:end]), validate=True)
    except (binascii.Error, ValueError):
        archive = None
    return [*lines[:begin], *lines[end + 1:]], archive


def unpack_outputs(archive: bytes, folder: Path, identity: Identity) -> list[Path]:
    """Unpack a worker's outputs (a tar.gz) into `folder`: regular files and folders only, never
    outside `folder` and never over a file that exists; what was written."""
    written: list[Path] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as packed:
            for member in packed:
                relative = PurePosixPath(member.name)
                if relative.is_absolute() or ".." in relative.parts or not (member.isfile() or member.isdir()):
                    continue
                target = folder.joinpath(*relative.parts) if relative.parts else folder
                if member.isdir():
                    if not target.exists():
                        target.mkdir(parents=True)
                        written.append(target)
                    continue
                if target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = packed.extractfile(member)
                if source is not None:
                    target.write_bytes(source.read())
                    written.append(target)
    except (tarfile.TarError, OSError, EOFError) as error:
        console.warn(f"the outputs a worker wrote to its log could not be unpacked into {folder} ({error})")
    identity.hand_over(written)
    return written


def summary(outcomes: Sequence[WorkerOutcome]) -> list[str]:
    """A table: worker, host (as its peers reach it), node (where it ran), status, seconds."""
    rows = [("worker", "host", "node", "status", "seconds")]
    rows += [(str(o.index) + (" (chief)" if o.index == 0 else ""), o.host, o.node, o.status, f"{o.seconds:.1f}")
             for o in outcomes]
    return console.table(rows)


def verdict(outcomes: Sequence[WorkerOutcome], timeout: float) -> str | None:
    """One sentence on why the run did not finish, or None when every worker ended well."""
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        return (f"worker {failed[0].index} failed, so the run was stopped ({len(failed)} of {len(outcomes)} "
                "workers failed); its error is above, every worker's log is in the run folder")
    if any(o.status == "timed out" for o in outcomes):
        return f"the run timed out after {timeout:g} s and was stopped; raise TRAIN_TIMEOUT (or --timeout)"
    if any(o.status != "ok" for o in outcomes):
        return "the run was stopped before every worker finished; see above"
    return None


def explain(outcomes: Sequence[WorkerOutcome], timeout: float) -> list[str]:
    """What went wrong, readably: the failing worker's cell or traceback, or the time limit."""
    lines: list[str] = []
    for outcome in outcomes:
        if outcome.status == "failed":
            lines.append(f"worker {outcome.index} failed:")
            lines += [f"  {line}" for line in outcome.detail]
        elif outcome.status == "timed out":
            lines.append(f"worker {outcome.index} was stopped after {timeout:g} s (TRAIN_TIMEOUT)")
    return lines


