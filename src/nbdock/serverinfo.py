"""Where and how the server in a container answers, from Jupyter Server's own runtime file.

A project can configure its server (a `jupyter_server_config.py` that postBuild writes, or the
base image's own): `ServerApp.base_url` moves every page and `/api` under a prefix, a certificate
makes it HTTPS, and other settings stop nbdock's token URL from working at all. nbdock's command
line sets the port, the address and the root folder, which win over any config file; what it does
not set, the server reports in the file it writes once it listens (`jpserver-<pid>.json` in
JUPYTER_RUNTIME_DIR, the source `jupyter server list` reads): its base_url, port, scheme, socket
and whether a token and a password are on. That file is fixed for one start of the container, so
what it said is remembered per start (nbdock's cache, `servers`): asking again reads nothing from
the container, which costs a copy out of it (~70 ms on fuse-overlayfs).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import quote

from nbdock import cache, jupyter
from nbdock.errors import NbdockError
from nbdock.wait import wait_until

# Outside the home folder, which a project's own config may have moved; any uid may write /tmp.
RUNTIME_DIR = "/tmp/nbdock-jupyter-runtime"
RUNTIME_VARIABLE = "JUPYTER_RUNTIME_DIR"


class ReadsFolders(Protocol):
    def read_folder(self, container: str, path: str) -> dict[str, bytes]: ...


@dataclass(frozen=True)
class ServerInfo:
    """What a running Jupyter server says of itself: `base_url` starts and ends with "/"."""

    port: int
    base_url: str = "/"
    secure: bool = False
    sock: str = ""
    token: bool = True
    password: bool = False

    def url(self, host: str, port: int) -> str:
        """The server's root as a browser on this machine reaches it, `port` being the published one."""
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{jupyter.format_host(host)}:{port}{self.base_url.rstrip('/')}"

    def lab_url(self, host: str, port: int, token: str) -> str:
        return f"{self.url(host, port)}/lab?token={quote(token, safe='')}"


def runtime_environment() -> dict[str, str]:
    """The environment that makes the server write its runtime file where nbdock reads it."""
    return {RUNTIME_VARIABLE: RUNTIME_DIR}


def parse(files: Mapping[str, bytes]) -> ServerInfo | None:
    """The server described by the `jpserver-*.json` files of a runtime folder (the newest, by
    name), or None when there is none yet."""
    for name in sorted((n for n in files if n.rsplit("/", 1)[-1].startswith("jpserver-") and n.endswith(".json")),
                       reverse=True):
        try:
            found = json.loads(files[name])
            base_url = "/" + str(found.get("base_url") or "/").strip("/") + "/"
            return ServerInfo(
                port=int(found.get("port") or 0), base_url=base_url.replace("//", "/"),
                secure=bool(found.get("secure")), sock=str(found.get("sock") or ""),
                token=bool(found.get("token")), password=bool(found.get("password")),
            )
        except (ValueError, TypeError, AttributeError):
            continue
    return None


def problem(info: ServerInfo, container_port: int, env_file: Path) -> str | None:
    """One line saying why nbdock's URL cannot reach or log in to this server, or None."""
    where = "the image's Jupyter config (a jupyter_server_config.py from postBuild or the base image)"
    if info.sock:
        return (f"{where} makes the server listen on the Unix socket {info.sock} (ServerApp.sock) instead of a "
                "port, which nothing outside the container can reach; remove that setting")
    if info.port != container_port:
        return (f"the server listens on port {info.port} in the container, not on CONTAINER_PORT {container_port}; "
                f"set CONTAINER_PORT={info.port} in {env_file}, or remove the port from {where}")
    if not info.token:
        instead = "a password only" if info.password else "a password alone, or nothing"
        return (f"{where} turns token authentication off ({instead}: IdentityProvider.token = ''), so the URL "
                "nbdock prints would not log in and nbdock serves only with a token; remove that setting")
    return None


def answers(url: str, timeout: float = 2.0) -> bool:
    """True when a Jupyter server answers `GET /api` at `url`; an HTTPS server's own certificate
    is accepted (it is the project's, on this machine, usually self-signed)."""
    if not url.startswith("https:"):
        return jupyter.answers(url, timeout)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{url}/api", timeout=timeout, context=context) as response:
            return response.status == 200 and "version" in json.load(response)
    except (OSError, ValueError):
        return False


def read(engine: ReadsFolders, container: str, started_at: str) -> ServerInfo | None:
    """What the server in `container`, started at `started_at` (the engine's State.StartedAt),
    reports of itself, or None when it has not said yet. Remembered once said, for that start
    only; nothing is remembered without `started_at`."""
    key = f"{container}@{started_at}"
    remembered = cache.read("servers", key) if started_at else None
    if remembered:
        with contextlib.suppress(ValueError, TypeError):  # a record nbdock cannot read: ask again
            return ServerInfo(**json.loads(remembered))
    info = parse(engine.read_folder(container, RUNTIME_DIR))
    if info is not None and started_at:
        cache.write("servers", key, json.dumps(asdict(info)))
    return info


def wait_until_ready(
    engine: ReadsFolders, container: str, started_at: str, host: str, port: int, still_running: Callable[[], bool],
    timeout: float, container_port: int, env_file: Path,
) -> tuple[Literal["ready", "exited", "timed out"], ServerInfo | None]:
    """Poll the server in `container` (started at `started_at`) until it answers where its
    runtime file says (the root URL until it has written one), it stops running, or `timeout`
    seconds pass; the outcome and what it said.

    Raises NbdockError when the server runs in a way nbdock's URL cannot reach or log in to.
    """
    info: ServerInfo | None = None
    outcome: Literal["ready", "exited", "timed out"] = "timed out"

    def settled() -> bool:
        nonlocal info, outcome
        if info is None:
            info = read(engine, container, started_at)
            trouble = problem(info, container_port, env_file) if info is not None else None
            if trouble:
                raise NbdockError(trouble)
        if answers(info.url(host, port) if info else jupyter.base_url(host, port)):
            outcome = "ready"
        elif not still_running():
            outcome = "exited"
        return outcome != "timed out"

    wait_until(settled, timeout, jupyter.POLL_INTERVAL)
    return outcome, info
