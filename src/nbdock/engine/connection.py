"""Where the engine is and how nbdock connects to it; every SDK and connection error classified
here, once, into a kind of NbdockError (errors.py)."""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from nbdock.engine.contexts import current_engine, remote_host
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


def _prepare_ssh(address: str) -> None:
    """The Docker SDK reaches ssh:// engines through paramiko, an optional dependency
    (`nbdock[ssh]`). paramiko logs what its transport thread raises, as a traceback on stderr
    when nothing else handles its logger: its failures are turned into one line here instead."""
    if not address.startswith("ssh://"):
        return
    if importlib.util.find_spec("paramiko") is None:
        raise NbdockError(
            f"the engine at {address} is reached over ssh, which needs the ssh extra: "
            "pip install 'nbdock[ssh]' (paramiko, the Docker SDK's ssh transport)"
        )
    _quiet_paramiko()


@functools.cache
def _quiet_paramiko() -> None:
    logging.getLogger("paramiko").addHandler(logging.NullHandler())


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
    import docker.errors

    _prepare_ssh(address)
    try:
        return _client_class()(base_url=address, tls=tls or False)
    except Exception as error:
        if not isinstance(error, (docker.errors.DockerException, OSError)) and not _is_ssh_error(error):
            raise
        raise _unreachable(address, error, explicit) from None


def _one_line(error: BaseException) -> str:
    """What `error` says, without the SDK's prefix, a response body after its first line, or
    urllib3's wrapping of the socket error."""
    text = str(error).replace("Error while fetching server API version: ", "").replace("[Errno None] ", "").strip()
    for socket_error in ("Connection refused", "No such file or directory", "Name or service not known",
                         "Temporary failure in name resolution", "timed out"):
        if socket_error in text:
            return socket_error
    first = text.splitlines()[0] if text else type(error).__name__
    return first if len(first) <= 200 else first[:200] + "…"


def _unreachable(address: str, error: BaseException, explicit: bool) -> NbdockError:
    """The one line for an engine at `address` that did not answer, with the fix for its cause;
    `explicit` when SWARM_HOST named it (else DOCKER_HOST or the docker context)."""
    text = str(error)
    reason = _one_line(error)
    engine = f"the swarm manager at {address}" if explicit else f"the Docker engine at {address}"
    url = urlparse(address)
    login = (f"-p {url.port} " if url.port else "") + (f"{url.username}@" if url.username else "") + (
        url.hostname or address)
    if "Permission denied" in text and address.startswith("unix://"):
        return EnginePermissionDenied(
            f"you may not use {engine} (permission denied); add your user to the docker group "
            "(`sudo usermod -aG docker $USER`, then log in again)"
        )
    if "HTTPS server" in text:  # Go's answer to plain HTTP on a TLS port
        setting = "SWARM_HOST" if explicit else "DOCKER_CONTEXT"
        return EngineUnreachable(
            f"{engine} asks for TLS; make a docker context with its certificates (`docker context create NAME "
            f"--docker host={address},ca=CA,cert=CERT,key=KEY`) and set {setting}=NAME"
        )
    if "not found in known_hosts" in text:
        fix = f"its host key is not in ~/.ssh/known_hosts: connect once with `ssh {login}` and accept it"
    elif any(hint in text for hint in ("Authentication failed", "No authentication methods", "is encrypted")):
        fix = (f"ssh could not log in without a prompt: add your key to ssh-agent (`ssh-add`) or ~/.ssh, so that "
               f"`ssh {login} docker version` works")
    elif address.startswith("ssh://") and "Remote end closed connection" in text:
        fix = (f"the ssh session ended at once: `ssh {login} docker system dial-stdio` must run there "
               "(docker on its PATH)")
    elif "Client Error" in text or "Server Error" in text:
        fix = "something answers there, but not a Docker engine; check the address and port"
    elif explicit:
        fix = "check that its engine runs and that SWARM_HOST names it (a Docker host URL or a docker context)"
    elif remote_host(address):
        fix = f"check that it runs and answers (`docker -H {address} version`), or point DOCKER_HOST elsewhere"
    else:
        fix = "start it (`sudo dockerd &` or Docker Desktop) or point DOCKER_HOST at a running engine"
    return EngineUnreachable(f"cannot reach {engine} ({reason}); {fix}", reason=reason)


def _label_filter(labels: Mapping[str, str]) -> dict[str, list[str]]:
    return {"label": [f"{key}={value}" for key, value in sorted(labels.items())]}


class Connected:
    """The connection every part of `Engine` uses: made on first use, which asks the engine its
    API version, so it must answer."""

    def __init__(self, address: str = "", tls: Any = None) -> None:
        """`address` (with its `tls` config) names another engine than DOCKER_HOST's."""
        self.address, self._tls = (address, tls) if address else current_engine()
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
