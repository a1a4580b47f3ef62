"""How `execute` shares containers among notebooks, against the fake engine: one container per
job, and a notebook that times out or dies takes only its own container with it."""

from __future__ import annotations

from pathlib import Path

from nbdock.execute import Execution
from nbdock.project import Project
from nbdock.settings import load_settings
from tests.fake_engine import FakeEngine

NOTEBOOKS = ["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"]


def execution(folder: Path, engine: FakeEngine) -> Execution:
    (folder / "notebooks").mkdir()
    for name in NOTEBOOKS:
        (folder / "notebooks" / name).write_text('{"cells": []}')
    (folder / ".env").write_text("PROJECT_NAME=demo\nRUN_AS=1234:1234\nMEMORY=600m\n")
    project = Project(load_settings(folder, environ={}), engine)
    return Execution(project, "sha256:abc", [], False, 60, {name: ("python3", "") for name in NOTEBOOKS})


def started(engine: FakeEngine) -> list[str]:
    return [call.split()[1] for call in engine.calls if call.startswith("start ")]


def test_one_job_runs_every_notebook_in_one_container_and_removes_it(tmp_path: Path) -> None:
    engine = FakeEngine()
    outcomes = execution(tmp_path, engine).run_all(NOTEBOOKS, jobs=1)
    assert [outcome.status for outcome in outcomes] == ["ok"] * 4
    (container,) = started(engine)
    assert [call.split()[1] for call in engine.calls if call.startswith("exec ")] == [container] * 4
    assert engine.running == {}


def test_a_timed_out_or_killed_notebook_fails_alone_and_the_job_goes_on_in_a_new_container(tmp_path: Path) -> None:
    engine = FakeEngine(exec_codes={"b.ipynb": None, "c.ipynb": 137})
    outcomes = execution(tmp_path, engine).run_all(NOTEBOOKS, jobs=1)
    assert [outcome.status for outcome in outcomes] == ["ok", "timed out", "killed", "ok"]
    assert "MEMORY=600m" in outcomes[2].cause
    assert len(started(engine)) == 3  # a and b; c; d
    assert engine.running == {}


def test_jobs_never_run_more_containers_than_asked(tmp_path: Path) -> None:
    engine = FakeEngine()
    outcomes = execution(tmp_path, engine).run_all(NOTEBOOKS, jobs=2)
    assert [outcome.status for outcome in outcomes] == ["ok"] * 4
    assert 1 <= len(started(engine)) <= 2
    assert engine.running == {}
