"""What a project declares as its environment, read the way Binder (repo2docker) reads it.

A `binder/` (or `.binder/`) folder wins over the top level. requirements.txt, apt.txt, postBuild
and runtime.txt are supported; files of other environment systems (environment.yml, Pipfile,
install.R, ...) are named before any build. Everything requirements.txt refers to (`-r`, `-c`,
`-e`, local paths, wheels, `--find-links` folders) is found here, so that it reaches pip in the
image at the same relative place; pip runs from the project folder, as Binder runs it, so local
paths resolve from there and `-r`/`-c` from the file that names them (pip's own rules).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from nbdock import contract
from nbdock.errors import NbdockError
from nbdock.runtime import python_version

_OPTION_WITH_VALUE = {
    "-r": "requirement", "--requirement": "requirement",
    "-c": "constraint", "--constraint": "constraint",
    "-e": "editable", "--editable": "editable",
    "-f": "find-links", "--find-links": "find-links",
    "-i": "index", "--index-url": "index", "--extra-index-url": "index",
    "--trusted-host": "index", "--hash": "other", "--no-binary": "other", "--only-binary": "other",
    "--config-settings": "other", "--global-option": "other", "--use-feature": "other",
}
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git\+|hg\+|svn\+|bzr\+)", re.IGNORECASE)


@dataclass(frozen=True)
class Environment:
    """The files a project's environment is built from; paths are relative to the project folder.

    `sources` is every file or folder pip needs, in a stable order (the requirements files
    themselves included). `python` is the (major, minor) runtime.txt asks for, if any.
    `install_project` means the project is itself a Python package that pip installs after the
    requirements (as Binder does without a binder/ folder); `needs_project` that pip needs the
    project folder itself, then `context.py` sends its files (not the notebooks or data).
    """

    folder: PurePosixPath
    requirements: PurePosixPath | None = None
    apt: PurePosixPath | None = None
    post_build: PurePosixPath | None = None
    python: tuple[int, int] | None = None
    install_project: bool = False
    needs_project: bool = False
    editable: bool = False
    sources: tuple[PurePosixPath, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def files(self) -> tuple[PurePosixPath, ...]:
        """Everything the build reads from the environment folder: `sources` and apt.txt."""
        return (*self.sources, *([self.apt] if self.apt else []))


def _relative(project_dir: Path, path: Path, named_in: str, reference: str) -> PurePosixPath:
    """`path` relative to the project folder; raises NbdockError when it is missing or outside."""
    resolved = path.resolve()
    if resolved != project_dir and project_dir not in resolved.parents:
        raise NbdockError(
            f"{named_in} refers to {reference}, which is outside the project folder {project_dir}, "
            "so it cannot reach the image; move it into the project and refer to it from there"
        )
    if not resolved.exists():
        raise NbdockError(
            f"{named_in} refers to {reference}, which does not exist ({resolved}; pip resolves it "
            "from the project folder); fix the path"
        )
    return PurePosixPath(resolved.relative_to(project_dir).as_posix() or ".")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) with comments removed and backslash continuations joined, as pip does."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        line = re.sub(r"(^|\s+)#.*$", "", line)
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        lines.append((start, (pending + line).strip()))
        pending = ""
    if pending:
        lines.append((start, pending.strip()))
    return [(number, line) for number, line in lines if line]


def _local_path(value: str) -> str | None:
    """The local path a requirement names (a folder, a wheel, an sdist), or None for a package name."""
    value = value.split(";", 1)[0].strip()
    if value == ".":
        return value
    if value.lower().startswith("file:"):
        return re.sub(r"^file:(//)?", "", value, flags=re.IGNORECASE) or None
    if _REMOTE.match(value):
        return None
    value = re.sub(r"\[[^\]]*\]$", "", value)  # extras: ./libs/pkg[dev]
    looks_like_path = value.startswith((".", "/", "~")) or "/" in value or value.endswith(
        (".whl", ".tar.gz", ".zip", ".tar.bz2")
    )
    return value if looks_like_path else None


class _RequirementsReader:
    """Follows a requirements file and everything it refers to, recording what pip will need."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir
        self.sources: set[PurePosixPath] = set()
        self.editable = False
        self.refers_to_project = False
        self._read: set[Path] = set()

    def read(self, path: Path) -> None:
        if path.resolve() in self._read:
            return
        self._read.add(path.resolve())
        named_in_file = PurePosixPath(path.resolve().relative_to(self.project_dir).as_posix())
        self.sources.add(named_in_file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise NbdockError(f"cannot read {path} ({error}); make it a readable text file") from None
        for number, line in _logical_lines(text):
            self._line(path, f"{named_in_file} line {number}", line)

    def _line(self, path: Path, where: str, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        index = 0
        while index < len(words):
            word = words[index]
            if word.startswith("--"):
                name, _, attached = word.partition("=")
            elif word.startswith("-"):
                name, attached = word[:2], word[2:]
            else:
                requirement = word
                if index + 2 < len(words) and words[index + 1] == "@":  # name @ url
                    requirement = words[index + 2]
                self._requirement(where, requirement)
                return
            kind = _OPTION_WITH_VALUE.get(name)
            if kind is None:  # a flag such as --pre: nothing to follow
                index += 1
                continue
            value = attached or (words[index + 1] if index + 1 < len(words) else "")
            index += 1 if attached else 2
            self._option(path, where, kind, value)

    def _option(self, path: Path, where: str, kind: str, value: str) -> None:
        if kind in {"requirement", "constraint"}:
            if _REMOTE.match(value):
                return
            target = path.parent / value
            self._relative(target, where, value)
            self.read(target)
        elif kind == "editable":
            self.editable = self.editable or _local_path(value) is not None
            self._requirement(where, value)
        elif kind == "find-links" and not _REMOTE.match(value):
            next_to_file = path.parent / value
            self._relative(next_to_file if next_to_file.exists() else self.project_dir / value, where, value)

    def _requirement(self, where: str, requirement: str) -> None:
        local = _local_path(requirement)
        if local is None:
            return
        relative = self._relative(self.project_dir / Path(local).expanduser(), where, local)
        if relative == PurePosixPath("."):
            self.refers_to_project = True

    def _relative(self, path: Path, where: str, reference: str) -> PurePosixPath:
        relative = _relative(self.project_dir, path, where, reference)
        if relative != PurePosixPath("."):
            self.sources.add(relative)
        return relative


def is_python_package(folder: Path) -> bool:
    """True when `folder` is itself an installable Python project (pyproject.toml or setup.py)."""
    pyproject = folder / "pyproject.toml"
    if (folder / "setup.py").is_file():
        return True
    if not pyproject.is_file():
        return False
    text = pyproject.read_text(encoding="utf-8", errors="replace")
    return bool(re.search(r"^\[(project|build-system)\]", text, re.MULTILINE))


def environment_folder(project_dir: Path) -> Path:
    """binder/ or .binder/ when the project has one (Binder's rule: it wins), else the project."""
    found = [project_dir / name for name in contract.BINDER_FOLDERS if (project_dir / name).is_dir()]
    if len(found) > 1:
        raise NbdockError(
            f"{project_dir} has both binder/ and .binder/; Binder refuses that too, so keep one"
        )
    return found[0] if found else project_dir


def read_environment(project_dir: Path) -> Environment:
    """The project's environment files. Raises NbdockError, before any build, for a file
    nbdock cannot use: an environment system it does not support (when no requirements.txt
    stands beside it), a reference outside the project, or a missing one.
    """
    folder = environment_folder(project_dir)
    relative_folder = PurePosixPath(folder.relative_to(project_dir).as_posix() or ".")

    def present(name: str) -> PurePosixPath | None:
        return relative_folder / name if (folder / name).is_file() else None

    requirements = present(contract.REQUIREMENTS)
    warnings: list[str] = []
    for name, what in contract.UNSUPPORTED_ENVIRONMENT_FILES.items():
        if name == contract.DOCKERFILE and folder == project_dir:
            continue  # the project's top-level Dockerfile is nbdock's own (or the user's: see dockerfile.py)
        if (folder / name).is_file():
            shown = (relative_folder / name).as_posix()
            if requirements is None:
                raise NbdockError(
                    f"{shown} declares {what}, which nbdock cannot build (its images install "
                    f"Python packages with pip); list the packages in "
                    f"{(relative_folder / contract.REQUIREMENTS).as_posix()} instead"
                )
            warnings.append(f"{shown} declares {what}, which nbdock ignores; it installs {requirements}")

    reader = _RequirementsReader(project_dir)
    if requirements is not None:
        reader.read(project_dir / requirements)
    post_build = present(contract.POST_BUILD)
    python = None
    runtime = present(contract.RUNTIME)
    if runtime is not None:
        python = python_version(project_dir / runtime, runtime.as_posix())
    install_project = (
        folder == project_dir and is_python_package(project_dir) and not reader.refers_to_project
    )
    sources = set(reader.sources)
    if post_build is not None:
        sources.add(post_build)
    return Environment(
        folder=relative_folder,
        requirements=requirements,
        apt=present(contract.APT),
        post_build=post_build,
        python=python,
        install_project=install_project,
        needs_project=install_project or reader.refers_to_project,
        editable=reader.editable,
        sources=tuple(sorted(sources, key=lambda p: p.as_posix())),
        warnings=tuple(warnings),
    )

