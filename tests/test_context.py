"""The build context: only what the Dockerfile needs, the same bytes for the same files."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from nbdock.context import build_context
from nbdock.settings import load_settings


def project(tmp_path: Path) -> Path:
    notebooks = tmp_path / "notebooks"
    (notebooks / "sub").mkdir(parents=True)
    (notebooks / "a.ipynb").write_text("{}")
    (notebooks / "sub" / "b.ipynb").write_text("{}")
    (notebooks / "data.csv").write_text("x\n1\n")
    (tmp_path / "requirements.txt").write_text("tabulate\n")
    for leftover in (".git/config", ".venv/bin/python", "outputs/a.ipynb", ".env"):
        (tmp_path / leftover).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / leftover).write_text("secret")
    for leftover in (".env", ".env.local", ".ipynb_checkpoints/a-checkpoint.ipynb",
                     "__pycache__/x.pyc", ".git/HEAD"):
        (notebooks / leftover).parent.mkdir(parents=True, exist_ok=True)
        (notebooks / leftover).write_text("secret")
    return tmp_path


def names(archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return tar.getnames()


def test_only_the_needed_files_are_sent(tmp_path: Path) -> None:
    settings = load_settings(project(tmp_path), environ={})
    sent = names(build_context(settings, "FROM x\n").archive({"k": "v"}))
    assert sent == [
        "Dockerfile", "requirements.txt", "notebooks",
        "notebooks/a.ipynb", "notebooks/data.csv", "notebooks/sub/b.ipynb",
    ]


def test_dockerignore_is_honoured_inside_the_notebooks(tmp_path: Path) -> None:
    (project(tmp_path) / ".dockerignore").write_text("# big files\nnotebooks/*.csv\n")
    settings = load_settings(tmp_path, environ={})
    assert "notebooks/data.csv" not in build_context(settings, "FROM x\n").files


def test_labels_are_one_last_dockerfile_step(tmp_path: Path) -> None:
    settings = load_settings(project(tmp_path), environ={})
    archive = build_context(settings, "FROM x\n").archive({"b": "2", "a": "1"})
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("Dockerfile")
        assert member is not None
        assert member.read().decode() == 'FROM x\nLABEL a="1" b="2"\n'


def test_the_archive_and_digests_are_reproducible(tmp_path: Path) -> None:
    settings = load_settings(project(tmp_path), environ={})
    first = build_context(settings, "FROM x\n")
    (tmp_path / "notebooks" / "a.ipynb").touch()  # a new mtime alone changes nothing
    second = build_context(settings, "FROM x\n")
    assert first.archive({"k": "v"}) == second.archive({"k": "v"})
    assert first.digest == second.digest


def test_a_notebook_edit_changes_the_digest_but_not_the_environment(tmp_path: Path) -> None:
    settings = load_settings(project(tmp_path), environ={})
    before = build_context(settings, "FROM x\n")
    (tmp_path / "notebooks" / "a.ipynb").write_text('{"edited": true}')
    edited = build_context(settings, "FROM x\n")
    assert edited.digest != before.digest
    assert edited.environment_digest == before.environment_digest
    (tmp_path / "requirements.txt").write_text("tabulate\nsix\n")
    assert build_context(settings, "FROM x\n").environment_digest != before.environment_digest
