"""What a project declares as its environment, read the way Binder (repo2docker) reads it.

A `binder/` (or `.binder/`) folder wins over the top level. requirements.txt, apt.txt, postBuild
and runtime.txt are supported; files of other environment systems (environment.yml, Pipfile,
install.R, ...) are named before any build. Everything requirements.txt refers to (`-r`, `-c`,
`-e`, local paths, wheels, `--find-links` folders) is found here, so that it reaches pip in the
image at the same relative place; pip runs from the project folder, as Binder runs it, so local
paths resolve from there and `-r`/`-c` from the file that names them (pip's own rules).
"""

from __future__ import annotations

import os
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
    "--install-option": "other", "--build-option": "other",
}
# Options of a requirement line that pip takes and uv refuses.
_NOT_FOR_UV = {"--config-settings", "--global-option", "--install-option", "--build-option"}
_FIX_FOR_UV = f"or set INSTALLER=pip in {contract.ENV_FILE} to build with pip"
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
    hashes: bool = False
    pre: bool = False
    trusted_hosts: tuple[str, ...] = ()
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
        self.hashes = False
        self.pre = False
        self.trusted_hosts: list[str] = []
        # Lines uv would read otherwise than pip: (where, what differs and how to fix it).
        self.not_for_uv: list[str] = []
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
                for option in words[index + 1:]:  # what follows applies to this requirement
                    if option.startswith("--"):
                        self._requirement_option(where, option.partition("=")[0])
                return
            kind = _OPTION_WITH_VALUE.get(name)
            if kind is None:  # a flag such as --pre: nothing to follow
                self._flag(where, name)
                index += 1
                continue
            value = attached or (words[index + 1] if index + 1 < len(words) else "")
            index += 1 if attached else 2
            self._requirement_option(where, name)
            if name == "--trusted-host":
                self.trusted_hosts.append(value)
            self._option(path, where, kind, value)

    def _requirement_option(self, where: str, name: str) -> None:
        if name in _NOT_FOR_UV:
            self.not_for_uv.append(f"{where}: uv does not take {name} on a requirement line; "
                                   f"remove it, {_FIX_FOR_UV}")
        self.hashes = self.hashes or name == "--hash"

    def _flag(self, where: str, name: str) -> None:
        if name == "--pre":
            self.pre = True
        elif name == "--prefer-binary":
            self.not_for_uv.append(
                f"{where}: uv has no --prefer-binary (it picks the newest version, wheel or not); "
                f"pin the versions you want instead, {_FIX_FOR_UV}"
            )

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
            if next_to_file.exists():
                self._relative(next_to_file, where, value)
                return
            found = self._relative(self.project_dir / value, where, value)
            beside = PurePosixPath(os.path.relpath(self.project_dir / found, path.parent)).as_posix()
            self.not_for_uv.append(
                f"{where}: --find-links {value} is found from the project folder, as pip finds it, "
                f"but uv looks for it beside the file; write it as {beside}, {_FIX_FOR_UV}"
            )

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


def read_environment(project_dir: Path, installer: str = "pip") -> Environment:
    """The project's environment files, to be installed by `installer` (uv or pip).

    Raises NbdockError, before any build, for a file nbdock cannot use: an environment system
    it does not support (when no requirements.txt stands beside it), a reference outside the
    project, or a missing one; with uv, also for the first requirements line uv would read
    otherwise than pip, naming the file, the line and the fix.
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
    if installer == "uv" and reader.not_for_uv:
        raise NbdockError(reader.not_for_uv[0])
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
        hashes=reader.hashes,
        pre=reader.pre,
        trusted_hosts=tuple(dict.fromkeys(reader.trusted_hosts)),
        sources=tuple(sorted(sources, key=lambda p: p.as_posix())),
        warnings=tuple(warnings),
    )

