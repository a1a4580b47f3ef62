"""The training run loop against a fake backend (no engine): outcomes, fail-fast, the time limit,
and outputs a worker writes to its log."""

from __future__ import annotations

import base64
import io
import json
import queue
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbdock.project import Project
from nbdock.settings import load_settings
from nbdock.training import model
from nbdock.training.model import OUTPUTS_BEGIN, OUTPUTS_END, Training
from nbdock.training.run import BACKENDS, run_workers
from tests.fake_engine import FakeEngine


def archive_lines(files: dict[str, bytes]) -> list[str]:
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    text = base64.b64encode(packed.getvalue()).decode()
    return [OUTPUTS_BEGIN, *(text[i:i + 76] for i in range(0, len(text), 76)), OUTPUTS_END]


class FakeBackend:
    """Workers that end with the given exit codes (None: never), each with a log of its own."""

    def __init__(self, codes: list[int | None], logs: list[list[str]], outputs_in_log: bool = False) -> None:
        self.codes = codes
        self.log_lines = logs
        self.outputs_in_log = outputs_in_log
        self.hosts = [f"w-{index}:2222" for index in range(len(codes))]
        self.calls: list[str] = []
        self._ended: queue.Queue[tuple[int, int]] = queue.Queue()

    def start(self, folder: Path) -> None:
        self.calls.append("start")
        for index, code in enumerate(self.codes):
            if code is not None:
                self._ended.put((index, code))

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        while True:
            yield self._ended.get()

    def node(self, index: int) -> str:
        return f"node-{index}"

    def logs(self, index: int) -> list[str]:
        return self.log_lines[index]

    def follow(self, index: int) -> Iterator[str]:
        yield from (line + "\n" for line in self.log_lines[index])

    def stop_all(self) -> None:
        self.calls.append("stop_all")

    def remove_all(self) -> None:
        self.calls.append("remove_all")


def setup(tmp_path: Path, workers: int = 2, notebook: bool = False,
          timeout: float = 30) -> tuple[Project, Training, Path]:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / ".env").write_text("PROJECT_NAME=demo\nRUN_AS=1234:1234\n")
    project = Project(load_settings(tmp_path, environ={}), FakeEngine())
    training = Training("train.ipynb" if notebook else "train.py", notebook, (), workers, 2222, timeout)
    return project, training, model.run_folder(project, training)


def test_every_worker_ends_well_and_each_log_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project, training, folder = setup(tmp_path)
    backend = FakeBackend([0, 0], [["chief here"], ["worker here"]])
    outcomes = run_workers(project, training, backend, folder)
    assert [o.status for o in outcomes] == ["ok", "ok"] and model.verdict(outcomes, 30) is None
    assert [o.node for o in outcomes] == ["node-0", "node-1"]  # asked of the backend, for the summary
    assert (folder / "worker-1.log").read_text() == "worker here\n"
    assert "[worker 0] chief here" in capsys.readouterr().out
    assert backend.calls == ["start", "remove_all"]  # nobody left to stop


def test_the_first_failure_stops_the_others(tmp_path: Path) -> None:
    project, training, folder = setup(tmp_path, workers=3)
    backend = FakeBackend([None, 3, None], [[], ["Traceback", "ValueError: no"], []])
    outcomes = run_workers(project, training, backend, folder)
    assert [o.status for o in outcomes] == ["stopped", "failed", "stopped"]
    assert outcomes[1].detail == ["Traceback", "ValueError: no"]
    assert backend.calls == ["start", "stop_all", "remove_all"]
    assert "worker 1 failed" in (model.verdict(outcomes, 30) or "")


def test_a_run_past_its_time_is_stopped_and_says_so(tmp_path: Path) -> None:
    project, training, folder = setup(tmp_path, timeout=0.3)
    outcomes = run_workers(project, training, FakeBackend([None, None], [[], []]), folder)
    assert [o.status for o in outcomes] == ["timed out", "timed out"]
    assert "raise TRAIN_TIMEOUT" in (model.verdict(outcomes, 0.3) or "")
    assert model.explain(outcomes, 0.3)[0] == "worker 0 was stopped after 0.3 s (TRAIN_TIMEOUT)"


def test_outputs_written_to_a_log_land_in_the_run_folder_and_nowhere_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, training, folder = setup(tmp_path)
    chief = ["training", *archive_lines({"./result.json": b'{"ok": true}', "../escape.txt": b"no"})]
    worker = ["training", *archive_lines({"./mine.txt": b"worker 1"})]
    run_workers(project, training, FakeBackend([0, 0], [chief, worker], outputs_in_log=True), folder)
    assert json.loads((folder / "result.json").read_text()) == {"ok": True}
    assert (folder / "worker-1" / "mine.txt").read_text() == "worker 1"
    assert not (folder.parent / "escape.txt").exists()
    assert (folder / "worker-0.log").read_text() == "training\n"
    assert OUTPUTS_BEGIN not in capsys.readouterr().out


def test_a_failing_notebook_names_its_cell(tmp_path: Path) -> None:
    project, training, folder = setup(tmp_path, notebook=True)
    executed = {"cells": [{"cell_type": "code", "source": "1 / 0", "metadata": {}, "outputs": [
        {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []}]}]}
    (folder / "worker-1" / "train.ipynb").write_text(json.dumps(executed))
    outcomes = run_workers(project, training, FakeBackend([None, 1], [[], ["papermill failed"]]), folder)
    assert outcomes[1].detail == ["failing cell:", "  1 / 0", "ZeroDivisionError: division by zero"]


def test_a_log_whose_archive_is_cut_short_keeps_the_rest() -> None:
    lines = ["before", *archive_lines({"a": b"x"})[:-2]]
    log, archive = model.split_outputs(lines)
    assert log == ["before"] and archive is None


def test_the_backends_are_the_ones_train_backend_accepts() -> None:
    from nbdock.settings import KNOWN_KEYS, load_settings

    assert "TRAIN_BACKEND" in KNOWN_KEYS
    for name in BACKENDS:
        assert load_settings(Path("/"), environ={"NBDOCK_TRAIN_BACKEND": name}).train_backend == name
