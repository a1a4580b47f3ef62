"""Distributed TensorFlow: N workers of the project's image, each with its TF_CONFIG.

Backends: the local engine (a network of its own, peers by container name), Docker Swarm (an
attachable overlay network, one service per worker, peers by service name) and Kubernetes (an
Indexed Job behind a headless Service, see k8s.py). Every worker waits until every peer name
resolves before TensorFlow starts; the first worker to fail stops the others; the chief's
outputs and every worker's log land in OUTPUT_DIR/train/<run id>/. Nothing is left behind.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from nbdock import console, contract
from nbdock import image as images
from nbdock.engine import LineBuffer
from nbdock.errors import NbdockError
from nbdock.notebooks import (
    DEFAULT_KERNEL,
    failing_cell_lines,
    failure_in,
    notebook_in,
    papermill_args,
    parse_parameters,
)
from nbdock.project import Project
from nbdock.workload import Mount, Workload

PEER_WAIT = 120.0
WORKER_PREFIX = "[worker {index}] "
# Run by python in every worker: wait until each peer's name resolves, then become the command.
# A name that never resolves ends the worker with one line instead of a silent hang in TensorFlow.
WAIT_FOR_PEERS = """\
import os, socket, sys, time
seconds, rest = float(sys.argv[1]), sys.argv[2:]
peers, command = rest[:rest.index("--")], rest[rest.index("--") + 1:]
os.makedirs(os.environ.get("NBDOCK_OUTPUT", "."), exist_ok=True)
deadline = time.monotonic() + seconds
for peer in peers:
    host = peer.rsplit(":", 1)[0]
    while True:
        try:
            socket.getaddrinfo(host, None)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nbdock: the peer {host} did not resolve within {seconds:g} s; is it running?")
            time.sleep(0.2)
os.execvp(command[0], command)
"""

Status = Literal["ok", "failed", "timed out", "stopped"]


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
            run = ["papermill", *papermill_args(str(in_container), f"{output}/{in_container.name}", DEFAULT_KERNEL,
                                                self.parameters)]
        else:
            run = ["python", str(in_container)]
        return ("python", "-c", WAIT_FOR_PEERS, f"{PEER_WAIT:g}", *hosts, "--", *run)


@dataclass(frozen=True)
class WorkerOutcome:
    index: int
    host: str
    status: Status
    seconds: float
    log: list[str]
    detail: list[str] = field(default_factory=list)


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
    identity = project.identity
    if os.getuid() == 0 and not identity.is_root:
        for path in created:
            os.chown(path, identity.uid, identity.gid)
    return folder


def worker_output(index: int) -> str:
    """Where worker `index` writes (NBDOCK_OUTPUT): the run folder for the chief, a folder of its own
    below it for the others."""
    return contract.OUTPUTS if index == 0 else f"{contract.OUTPUTS}/worker-{index}"


class _Backend:
    """Starts N workers somewhere, tells when each ends, stops them, removes everything.

    Worker i is named `<CONTAINER_NAME>-train-<run id>-<i>` (a DNS label), on a network named
    without the index; its peers find it by that name.
    """

    def __init__(self, project: Project, training: Training) -> None:
        self.engine = project.engine
        self.labels = {**project.settings.object_labels, contract.LABEL_RUN: training.run_id}
        self.network = contract.dns_label(f"{project.settings.container_name}-train-{training.run_id}")
        self.names = [f"{self.network}-{index}" for index in range(training.workers)]
        self.hosts = [f"{name}:{training.port}" for name in self.names]

    def start(self, index: int, workload: Workload) -> None:
        raise NotImplementedError

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        """(worker index, exit code) as each worker ends."""
        raise NotImplementedError

    def logs(self, index: int) -> list[str]:
        raise NotImplementedError

    def follow(self, index: int) -> Iterator[str]:
        raise NotImplementedError

    def stop_all(self) -> None:
        raise NotImplementedError

    def remove_all(self) -> None:
        raise NotImplementedError


class LocalBackend(_Backend):
    """Workers as containers on a network of their own (internal: no way out), named per worker."""

    def __init__(self, project: Project, training: Training) -> None:
        super().__init__(project, training)
        self.ids: dict[int, str] = {}
        self._ended: queue.Queue[tuple[int, int]] = queue.Queue()
        self.engine.create_network(self.network, self.labels, internal=True)

    def start(self, index: int, workload: Workload) -> None:
        container = self.engine.create(workload)
        self.ids[index] = container.id
        self.engine.start(container.id)

        def wait() -> None:
            code = self.engine.wait(container.id, None)
            self._ended.put((index, -1 if code is None else code))

        threading.Thread(target=wait, daemon=True).start()

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        while True:
            yield self._ended.get()

    def logs(self, index: int) -> list[str]:
        return self.engine.logs(self.ids[index]) if index in self.ids else []

    def follow(self, index: int) -> Iterator[str]:
        yield from self.engine.follow_logs(self.ids[index])

    def stop_all(self) -> None:
        for container in self.ids.values():
            self.engine.kill(container)

    def remove_all(self) -> None:
        for container in self.ids.values():
            self.engine.remove(container)
        self.engine.remove_network(self.network)


class SwarmBackend(_Backend):
    """Workers as Swarm services of one replica each, without restart, endpoint mode dnsrr (VIP
    hangs collective ops), on an attachable overlay network; peers by service name."""

    def __init__(self, project: Project, training: Training, constraints: list[str]) -> None:
        super().__init__(project, training)
        self.constraints = constraints
        self.started: set[int] = set()
        self.engine.create_network(self.network, self.labels, driver="overlay", attachable=True)

    def start(self, index: int, workload: Workload) -> None:
        self.engine.create_service(workload, {}, restart=False, constraints=self.constraints)
        self.started.add(index)

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        ended: set[int] = set()
        while True:
            for index in sorted(self.started - ended):
                service = self.engine.service(self.names[index])
                task = service.tasks[0] if service and service.tasks else None
                if task is None or task.state in {"new", "pending", "assigned", "accepted", "preparing",
                                                  "ready", "starting", "running"}:
                    continue
                ended.add(index)
                if task.state != "complete" and task.error:
                    console.detail([f"worker {index}: {task.error}"])
                yield index, 0 if task.state == "complete" else (task.exit_code or 1)
            time.sleep(0.25)

    def logs(self, index: int) -> list[str]:
        return "".join(self.engine.service_logs(self.names[index])).splitlines()

    def follow(self, index: int) -> Iterator[str]:
        yield from self.engine.service_logs(self.names[index], follow=True)

    def stop_all(self) -> None:
        for index in self.started:
            self.engine.remove_service(self.names[index])

    def remove_all(self) -> None:
        for index in self.started:
            self.engine.remove_service(self.names[index])
        deadline = time.monotonic() + 60
        while any(c.service in self.names for c in self.engine.containers(self.labels)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.engine.remove_network(self.network)


def _stream(backend: _Backend, index: int, stop: threading.Event) -> None:
    """Show a worker's log live, each line prefixed with the worker."""
    prefix = WORKER_PREFIX.format(index=index)
    lines = LineBuffer()
    try:
        for text in backend.follow(index):
            if stop.is_set():
                return
            for line in lines.feed(text):
                console.info(prefix + line)
        for line in lines.flush():
            console.info(prefix + line)
    except NbdockError:
        return


def run_workers(project: Project, training: Training, backend: _Backend, image: str,
                folder: Path) -> list[WorkerOutcome]:
    """Start every worker, show their logs live, follow them until all end, one fails or the time
    runs out; collect each worker's log into `folder`. Everything the backend made is removed,
    whatever happens."""
    started = time.monotonic()
    ended: dict[int, tuple[int, float]] = {}
    stop = threading.Event()
    timed_out = False
    try:
        for index in range(training.workers):
            output = worker_output(index)
            workload = project.workload(
                backend.names[index], image, "train",
                command=training.command(backend.hosts, output),
                environment={**project.environment_variables(), "TF_CONFIG": tf_config(backend.hosts, index),
                             "NBDOCK_OUTPUT": output},
                mounts=(*project.mounts(notebooks_read_only=True), Mount(str(folder), contract.OUTPUTS)),
                network=backend.network, health_check=False,
            )
            workload = replace(workload, labels={**workload.labels, contract.LABEL_RUN: training.run_id})
            with project.refusals():
                backend.start(index, workload)
        for index in range(training.workers):
            threading.Thread(target=_stream, args=(backend, index, stop), daemon=True).start()
        codes = _bounded(backend.exit_codes(), started + training.timeout)
        for index, code in codes:
            ended[index] = (code, time.monotonic() - started)
            if code != 0 or len(ended) == training.workers:
                break
        else:
            timed_out = True
        if len(ended) < training.workers:
            backend.stop_all()
        time.sleep(0.5)  # the last lines of the live logs
        stop.set()
        outcomes = [_outcome(project, training, backend, index, ended, timed_out, folder, started)
                    for index in range(training.workers)]
    finally:
        stop.set()
        backend.remove_all()
    return outcomes


def _bounded(codes: Iterator[tuple[int, int]], deadline: float) -> Iterator[tuple[int, int]]:
    """The exit codes that come before `deadline` (time.monotonic())."""
    results: queue.Queue[tuple[int, int]] = queue.Queue()

    def pump() -> None:
        for item in codes:
            results.put(item)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            item = results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return
        yield item


def _outcome(project: Project, training: Training, backend: _Backend, index: int,
             ended: dict[int, tuple[int, float]], timed_out: bool, folder: Path, started: float) -> WorkerOutcome:
    log = backend.logs(index)
    (folder / f"worker-{index}.log").write_text("\n".join(log) + "\n", encoding="utf-8")
    host = backend.hosts[index]
    if index not in ended:
        status: Status = "timed out" if timed_out else "stopped"
        return WorkerOutcome(index, host, status, time.monotonic() - started, log)
    code, seconds = ended[index]
    if code == 0:
        return WorkerOutcome(index, host, "ok", seconds, log)
    detail: list[str] = []
    if training.notebook:
        executed = folder / ("" if index == 0 else f"worker-{index}") / PurePosixPath(training.path).name
        failure = failure_in(executed)
        if failure is not None:
            detail = failing_cell_lines(failure)
    return WorkerOutcome(index, host, "failed", seconds, log, detail or log[-25:])


def train(project: Project, training: Training, backend: str) -> tuple[list[WorkerOutcome], Path]:
    """Build (and with Swarm and REGISTRY push) the image, check TensorFlow imports in it, run
    the workers on `backend` ("local" or "swarm"); (each worker's outcome, the run folder)."""
    from nbdock import swarm

    image_id = images.build(project, execute=True)
    images.require_tensorflow(project, image_id)
    image = image_id
    runner: _Backend
    if backend == "swarm":
        node = swarm.require_swarm(project, init=False)
        image, constraints = swarm.image_for_swarm(project, node, execute=True)
        folder = run_folder(project, training)
        runner = SwarmBackend(project, training, constraints)
    else:
        folder = run_folder(project, training)
        runner = LocalBackend(project, training)
    console.info(f"Training on {training.workers} worker(s) ({backend}); results in {folder}")
    return run_workers(project, training, runner, image, folder), folder


def summary(outcomes: Sequence[WorkerOutcome]) -> list[str]:
    """A table: worker, host, status, seconds."""
    rows = [("worker", "host", "status", "seconds")]
    rows += [(str(o.index) + (" (chief)" if o.index == 0 else ""), o.host, o.status, f"{o.seconds:.1f}")
             for o in outcomes]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


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

