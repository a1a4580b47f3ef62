"""tasks.py copied into a folder whose Python has invoke but not nbdock: one line, not a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.helpers.projects import REPO, clean_environment


@pytest.fixture(scope="module")
def python_without_nbdock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only invoke, at the version the tests use."""
    folder = tmp_path_factory.mktemp("fresh") / "venv"
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"invoke=={version('invoke')}"], check=True,
                   timeout=300)
    return python


def run(python: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python.parent / "invoke"), *args], cwd=folder, env=clean_environment(),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO / "tasks.py", tmp_path / "tasks.py")
    return tmp_path


def test_a_task_says_in_one_line_that_nbdock_is_not_installed(python_without_nbdock: Path, copied: Path) -> None:
    assert subprocess.run([str(python_without_nbdock), "-c", "import nbdock"], capture_output=True).returncode != 0
    result = run(python_without_nbdock, copied, "up")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "ModuleNotFoundError" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nbdock: nbdock is not installed in this Python (")
    assert f"{python_without_nbdock.parent}/python" in lines[0] and "-m pip install" in lines[0]


def test_the_task_list_still_works_and_says_why_it_is_short(python_without_nbdock: Path, copied: Path) -> None:
    result = run(python_without_nbdock, copied, "--list")
    assert result.returncode == 0, result.stderr
    assert "nbdock is not installed in this Python" in result.stderr
    assert "install-nbdock" in result.stdout and "Traceback" not in result.stderr


def test_with_nbdock_installed_the_same_file_gives_nbdocks_tasks(copied: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=copied, env=clean_environment(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert " up " in result.stdout and "install-nbdock" not in result.stdout
    assert result.stderr == ""


def test_a_module_missing_inside_nbdock_is_not_mistaken_for_nbdock_missing(tmp_path: Path) -> None:
    (tmp_path / "nbdock").mkdir()
    (tmp_path / "nbdock" / "__init__.py").write_text("")
    (tmp_path / "nbdock" / "tasks.py").write_text("import a_dependency_that_is_not_there\n")
    shutil.copy(REPO / "tasks.py", tmp_path / "tasks.py")
    result = subprocess.run([sys.executable, "-c", "import tasks"], cwd=tmp_path, env=clean_environment(),
                            capture_output=True, text=True, timeout=60)
    assert "No module named 'a_dependency_that_is_not_there'" in result.stderr
