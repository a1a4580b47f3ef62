"""A training run on any backend: build the image, check TensorFlow imports in it, start the
workers on the backend chosen by name, show their logs live, stop them all when one fails or
the time runs out, and collect each worker's log (and outputs) into OUTPUT_DIR/train/<run id>/.
Nothing the backend made is left behind."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from nbdock import console
from nbdock import image as images
from nbdock.console import LineBuffer
from nbdock.errors import NbdockError
from nbdock.notebooks import failing_cell_lines, failure_in
from nbdock.project import Project
from nbdock.training.k8s import KubernetesBackend
from nbdock.training.local import LocalBackend
from nbdock.training.model import (
    OUTPUTS_BEGIN,
    OUTPUTS_END,
    WORKER_PREFIX,
    Backend,
    Training,
    WorkerOutcome,
    WorkerStatus,
    run_folder,
    split_outputs,
    unpack_outputs,
    worker_folder,
)
from nbdock.training.swarm import SwarmBackend

# The backends by the name TRAIN_BACKEND (or --backend) gives: each is made from the project, the
# run and the id of the built execution image.
BACKENDS: dict[str, Callable[[Project, Training, str], Backend]] = {
    "local": LocalBackend,
    "swarm": SwarmBackend,
    "k8s": KubernetesBackend,
}
LAST_LINES = 0.5  # seconds the live logs get for their last lines once the run has ended


def train(project: Project, training: Training, backend: str) -> tuple[list[WorkerOutcome], Path]:
    """Build the execution image, check TensorFlow imports in it, run the workers on `backend`
    (a name in BACKENDS); (each worker's outcome, the run folder). Raises NbdockError for what
    the backend refuses before any worker starts."""
    image_id = images.build(project, execute=True)
    images.require_tensorflow(project, image_id)
    runner = BACKENDS[backend](project, training, image_id)
    folder = run_folder(project, training)
    console.info(f"Training on {training.workers} worker(s) ({backend}); results in {folder}")
    return run_workers(project, training, runner, folder), folder


def _stream(backend: Backend, index: int, stop: threading.Event) -> None:
    """Show a worker's log live, each line prefixed with the worker; not the outputs it writes to it."""
    prefix = WORKER_PREFIX.format(index=index)
    lines = LineBuffer()
    hidden = False

    def show(line: str) -> None:
        nonlocal hidden
        if line in (OUTPUTS_BEGIN, OUTPUTS_END):
            hidden = line == OUTPUTS_BEGIN
        elif not hidden:
            console.info(prefix + line)

    try:
        for text in backend.follow(index):
            if stop.is_set():
                return
            for line in lines.feed(text):
                show(line)
        for line in lines.flush():
            show(line)
    except NbdockError:
        return


def run_workers(project: Project, training: Training, backend: Backend, folder: Path) -> list[WorkerOutcome]:
    """Start every worker, show their logs live, follow them until all end, one fails or the time
    runs out; collect each worker's log into `folder`. Everything the backend made is removed,
    whatever happens."""
    started = time.monotonic()
    ended: dict[int, tuple[int, float]] = {}
    stop = threading.Event()
    timed_out = False
    try:
        with project.refusals():
            backend.start(folder)
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
        time.sleep(LAST_LINES)
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


def _outcome(project: Project, training: Training, backend: Backend, index: int,
             ended: dict[int, tuple[int, float]], timed_out: bool, folder: Path, started: float) -> WorkerOutcome:
    log, archive = split_outputs(backend.logs(index))
    outputs = worker_folder(folder, index)
    if archive is not None:
        unpack_outputs(archive, outputs, project.identity)
    (folder / f"worker-{index}.log").write_text("\n".join(log) + "\n", encoding="utf-8")
    host, node = backend.hosts[index], backend.node(index)
    if index not in ended:
        status: WorkerStatus = "timed out" if timed_out else "stopped"
        return WorkerOutcome(index, host, node, status, time.monotonic() - started, log)
    code, seconds = ended[index]
    if code == 0:
        return WorkerOutcome(index, host, node, "ok", seconds, log)
    detail: list[str] = []
    if training.notebook:
        failure = failure_in(outputs / PurePosixPath(training.path).name)
        if failure is not None:
            detail = failing_cell_lines(failure)
    return WorkerOutcome(index, host, node, "failed", seconds, log, detail or log[-25:])
