"""Every setting, declared once: its KEY, the parser of its text, its default and its meaning.

`settings.py` reads them into `Settings`; the README's settings table and .env.example are
checked against `SETTINGS` by the tests, so the copies cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """Bytes from a size such as `512m`, `1g`, `1.5GiB` or `1048576` (powers of 1024, as Docker).

    Raises ValueError with the reason when `text` is not such a size.
    """
    matched = _SIZE.match(text.strip())
    if not matched:
        raise ValueError(f"{text!r} is not a size such as 512m or 2g")
    size = int(float(matched.group(1)) * _UNITS[matched.group(2).lower()])
    if size <= 0:
        raise ValueError("it must be more than 0 bytes")
    return size



DEFAULT_BASE_IMAGE = "python:3.12-slim"
DEFAULT_JUPYTER_PACKAGES = "jupyterlab==4.6.6"
DEFAULT_EXECUTE_PACKAGES = "papermill==2.7.0 nbconvert==7.17.2 ipykernel==7.4.0"
# The uv the image's build stage installs the environment with (INSTALLER=uv), from PyPI.
UV_REQUIREMENT = "uv==0.13.9"

_NAME = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_NAME}(?:/{_NAME})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
_REGISTRY = re.compile(rf"^[a-zA-Z0-9.-]+(?::[0-9]+)?(?:/{_NAME})*$")
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_USER_SPEC = re.compile(r"^[0-9]+:[0-9]+$")
_K8S_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Docker's restart policies for the server's container.
_RESTART = re.compile(r"^(?:no|always|unless-stopped|on-failure(?::[1-9]\d*)?)$")
# What a token may hold: it travels in a URL (percent-encoded) and a file, and is typed or pasted.
_TOKEN = re.compile(r"^[^\s\x00-\x1f\x7f]*$")
# Keys that nbdock no longer reads, with what to do instead.


Parser = Callable[[str], object]


def _text(value: str) -> str:
    return value.strip()


def _whole(low: int, high: int) -> Parser:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is outside {low}..{high}")
        return number

    return parse


def _positive(what: str) -> Parser:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number of {what}") from None
        if not number > 0:
            raise ValueError(f"it must be more than 0 {what.split()[0]}")
        return number

    return parse


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address such as 127.0.0.1") from None


def _matching(pattern: re.Pattern[str], what: str) -> Parser:
    def parse(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return parse


def _optional(parse: Parser, empty: object = "") -> Parser:
    """`parse`, with an empty value meaning `empty` (not set)."""
    return lambda value: parse(value) if value else empty


def _packages(value: str) -> str:
    specs = value.split()
    if not specs:
        raise ValueError("it names no package")
    return " ".join(specs)


def _user_spec(value: str) -> str:
    if value and not _USER_SPEC.match(value):
        raise ValueError(f"{value!r} is not uid:gid such as 1000:1000")
    return value


def _token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError("a token may not contain spaces or control characters")
    return value


def _url(value: str) -> str:
    if value and (urlparse(value).scheme not in {"http", "https", "file"} or not urlparse(value).path):
        raise ValueError(f"{value!r} is not a URL such as http://deb.debian.org/debian")
    return value


def _relative_folder(value: str) -> str:
    if Path(value).is_absolute() or ".." in PurePosixPath(value).parts:
        raise ValueError(f"{value!r} is not a folder inside the project (write it relative to .env)")
    return value


def _mounts(value: str) -> tuple[tuple[str, bool], ...]:
    mounts: dict[str, bool] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        folder, writable = (item[:-3], True) if item.endswith(":rw") else (item.removesuffix(":ro"), False)
        folder = str(PurePosixPath(_relative_folder(folder.strip())))
        if folder in mounts:
            raise ValueError(f"it names {folder} twice")
        mounts[folder] = writable
    return tuple(mounts.items())


def _memory(value: str) -> int:
    size = parse_size(value)
    if size < 6 * 2**20:
        raise ValueError(f"{value!r} is below the 6m Docker needs for a container")
    return size


def _gpus(value: str) -> str:
    if value and value != "all" and not (value.isdigit() and int(value) > 0):
        raise ValueError(f"{value!r} is neither `all` nor a count of GPUs such as 1")
    return value


def _one_of(*choices: str) -> Parser:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _engine_name(value: str) -> str:
    value = value.strip()
    if "://" not in value:
        return value
    url = urlparse(value)
    if url.scheme not in {"unix", "tcp", "ssh", "http", "https", "npipe"}:
        raise ValueError(f"{value!r} is not a Docker host URL (unix://, tcp://, ssh://) or docker context name")
    if url.scheme in {"unix", "npipe"} and not url.path:
        raise ValueError(f"{value!r} names no socket (unix:///var/run/docker.sock, say)")
    if url.scheme not in {"unix", "npipe"} and not url.hostname:
        raise ValueError(f"{value!r} names no host ({url.scheme}://user@manager, say)")
    return value


def _driver_options(value: str) -> tuple[tuple[str, str], ...]:
    options: dict[str, str] = {}
    for item in value.split():  # space-separated: an option's value may hold commas (o=addr=...,rw)
        key, equals, option = item.partition("=")
        if not equals or not key:
            raise ValueError(f"{item!r} is not key=value (options are space-separated, e.g. type=nfs o=addr=...)")
        options[key] = option
    return tuple(options.items())


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: its KEY (the `Settings` attribute is its lower case), the
    parser of its text, its default text (None: derived from other settings), its meaning in
    one line and, when the README shows its default otherwise, how (`shown`). The README's
    settings table and .env.example are checked against these by the tests."""

    key: str
    parse: Parser
    default: str | None
    meaning: str
    shown: str = ""

    @property
    def attribute(self) -> str:
        return self.key.lower()

    @property
    def shown_default(self) -> str:
        """The default as the README's table shows it."""
        return self.shown or (f"`{self.default}`" if self.default else "")


SETTINGS: tuple[Setting, ...] = (
    Setting("PROJECT_NAME", _matching(_PROJECT_NAME, "project name (a-z, 0-9, _ . -)"), None,
            "labels every object nbdock makes",
            shown="folder name"),
    Setting("IMAGE_NAME", _matching(IMAGE_REFERENCE, "image name such as my-notebooks:latest"), None,
            "the serving image; headless and training runs use the same name with tag `execute`",
            shown="`nbdock-<project>:latest`"),
    Setting("CONTAINER_NAME", _matching(_CONTAINER_NAME, "container name"), None,
            "the server's container (and, as a DNS name, its Swarm service)",
            shown="`nbdock-<project>`"),
    Setting("BASE_IMAGE", _matching(IMAGE_REFERENCE, "image name such as python:3.12-slim"), None,
            "the image to build on (any Debian-like image with `python3 -m venv`)",
            shown=f"the Python `runtime.txt` names (`python:3.10-slim`), else `{DEFAULT_BASE_IMAGE}`"),
    Setting("NOTEBOOKS_DIR", _relative_folder, "notebooks",
            "the folder served, inside the project (`.` for the top)"),
    Setting("HOST_IP", _ip, "127.0.0.1",
            "host address the server is published on"),
    Setting("HOST_PORT", _whole(0, 65535), "8888",
            "host port; `0` picks a free one"),
    Setting("CONTAINER_PORT", _whole(1, 65535), "8888",
            "port Jupyter listens on in the container"),
    Setting("JUPYTER_TOKEN", _token, "",
            "the token (any characters but spaces and control characters); empty means a new random one per server",
            shown="random"),
    Setting("JUPYTER_PACKAGES", _packages, DEFAULT_JUPYTER_PACKAGES,
            "what the image installs to serve notebooks"),
    Setting("INSTALLER", _one_of("uv", "pip"), "uv",
            "what installs the environment in the build: `uv` (pip's requirements files and settings kept, "
            "pip left in the environment), or `pip`"),
    Setting("CA_CERT", _text, "",
            "PEM bundle pip trusts (TLS-intercepting proxies): used in the build, mounted at run time, "
            "never in an image",
            shown="`$PIP_CERT` if set"),
    Setting("BASE_MIRROR", _url, "",
            "apt mirror URL for `invoke base`",
            shown="host's apt sources"),
    Setting("READY_TIMEOUT", _positive("seconds"), "120",
            "seconds to wait for the server to answer"),
    Setting("RUN_AS", _user_spec, "",
            "`uid:gid` the containers run as",
            shown="you (see below)"),
    Setting("EXECUTE_PACKAGES", _packages, DEFAULT_EXECUTE_PACKAGES,
            "what the execution image adds",
            shown="papermill, nbconvert, ipykernel (pinned)"),
    Setting("OUTPUT_DIR", _text, "outputs",
            "where `execute` and `train` write their results"),
    Setting("EXECUTE_TIMEOUT", _positive("seconds"), "600",
            "seconds one notebook may run under `invoke execute`"),
    Setting("KERNEL", _optional(_matching(re.compile(r"^[\w.-]+$"), "kernel name such as python3")), "",
            "kernel every notebook runs with under `execute`",
            shown="the notebook's"),
    Setting("MOUNTS", _mounts, "",
            "more project folders mounted at the same relative place, comma-separated, read-only unless "
            "`:rw` (`data, models:rw`)"),
    Setting("SHM_SIZE", parse_size, "1g",
            "`/dev/shm` of every container (Docker's 64 MB kills PyTorch data loaders)"),
    Setting("MEMORY", _optional(_memory, None), "",
            "memory limit of every container (`512m`, `2g`)",
            shown="none"),
    Setting("CPUS", _optional(_positive("CPUs such as 1.5"), None), "",
            "CPU limit of every container (`1.5`)",
            shown="none"),
    Setting("GPUS", _gpus, "",
            "`all` or a count: a device request locally, a generic resource on Swarm, `nvidia.com/gpu` on Kubernetes",
            shown="none"),
    Setting("REGISTRY", _optional(_matching(_REGISTRY, "registry such as registry.example:5000/team")), "",
            "where `push` sends the image (`registry.example:5000/team`)",
            shown="none"),
    Setting("SWARM_HOST", _engine_name, "",
            "the swarm manager `swarm.*` and Swarm training deploy through: a Docker host URL (`ssh://user@manager`, "
            "with `nbdock[ssh]`; `tcp://…`, `unix://…`) or a docker context name (one with the certificates of a "
            "manager that asks for TLS); another engine than the build engine needs `REGISTRY`",
            shown="the build engine"),
    Setting("SWARM_VOLUME_DRIVER", _text, "",
            "a volume driver every node mounts for the Swarm server's notebooks; unset, the server stays on the "
            "node holding its volume",
            shown="none (local)"),
    Setting("SWARM_VOLUME_OPTIONS", _driver_options, "",
            "that driver's options, space-separated `key=value` (`type=nfs o=addr=10.0.0.5,rw device=:/exports/nb`)",
            shown="none"),
    Setting("K8S_CONTEXT", _text, "",
            "kubectl context for `k8s.*` and `train --backend k8s`",
            shown="kubectl's current"),
    Setting("K8S_NAMESPACE", _optional(_matching(_K8S_NAMESPACE, "Kubernetes namespace")), "",
            "namespace for the same",
            shown="kubectl's current"),
    Setting("TRAIN_WORKERS", _whole(1, 64), "2",
            "workers of `invoke train`"),
    Setting("TRAIN_PORT", _whole(1, 65535), "2222",
            "port the workers talk on"),
    Setting("TRAIN_TIMEOUT", _positive("seconds"), "1800",
            "seconds a whole training run may take"),
    Setting("TRAIN_BACKEND", _one_of("local", "swarm", "k8s"), "local",
            "where `invoke train` runs: `local`, `swarm` or `k8s`"),
    Setting("TRAIN_WORKERS_PER_NODE", _whole(1, 64), "1",
            "on Swarm, at most this many workers on one node"),
    Setting("RESTART", _matching(_RESTART, "restart policy: no, unless-stopped, always or on-failure[:N]"),
            "unless-stopped",
            "Docker's restart policy for the server: back after a reboot or an engine restart, at the same URL "
            "and token, unless you stopped it; `no`, `always`, `on-failure[:N]`"),
)
