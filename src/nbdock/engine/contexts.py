"""Where an engine is: DOCKER_HOST, a Docker host URL, or a docker context, read from the docker
CLI's own context store ($DOCKER_CONFIG or ~/.docker, under contexts/).

The store is read here rather than with docker-py's ContextAPI, which looks for it only beside a
config.json and otherwise in the working folder (docker.context.config.get_context_dir), where
`docker context create` on a fresh machine leaves none, and which ignores DOCKER_CONTEXT.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from nbdock.errors import NbdockError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _config_folder() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def current_context_name() -> str:
    """DOCKER_CONTEXT, else the config's currentContext, else "default" (as the docker CLI)."""
    if os.environ.get("DOCKER_CONTEXT"):
        return os.environ["DOCKER_CONTEXT"]
    try:
        name = json.loads((_config_folder() / "config.json").read_text(encoding="utf-8")).get("currentContext")
    except (OSError, ValueError, AttributeError):  # a broken docker config must not stop nbdock
        name = None
    return str(name or "default")


def context(name: str) -> tuple[str, Any] | None:
    """(host, TLS config or None) of the docker context `name`; None when there is none.
    "default" is DOCKER_HOST, else the local socket."""
    if name == "default":
        return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET, None
    context_id = hashlib.sha256(name.encode()).hexdigest()
    store = _config_folder() / "contexts"
    try:
        endpoint = json.loads((store / "meta" / context_id / "meta.json").read_text(encoding="utf-8"))[
            "Endpoints"]["docker"]
        host = str(endpoint["Host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    files = {kind: store / "tls" / context_id / "docker" / f"{kind}.pem" for kind in ("ca", "cert", "key")}
    if not any(path.is_file() for path in files.values()):
        return host, None
    import docker.tls

    client_cert = (str(files["cert"]), str(files["key"])) if files["cert"].is_file() and files["key"].is_file() \
        else None
    ca_cert = str(files["ca"]) if files["ca"].is_file() else None
    return host, docker.tls.TLSConfig(client_cert=client_cert, ca_cert=ca_cert,
                                      verify=not endpoint.get("SkipTLSVerify", False))


def _environment_tls() -> Any:
    """The TLS config DOCKER_TLS_VERIFY and DOCKER_CERT_PATH give DOCKER_HOST, as the SDK reads
    them; None when neither is set. Raises NbdockError when DOCKER_CERT_PATH lacks a file."""
    if not (os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH")):
        return None
    import docker.errors
    from docker.utils import kwargs_from_env

    try:
        return kwargs_from_env().get("tls")
    except docker.errors.TLSParameterError as error:
        folder = os.environ.get("DOCKER_CERT_PATH") or "~/.docker"
        raise NbdockError(
            f"DOCKER_TLS_VERIFY or DOCKER_CERT_PATH asks for TLS, but {folder} lacks ca.pem, cert.pem or "
            f"key.pem ({str(error).split('. ')[0]}); put them there, or unset both for an engine without TLS"
        ) from None


def current_engine() -> tuple[str, Any]:
    """(address, TLS config or None) of the engine DOCKER_HOST names (with DOCKER_TLS_VERIFY and
    DOCKER_CERT_PATH), else the current docker context, else the local socket."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"], _environment_tls()
    return context(current_context_name()) or (DEFAULT_SOCKET, None)


def engine_address() -> str:
    """Where the engine is: DOCKER_HOST, else the current docker context, else the local socket."""
    return current_engine()[0]


def remote_host(address: str) -> str | None:
    """The engine's host name when it runs on another machine (tcp:// or ssh://), else None."""
    parsed = urlparse(address)
    is_network = parsed.scheme in {"tcp", "http", "https", "ssh"}
    if is_network and parsed.hostname and parsed.hostname not in _LOCAL_HOSTS:
        return parsed.hostname
    return None


def named_engine(name: str, setting: str) -> tuple[str, Any]:
    """(address, TLS config or None) of `name`: a Docker host URL (unix://, tcp://, ssh://, ...)
    or the name of a docker context. Raises NbdockError naming `setting` when no context has
    that name."""
    if "://" in name:
        return name, None
    found = context(name)
    if found is None:
        raise NbdockError(
            f"{setting}={name} is neither a Docker host URL (unix://, tcp://, ssh://) nor the name of a "
            f"docker context in {_config_folder() / 'contexts'} (`docker context ls` lists them); set it to one "
            "of those"
        )
    return found
