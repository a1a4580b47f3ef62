"""The Docker engine, through the Docker SDK for Python: connect, build, find, start, stop.

Every SDK error becomes an NbdockError that says what failed and what to do about it.
"""

from __future__ import annotations

import collections
import io
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from nbdock.errors import NbdockError

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

BUILD_TAIL_LINES = 25
STOP_TIMEOUT = 10
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_PORT_TAKEN = ("port is already allocated", "address already in use")


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn Docker SDK and connection errors raised while doing `action` into NbdockError."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.APIError as error:
        explanation = error.explanation or str(error)
        if isinstance(explanation, bytes):
            explanation = explanation.decode(errors="replace")
        raise NbdockError(f"{action} failed: {explanation.strip()}") from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        raise NbdockError(
            f"{action} failed because the Docker engine stopped answering ({error}); "
            "check that the engine is running (`docker info`)"
        ) from None


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
    if is_network and parsed.hostname and parsed.hostname not in {"localhost", "127.0.0.1", "::1"}:
        return parsed.hostname
    return None


def connect() -> DockerClient:
    """A client for the engine; connecting asks the engine its API version, so it must answer."""
    import docker
    import docker.errors

    address = engine_address()
    try:
        if os.environ.get("DOCKER_HOST"):
            return docker.from_env()
        context = _current_context()
        tls = context.TLSConfig if context is not None else None
        return docker.DockerClient(base_url=address, tls=tls or False)
    except (docker.errors.DockerException, OSError) as error:
        reason = str(error).replace("Error while fetching server API version: ", "")
        if "Permission denied" in reason:
            raise NbdockError(
                f"you may not use the Docker engine at {address} (permission denied); add your "
                "user to the docker group (`sudo usermod -aG docker $USER`, then log in again)"
            ) from None
        raise NbdockError(
            f"cannot reach the Docker engine at {address} ({reason}); start it (`sudo dockerd &` "
            "or Docker Desktop) or point DOCKER_HOST at a running engine"
        ) from None


def image_attrs(client: DockerClient, name: str) -> dict[str, Any] | None:
    """The engine's description of an image, or None when the engine has no image by that name."""
    import docker.errors

    with translated(f"looking up the image {name}"):
        try:
            attrs: dict[str, Any] = client.api.inspect_image(name)
        except docker.errors.ImageNotFound:
            return None
    return attrs


@dataclass(frozen=True)
class BuildFailure:
    step: str
    error: str
    tail: list[str]

    @property
    def is_base_image_missing(self) -> bool:
        return self.step.upper().startswith("FROM ") and any(
            hint in self.error
            for hint in ("pull access denied", "not found", "no such host", "manifest unknown",
                         "repository does not exist", "dial tcp", "connection refused")
        )


def build(client: DockerClient, archive: bytes, tag: str, no_cache: bool) -> str | BuildFailure:
    """Build `archive` (a tar build context) into `tag`, showing each step live.

    Returns the new image's id, or what failed.
    """
    step = ""
    tail: collections.deque[str] = collections.deque(maxlen=BUILD_TAIL_LINES)
    image_id = ""
    with translated(f"building {tag}"):
        chunks = client.api.build(
            fileobj=io.BytesIO(archive), custom_context=True, tag=tag,
            rm=True, forcerm=True, nocache=no_cache, decode=True,
        )
        for chunk in chunks:
            if "error" in chunk:
                return BuildFailure(step=step, error=str(chunk["error"]).strip(), tail=list(tail))
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            text = chunk.get("stream") or (chunk.get("status", "") + "\n" if "status" in chunk else "")
            if not text:
                continue
            print(text, end="", flush=True)
            for line in text.splitlines():
                matched = _STEP.match(line)
                if matched:
                    step = matched.group(3)
                    tail.clear()
                elif line.strip():
                    tail.append(line.rstrip())
    if not image_id:
        image_id = str((image_attrs(client, tag) or {}).get("Id", ""))
    return image_id


def project_containers(client: DockerClient, label: str, project: str) -> list[Container]:
    """Every container, running or not, that carries this project's label (and only those)."""
    with translated("listing the project's containers"):
        containers: list[Container] = client.containers.list(
            all=True, filters={"label": f"{label}={project}"}
        )
    return containers


def container_named(client: DockerClient, name: str) -> Container | None:
    import docker.errors

    with translated(f"looking up the container {name}"):
        try:
            return client.containers.get(name)
        except docker.errors.NotFound:
            return None


def start(client: DockerClient, options: Mapping[str, Any], host_ip: str, host_port: int) -> Container:
    """Create and start a container; when it cannot start, remove it again and say why."""
    with translated(f"creating the container {options.get('name')}"):
        container = client.containers.create(**options)
    try:
        start_again(container, host_ip, host_port)
    except NbdockError:
        remove(container)
        raise
    return container


def start_again(container: Container, host_ip: str, host_port: int) -> None:
    """Start a created or stopped container, naming a taken port plainly."""
    try:
        with translated(f"starting the container {container.name}"):
            container.start()
    except NbdockError as error:
        if any(hint in str(error) for hint in _PORT_TAKEN):
            raise NbdockError(
                f"port {host_port} on {host_ip} is already in use; stop what uses it, or set "
                "HOST_PORT in .env to another port (0 picks a free one)"
            ) from None
        raise


def stop(container: Container, timeout: int = STOP_TIMEOUT) -> None:
    with translated(f"stopping the container {container.name}"):
        container.stop(timeout=timeout)


def remove(container: Container) -> None:
    import docker.errors

    with translated(f"removing the container {container.name}"), suppress(docker.errors.NotFound):
        container.remove(force=True)


def remove_image(client: DockerClient, name: str) -> bool:
    import docker.errors

    with translated(f"removing the image {name}"):
        try:
            client.images.remove(name)
        except docker.errors.ImageNotFound:
            return False
    return True


def wait(container: Container, timeout: float) -> int | None:
    """The container's exit code, or None when it ran past `timeout` seconds (it is then killed)."""
    import requests.exceptions

    with translated(f"waiting for {container.name}"):
        try:
            return int(container.wait(timeout=timeout)["StatusCode"])
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as error:
            timed_out = isinstance(error, requests.exceptions.ReadTimeout) or "timed out" in str(error)
            if not timed_out:
                raise
        container.kill()
        return None


def log_tail(container: Container, lines: int = 30) -> list[str]:
    with translated(f"reading the log of {container.name}"):
        data: bytes = container.logs(tail=lines)
    return data.decode("utf-8", errors="replace").splitlines()


def is_running(container: Container) -> bool:
    import docker.errors

    try:
        container.reload()
    except docker.errors.NotFound:
        return False
    return bool(container.status == "running")


def published_port(container: Container, container_port: int) -> int | None:
    bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
        f"{container_port}/tcp"
    )
    return int(bindings[0]["HostPort"]) if bindings else None


def container_address(container: Container) -> str | None:
    networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
    for network in networks.values():
        if network.get("IPAddress"):
            return str(network["IPAddress"])
    return None


def container_env(container: Container) -> dict[str, str]:
    pairs = container.attrs.get("Config", {}).get("Env") or []
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)
