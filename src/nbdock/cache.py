"""What nbdock remembers between runs, in the user's cache folder (XDG_CACHE_HOME/nbdock).

One small file per record, in a folder per kind: `builds` (image id -> the digest of what it
was built from, so an unchanged project skips its build), `owners` (image id -> the project
folder that built it), `bases` (base image id -> what a probe found in it), `kernels` and
`tensorflow` (image id -> its Jupyter kernels, whether TensorFlow imports), `dockerfiles` (the
template and its values -> the Dockerfile they render, as JSON), `servers` (a local server's
container and start -> what its runtime file said), `tokens` (a generated token of a Swarm or
Kubernetes server, or of a local server's container, mode 0600) and `forwards` (a running
`kubectl port-forward`). A lost record only costs work done again; a cache that cannot be
written is no error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

KEPT_RECORDS = 200


def folder(kind: str) -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "nbdock" / kind


def _path(kind: str, key: str) -> Path:
    safe = key.removeprefix("sha256:")
    if not safe.isalnum():
        safe = hashlib.sha256(key.encode()).hexdigest()
    return folder(kind) / safe


def read(kind: str, key: str) -> str | None:
    """The record `key` of `kind`, or None."""
    try:
        return _path(kind, key).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None


def write(kind: str, key: str, value: str, private: bool = False) -> None:
    """Remember `value`; `private` records (tokens) are readable by this user only (0600).

    The oldest records beyond KEPT_RECORDS are pruned.
    """
    path = _path(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as record:
            record.write(value)
        records = sorted(path.parent.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in records[KEPT_RECORDS:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


def remembered(kind: str, key: str, find: Callable[[], str]) -> str:
    """The record `key` of `kind`; when there is none, what `find()` answers, remembered. The
    one way to probe an image once for a fact (its kernels, TensorFlow, a base's Python)."""
    known = read(kind, key)
    if known is None:
        known = find()
        write(kind, key, known)
    return known


def forget(kind: str, key: str) -> None:
    with contextlib.suppress(OSError):
        _path(kind, key).unlink(missing_ok=True)
