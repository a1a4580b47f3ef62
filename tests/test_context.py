"""The build context: only what the Dockerfile needs, the same bytes for the same files, streamed."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from nbdock.context import ContextPlan, dockerignore_text, plan_context, write_archive
from nbdock.environment import read_environment
from nbdock.errors import NbdockError
from nbdock.settings import load_settings


def project(tmp_path: Path, **env: str) -> Path:
    notebooks = tmp_path / "notebooks"
    (notebooks / "sub").mkdir(parents=True)
    (notebooks / "a.ipynb").write_text("{}")
    (notebooks / "sub" / "b.ipynb").write_text("{}")
    (notebooks / "data.csv").write_text("x\n1\n")
    (tmp_path / "requirements.txt").write_text("tabulate\n")
    for leftover in (".git/config", ".venv/bin/python", "outputs/a.ipynb", ".env", "tasks.py"):
        (tmp_path / leftover).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / leftover).write_text("secret")
    for leftover in (".env", ".env.local", ".ipynb_checkpoints/a-checkpoint.ipynb",
                     "__pycache__/x.pyc", ".git/HEAD"):
        (notebooks / leftover).parent.mkdir(parents=True, exist_ok=True)
        (notebooks / leftover).write_text("secret")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return tmp_path


def plan(folder: Path) -> ContextPlan:
    settings = load_settings(folder, environ={})
    return plan_context(settings, read_environment(settings.project_dir))


def archive(context: ContextPlan, dockerfile: str = "FROM x\n") -> bytes:
    with tempfile.TemporaryFile() as target:
        write_archive(context, dockerfile, target)
        return target.read()


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def docker_cli_sends(folder: Path) -> set[str]:
    """What `docker build .` sends with the .dockerignore nbdock writes (docker-py's emulation)."""
    from docker.utils.build import exclude_paths

    patterns = [line for line in dockerignore_text(plan(folder)).splitlines() if line and line[0] != "#"]
    sent = exclude_paths(str(folder), patterns)
    files = {path for path in sent if (folder / path).is_file() or (folder / path).is_symlink()}
    return files - {"Dockerfile", ".dockerignore"}


def files_in(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name for m in tar.getmembers() if not m.isdir()} - {"Dockerfile", ".dockerignore"}


def test_only_the_needed_files_are_sent(tmp_path: Path) -> None:
    sent = names(archive(plan(project(tmp_path))))
    assert sent == [
        "Dockerfile", ".dockerignore", "notebooks", "notebooks/a.ipynb", "notebooks/data.csv",
        "notebooks/sub", "notebooks/sub/b.ipynb", "requirements.txt",
    ]


def test_dockerignore_is_honoured(tmp_path: Path) -> None:
    (project(tmp_path) / ".dockerignore").write_text("# big files\nnotebooks/*.csv\n")
    assert "notebooks/data.csv" not in names(archive(plan(tmp_path)))


def test_the_archive_is_reproducible_and_unpadded(tmp_path: Path) -> None:
    first = archive(plan(project(tmp_path)))
    os.utime(tmp_path / "notebooks" / "a.ipynb", (1, 1))  # a new mtime alone changes no byte
    assert archive(plan(tmp_path)) == first
    assert len(first) % tarfile.BLOCKSIZE == 0 and first.endswith(bytes(2 * tarfile.BLOCKSIZE))
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        member = tar.extractfile("Dockerfile")
        assert member is not None and member.read() == b"FROM x\n"


def test_an_unchanged_project_is_known_by_metadata_alone(tmp_path: Path) -> None:
    before = plan(project(tmp_path)).digest("FROM x\n", "sha256:base")
    assert plan(tmp_path).digest("FROM x\n", "sha256:base") == before
    os.utime(tmp_path / "notebooks" / "a.ipynb", (1, 1))
    assert plan(tmp_path).digest("FROM x\n", "sha256:base") != before
    again = plan(tmp_path)
    assert again.digest("FROM x\n", "sha256:other") != again.digest("FROM x\n", "sha256:base")


def test_the_environment_digest_ignores_notebooks_but_not_dependencies(tmp_path: Path) -> None:
    before = plan(project(tmp_path)).environment_digest("FROM x\n", "sha256:base")
    (tmp_path / "notebooks" / "a.ipynb").write_text('{"edited": true}')
    assert plan(tmp_path).environment_digest("FROM x\n", "sha256:base") == before
    assert plan(tmp_path).environment_digest("FROM y\n", "sha256:base") != before
    (tmp_path / "requirements.txt").write_text("tabulate\nsix\n")
    assert plan(tmp_path).environment_digest("FROM x\n", "sha256:base") != before


def test_notebooks_at_the_root_send_no_environment_outputs_or_nbdock_files(tmp_path: Path) -> None:
    project(tmp_path, NOTEBOOKS_DIR=".", OUTPUT_DIR="results")
    (tmp_path / "venv" / "lib").mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "venv" / "lib" / "big.so").write_bytes(b"\0" * 4096)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.ipynb").write_text("{}")
    for own in ("Dockerfile", "Dockerfile.template", ".env.example", "tasks.py"):
        (tmp_path / own).write_text("# mine\n")
    (tmp_path / "analysis.ipynb").write_text("{}")
    sent = files_in(archive(plan(tmp_path)))
    assert "analysis.ipynb" in sent and "notebooks/a.ipynb" in sent and "requirements.txt" in sent
    for never in ("venv/pyvenv.cfg", "venv/lib/big.so", "results/old.ipynb", "Dockerfile.template",
                  ".env.example", "tasks.py", ".venv/bin/python"):
        assert never not in sent
    assert docker_cli_sends(tmp_path) == sent


@pytest.mark.parametrize("notebooks_dir", ["notebooks", "."])
def test_docker_build_dot_sends_what_nbdock_sends(tmp_path: Path, notebooks_dir: str) -> None:
    project(tmp_path, NOTEBOOKS_DIR=notebooks_dir)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "table.csv").write_text("1\n")
    (tmp_path / "notebooks" / "data").symlink_to("../data")
    (tmp_path / "notebooks" / "inner-venv").mkdir()
    (tmp_path / "notebooks" / "inner-venv" / "pyvenv.cfg").write_text("")
    (tmp_path / ".dockerignore").write_text("notebooks/*.csv\n")
    context = plan(tmp_path)
    (tmp_path / ".dockerignore").write_text(dockerignore_text(context))
    assert docker_cli_sends(tmp_path) == files_in(archive(plan(tmp_path)))
    assert "notebooks/data.csv" not in files_in(archive(plan(tmp_path)))


def test_links_to_data_beside_the_notebooks_are_followed(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "table.csv").write_text("1\n")
    (tmp_path / "data" / "lookup.csv").write_text("2\n")
    (tmp_path / "notebooks" / "data").symlink_to("../data")
    (tmp_path / "notebooks" / "lookup.csv").symlink_to("../data/lookup.csv")
    context = plan(tmp_path)
    assert [p.as_posix() for p in context.linked] == ["data"]  # the file lies in the folder
    with tarfile.open(fileobj=io.BytesIO(archive(context))) as tar:
        assert tar.getmember("notebooks/data").linkname == "../data"
        assert tar.getmember("notebooks/lookup.csv").issym()
        assert tar.getmember("data/table.csv").isfile()
    assert context.warnings == ()


def test_links_that_cannot_resolve_in_the_container_are_named(tmp_path: Path) -> None:
    project(tmp_path / "project")
    notebooks = tmp_path / "project" / "notebooks"
    (tmp_path / "elsewhere").mkdir()
    (notebooks / "outside").symlink_to("../../elsewhere")
    (notebooks / "gone.csv").symlink_to("../missing.csv")
    (notebooks / "absolute").symlink_to(tmp_path / "project" / "requirements.txt")
    (notebooks / "secret").symlink_to("../.env")
    warnings = "\n".join(plan(tmp_path / "project").warnings)
    assert "notebooks/outside links to" in warnings and "outside the project folder" in warnings
    assert "notebooks/gone.csv links to ../missing.csv, which does not exist" in warnings
    assert "notebooks/absolute links to the absolute path" in warnings and "ln -sfr" in warnings
    assert "notebooks/secret links to" in warnings and "never sends" in warnings


def test_an_unreadable_file_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path)
    locked = tmp_path / "notebooks" / "cache" / "model.pkl"
    locked.parent.mkdir()
    locked.write_bytes(b"x")
    real_open = Path.open

    def refuse(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path == locked:  # as a root-owned 0600 file is to its user
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(NbdockError, match=r"cannot read .*model\.pkl \(Permission denied\); .*chown.*ignore"):
        archive(plan(tmp_path))


def test_a_folder_that_cannot_be_listed_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path)
    real_scandir = os.scandir

    def refuse(path: object) -> object:
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(NbdockError, match=r"cannot read .*notebooks/sub \(Permission denied\)"):
        plan(tmp_path)


def test_a_name_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    project(tmp_path)
    try:
        (tmp_path / "notebooks" / os.fsdecode(b"caf\xe9.csv")).write_text("1")
    except OSError:
        pytest.skip("this file system refuses such names")
    with pytest.raises(NbdockError, match=r"is not valid UTF-8.*rename it, or list it in \.dockerignore"):
        plan(tmp_path)
    (tmp_path / ".dockerignore").write_text("notebooks/caf*\n")
    assert "notebooks/a.ipynb" in files_in(archive(plan(tmp_path)))


def test_a_large_file_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    project(tmp_path)
    big = tmp_path / "notebooks" / "big.bin"
    with big.open("wb") as data:
        data.truncate(200 * 2**20)
    context = plan(tmp_path)
    tracemalloc.start()
    with tempfile.TemporaryFile() as target:
        write_archive(context, "FROM x\n", target)
        size = target.seek(0, io.SEEK_END)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert size > 200 * 2**20
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_a_pattern_never_leaves_out_an_environment_file(tmp_path: Path) -> None:
    (project(tmp_path) / ".dockerignore").write_text("*\n")  # the user's own, not nbdock's
    sent = names(archive(plan(tmp_path)))
    assert "requirements.txt" in sent and "notebooks" in sent and "notebooks/a.ipynb" not in sent
