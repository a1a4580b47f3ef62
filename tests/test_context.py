"""The build context: only what the Dockerfile needs, the same bytes for the same files."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from nbdock.context import build_context, environment_digest
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
    sent = names(build_context(settings, "FROM x\n"))
    assert sent == [
        "Dockerfile", "requirements.txt", "notebooks",
        "notebooks/a.ipynb", "notebooks/data.csv", "notebooks/sub/b.ipynb",
    ]


def test_dockerignore_is_honoured_inside_the_notebooks(tmp_path: Path) -> None:
    (project(tmp_path) / ".dockerignore").write_text("# big files\nnotebooks/*.csv\n")
    settings = load_settings(tmp_path, environ={})
    assert "notebooks/data.csv" not in names(build_context(settings, "FROM x\n"))


def test_the_archive_is_reproducible(tmp_path: Path) -> None:
    settings = load_settings(project(tmp_path), environ={})
    first = build_context(settings, "FROM x\n")
    (tmp_path / "notebooks" / "a.ipynb").touch()  # a new mtime alone changes nothing
    assert build_context(settings, "FROM x\n") == first
    assert len(first) % tarfile.BLOCKSIZE == 0 and first.endswith(bytes(2 * tarfile.BLOCKSIZE))
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        member = tar.extractfile("Dockerfile")
        assert member is not None and member.read() == b"FROM x\n"


def test_the_environment_digest_ignores_notebooks_but_not_dependencies(tmp_path: Path) -> None:
    settings = load_settings(project(tmp_path), environ={})
    before = environment_digest("FROM x\n", "sha256:base", settings)
    (tmp_path / "notebooks" / "a.ipynb").write_text('{"edited": true}')
    assert environment_digest("FROM x\n", "sha256:base", settings) == before
    assert environment_digest("FROM y\n", "sha256:base", settings) != before
    assert environment_digest("FROM x\n", "sha256:other", settings) != before
    (tmp_path / "requirements.txt").write_text("tabulate\nsix\n")
    assert environment_digest("FROM x\n", "sha256:base", settings) != before
