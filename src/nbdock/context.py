"""The build context: exactly the files the Dockerfile needs, streamed as a reproducible tar.

Paths in the context are the paths in the project folder, so the Dockerfile nbdock writes also
builds with `docker build .` (the `.dockerignore` written beside it makes that context the same).
What is sent: the notebooks folder, the environment files and what they refer to, what links in
the notebooks folder point to inside the project, and the CA bundle. What is never sent: `.env`
files, version control, virtual environments (any folder with a `pyvenv.cfg`), OUTPUT_DIR,
caches and checkpoints, nbdock's own files, and whatever `.dockerignore` lists.

The context is planned from file metadata, so an unchanged project is recognised by size and
modification time without reading its files, and it is written to a temporary file, so a large
data file costs disk, not memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from nbdock import console, contract
from nbdock.engine.images import dockerignore_matcher
from nbdock.environment import Environment
from nbdock.errors import NbdockError
from nbdock.settings import Settings

NEVER_SENT_NAMES = frozenset({
    contract.ENV_FILE, ".git", ".hg", ".svn", ".ipynb_checkpoints", "__pycache__", ".DS_Store", ".venv",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".nbdock",
})
# nbdock's own files at the top of the project: never part of the notebooks or the package.
NBDOCK_FILES = frozenset({
    contract.DOCKERFILE, contract.TEMPLATE, contract.DOCKERIGNORE, contract.TASKS_FILE, ".env.example",
})
USER_PATTERNS_MARKER = "# Your own patterns go below this line; nbdock keeps them."
LARGE_CONTEXT = 100 * 2**20


@dataclass(frozen=True)
class Entry:
    """One file, folder or link of the context. `name` is its path in the project (and context)."""

    name: str
    source: Path
    kind: Literal["file", "dir", "link"]
    size: int = 0
    mtime_ns: int = 0
    executable: bool = False
    link: str = ""


@dataclass(frozen=True)
class ContextPlan:
    """What the context holds, planned from the files' metadata; raises nothing once made.

    `linked` are the targets (files or folders, project-relative) of links in the notebooks
    folder that lie outside it: they go into the image, and are mounted into containers, at the
    same relative place. `package` are the project's own top-level entries pip needs.
    """

    settings: Settings
    environment: Environment
    entries: tuple[Entry, ...]
    linked: tuple[PurePosixPath, ...]
    package: tuple[PurePosixPath, ...]
    virtual_environments: tuple[str, ...]
    ignore_patterns: tuple[str, ...]
    ignore_is_generated: bool
    warnings: tuple[str, ...]

    @property
    def size(self) -> int:
        """Bytes of file content the context carries (the CA bundle and Dockerfile aside)."""
        return sum(entry.size for entry in self.entries)

    def largest(self, count: int = 3) -> list[Entry]:
        return sorted(self.entries, key=lambda entry: entry.size, reverse=True)[:count]

    def digest(self, dockerfile_text: str, base_image_id: str) -> str:
        """Changes when anything sent would: names, kinds, sizes, modes, modification times."""
        hashed = hashlib.sha256(f"{base_image_id}\0{dockerfile_text}\0".encode())
        hashed.update(dockerignore_text(self).encode())
        if self.settings.ca_cert is not None:
            hashed.update(_read(self.settings.ca_cert))
        for entry in self.entries:
            hashed.update(
                f"{entry.name}\0{entry.kind}\0{entry.size}\0{entry.mtime_ns}\0{entry.executable}\0"
                f"{entry.link}\0".encode("utf-8", "surrogateescape")
            )
        return hashed.hexdigest()

    def environment_digest(self, dockerfile_text: str, base_image_id: str) -> str:
        """Changes exactly when the installed environment would: not with the notebooks or data."""
        hashed = hashlib.sha256(f"{base_image_id}\0{dockerfile_text}\0".encode())
        if self.settings.ca_cert is not None:
            hashed.update(_read(self.settings.ca_cert))
        roots = [source.as_posix() for source in (*self.environment.files, *self.package)]
        for entry in self.entries:
            if any(entry.name == root or entry.name.startswith(root + "/") for root in roots):
                hashed.update(f"{entry.name}\0{entry.size}\0{entry.mtime_ns}\0{entry.link}\0".encode())
        return hashed.hexdigest()


def _unreadable(path: Path, error: OSError) -> NbdockError:
    reason = error.strerror or str(error)
    if isinstance(error, PermissionError):
        fix = (f"make it readable by you (`sudo chown -R $USER {path}`), or list it in "
               f"{contract.DOCKERIGNORE} to leave it out")
    elif isinstance(error, FileNotFoundError):
        fix = "it vanished while nbdock read the project; run again"
    else:
        fix = f"fix it, or list it in {contract.DOCKERIGNORE} to leave it out"
    return NbdockError(f"cannot read {path} ({reason}); {fix}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise _unreadable(path, error) from None


def is_virtual_environment(folder: Path) -> bool:
    """True for a folder that holds a pyvenv.cfg; a folder nbdock may not look into is not one
    (reading it is what reports it)."""
    try:
        return (folder / "pyvenv.cfg").is_file()
    except OSError:
        return False


def never_sent(path: Path, at_root: bool) -> bool:
    """True for what nbdock never sends, whatever the folder: secrets, caches, environments."""
    name = path.name
    if name in NEVER_SENT_NAMES or (name.startswith(contract.ENV_FILE + ".") and name != ".env.example"):
        return True
    if at_root and name in NBDOCK_FILES:
        return True
    return path.is_dir() and not path.is_symlink() and is_virtual_environment(path)


def read_ignore_file(project_dir: Path) -> tuple[list[str], bool]:
    """The user's .dockerignore patterns, and whether nbdock generated that file.

    From a generated file only the lines below USER_PATTERNS_MARKER are the user's.
    """
    path = project_dir / contract.DOCKERIGNORE
    if not path.is_file():
        return [], False
    text = _read(path).decode("utf-8", errors="replace")
    generated = text.startswith(contract.GENERATED_MARKER)
    if generated:
        text = text.split(USER_PATTERNS_MARKER, 1)[1] if USER_PATTERNS_MARKER in text else ""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")], generated


class _Walker:
    """Collects entries under the project folder, by nbdock's rules and the user's patterns."""

    def __init__(self, settings: Settings, patterns: list[str]) -> None:
        self.settings = settings
        self.root = settings.project_dir
        self.ignored = dockerignore_matcher(patterns)
        self.has_exceptions = any(pattern.startswith("!") for pattern in patterns)
        self.entries: dict[str, Entry] = {}
        self.links: list[Entry] = []
        self.virtual_environments: set[str] = set()

    def name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def check_encoding(self, name: str) -> None:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise NbdockError(
                f"the name {shown!r} in {self.root} is not valid UTF-8, so no build context can "
                f"carry it; rename it, or list it in {contract.DOCKERIGNORE}"
            ) from None

    def never_sent(self, path: Path) -> bool:
        """nbdock's own rules, which no pattern of the user's can override."""
        if never_sent(path, at_root=path.parent == self.root) or path == self.settings.output_path:
            if is_virtual_environment(path) and not path.is_symlink():
                self.virtual_environments.add(path.relative_to(self.root).as_posix())
            return True
        return False

    def left_out(self, path: Path, name: str) -> bool:
        return self.never_sent(path) or self.ignored(name)

    def add(self, path: Path, required: bool = False) -> None:
        """Add `path` (a file, a link or a whole folder) unless the rules leave it out; a
        `required` path (an environment file the Dockerfile copies) is added whatever the
        user's patterns say, though not what they leave out inside it."""
        if path == self.root:
            return
        name = self.name(path)
        if name in self.entries or self.never_sent(path):
            return
        try:
            status = path.lstat()
        except OSError as error:
            raise _unreadable(path, error) from None
        is_folder = path.is_dir() and not path.is_symlink()
        if not required and self.ignored(name):
            # A folder the user's patterns leave out may hold what a `!pattern` brings back.
            if self.has_exceptions and is_folder:
                for child in self.children(path):
                    self.add(child)
            return
        self.check_encoding(name)
        if path.is_symlink():
            entry = Entry(name, path, "link", mtime_ns=status.st_mtime_ns, link=os.readlink(path))
            self.entries[name] = entry
            self.links.append(entry)
        elif is_folder:
            self.entries[name] = Entry(name, path, "dir")
            for child in self.children(path):
                self.add(child)
        elif path.is_file():
            self.entries[name] = Entry(
                name, path, "file", size=status.st_size, mtime_ns=status.st_mtime_ns,
                executable=bool(status.st_mode & 0o111),
            )

    def children(self, folder: Path) -> list[Path]:
        try:
            with os.scandir(folder) as found:
                return sorted((Path(child.path) for child in found), key=lambda p: p.name)
        except OSError as error:
            raise _unreadable(folder, error) from None


def outermost(paths: Iterable[PurePosixPath]) -> tuple[PurePosixPath, ...]:
    """`paths` without those inside another of them, sorted: each is copied once, and a file
    copied again over its own folder's copy would make a layer the engine cannot export."""
    chosen = sorted(set(paths), key=lambda path: path.as_posix())
    return tuple(path for path in chosen if not any(other in path.parents for other in chosen))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _follow_links(walker: _Walker, settings: Settings, warnings: list[str]) -> list[PurePosixPath]:
    """Targets of links in the notebooks folder that lie outside it but inside the project."""
    notebooks = settings.notebooks_path
    root_in_container = contract.project_root_in_container(settings.notebooks_relative)
    linked: list[PurePosixPath] = []
    for entry in list(walker.links):
        if not _inside(entry.source.parent, notebooks):
            continue
        shown = entry.name
        target = entry.source.resolve()
        if os.path.isabs(entry.link):
            warnings.append(
                f"{shown} links to the absolute path {entry.link}, which does not exist in the "
                f"container; make the link relative (`ln -sfr {entry.link} {shown}`)"
            )
        elif not target.exists():
            warnings.append(
                f"{shown} links to {entry.link}, which does not exist; it dangles in the container too"
            )
        elif _inside(target, notebooks):
            continue
        elif not _inside(target, settings.project_dir):
            warnings.append(
                f"{shown} links to {target}, outside the project folder, so it will not resolve in "
                "the container; move what it points to into the project"
            )
        elif root_in_container is None or _inside(notebooks, target):
            warnings.append(
                f"{shown} links to {target}, which cannot be placed in the container at the same "
                "relative place; link to a folder beside the notebooks instead"
            )
        elif walker.left_out(target, walker.name(target)):
            warnings.append(f"{shown} links to {target}, which nbdock never sends (a secret, a cache "
                            "or a virtual environment); it dangles in the container")
        else:
            walker.add(target)
            linked.append(PurePosixPath(walker.name(target)))
    return list(outermost(linked))


def plan_context(settings: Settings, environment: Environment) -> ContextPlan:
    """Plan the context from the project's files. Raises NbdockError naming a file that
    cannot be read (permissions, a vanished file, a name that is not valid UTF-8) and the fix.
    """
    notebooks = settings.require_notebooks()
    patterns, generated = read_ignore_file(settings.project_dir)
    walker = _Walker(settings, patterns)
    warnings = list(environment.warnings)
    if notebooks == settings.project_dir:
        for child in walker.children(notebooks):
            walker.add(child)
    else:
        walker.add(notebooks, required=True)
    linked = _follow_links(walker, settings, warnings)
    for source in environment.files:
        walker.add(settings.project_dir / source, required=True)
    package: list[PurePosixPath] = []
    if environment.needs_project:
        package = _package_entries(settings, linked, walker)
    entries = tuple(sorted(walker.entries.values(), key=lambda entry: entry.name))
    return ContextPlan(
        settings=settings, environment=environment, entries=entries, linked=tuple(linked),
        package=tuple(package), virtual_environments=tuple(sorted(walker.virtual_environments)),
        ignore_patterns=tuple(patterns), ignore_is_generated=generated,
        warnings=tuple(warnings),
    )


def _package_entries(settings: Settings, linked: list[PurePosixPath], walker: _Walker) -> list[PurePosixPath]:
    """The project's top-level entries pip needs to install the project itself: not the
    notebooks, outputs, mounted or linked data, or Binder folders."""
    held_elsewhere = {settings.notebooks_relative.parts[0]} if settings.notebooks_relative.parts else set()
    held_elsewhere |= {PurePosixPath(folder).parts[0] for folder, _ in settings.mounts}
    held_elsewhere |= {path.parts[0] for path in linked}
    held_elsewhere |= set(contract.BINDER_FOLDERS)
    package = []
    for child in walker.children(settings.project_dir):
        name = walker.name(child)
        if name in held_elsewhere or walker.left_out(child, name):
            continue
        walker.add(child)
        package.append(PurePosixPath(name))
    return package


def dockerignore_text(plan: ContextPlan) -> str:
    """The `.dockerignore` that makes `docker build .` send what nbdock sends."""
    settings = plan.settings
    lines = [
        f"{contract.GENERATED_MARKER}: with it, `docker build .` sends what nbdock sends.",
        "# nbdock rewrites the lines above the marker further down; your own patterns stay.",
    ]
    notebooks = settings.notebooks_relative.as_posix()
    if notebooks != ".":
        lines += ["*", f"!{notebooks}"]
        lines += [f"!{path.as_posix()}" for path in (*plan.linked, *plan.environment.files, *plan.package)]
    lines += [f"**/{name}" for name in sorted(NEVER_SENT_NAMES)]
    lines += [f"**/{contract.ENV_FILE}.*", f"!**/{contract.ENV_FILE}.example", *sorted(NBDOCK_FILES)]
    if settings.ca_cert is not None:
        lines.append(f"!{contract.CA_CERT_IN_CONTEXT}")
    output = settings.output_path
    if output != settings.project_dir and settings.project_dir in output.parents:
        lines.append(output.relative_to(settings.project_dir).as_posix())
    lines += [*plan.virtual_environments, USER_PATTERNS_MARKER, *plan.ignore_patterns]
    return "\n".join(lines) + "\n"


def write_dockerignore(plan: ContextPlan) -> Path | None:
    """Write `.dockerignore` (when absent or generated); None when the user wrote their own."""
    path = plan.settings.project_dir / contract.DOCKERIGNORE
    if path.exists() and not plan.ignore_is_generated:
        return None
    text = dockerignore_text(plan)
    if not path.exists() or _read(path).decode("utf-8", "replace") != text:
        path.write_text(text, encoding="utf-8")
    return path


def _tar_info(name: str, kind: Literal["file", "dir", "link"], size: int = 0, executable: bool = False,
              link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif kind == "link":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, link
    else:
        info.size, info.mode = size, 0o755 if executable else 0o644
    return info


def write_archive(plan: ContextPlan, dockerfile_text: str, target: IO[bytes]) -> None:
    """Write the context as a tar to `target`; the same files give the same bytes, whatever
    their modification times. Raises NbdockError when a file cannot be read or changes."""
    extra: list[tuple[str, bytes]] = [
        (contract.DOCKERFILE, dockerfile_text.encode()),
        (contract.DOCKERIGNORE, dockerignore_text(plan).encode()),
    ]
    if plan.settings.ca_cert is not None:
        extra.append((contract.CA_CERT_IN_CONTEXT, _read(plan.settings.ca_cert)))
    with tarfile.open(fileobj=target, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in extra:
            archive.addfile(_tar_info(name, "file", len(data)), io.BytesIO(data))
        for entry in plan.entries:
            info = _tar_info(entry.name, entry.kind, entry.size, entry.executable, entry.link)
            if entry.kind != "file":
                archive.addfile(info)
                continue
            try:
                with entry.source.open("rb") as source:
                    archive.addfile(info, _Exactly(source, entry.size, entry.source))
            except OSError as error:
                raise _unreadable(entry.source, error) from None
        end = archive.offset + 2 * tarfile.BLOCKSIZE
    # The archive ends with two zero blocks; tarfile then pads it to a 10 KiB record, which
    # the engine does not need. Leaving the padding out keeps a small context small.
    target.truncate(end)
    target.seek(0)


class _Exactly(io.RawIOBase):
    """A file read as exactly `size` bytes: a file that changed size while read is an error."""

    def __init__(self, source: IO[bytes], size: int, path: Path) -> None:
        self.source, self.left, self.path = source, size, path

    def read(self, size: int = -1) -> bytes:
        wanted = self.left if size < 0 else min(size, self.left)
        data = self.source.read(wanted)
        self.left -= len(data)
        if len(data) < wanted:
            raise NbdockError(f"{self.path} changed while nbdock read it; run again once it is written")
        return data

    def readable(self) -> bool:
        return True


def describe_size(plan: ContextPlan) -> str | None:
    """A hint when the context is large, naming its largest files; None when it is small."""
    if plan.size < LARGE_CONTEXT:
        return None
    largest = ", ".join(f"{e.name} ({console.size(e.size)})" for e in plan.largest() if e.size >= 2**20)
    return (
        f"the build context is {console.size(plan.size)}, mostly {largest}; list data files in "
        f"{contract.DOCKERIGNORE} and mount their folder with MOUNTS to keep builds small"
    )

