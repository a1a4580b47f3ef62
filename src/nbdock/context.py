"""The build context: exactly the files the Dockerfile needs, as a reproducible tar archive.

Only Dockerfile, the notebooks folder, requirements.txt, apt.txt and the CA bundle are sent, so
`.env`, `.git`, virtual environments and outputs never reach the engine. Inside the notebooks
folder, the project's `.dockerignore` is honoured and secrets and caches are always left out.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from nbdock.dockerfile import CA_CERT_IN_CONTEXT, DOCKERFILE
from nbdock.settings import ENV_FILE, Settings

DOCKERIGNORE = ".dockerignore"
ALWAYS_LEFT_OUT = {ENV_FILE, ".git", ".ipynb_checkpoints", "__pycache__", ".venv", ".DS_Store"}
DEPENDENCY_FILES = ("requirements.txt", "apt.txt")


def environment_files(settings: Settings) -> dict[str, bytes]:
    """requirements.txt, apt.txt and the CA bundle: what the installed environment depends on."""
    files = {
        name: (settings.project_dir / name).read_bytes()
        for name in DEPENDENCY_FILES
        if (settings.project_dir / name).is_file()
    }
    if settings.ca_cert is not None:
        files[CA_CERT_IN_CONTEXT] = settings.ca_cert.read_bytes()
    return files


def environment_digest(dockerfile_text: str, base_image_id: str, settings: Settings) -> str:
    """Changes exactly when the image's installed environment would: not with the notebooks."""
    hashed = hashlib.sha256(f"{base_image_id}\0{dockerfile_text}".encode())
    for name, data in environment_files(settings).items():
        hashed.update(f"\0{name}\0{len(data)}\0".encode() + data)
    return hashed.hexdigest()


def _left_out(name: str) -> bool:
    return name in ALWAYS_LEFT_OUT or (name.startswith(ENV_FILE + ".") and name != ".env.example")


def _ignore_patterns(project_dir: Path) -> list[str]:
    path = project_dir / DOCKERIGNORE
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def notebook_files(settings: Settings) -> list[tuple[Path, str]]:
    """(file on disk, path in the context) for every file of the notebooks folder that is sent."""
    from docker.utils.build import PatternMatcher

    root = settings.require_notebooks()
    matcher = PatternMatcher(_ignore_patterns(settings.project_dir))
    try:
        prefix = root.relative_to(settings.project_dir).as_posix() + "/"
    except ValueError:  # NOTEBOOKS_DIR outside the project: .dockerignore does not reach it
        prefix = None
    chosen: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(_left_out(part) for part in relative.parts) or not path.is_file():
            continue
        if prefix is not None and matcher.matches(prefix + relative.as_posix()):
            continue
        chosen.append((path, f"notebooks/{relative.as_posix()}"))
    return chosen


def _add(archive: tarfile.TarFile, name: str, data: bytes, executable: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755 if executable else 0o644
    archive.addfile(info, io.BytesIO(data))


def _add_directory(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    archive.addfile(info)


def build_context(settings: Settings, dockerfile_text: str) -> bytes:
    """The tar archive to send; the same files give the same bytes, whatever their mtimes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, DOCKERFILE, dockerfile_text.encode())
        for name, data in environment_files(settings).items():
            _add(archive, name, data)
        _add_directory(archive, "notebooks")
        for path, name in notebook_files(settings):
            _add(archive, name, path.read_bytes(), executable=bool(path.stat().st_mode & 0o111))
        end = archive.offset + 2 * tarfile.BLOCKSIZE
    # The archive ends with two zero blocks; tarfile then pads it to a 10 KiB record, which
    # the engine does not need. Leaving the padding out keeps a small context small.
    return buffer.getvalue()[:end]
