"""runtime.txt, Binder's way of naming a project's Python: which version, and which base it means.

Binder reads `python-X.Y` (also `python-X.Y.Z`, and `python-X` for any X.Y); nbdock builds
Python 3 only. Where the user did not choose BASE_IMAGE, the Python runtime.txt names decides it
(`python-3.10` builds on `python:3.10-slim`); a base the user chose wins, with a warning when its
Python differs.
"""

from __future__ import annotations

import re
from pathlib import Path

from nbdock.errors import NbdockError

_PYTHON = re.compile(r"^python-(\d+)(?:\.(\d+)(?:\.\d+)?)?$")
_SUPPORTED_MAJOR = 3


def python_version(path: Path, shown: str) -> tuple[int, int] | None:
    """The (major, minor) Python the runtime.txt at `path` asks for; None for `python-3` (any
    Python 3). `shown` is how messages name the file.

    Raises NbdockError for a runtime that is not Python, is malformed, or is not Python 3.
    """
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    matched = _PYTHON.match(text)
    if matched is None:
        raise NbdockError(
            f"{shown} says {text!r}; nbdock reads only Python runtimes such as python-3.12, python-3.12.4 "
            f"or python-3: fix the line, or delete {shown} and pick the Python with BASE_IMAGE"
        )
    major, minor = int(matched.group(1)), matched.group(2)
    if major != _SUPPORTED_MAJOR:
        asked = f"{major}.{minor}" if minor is not None else str(major)
        raise NbdockError(
            f"{shown} asks for Python {asked}, which nbdock cannot build (its images run Jupyter on Python 3); "
            f"port the notebooks to Python 3 and write python-3.12 (or another 3.X) in {shown}"
        )
    return (major, int(minor)) if minor is not None else None


def base_for(python: tuple[int, int] | None, default: str) -> str:
    """The base image for the Python runtime.txt names: `python:X.Y-slim`, else `default`."""
    return f"python:{python[0]}.{python[1]}-slim" if python else default


def mismatch_warning(wanted: tuple[int, int], have: tuple[int, int], base_image: str, shown: str) -> str:
    """The warning for a chosen BASE_IMAGE whose Python is not the one runtime.txt names."""
    asked, found = ".".join(map(str, wanted)), ".".join(map(str, have))
    return (f"{shown} asks for Python {asked}, but BASE_IMAGE {base_image} has Python {found}; building on "
            f"{base_image} as you chose (unset BASE_IMAGE to build on python:{asked}-slim)")
