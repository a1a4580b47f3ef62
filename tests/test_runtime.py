"""runtime.txt against BASE_IMAGE: the Python it names decides the base unless the user chose one."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbdock import baseimage, console
from nbdock.errors import NbdockError
from nbdock.settings import DEFAULT_BASE_IMAGE, load_settings


def base_of(folder: Path, runtime: str, where: str = "runtime.txt", **environ: str) -> str:
    (folder / where).parent.mkdir(parents=True, exist_ok=True)
    (folder / where).write_text(runtime)
    return load_settings(folder, environ=environ).base_image


@pytest.mark.parametrize(("runtime", "base"), [
    ("python-3.10\n", "python:3.10-slim"),
    ("python-3.10.4\n", "python:3.10-slim"),
    ("python-3.13", "python:3.13-slim"),
    ("python-3\n", DEFAULT_BASE_IMAGE),
])
def test_without_base_image_the_runtime_names_the_base(tmp_path: Path, runtime: str, base: str) -> None:
    assert base_of(tmp_path, runtime) == base


def test_a_binder_folder_runtime_names_the_base(tmp_path: Path) -> None:
    (tmp_path / "runtime.txt").write_text("python-3.9\n")
    assert base_of(tmp_path, "python-3.10\n", "binder/runtime.txt") == "python:3.10-slim"


def test_a_base_the_user_chose_wins(tmp_path: Path) -> None:
    assert base_of(tmp_path, "python-3.10\n", NBDOCK_BASE_IMAGE="nbdock-base") == "nbdock-base"
    (tmp_path / ".env").write_text("BASE_IMAGE=python:3.11-slim\n")
    assert load_settings(tmp_path, environ={}).base_image == "python:3.11-slim"


def test_no_runtime_keeps_the_default(tmp_path: Path) -> None:
    assert load_settings(tmp_path, environ={}).base_image == DEFAULT_BASE_IMAGE


@pytest.mark.parametrize(("runtime", "phrase"), [
    ("python-2.7\n", "runtime.txt asks for Python 2.7, which nbdock cannot build"),
    ("python-2\n", "runtime.txt asks for Python 2, which nbdock cannot build"),
    ("python-3.x\n", "runtime.txt says 'python-3.x'; nbdock reads only Python runtimes"),
    ("python3.10\n", "runtime.txt says 'python3.10'"),
    ("r-4.1-2022-01-01\n", "runtime.txt says 'r-4.1-2022-01-01'"),
])
def test_what_cannot_work_is_one_line(tmp_path: Path, runtime: str, phrase: str) -> None:
    with pytest.raises(NbdockError) as raised:
        base_of(tmp_path, runtime)
    assert phrase in str(raised.value) and "\n" not in str(raised.value)


def test_a_chosen_base_with_another_python_builds_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr(console, "warn", warned.append)
    facts = baseimage.BaseFacts(python=(3, 11), missing=())
    baseimage.check_base(facts, "jupyter/base", (3, 10), "runtime.txt")
    assert warned == ["runtime.txt asks for Python 3.10, but BASE_IMAGE jupyter/base has Python 3.11; building "
                      "on jupyter/base as you chose (unset BASE_IMAGE to build on python:3.10-slim)"]
    warned.clear()
    baseimage.check_base(facts, "jupyter/base", (3, 11), "runtime.txt")
    baseimage.check_base(facts, "jupyter/base", None, "runtime.txt")
    assert warned == []
