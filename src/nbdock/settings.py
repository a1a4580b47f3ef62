"""Settings: `.env` in the project folder, then `NBDOCK_*` environment variables, then task flags.

`.env` is parsed with python-dotenv's parser and nothing is written into `os.environ`. Only
variables named `NBDOCK_<KEY>` override the file, so an unrelated `HOST_PORT` some other tool
exports never leaks in. A value in `.env` may refer to variables as `${NAME}` or
`${NAME:-default}`, resolved the way python-dotenv documents it (an earlier line of `.env`
first, then the process environment, then the default); a value in single quotes is taken
literally, as docker compose and the shells do.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from nbdock import contract, runtime
from nbdock.environment import environment_folder
from nbdock.errors import NbdockError
from nbdock.settings_declared import (
    DEFAULT_BASE_IMAGE,
    DEFAULT_EXECUTE_PACKAGES,
    DEFAULT_JUPYTER_PACKAGES,
    IMAGE_REFERENCE,
    SETTINGS,
    Parser,
    Setting,
)
from nbdock.workload import Resources

ENV_PREFIX = "NBDOCK_"

RETIRED = {
    "EXECUTE": "`invoke execute` now builds what it needs on demand; remove the line",
}


@dataclass(frozen=True)
class Settings:
    """Everything nbdock needs to know about one project, validated.

    Sizes are bytes, times seconds; `mounts` are project-relative folders, each with True when
    it is mounted writable.
    """

    project_dir: Path
    project_name: str
    image_name: str
    container_name: str
    base_image: str
    notebooks_dir: str
    host_ip: str
    host_port: int
    container_port: int
    jupyter_token: str
    jupyter_packages: str
    installer: str
    ca_cert: Path | None
    base_mirror: str
    ready_timeout: float
    run_as: str
    execute_packages: str
    output_dir: str
    execute_timeout: float
    kernel: str
    mounts: tuple[tuple[str, bool], ...]
    shm_size: int
    memory: int | None
    cpus: float | None
    gpus: str
    registry: str
    k8s_context: str
    k8s_namespace: str
    train_workers: int
    train_port: int
    train_timeout: float
    train_backend: str
    restart: str
    swarm_host: str = ""
    swarm_volume_driver: str = ""
    swarm_volume_options: tuple[tuple[str, str], ...] = ()
    train_workers_per_node: int = 1
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def env_file(self) -> Path:
        return self.project_dir / contract.ENV_FILE

    @property
    def notebooks_path(self) -> Path:
        return (self.project_dir / self.notebooks_dir).resolve()

    @property
    def notebooks_relative(self) -> PurePosixPath:
        """NOTEBOOKS_DIR relative to the project folder (it is always inside it)."""
        return PurePosixPath(self.notebooks_path.relative_to(self.project_dir).as_posix())

    @property
    def output_path(self) -> Path:
        return (self.project_dir / self.output_dir).resolve()

    @property
    def checkout_id(self) -> str:
        """A digest of the project folder: what tells two checkouts of one project apart."""
        return hashlib.sha256(str(self.project_dir).encode()).hexdigest()[:12]

    @property
    def image_labels(self) -> dict[str, str]:
        """The labels the Dockerfile gives the image: the same in every checkout of the project."""
        return {contract.LABEL_PROJECT: self.project_name}

    @property
    def labels(self) -> dict[str, str]:
        """What marks this checkout's containers, services, networks, volumes and secrets: nbdock
        only ever touches objects that carry all of these."""
        return {**self.image_labels, contract.LABEL_CHECKOUT: self.checkout_id}

    @property
    def object_labels(self) -> dict[str, str]:
        """`labels`, and the project folder itself, so that another checkout can name it."""
        return {**self.labels, contract.LABEL_FOLDER: str(self.project_dir)}

    @property
    def resources(self) -> Resources:
        return Resources(cpus=self.cpus, memory=self.memory, shm_size=self.shm_size, gpus=self.gpus)

    @property
    def execute_image_name(self) -> str:
        """The image headless and training runs use: IMAGE_NAME's repository, tag `<tag>-execute`."""
        repository, tag = split_reference(self.image_name)
        return f"{repository}:{'execute' if tag == 'latest' else tag + '-execute'}"

    def require_notebooks(self) -> Path:
        """The notebooks folder. Raises NbdockError when it does not exist."""
        path = self.notebooks_path
        if not path.is_dir():
            raise NbdockError(
                f"the notebooks folder {path} does not exist; create it or set NOTEBOOKS_DIR "
                f"in {self.env_file} to the folder that holds your notebooks"
            )
        return path


def split_reference(reference: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; the tag defaults to `latest`."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
        return repository, tag
    return name, digest if digest else "latest"


@dataclass(frozen=True)
class Flag:
    """A task flag that feeds a setting: the flag as the user typed it, and its value (None: not given)."""

    name: str
    value: object | None


_FIELDS: dict[str, tuple[str, Parser, str | None]] = {d.key: (d.attribute, d.parse, d.default) for d in SETTINGS}

KNOWN_KEYS = tuple(_FIELDS)
__all__ = ["DEFAULT_BASE_IMAGE", "DEFAULT_EXECUTE_PACKAGES", "DEFAULT_JUPYTER_PACKAGES", "ENV_PREFIX",
           "IMAGE_REFERENCE", "KNOWN_KEYS", "RETIRED", "SETTINGS", "Flag", "Setting", "Settings", "default_for",
           "default_project_name", "load_settings", "project_folder", "read_env_file", "split_reference"]


def default_for(key: str) -> str | None:
    """The default text of setting `key` (None: derived from other settings)."""
    return _FIELDS[key][2]


def project_folder(start: Path) -> Path:
    """The project nbdock works on from `start`: the nearest folder, from `start` up, whose
    tasks.py uses nbdock (where invoke found the tasks), else `start` itself."""
    for folder in (start, *start.parents):
        tasks = folder / contract.TASKS_FILE
        try:
            if tasks.is_file() and "nbdock" in tasks.read_text(encoding="utf-8", errors="replace"):
                return folder
        except OSError:
            continue
    return start


def default_project_name(project_dir: Path) -> str:
    slug = re.sub(r"[^a-z0-9_.-]+", "-", project_dir.resolve().name.lower()).strip("-._")
    return slug or "notebooks"


def _unknown_key_warning(key: str, where: str) -> str:
    if key in RETIRED:
        return f"{key} in {where} is no longer read: {RETIRED[key]}"
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; known settings: {', '.join(KNOWN_KEYS)}"
    return f"unknown setting {key} in {where}{hint}"


def read_env_file(path: Path, environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The KEY=value pairs of a `.env` file, with `${NAME}` resolved; and warnings.

    A line python-dotenv cannot parse, or a reference to a variable that is not set, is a
    warning naming the file and line. A byte-order mark (Windows Notepad) is no part of a key.
    Raises NbdockError when the file cannot be read.
    """
    from dotenv.parser import parse_stream
    from dotenv.variables import Variable, parse_variables

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise NbdockError(f"cannot read {path} ({error}); make it a readable UTF-8 text file") from None
    values: dict[str, str] = {}
    warnings: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            shown = binding.original.string.strip().splitlines()[0] if binding.original.string.strip() else ""
            warnings.append(f"{path}:{line}: cannot read `{shown}`; write it as KEY=value")
            continue
        if binding.key is None:
            continue
        if binding.key in values:
            warnings.append(f"{path}:{line}: {binding.key} is set again; this later value wins")
        raw = binding.value or ""
        literal = binding.original.string.split("=", 1)[-1].lstrip().startswith("'")
        if literal:
            values[binding.key] = raw
            continue
        resolved = []
        for atom in parse_variables(raw):
            if isinstance(atom, Variable) and atom.default is None and atom.name not in {**environ, **values}:
                warnings.append(f"{path}:{line}: {binding.key} refers to ${{{atom.name}}}, which is not set")
            resolved.append(atom.resolve({**environ, **values}))
        values[binding.key] = "".join(resolved)
    return values, warnings


def load_settings(
    project_dir: Path,
    flags: Mapping[str, Flag] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read and validate the project's settings.

    `flags` maps a KEY to the task flag that feeds it; a flag given on the command line wins
    over `NBDOCK_*` variables in `environ`, which win over the project's `.env` file. Raises
    NbdockError naming the key, where its value came from (the file, the variable or the flag
    as typed) and the reason, when a value is invalid.
    """
    project_dir = project_dir.resolve()
    environ = os.environ if environ is None else environ
    env_file = project_dir / contract.ENV_FILE
    warnings: list[str] = []
    raw: dict[str, tuple[str, str]] = {}  # KEY -> (value, where it came from)

    if env_file.is_file():
        values, file_warnings = read_env_file(env_file, environ)
        warnings += file_warnings
        for key, value in values.items():
            if key not in _FIELDS:
                warnings.append(_unknown_key_warning(key, str(env_file)))
            else:
                raw[key] = (value, str(env_file))
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):]
        if key not in _FIELDS:
            warnings.append(_unknown_key_warning(key, f"the environment variable {name}"))
        else:
            raw[key] = (value, f"the environment variable {name}")
    for key, flag in (flags or {}).items():
        if flag.value is not None:
            raw[key] = (str(flag.value), f"the {flag.name} flag")

    values_by_field: dict[str, object] = {}
    for key, (attribute, parse, default) in _FIELDS.items():
        if key in raw and raw[key][0].strip() != "":
            text, where = raw[key]
        elif default is not None:
            text, where = default, "the defaults"
        else:
            continue
        try:
            values_by_field[attribute] = parse(text.strip())
        except ValueError as reason:
            raise NbdockError(
                f"{key} in {where} is invalid: {reason}; fix it (see .env.example for every setting)"
            ) from None

    if not raw.get("BASE_IMAGE", ("", ""))[0].strip():
        values_by_field["base_image"] = runtime_base(project_dir)
    project_name = str(values_by_field.get("project_name") or default_project_name(project_dir))
    values_by_field["project_name"] = project_name
    values_by_field.setdefault("image_name", f"nbdock-{project_name}:latest")
    values_by_field.setdefault("container_name", f"nbdock-{project_name}")
    if not values_by_field["ca_cert"] and environ.get("PIP_CERT"):
        # The bundle the host's own pip trusts is the one builds need behind the same proxy.
        raw["CA_CERT"] = (environ["PIP_CERT"], "the PIP_CERT environment variable")
        values_by_field["ca_cert"] = environ["PIP_CERT"]
    values_by_field["ca_cert"] = _resolve_ca_cert(str(values_by_field["ca_cert"]), project_dir, raw)
    settings = Settings(project_dir=project_dir, warnings=tuple(warnings), **values_by_field)  # type: ignore[arg-type]
    _check_folders(settings, raw)
    return settings


def runtime_base(project_dir: Path) -> str:
    """The base image when BASE_IMAGE is not set: the Python the project's runtime.txt names
    (`python-3.10`: python:3.10-slim), else DEFAULT_BASE_IMAGE. Raises NbdockError for a
    runtime.txt nbdock cannot build."""
    folder = environment_folder(project_dir)
    path = folder / contract.RUNTIME
    if not path.is_file():
        return DEFAULT_BASE_IMAGE
    shown = path.relative_to(project_dir).as_posix()
    return runtime.base_for(runtime.python_version(path, shown), DEFAULT_BASE_IMAGE)


def _check_folders(settings: Settings, raw: Mapping[str, tuple[str, str]]) -> None:
    """NOTEBOOKS_DIR and MOUNTS must stay inside the project folder, also through links."""
    paths = [("NOTEBOOKS_DIR", settings.notebooks_path)]
    paths += [("MOUNTS", (settings.project_dir / folder).resolve()) for folder, _ in settings.mounts]
    for key, path in paths:
        if path != settings.project_dir and settings.project_dir not in path.parents:
            where = raw.get(key, ("", "the defaults"))[1]
            raise NbdockError(
                f"{key} in {where} is invalid: {path} is outside the project folder "
                f"{settings.project_dir} (through a link); the Dockerfile must build from the "
                "project folder alone, so move that folder into it"
            )


def _resolve_ca_cert(text: str, project_dir: Path, raw: Mapping[str, tuple[str, str]]) -> Path | None:
    if not text:
        return None
    where = raw["CA_CERT"][1]
    path = (project_dir / os.path.expanduser(text)).resolve()
    try:
        pem = path.read_bytes() if path.is_file() else None
    except OSError as error:
        raise NbdockError(f"CA_CERT in {where} is invalid: cannot read {path} ({error.strerror})") from None
    if pem is None:
        raise NbdockError(
            f"CA_CERT in {where} is invalid: {path} is not a file; point it at the PEM bundle "
            "your proxy's certificates are in (the one pip uses: `pip config list`)"
        )
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise NbdockError(
            f"CA_CERT in {where} is invalid: {path} holds no PEM certificate "
            "(no '-----BEGIN CERTIFICATE-----' line); point it at a PEM bundle"
        )
    return path
