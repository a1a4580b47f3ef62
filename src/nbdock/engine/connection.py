"""Where the engine is and how nbdock connects to it; every SDK and connection error classified
here, once, into a kind of NbdockError (errors.py)."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from nbdock.errors import (
    EngineAPIError,
    EnginePermissionDenied,
    EngineUnreachable,
    NameConflict,
    NbdockError,
    NotFound,
    PortTaken,
)

if TYPE_CHECKING:
    from docker import DockerClient

_PORT_TAKEN = ("port is already allocated", "address already in use")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@contextmanager
def _classified(action: str) -> Iterator[None]:
    """Turn Docker SDK and connection errors raised while doing `action` into a kind of NbdockError."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.NotFound as error:
        explanation = _explanation(error)
        raise NotFound(f"{action} failed: {explanation}", reason=explanation) from None
    except docker.errors.APIError as error:
        explanation = _explanation(error)
        if any(hint in explanation for hint in _PORT_TAKEN):
            raise PortTaken(f"{action} failed: {explanation}", reason=explanation) from None
        if "already exists" in explanation or "is already in use" in explanation:
            raise NameConflict(f"{action} failed: {explanation}", reason=explanation) from None
        raise EngineAPIError(f"{action} failed: {explanation}", reason=explanation) from None
    except Exception as error:
        if not isinstance(error, (docker.errors.DockerException, requests.exceptions.RequestException)) \
                and not _is_ssh_error(error):
            raise
        if "Permission denied" in str(error):
            raise EnginePermissionDenied(f"{action} failed: permission denied ({error})", reason=str(error)) from None
        raise EngineUnreachable(
            f"{action} failed because the Docker engine stopped answering ({error}); "
            "check that the engine is running (`docker info`)", reason=str(error),
        ) from None


def _is_ssh_error(error: BaseException) -> bool:
    """An error of paramiko, the SDK's ssh transport (imported only for ssh:// engines)."""
    return type(error).__module__.partition(".")[0] == "paramiko"


def _explanation(error: Any) -> str:
    explanation = getattr(error, "explanation", None) or str(error)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation).strip()


def _current_context() -> Any:
    from docker.context import ContextAPI

    try:
        return ContextAPI.get_current_context()
    except Exception:  # a broken docker config must not stop nbdock: use the default socket
        return None


def engine_address() -> str:
    """Where the engine is: DOCKER_HOST, else the current docker context, else the local socket."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    context = _current_context()
    return str(context.Host) if context is not None and context.Host else "unix:///var/run/docker.sock"


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
    from docker.context import ContextAPI

    try:
        context = ContextAPI.get_context(name)
    except Exception:  # a broken docker config reads as no such context
        context = None
    if context is None or not context.Host:
        raise NbdockError(
            f"{setting}={name} is neither a Docker host URL (unix://, tcp://, ssh://) nor the name of a "
            "docker context (`docker context ls` lists them); set it to one of those"
        )
    return str(context.Host), context.TLSConfig or None


def _require_ssh_support(address: str) -> None:
    """Docker SDK reaches ssh:// engines through paramiko, an optional dependency (`nbdock[ssh]`)."""
    if address.startswith("ssh://") and importlib.util.find_spec("paramiko") is None:
        raise NbdockError(
            f"the engine at {address} is reached over ssh, which needs the ssh extra: "
            "pip install 'nbdock[ssh]' (paramiko, the Docker SDK's ssh transport)"
        )


@functools.cache
def _client_class() -> type[DockerClient]:
    """DockerClient whose requests check a TLS engine against the CA its TLS config names even
    when REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE is set (a proxy's bundle, say): requests lets
    those replace a session's own CA (docker/docker-py#2433, psf/requests#3829)."""
    import docker

    class EngineAPIClient(docker.APIClient):  # type: ignore[misc]
        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                       cert: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if verify is None and isinstance(self.verify, str):
                settings["verify"] = self.verify
            return settings

    class EngineClient(docker.DockerClient):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.api = EngineAPIClient(*args, **kwargs)

    return EngineClient


def _connect(address: str, tls: Any = None, explicit: bool = False) -> DockerClient:
    import docker
    import docker.errors

    _require_ssh_support(address)
    try:
        if explicit:
            return _client_class()(base_url=address, tls=tls or False)
        if os.environ.get("DOCKER_HOST"):
            return _client_class().from_env()
        context = _current_context()
        tls = context.TLSConfig if context is not None else None
        return _client_class()(base_url=address, tls=tls or False)
    except Exception as error:
        if not isinstance(error, (docker.errors.DockerException, OSError)) and not _is_ssh_error(error):
            raise
        reason = str(error).replace("Error while fetching server API version: ", "") or type(error).__name__
        if "Permission denied" in reason:
            raise EnginePermissionDenied(
                f"you may not use the Docker engine at {address} (permission denied); add your "
                "user to the docker group (`sudo usermod -aG docker $USER`, then log in again)"
            ) from None
        if explicit and "HTTPS server" in reason:  # Go's answer to plain HTTP on a TLS port
            raise EngineUnreachable(
                f"the swarm manager at {address} asks for TLS; make a docker context with its "
                f"certificates (`docker context create NAME --docker host={address},ca=CA,cert=CERT,key=KEY`) "
                "and set SWARM_HOST=NAME"
            ) from None
        if explicit:  # the swarm manager SWARM_HOST names
            raise EngineUnreachable(
                f"cannot reach the swarm manager at {address} ({reason}); check that its engine runs and "
                "that SWARM_HOST names it (a Docker host URL or a docker context)"
            ) from None
        raise EngineUnreachable(
            f"cannot reach the Docker engine at {address} ({reason}); start it (`sudo dockerd &` "
            "or Docker Desktop) or point DOCKER_HOST at a running engine"
        ) from None


def _label_filter(labels: Mapping[str, str]) -> dict[str, list[str]]:
    return {"label": [f"{key}={value}" for key, value in sorted(labels.items())]}


class Connected:
    """The connection every part of `Engine` uses: made on first use, which asks the engine its
    API version, so it must answer."""

    def __init__(self, address: str = "", tls: Any = None) -> None:
        """`address` (with its `tls` config) names another engine than DOCKER_HOST's."""
        self.address = address or engine_address()
        self._tls = tls
        self._explicit = bool(address)
        self._client: DockerClient | None = None

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            self._client = _connect(self.address, self._tls, self._explicit)
        return self._client

    @property
    def remote_host(self) -> str | None:
        """The engine's host name when it runs on another machine, else None."""
        return remote_host(self.address)
