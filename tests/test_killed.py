"""A build step killed from outside: named as killed, with the likely cause (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbdock.errors import BuildFailed
from nbdock.image import _build_error
from nbdock.killed import exit_code, killed_step
from nbdock.project import Project
from nbdock.settings import load_settings


def build_error(tmp_path: Path, step: str, error: str) -> str:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "requirements.txt").write_text("numpy\n")
    (tmp_path / "apt.txt").write_text("graphviz\n")
    project = Project(load_settings(tmp_path, environ={}))
    return str(_build_error(project, BuildFailed(step, error, ["Collecting numpy"])))


PIP_STEP = "RUN pip install --no-cache-dir -r requirements.txt"
APT_STEP = "RUN apt-get update && apt-get install -y --no-install-recommends $(cat apt.txt)"


def test_a_pip_step_killed_with_137_is_memory_not_a_package(tmp_path: Path) -> None:
    message = build_error(tmp_path, PIP_STEP, f"The command '/bin/sh -c {PIP_STEP[4:]}' returned a non-zero code: 137")
    assert "killed while installing packages with pip (exit code 137, SIGKILL)" in message
    assert "memory" in message and "OOM killer" in message
    assert "will not install" not in message


def test_an_apt_step_killed_names_apt(tmp_path: Path) -> None:
    message = build_error(tmp_path, APT_STEP, "The command '/bin/sh -c apt-get ...' returned a non-zero code: 137")
    assert "killed while installing system packages with apt (exit code 137, SIGKILL)" in message
    assert "a system package that will not install" not in message


def test_a_step_stopped_with_sigterm_says_it_was_stopped_from_outside(tmp_path: Path) -> None:
    message = build_error(tmp_path, PIP_STEP, "The command '/bin/sh -c pip ...' returned a non-zero code: 143")
    assert "stopped from outside while installing packages with pip (exit code 143, SIGTERM)" in message
    assert "memory" not in message


def test_a_crash_by_signal_is_named_as_a_crash(tmp_path: Path) -> None:
    message = build_error(tmp_path, PIP_STEP, "The command '/bin/sh -c pip ...' returned a non-zero code: 139")
    assert "crashed while installing packages with pip (exit code 139, SIGSEGV)" in message


def test_a_step_that_failed_on_its_own_keeps_its_own_words(tmp_path: Path) -> None:
    message = build_error(tmp_path, PIP_STEP, "The command '/bin/sh -c pip ...' returned a non-zero code: 1")
    assert "a package that will not install" in message and "killed" not in message


@pytest.mark.parametrize(("error", "code"), [
    ("The command '/bin/sh -c x' returned a non-zero code: 137", 137),
    ('process "/bin/sh -c x" did not complete successfully: exit code: 137', 137),
    ("COPY failed: file not found in build context", None),
])
def test_the_exit_code_is_read_from_either_builders_words(error: str, code: int | None) -> None:
    assert exit_code(error) == code


def test_exit_codes_without_a_signal_are_no_kill() -> None:
    assert killed_step("returned a non-zero code: 2", "running x") is None
    assert killed_step("returned a non-zero code: 255", "running x") is None
