"""Build records: an unchanged project skips its build; a lost record only costs a build."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbdock import buildcache


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_a_record_is_read_back_by_image_id() -> None:
    digest = buildcache.context_digest(b"archive", "sha256:base")
    assert buildcache.recorded("sha256:abc") is None
    buildcache.record("sha256:abc", digest)
    assert buildcache.recorded("sha256:abc") == digest
    assert buildcache.recorded("sha256:other") is None


def test_the_digest_follows_the_files_and_the_base() -> None:
    digest = buildcache.context_digest(b"archive", "sha256:base")
    assert buildcache.context_digest(b"archive", "sha256:base") == digest
    assert buildcache.context_digest(b"archive2", "sha256:base") != digest
    assert buildcache.context_digest(b"archive", "sha256:newer") != digest


def test_old_records_are_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buildcache, "KEPT_RECORDS", 3)
    for index in range(5):
        buildcache.record(f"sha256:{index}", "d")
    assert len(list(buildcache.folder().iterdir())) == 3


def test_an_unwritable_cache_is_no_error(cache: Path) -> None:
    (cache / "nbdock").write_text("a file where the folder should be")
    buildcache.record("sha256:abc", "d")
    assert buildcache.recorded("sha256:abc") is None
