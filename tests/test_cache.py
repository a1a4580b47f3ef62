"""What nbdock remembers: build records, tokens; a lost record only costs work done again."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nbdock import cache


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_a_record_is_read_back_by_its_key() -> None:
    assert cache.read("builds", "sha256:abc") is None
    cache.write("builds", "sha256:abc", "digest")
    assert cache.read("builds", "sha256:abc") == "digest"
    assert cache.read("builds", "sha256:other") is None
    cache.forget("builds", "sha256:abc")
    assert cache.read("builds", "sha256:abc") is None


def test_keys_that_are_not_ids_are_hashed_into_a_file_name() -> None:
    cache.write("tokens", "../../etc/passwd", "x")
    assert cache.read("tokens", "../../etc/passwd") == "x"
    assert all(path.parent == cache.folder("tokens") for path in cache.folder("tokens").iterdir())


def test_private_records_are_readable_by_their_owner_only() -> None:
    cache.write("tokens", "project", "secret", private=True)
    (path,) = cache.folder("tokens").iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_old_records_are_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "KEPT_RECORDS", 3)
    for index in range(5):
        cache.write("builds", f"sha256:{index}", "d")
    assert len(list(cache.folder("builds").iterdir())) == 3


def test_an_unwritable_cache_is_no_error(folder: Path) -> None:
    (folder / "nbdock").write_text("a file where the folder should be")
    cache.write("builds", "sha256:abc", "d")
    assert cache.read("builds", "sha256:abc") is None
