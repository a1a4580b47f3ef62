"""Settings: `.env` in the project folder, then `NBDOCK_*` environment variables, then task flags.

`.env` is read with python-dotenv's `dotenv_values`, so nothing is written into `os.environ`.
Only variables named `NBDOCK_<KEY>` override the file, so unrelated variables of the same
name (a `HOST_PORT` some other tool exports, say) never leak in.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from nbdock.errors import NbdockError

ENV_PREFIX = "NBDOCK_"
ENV_FILE = ".env"
LABEL_PROJECT = "io.nbdock.project"

DEFAULT_BASE_IMAGE = "python:3.12-slim"
DEFAULT_JUPYTER_PACKAGES = "jupyterlab==4.6.6"
DEFAULT_EXECUTE_PACKAGES = "papermill==2.7.0 nbconvert==7.17.2 ipykernel==7.4.0"

_NAME = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_IMAGE_REF = re.compile(
    rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_NAME}(?:/{_NAME})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_USER_SPEC = re.compile(r"^[0-9]+:[0-9]+$")


@dataclass(frozen=True)
class Settings:
    """Everything nbdock needs to know about one project, validated."""

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
    ca_cert: Path | None
    base_mirror: str
    ready_timeout: float
    run_as: str
    execute: bool
    execute_packages: str
    output_dir: str
    execute_timeout: float
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def notebooks_path(self) -> Path:
        return (self.project_dir / self.notebooks_dir).resolve()

    @property
    def output_path(self) -> Path:
        return (self.project_dir / self.output_dir).resolve()

    @property
    def labels(self) -> dict[str, str]:
        """Labels on every image and container nbdock makes, so it only ever touches its own."""
        return {LABEL_PROJECT: self.project_name}

    def require_notebooks(self) -> Path:
        path = self.notebooks_path
        if not path.is_dir():
            raise NbdockError(
                f"the notebooks folder {path} does not exist; create it or set NOTEBOOKS_DIR "
                f"in {self.project_dir / ENV_FILE} to the folder that holds your notebooks"
            )
        return path


Parser = Callable[[str], object]


def _text(value: str) -> str:
    return value.strip()


def _port(low: int) -> Parser:
    def parse(value: str) -> int:
        try:
            port = int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if not low <= port <= 65535:
            raise ValueError(f"{port} is outside {low}..65535")
        return port

    return parse


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError("it must be more than 0 seconds")
    return seconds


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address such as 127.0.0.1") from None


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"", "0", "false", "no", "off"}:
        return False
    raise ValueError(f"{value!r} is not true or false")


def _matching(pattern: re.Pattern[str], what: str) -> Parser:
    def parse(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return parse


def _packages(value: str) -> str:
    specs = value.split()
    if not specs:
        raise ValueError("it names no package")
    return " ".join(specs)


def _user_spec(value: str) -> str:
    if value and not _USER_SPEC.match(value):
        raise ValueError(f"{value!r} is not uid:gid such as 1000:1000")
    return value


# KEY -> (Settings field, parser, default). A default of None is derived from other settings.
_FIELDS: dict[str, tuple[str, Parser, str | None]] = {
    "PROJECT_NAME": ("project_name", _matching(_PROJECT_NAME, "project name (a-z, 0-9, _ . -)"), None),
    "IMAGE_NAME": ("image_name", _matching(_IMAGE_REF, "image name such as my-notebooks:latest"), None),
    "CONTAINER_NAME": ("container_name", _matching(_CONTAINER_NAME, "container name"), None),
    "BASE_IMAGE": ("base_image", _matching(_IMAGE_REF, "image name such as python:3.12-slim"),
                   DEFAULT_BASE_IMAGE),
    "NOTEBOOKS_DIR": ("notebooks_dir", _text, "notebooks"),
    "HOST_IP": ("host_ip", _ip, "127.0.0.1"),
    "HOST_PORT": ("host_port", _port(0), "8888"),
    "CONTAINER_PORT": ("container_port", _port(1), "8888"),
    "JUPYTER_TOKEN": ("jupyter_token", _text, ""),
    "JUPYTER_PACKAGES": ("jupyter_packages", _packages, DEFAULT_JUPYTER_PACKAGES),
    "CA_CERT": ("ca_cert", _text, ""),
    "BASE_MIRROR": ("base_mirror", _text, ""),
    "READY_TIMEOUT": ("ready_timeout", _seconds, "120"),
    "RUN_AS": ("run_as", _user_spec, ""),
    "EXECUTE": ("execute", _boolean, "false"),
    "EXECUTE_PACKAGES": ("execute_packages", _packages, DEFAULT_EXECUTE_PACKAGES),
    "OUTPUT_DIR": ("output_dir", _text, "outputs"),
    "EXECUTE_TIMEOUT": ("execute_timeout", _seconds, "600"),
}

KNOWN_KEYS = tuple(_FIELDS)


def default_project_name(project_dir: Path) -> str:
    slug = re.sub(r"[^a-z0-9_.-]+", "-", project_dir.resolve().name.lower()).strip("-._")
    return slug or "notebooks"


def _unknown_key_warning(key: str, where: str) -> str:
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; known settings: {', '.join(KNOWN_KEYS)}"
    return f"unknown setting {key} in {where}{hint}"


def load_settings(
    project_dir: Path,
    overrides: Mapping[str, object | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read and validate the project's settings.

    `overrides` are task flags by KEY (a None value means the flag was not given); they win over
    `NBDOCK_*` variables in `environ`, which win over the project's `.env` file.
    """
    project_dir = project_dir.resolve()
    environ = os.environ if environ is None else environ
    env_file = project_dir / ENV_FILE
    warnings: list[str] = []
    raw: dict[str, tuple[str, str]] = {}  # KEY -> (value, where it came from)

    if env_file.is_file():
        for key, value in dotenv_values(env_file).items():
            if key not in _FIELDS:
                warnings.append(_unknown_key_warning(key, str(env_file)))
            else:
                raw[key] = (value or "", str(env_file))
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):]
        if key not in _FIELDS:
            warnings.append(_unknown_key_warning(key, f"the environment variable {name}"))
        else:
            raw[key] = (value, f"the environment variable {name}")
    for key, flag_value in (overrides or {}).items():
        if flag_value is not None:
            raw[key] = (str(flag_value), f"the --{key.lower().replace('_', '-')} flag")

    values: dict[str, object] = {}
    for key, (attribute, parse, default) in _FIELDS.items():
        if key in raw and raw[key][0].strip() != "":
            text, where = raw[key]
        elif default is not None:
            text, where = default, "the defaults"
        else:
            continue
        try:
            values[attribute] = parse(text.strip())
        except ValueError as reason:
            raise NbdockError(
                f"{key} in {where} is invalid: {reason}; fix it (see .env.example for every setting)"
            ) from None

    project_name = str(values.get("project_name") or default_project_name(project_dir))
    values["project_name"] = project_name
    values.setdefault("image_name", f"nbdock-{project_name}:latest")
    values.setdefault("container_name", f"nbdock-{project_name}")
    if not values["ca_cert"] and environ.get("PIP_CERT"):
        # The bundle the host's own pip trusts is the one builds need behind the same proxy.
        raw["CA_CERT"] = (environ["PIP_CERT"], "the PIP_CERT environment variable")
        values["ca_cert"] = environ["PIP_CERT"]
    values["ca_cert"] = _resolve_ca_cert(str(values["ca_cert"]), project_dir, raw)
    return Settings(project_dir=project_dir, warnings=tuple(warnings), **values)  # type: ignore[arg-type]


def _resolve_ca_cert(text: str, project_dir: Path, raw: Mapping[str, tuple[str, str]]) -> Path | None:
    if not text:
        return None
    where = raw["CA_CERT"][1]
    path = (project_dir / os.path.expanduser(text)).resolve()
    if not path.is_file():
        raise NbdockError(
            f"CA_CERT in {where} is invalid: {path} is not a file; point it at the PEM bundle "
            "your proxy's certificates are in (the one pip uses: `pip config list`)"
        )
    if b"-----BEGIN CERTIFICATE-----" not in path.read_bytes():
        raise NbdockError(
            f"CA_CERT in {where} is invalid: {path} holds no PEM certificate "
            "(no '-----BEGIN CERTIFICATE-----' line); point it at a PEM bundle"
        )
    return path
