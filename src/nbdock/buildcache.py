"""Which build context each image was built from, so an unchanged project skips the build.

A record maps an image id (content-addressed by the engine, so it never means another image)
to the digest of the context and base image it was built from. Records live in the user's
cache folder, one small file each; a missing or stale record only costs a cached build.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

KEPT_RECORDS = 200


def folder() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "nbdock" / "builds"


def context_digest(archive: bytes, base_image_id: str) -> str:
    return hashlib.sha256(base_image_id.encode() + b"\0" + archive).hexdigest()


def _record_path(image_id: str) -> Path:
    return folder() / image_id.removeprefix("sha256:")


def recorded(image_id: str) -> str | None:
    try:
        return _record_path(image_id).read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None


def record(image_id: str, digest: str) -> None:
    """Remember `digest` for `image_id`; a cache that cannot be written is no error."""
    try:
        folder().mkdir(parents=True, exist_ok=True)
        _record_path(image_id).write_text(digest, encoding="ascii")
        records = sorted(folder().iterdir(), key=lambda path: path.stat().st_mtime, reverse=True)
        for stale in records[KEPT_RECORDS:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass
