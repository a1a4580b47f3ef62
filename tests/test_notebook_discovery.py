"""Which notebooks `execute` runs, and how parameters are read (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbdock.errors import NbdockError
from nbdock.execute import failure_in, find_notebooks, parse_parameters
from nbdock.project import Project
from nbdock.settings import load_settings


def make(tmp_path: Path, **env: str) -> Project:
    for name in ("b.ipynb", "a.ipynb", "sub/c.ipynb", ".ipynb_checkpoints/a-checkpoint.ipynb",
                 "notes.txt", "outputs/a.ipynb"):
        path = tmp_path / "notebooks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return Project(load_settings(tmp_path, environ={}))


def test_every_notebook_in_a_stable_order_without_checkpoints(tmp_path: Path) -> None:
    project = make(tmp_path, OUTPUT_DIR="notebooks/outputs")
    assert find_notebooks(project, []) == ["a.ipynb", "b.ipynb", "sub/c.ipynb"]


def test_chosen_notebooks_must_exist_inside_the_folder(tmp_path: Path) -> None:
    project = make(tmp_path)
    assert find_notebooks(project, ["sub/c.ipynb"]) == ["sub/c.ipynb"]
    with pytest.raises(NbdockError, match="does not exist"):
        find_notebooks(project, ["missing.ipynb"])
    (tmp_path / "elsewhere.ipynb").write_text("{}")
    with pytest.raises(NbdockError, match="outside NOTEBOOKS_DIR"):
        find_notebooks(project, [str(tmp_path / "elsewhere.ipynb")])


def test_outputs_may_not_replace_the_notebooks(tmp_path: Path) -> None:
    with pytest.raises(NbdockError, match="never overwrite your notebooks"):
        find_notebooks(make(tmp_path, OUTPUT_DIR="notebooks"), [])


def test_parameters_are_name_value_pairs() -> None:
    assert parse_parameters(["n=3", "label=a=b", "empty="]) == [("n", "3"), ("label", "a=b"), ("empty", "")]
    with pytest.raises(NbdockError, match="not name=value"):
        parse_parameters(["n"])
    with pytest.raises(NbdockError, match="not name=value"):
        parse_parameters(["not a name=1"])


def test_the_failing_cell_is_read_from_the_executed_notebook(tmp_path: Path) -> None:
    executed = tmp_path / "out.ipynb"
    executed.write_text(
        '{"cells": [{"cell_type": "code", "source": ["x = 1\\n", "1/0"], "outputs": ['
        '{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",'
        '"traceback": ["\\u001b[0;31mZeroDivisionError\\u001b[0m: division by zero"]}]}]}'
    )
    failure = failure_in(executed)
    assert failure is not None
    assert failure.source == "x = 1\n1/0"
    assert (failure.name, failure.value) == ("ZeroDivisionError", "division by zero")
    assert failure.traceback == "ZeroDivisionError: division by zero"
    assert failure_in(tmp_path / "missing.ipynb") is None
