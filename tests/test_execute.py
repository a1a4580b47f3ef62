"""`invoke execute`: notebooks run headless in the project's image, against the real engine."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.projects import REPO, ProjectCopy, clean_environment, new_project, owner
from tests.helpers.tracker import Tracker, project_containers

pytestmark = pytest.mark.docker
DATA = REPO / "tests" / "data" / "execute"


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, base_image: str, docker_client: Any
) -> Iterator[ProjectCopy]:
    tracker = Tracker(docker_client)
    made = new_project(tmp_path_factory.mktemp("execute"), base_image, {}, notebooks=DATA)
    tracker.project(made.name)
    yield made
    tracker.cleanup(images=False)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def outputs_of(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c["outputs"]]


def test_execute_injects_typed_parameters_and_shows_the_failing_cell(
    project: ProjectCopy, docker_client: Any
) -> None:
    sources = digests(project.notebooks)
    result = project.invoke(
        "execute", "--notebook", "greet.ipynb", "--notebook", "fails.ipynb", "--html",
        "-p", "name=ada", "-p", "count=3", "-p", "rate=0.5",
    )
    assert result.returncode != 0, result.output
    assert "Traceback (most recent call last)" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("nbdock: 1 of 2 notebooks")

    greeted = project.path / "outputs" / "greet.ipynb"
    assert "hello ada: count=3 (int), rate=0.5 (float)\n" in outputs_of(greeted)
    assert (project.path / "outputs" / "greet.html").is_file()
    assert (project.path / "outputs" / "fails.ipynb").is_file()
    assert (greeted.stat().st_uid, greeted.stat().st_gid) == owner()

    assert "failing cell:" in result.stdout
    assert "    check(42)" in result.stdout
    assert "ValueError: broken on purpose: 42" in result.stdout
    assert "\x1b[" not in result.stdout
    table = [line.split() for line in result.stdout.splitlines() if line.endswith(".ipynb")]
    assert table[-2][:2] == ["greet.ipynb", "ok"]
    assert table[-1][:2] == ["fails.ipynb", "failed"]

    assert digests(project.notebooks) == sources
    assert project_containers(docker_client, project.name) == []


def test_a_notebook_past_the_timeout_is_stopped_and_reported(
    project: ProjectCopy, docker_client: Any
) -> None:
    result = project.invoke("execute", "--notebook", "nap_a.ipynb", "-p", "seconds=300",
                            "--timeout", "10")
    assert result.returncode != 0
    assert "nap_a.ipynb: timed out" in result.stdout
    assert any(line.split()[:3] == ["nap_a.ipynb", "timed", "out"] for line in result.stdout.splitlines())
    assert project_containers(docker_client, project.name) == []


def test_parallel_runs_give_the_same_outputs_in_clearly_less_time(project: ProjectCopy) -> None:
    naps = ["--notebook", "nap_a.ipynb", "--notebook", "nap_b.ipynb", "-p", "seconds=6"]
    started = time.monotonic()
    serial = project.invoke("execute", *naps)
    serial_seconds = time.monotonic() - started
    assert serial.returncode == 0, serial.output
    serial_outputs = {n: outputs_of(project.path / "outputs" / n) for n in ("nap_a.ipynb", "nap_b.ipynb")}

    started = time.monotonic()
    parallel = project.invoke("execute", *naps, "--jobs", "2")
    parallel_seconds = time.monotonic() - started
    assert parallel.returncode == 0, parallel.output
    parallel_outputs = {n: outputs_of(project.path / "outputs" / n) for n in serial_outputs}

    assert parallel_outputs == serial_outputs
    assert serial_outputs["nap_a.ipynb"] == ["rested 6\n"]
    assert parallel_seconds < 0.8 * serial_seconds, (parallel_seconds, serial_seconds)


def test_ctrl_c_removes_the_running_containers(project: ProjectCopy, docker_client: Any) -> None:
    running = subprocess.Popen(
        [sys.executable, "-m", "invoke", "execute", "--notebook", "nap_a.ipynb", "--notebook",
         "nap_b.ipynb", "--jobs", "2", "-p", "seconds=300"],
        cwd=project.path, env=clean_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(project_containers(docker_client, project.name)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(project_containers(docker_client, project.name)) == 2
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=60)
    assert running.returncode == 130
    assert "Traceback" not in stderr and stderr.strip().endswith("nbdock: interrupted")
    assert project_containers(docker_client, project.name) == []


def tagged_notebook(*cells: tuple[str, list[str]]) -> str:
    return json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {"tags": tags}, "outputs": [],
                   "source": source} for source, tags in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    })


def test_errors_in_cells_tagged_raises_exception_are_expected(project: ProjectCopy) -> None:
    (project.notebooks / "teaches.ipynb").write_text(tagged_notebook(
        ("1 / 0", ["raises-exception"]), ("print('carried on')", []),
        ("print('no error here')", ["raises-exception"]),
    ))
    (project.notebooks / "then_fails.ipynb").write_text(tagged_notebook(
        ("1 / 0", ["raises-exception"]), ("{}['missing']", []), ("print('never')", []),
    ))
    result = project.invoke("execute", "--notebook", "teaches.ipynb", "--notebook", "then_fails.ipynb")
    assert result.returncode != 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    table = {row[0]: row[1] for row in rows if len(row) > 2 and row[0].endswith(".ipynb")}
    assert table == {"teaches.ipynb": "ok", "then_fails.ipynb": "failed"}, result.stdout
    assert "1 expected error(s) (raises-exception)" in result.stdout
    assert "KeyError: 'missing'" in result.stdout and "ZeroDivisionError" not in result.stdout
    taught = (project.path / "outputs" / "teaches.ipynb").read_text()
    assert "carried on" in taught and "An Exception was encountered" not in taught


def test_a_notebook_that_allows_errors_runs_every_cell(project: ProjectCopy) -> None:
    content = json.loads(tagged_notebook(("1 / 0", []), ("print('still ran')", []), ("{}['k']", [])))
    content["metadata"]["nbsphinx"] = {"allow_errors": True}
    (project.notebooks / "shows_errors.ipynb").write_text(json.dumps(content))
    result = project.invoke("execute", "--notebook", "shows_errors.ipynb")
    assert result.returncode == 0, result.output
    assert "2 expected error(s) (allow_errors)" in result.stdout
    executed = json.loads((project.path / "outputs" / "shows_errors.ipynb").read_text())
    errors = [o["ename"] for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == ["ZeroDivisionError", "KeyError"] and "still ran" in json.dumps(executed)
    assert all("tags" not in cell["metadata"] for cell in executed["cells"])
