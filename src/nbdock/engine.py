"""The Docker engine, through the Docker SDK for Python: the only module that imports docker.

`Engine` turns a `Workload` into a container or a Swarm service and answers with plain records
(`Container`, `Image`, `Service`), never with SDK objects. Every SDK and connection error is
classified here, once, into a kind of NbdockError (errors.py); callers that know the user's
words catch a kind and word the hint.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import tarfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from nbdock import console, contract
from nbdock.errors import (
    BuildFailed,
    EngineAPIError,
    EnginePermissionDenied,
    EngineUnreachable,
    NameConflict,
    NbdockError,
    NotFound,
    PortTaken,
)
from nbdock.workload import Workload

if TYPE_CHECKING:
    from docker import DockerClient

BUILD_TAIL_LINES = 25
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_PORT_TAKEN = ("port is already allocated", "address already in use")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
UPDATE_MONITOR_NS = 10_000_000_000  # a new server task that fails within 10 s fails the update


@dataclass(frozen=True)
class Image:
    id: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Container:
    """A container as the engine reports it. `ports` maps a container port to its host port."""

    name: str
    id: str
    state: str
    health: str
    image_id: str
    labels: Mapping[str, str]
    ports: Mapping[int, int] = field(default_factory=dict)
    address: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def service(self) -> str | None:
        """The Swarm service this container is a task of, or None for a container of its own."""
        return self.labels.get("com.docker.swarm.service.name")


@dataclass(frozen=True)
class Task:
    """One task of a Swarm service: its state, error, container and published ports."""

    state: str
    error: str
    container_id: str | None
    ports: Mapping[int, int]
    exit_code: int | None
    node_id: str | None = None
    id: str = ""


@dataclass(frozen=True)
class Node:
    """A Swarm node as the manager reports it: `address` is where its published ports answer,
    `state` is ready/down/unknown, `availability` active/pause/drain."""

    id: str
    hostname: str
    address: str
    state: str
    availability: str
    manager: bool


@dataclass(frozen=True)
class Service:
    name: str
    id: str
    labels: Mapping[str, str]
    tasks: tuple[Task, ...]
    update_state: str = ""  # Swarm's UpdateStatus.State: updating, completed, rollback_completed, ...
    update_started: str = ""  # when that update started (UpdateStatus.StartedAt)


class LineBuffer:
    """Whole lines out of a stream whose pieces split lines anywhere (the engine sends a build
    step's text and its newline as two pieces)."""

    def __init__(self) -> None:
        self._partial = ""

    def feed(self, text: str) -> list[str]:
        """The lines `text` completes, without their line ends; the rest waits for the next piece."""
        *complete, self._partial = (self._partial + text).split("\n")
        return [line.rstrip("\r") for line in complete]

    def flush(self) -> list[str]:
        """The unfinished last line, if any: the stream has ended."""
        rest, self._partial = self._partial, ""
        return [rest.rstrip("\r")] if rest else []


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
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        if "Permission denied" in str(error):
            raise EnginePermissionDenied(f"{action} failed: permission denied ({error})", reason=str(error)) from None
        raise EngineUnreachable(
            f"{action} failed because the Docker engine stopped answering ({error}); "
            "check that the engine is running (`docker info`)", reason=str(error),
        ) from None


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


def _connect(address: str, tls: Any = None, explicit: bool = False) -> DockerClient:
    import docker
    import docker.errors

    try:
        if explicit:
            return docker.DockerClient(base_url=address, tls=tls or False)
        if os.environ.get("DOCKER_HOST"):
            return docker.from_env()
        context = _current_context()
        tls = context.TLSConfig if context is not None else None
        return docker.DockerClient(base_url=address, tls=tls or False)
    except (docker.errors.DockerException, OSError) as error:
        reason = str(error).replace("Error while fetching server API version: ", "")
        if "Permission denied" in reason:
            raise EnginePermissionDenied(
                f"you may not use the Docker engine at {address} (permission denied); add your "
                "user to the docker group (`sudo usermod -aG docker $USER`, then log in again)"
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


def _secrets_archive(workload: Workload) -> bytes:
    """The workload's secrets as a tar of files under SECRETS_DIR, owned by its user, mode 0400."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo(contract.SECRETS_DIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(folder)
        for name, value in sorted(workload.secrets.items()):
            data = value.encode()
            info = tarfile.TarInfo(contract.secret_path(name).lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(data), 0o400, workload.uid, workload.gid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _device_requests(gpus: str) -> list[Any]:
    from docker.types import DeviceRequest

    if not gpus:
        return []
    count = -1 if gpus == "all" else int(gpus)
    return [DeviceRequest(count=count, capabilities=[["gpu"]])]


def container_options(workload: Workload) -> dict[str, Any]:
    """The Docker SDK's `containers.create` keyword arguments for `workload`.

    Bind mounts are structured mounts, so any path a user can create works (a `:` or `,` in a
    folder name breaks docker's short `src:dst:mode` syntax).
    """
    from docker.types import Mount

    resources = workload.resources
    options: dict[str, Any] = {
        "image": workload.image,
        "name": workload.name,
        "detach": True,
        "init": workload.init,
        "user": workload.user,
        "group_add": list(workload.groups),
        "environment": dict(workload.environment),
        "labels": dict(workload.labels),
        "mounts": [
            Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only)
            for m in workload.mounts
        ],
        "security_opt": ["no-new-privileges"],
    }
    if workload.command is not None:
        options["command"] = list(workload.command)
    if workload.ports:
        options["ports"] = {
            f"{port.container_port}/tcp": (port.host_ip, port.host_port) for port in workload.ports
        }
    if workload.network:
        options["network"] = workload.network
    if not workload.health_check:
        options["healthcheck"] = {"test": ["NONE"]}
    if resources.shm_size:
        options["shm_size"] = resources.shm_size
    if resources.memory:
        options["mem_limit"] = resources.memory
    if resources.cpus:
        options["nano_cpus"] = int(resources.cpus * 1e9)
    if resources.gpus:
        options["device_requests"] = _device_requests(resources.gpus)
    return options


def service_options(
    workload: Workload,
    secrets: Mapping[str, tuple[str, str]],
    restart: bool,
    constraints: list[str],
) -> dict[str, Any]:
    """The Docker SDK's `services.create` keyword arguments for `workload`.

    Endpoint mode dnsrr with host-mode published ports: the ingress mesh and VIP mode hang
    collective traffic, and dnsrr accepts only host-mode ports. `secrets` maps each of the
    workload's secret names to the (id, name) of the Docker secret that holds its value.
    """
    from docker.types import (
        DriverConfig,
        EndpointSpec,
        Healthcheck,
        Mount,
        NetworkAttachmentConfig,
        Resources,
        RestartPolicy,
        RollbackConfig,
        SecretReference,
        UpdateConfig,
    )

    resources = workload.resources
    mounts = [
        Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only,
              labels=dict(m.labels) or None,
              driver_config=DriverConfig(m.driver, dict(m.driver_options) or None) if m.driver else None)
        for m in workload.mounts
    ]
    if resources.shm_size:
        mounts.append(Mount(target="/dev/shm", source=None, type="tmpfs", tmpfs_size=resources.shm_size))
    generic = None
    if resources.gpus:  # Swarm has no "all": one GPU unless a count is given
        generic = {"NVIDIA-GPU": 1 if resources.gpus == "all" else int(resources.gpus)}
    options: dict[str, Any] = {
        "image": workload.image,
        "name": workload.name,
        "labels": dict(workload.labels),
        "container_labels": dict(workload.labels),
        "env": [f"{key}={value}" for key, value in workload.environment.items()],
        "user": workload.user,
        "groups": list(workload.groups),
        "mounts": mounts,
        "init": workload.init,
        "secrets": [
            SecretReference(*secrets[name], filename=name, uid=str(workload.uid), gid=str(workload.gid),
                            mode=0o400)
            for name in sorted(workload.secrets)
        ],
        "restart_policy": RestartPolicy(condition="any" if restart else "none", delay=1_000_000_000),
        # A run that is not restarted is stopped at once when it must stop (TensorFlow waiting for
        # a peer ignores SIGTERM); a server gets Docker's usual grace period.
        "stop_grace_period": None if restart else 1_000_000_000,
        "endpoint_spec": EndpointSpec(
            mode="dnsrr",
            ports={p.host_port or 0: (p.container_port, "tcp", "host") for p in workload.ports},
        ),
        "resources": Resources(
            cpu_limit=int(resources.cpus * 1e9) if resources.cpus else None,
            mem_limit=resources.memory, generic_resources=generic,
        ),
    }
    # The service's command is the image's CMD (args); the image's ENTRYPOINT stays.
    if workload.command is not None:
        options["args"] = list(workload.command)
    if workload.network:
        options["networks"] = [NetworkAttachmentConfig(workload.network)]
    if not workload.health_check:
        options["healthcheck"] = Healthcheck(test=["NONE"])
    if constraints:
        options["constraints"] = constraints
    if restart:
        # One task at a time: the old one stops first (it holds the host port and the volume);
        # a new one that fails within the monitor period rolls the service back to the old spec.
        options["update_config"] = UpdateConfig(parallelism=1, order="stop-first", failure_action="rollback",
                                                monitor=UPDATE_MONITOR_NS, max_failure_ratio=0)
        options["rollback_config"] = RollbackConfig(parallelism=1, order="stop-first", failure_action="pause",
                                                    monitor=UPDATE_MONITOR_NS)
    return options


def _container_record(attrs: Mapping[str, Any]) -> Container:
    state = attrs.get("State") or {}
    settings = attrs.get("NetworkSettings") or {}
    ports = {}
    for key, bindings in (settings.get("Ports") or {}).items():
        if bindings:
            ports[int(key.split("/")[0])] = int(bindings[0]["HostPort"])
    address = next(
        (str(n["IPAddress"]) for n in (settings.get("Networks") or {}).values() if n.get("IPAddress")), None
    )
    return Container(
        name=str(attrs.get("Name", "")).lstrip("/"),
        id=str(attrs["Id"]),
        state=str(state.get("Status", "")),
        health=str((state.get("Health") or {}).get("Status", "-")),
        image_id=str(attrs.get("Image", "")),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        ports=ports,
        address=address,
        exit_code=int(state["ExitCode"]) if state.get("Status") == "exited" else None,
        oom_killed=bool(state.get("OOMKilled")),
    )


def _task_record(attrs: Mapping[str, Any]) -> Task:
    status = attrs.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    ports = {
        int(p["TargetPort"]): int(p["PublishedPort"])
        for p in (status.get("PortStatus") or {}).get("Ports") or []
        if p.get("PublishedPort")
    }
    return Task(
        state=str(status.get("State", "")),
        error=str(status.get("Err", "")),
        container_id=container.get("ContainerID"),
        ports=ports,
        exit_code=container.get("ExitCode"),
        node_id=attrs.get("NodeID") or None,
        id=str(attrs.get("ID", "")),
    )


def _node_record(attrs: Mapping[str, Any]) -> Node:
    status = attrs.get("Status") or {}
    description = attrs.get("Description") or {}
    return Node(
        id=str(attrs["ID"]),
        hostname=str(description.get("Hostname", "")),
        address=str(status.get("Addr", "")),
        state=str(status.get("State", "")),
        availability=str((attrs.get("Spec") or {}).get("Availability", "")),
        manager="ManagerStatus" in attrs,
    )


def _label_filter(labels: Mapping[str, str]) -> dict[str, list[str]]:
    return {"label": [f"{key}={value}" for key, value in sorted(labels.items())]}


class EngineLike(Protocol):
    """What nbdock asks of a Docker engine: `Engine` is the real one, the unit tests have a fake.
    Each method is documented on `Engine`."""

    @property
    def remote_host(self) -> str | None: ...

    def image(self, name: str) -> Image | None: ...

    def build(self, context: IO[bytes], tag: str, no_cache: bool = False,
              show: Callable[[str], None] = print) -> str: ...

    def import_image(self, archive: str, repository: str, tag: str, changes: list[str]) -> None: ...

    def tag(self, image: str, repository: str, tag: str) -> None: ...

    def push(self, repository: str, tag: str, show: Callable[[str], None]) -> str: ...

    def untagged_images(self, labels: Mapping[str, str]) -> list[str]: ...

    def remove_image(self, name: str) -> bool: ...

    def containers(self, labels: Mapping[str, str]) -> list[Container]: ...

    def container(self, name: str) -> Container | None: ...

    def create(self, workload: Workload) -> Container: ...

    def run(self, workload: Workload) -> Container: ...

    def start(self, container: str) -> None: ...

    def stop(self, container: str) -> None: ...

    def kill(self, container: str) -> None: ...

    def remove(self, container: str) -> None: ...

    def wait(self, container: str, timeout: float | None) -> int | None: ...

    def logs(self, container: str, tail: int | None = None) -> list[str]: ...

    def follow_logs(self, container: str) -> Iterator[str]: ...

    def read_file(self, container: str, path: str) -> bytes | None: ...

    def probe(self, image: str, command: list[str], user: str = "0:0") -> tuple[int, str]: ...

    def create_network(self, name: str, labels: Mapping[str, str], driver: str = "bridge",
                       internal: bool = False, attachable: bool = False) -> None: ...

    def remove_network(self, name: str) -> None: ...

    def volumes(self, labels: Mapping[str, str]) -> list[str]: ...

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None: ...

    def remove_volume(self, name: str) -> None: ...

    def swarm_node(self) -> str | None: ...

    def init_swarm(self, address: str) -> str: ...

    def nodes(self) -> list[Node]: ...

    def create_secret(self, name: str, value: str, labels: Mapping[str, str]) -> str: ...

    def secrets(self, labels: Mapping[str, str]) -> dict[str, str]: ...

    def remove_secret(self, name: str) -> None: ...

    def create_service(self, workload: Workload, secrets: Mapping[str, tuple[str, str]], restart: bool,
                       constraints: list[str]) -> str: ...

    def update_service(self, workload: Workload, secrets: Mapping[str, tuple[str, str]], restart: bool,
                       constraints: list[str]) -> None: ...

    def restore_previous(self, name: str) -> bool: ...

    def services(self, labels: Mapping[str, str]) -> list[Service]: ...

    def service(self, name: str) -> Service | None: ...

    def remove_service(self, name: str) -> None: ...

    def service_logs(self, name: str, follow: bool = False) -> Iterator[str]: ...


class Engine:
    """The Docker engine that DOCKER_HOST (or the current docker context) names.

    It connects on first use; connecting asks the engine its API version, so it must answer.
    Every method raises a kind of NbdockError (errors.py) when the engine refuses.
    """

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

    # -- images ----------------------------------------------------------------------------

    def image(self, name: str) -> Image | None:
        """The image `name` (a reference or an id), or None when the engine has none by that name."""
        try:
            with _classified(f"looking up the image {name}"):
                attrs = self.client.api.inspect_image(name)
        except NotFound:
            return None
        return Image(
            id=str(attrs["Id"]),
            labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        )

    def build(
        self, context: IO[bytes], tag: str, no_cache: bool = False, show: Callable[[str], None] = print,
    ) -> str:
        """Build the tar build context read from `context` into `tag`; the new image's id.

        Each output line is passed to `show` as it arrives. Raises BuildFailed naming the step.
        """
        step = ""
        tail: collections.deque[str] = collections.deque(maxlen=BUILD_TAIL_LINES)
        lines = LineBuffer()
        image_id = ""

        def take(line: str) -> None:
            nonlocal step
            show(line)
            matched = _STEP.match(line)
            if matched:
                step = matched.group(3)
                tail.clear()
            elif line.strip():
                tail.append(console.plain(line).rstrip())

        with _classified(f"building {tag}"):
            chunks = self.client.api.build(
                fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                nocache=no_cache, decode=True,
            )
            for chunk in chunks:
                if "error" in chunk:
                    for line in lines.flush():
                        take(line)
                    raise BuildFailed(step, console.plain(str(chunk["error"])).strip(), list(tail))
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                text = chunk.get("stream") or (chunk["status"] + "\n" if "status" in chunk else "")
                for line in lines.feed(text):
                    take(line)
            for line in lines.flush():
                take(line)
        if not image_id:
            built = self.image(tag)
            image_id = built.id if built else ""
        return image_id

    def import_image(self, archive: str, repository: str, tag: str, changes: list[str]) -> None:
        """Import a root file system tar at path `archive` as `repository:tag`."""
        with _classified(f"importing the image {repository}:{tag}"):
            self.client.api.import_image(src=archive, repository=repository, tag=tag, changes=changes)

    def tag(self, image: str, repository: str, tag: str) -> None:
        with _classified(f"tagging {image} as {repository}:{tag}"):
            self.client.api.tag(image, repository, tag)

    def push(self, repository: str, tag: str, show: Callable[[str], None]) -> str:
        """Push `repository:tag`, each progress line passed to `show`; the pushed digest."""
        digest = ""
        shown: dict[str, str] = {}
        with _classified(f"pushing {repository}:{tag}"):
            for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    reason = str(chunk["error"]).strip()
                    raise EngineAPIError(f"pushing {repository}:{tag} failed: {reason}", reason=reason)
                digest = str((chunk.get("aux") or {}).get("Digest", digest))
                if "status" in chunk:
                    layer = chunk.get("id", "")
                    parts = (layer, chunk["status"], chunk.get("progress", ""))
                    line = " ".join(part for part in parts if part)
                    if shown.get(layer) != chunk["status"] or not layer:  # a line per state change
                        shown[layer] = chunk["status"]
                        show(line)
        if not digest:
            reason = "the registry returned no digest"
            raise EngineAPIError(f"pushing {repository}:{tag} failed: {reason}", reason=reason)
        return digest

    def untagged_images(self, labels: Mapping[str, str]) -> list[str]:
        """Ids of the images that carry all of `labels` and no tag any more (earlier builds)."""
        with _classified("listing images"):
            found = self.client.api.images(filters={**_label_filter(labels), "dangling": True})
            return [str(image["Id"]) for image in found]

    def remove_image(self, name: str) -> bool:
        """Remove the image `name`; False when there was none."""
        try:
            with _classified(f"removing the image {name}"):
                self.client.api.remove_image(name)
        except NotFound:
            return False
        return True

    # -- containers ------------------------------------------------------------------------

    def containers(self, labels: Mapping[str, str]) -> list[Container]:
        """Every container, running or not, that carries all of `labels` (and only those)."""
        with _classified("listing containers"):
            found = self.client.api.containers(all=True, filters=_label_filter(labels))
        records = (self.container(c["Id"]) for c in found)
        return [record for record in records if record is not None]  # None: removed since listed

    def container(self, name: str) -> Container | None:
        """The container `name` (or id), or None."""
        try:
            with _classified(f"looking up the container {name}"):
                return _container_record(self.client.api.inspect_container(name))
        except NotFound:
            return None

    def create(self, workload: Workload) -> Container:
        """Create (not start) a container for `workload`, with its secrets in place as files."""
        with _classified(f"creating the container {workload.name}"):
            created = self.client.containers.create(**container_options(workload))
        try:
            if workload.secrets:
                with _classified(f"giving {workload.name} its secrets"):
                    self.client.api.put_archive(created.id, "/", _secrets_archive(workload))
        except NbdockError:
            self.remove(created.id)
            raise
        return _container_record(created.attrs)

    def run(self, workload: Workload) -> Container:
        """Create and start a container for `workload`; if it cannot start, it is removed again.

        Raises PortTaken when a published port is in use, NameConflict when the name is taken.
        """
        created = self.create(workload)
        try:
            self.start(created.id)
        except NbdockError:
            self.remove(created.id)
            raise
        return self.container(created.id) or created

    def start(self, container: str) -> None:
        with _classified(f"starting the container {container}"):
            self.client.api.start(container)

    def stop(self, container: str) -> None:
        with _classified(f"stopping the container {container}"):
            self.client.api.stop(container)

    def kill(self, container: str) -> None:
        """Stop a container at once (SIGKILL); one that is gone or no longer running is no error."""
        with contextlib.suppress(NotFound, EngineAPIError), _classified(f"stopping the container {container}"):
            self.client.api.kill(container)

    def remove(self, container: str) -> None:
        """Remove a container, running or not; one that is already gone is no error."""
        with contextlib.suppress(NotFound), _classified(f"removing the container {container}"):
            self.client.api.remove_container(container, force=True)

    def wait(self, container: str, timeout: float | None) -> int | None:
        """The container's exit code, or None when it ran past `timeout` seconds (then it is killed)."""
        import requests.exceptions

        with _classified(f"waiting for {container}"):
            try:
                return int(self.client.api.wait(container, timeout=timeout)["StatusCode"])
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as error:
                if not (isinstance(error, requests.exceptions.ReadTimeout) or "timed out" in str(error)):
                    raise
        self.kill(container)
        return None

    def logs(self, container: str, tail: int | None = None) -> list[str]:
        """The container's log lines (stdout and stderr), the last `tail` of them if given."""
        with _classified(f"reading the log of {container}"):
            data: bytes = self.client.api.logs(container, tail=tail if tail is not None else "all")
        return data.decode("utf-8", errors="replace").splitlines()

    def follow_logs(self, container: str) -> Iterator[str]:
        """The container's log as it is written, until the container stops."""
        with _classified(f"reading the log of {container}"):
            for chunk in self.client.api.logs(container, stream=True, follow=True,
                                              tail="all"):
                yield chunk.decode("utf-8", errors="replace")

    def read_file(self, container: str, path: str) -> bytes | None:
        """The contents of the file `path` in a container, or None when there is none."""
        try:
            with _classified(f"reading {path} in {container}"):
                stream, _ = self.client.api.get_archive(container, path)
                data = b"".join(stream)
        except (NotFound, EngineAPIError):
            return None
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = archive.next()
            extracted = archive.extractfile(member) if member is not None else None
            return extracted.read() if extracted is not None else None

    def probe(self, image: str, command: list[str], user: str = "0:0") -> tuple[int, str]:
        """Run `command` in a throwaway container of `image`: (exit code, output)."""
        with _classified(f"checking the image {image}"):
            container = self.client.containers.create(
                image, command=command, entrypoint=[], user=user, detach=True,
                healthcheck={"test": ["NONE"]}, network_disabled=True,
            )
        try:
            self.start(container.id)
            code = self.wait(container.id, 120)
            output = "\n".join(self.logs(container.id))
        finally:
            self.remove(container.id)
        return (code if code is not None else -1), output

    # -- networks and volumes --------------------------------------------------------------

    def create_network(
        self, name: str, labels: Mapping[str, str], driver: str = "bridge",
        internal: bool = False, attachable: bool = False,
    ) -> None:
        with _classified(f"creating the network {name}"):
            self.client.api.create_network(
                name, driver=driver, internal=internal, attachable=attachable, labels=dict(labels),
                check_duplicate=True,
            )

    def remove_network(self, name: str) -> None:
        """Remove the network `name`; one that is already gone is no error."""
        with contextlib.suppress(NotFound), _classified(f"removing the network {name}"):
            self.client.api.remove_network(name)

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        with _classified("listing volumes"):
            found = self.client.api.volumes(filters=_label_filter(labels)).get("Volumes") or []
            return sorted(v["Name"] for v in found)

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with _classified(f"creating the volume {name}"):
            self.client.api.create_volume(name, labels=dict(labels))

    def remove_volume(self, name: str) -> None:
        """Remove the volume `name`; one that is already gone is no error."""
        with contextlib.suppress(NotFound), _classified(f"removing the volume {name}"):
            self.client.api.remove_volume(name)

    # -- swarm -----------------------------------------------------------------------------

    def swarm_node(self) -> str | None:
        """This engine's node id when it is an active Swarm manager, else None."""
        with _classified("asking the engine about its swarm"):
            swarm = self.client.api.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            return None
        return str(swarm.get("NodeID"))

    def init_swarm(self, address: str) -> str:
        """Make this engine a single-node swarm advertised and listening on `address`; its node id."""
        with _classified("creating a swarm"):
            self.client.api.init_swarm(advertise_addr=address, listen_addr=f"{address}:2377")
        return self.swarm_node() or ""

    def nodes(self) -> list[Node]:
        """The swarm's nodes, as this manager reports them."""
        with _classified("listing the swarm's nodes"):
            return [_node_record(attrs) for attrs in self.client.api.nodes()]

    def create_secret(self, name: str, value: str, labels: Mapping[str, str]) -> str:
        """A new Docker secret holding `value`; its id."""
        with _classified(f"creating the secret {name}"):
            return str(self.client.api.create_secret(name, value.encode(), labels=dict(labels))["ID"])

    def secrets(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Secrets that carry all of `labels`: name to id."""
        with _classified("listing secrets"):
            found = self.client.api.secrets(filters=_label_filter(labels))
            return {s["Spec"]["Name"]: s["ID"] for s in found}

    def remove_secret(self, name: str) -> None:
        """Remove the secret `name`; one that is already gone is no error."""
        with contextlib.suppress(NotFound), _classified(f"removing the secret {name}"):
            self.client.api.remove_secret(name)

    def create_service(
        self, workload: Workload, secrets: Mapping[str, tuple[str, str]], restart: bool,
        constraints: list[str],
    ) -> str:
        """Create a Swarm service of one replica for `workload`; its id. `secrets` as in
        `service_options`."""
        with _classified(f"creating the service {workload.name}"):
            created = self.client.services.create(**service_options(workload, secrets, restart, constraints))
        return str(created.id)

    def update_service(
        self, workload: Workload, secrets: Mapping[str, tuple[str, str]], restart: bool,
        constraints: list[str],
    ) -> None:
        """Change the service `workload.name` in place to `workload`, by Swarm's own rolling
        update (with `restart`, rolled back when the new task fails). `secrets` as in
        `service_options`."""
        with _classified(f"updating the service {workload.name}"):
            self.client.services.get(workload.name).update(
                **service_options(workload, secrets, restart, constraints))

    def restore_previous(self, name: str) -> bool:
        """Update the service `name` back to the spec it had before its last update (what
        `docker service rollback` does); False when it has none."""
        with _classified(f"rolling back the service {name}"):
            attrs = self.client.api.inspect_service(name)
            previous = attrs.get("PreviousSpec")
            if not previous:
                return False
            self.client.api.update_service(
                attrs["ID"], attrs["Version"]["Index"], task_template=previous["TaskTemplate"],
                name=previous["Name"], labels=previous.get("Labels"), mode=previous.get("Mode"),
                update_config=previous.get("UpdateConfig"), rollback_config=previous.get("RollbackConfig"),
                endpoint_spec=previous.get("EndpointSpec"),
            )
        return True

    def services(self, labels: Mapping[str, str]) -> list[Service]:
        """Services that carry all of `labels`, each with its tasks."""
        with _classified("listing services"):
            found = self.client.api.services(filters=_label_filter(labels))
            return [self._service_record(s) for s in found]

    def service(self, name: str) -> Service | None:
        try:
            with _classified(f"looking up the service {name}"):
                return self._service_record(self.client.api.inspect_service(name))
        except NotFound:
            return None

    def _service_record(self, attrs: Mapping[str, Any]) -> Service:
        tasks = self.client.api.tasks(filters={"service": attrs["ID"]})
        tasks = sorted(tasks, key=lambda t: t.get("CreatedAt", ""), reverse=True)
        return Service(
            name=str(attrs["Spec"]["Name"]),
            id=str(attrs["ID"]),
            labels=dict(attrs["Spec"].get("Labels") or {}),
            tasks=tuple(_task_record(t) for t in tasks),
            update_state=str((attrs.get("UpdateStatus") or {}).get("State", "")),
            update_started=str((attrs.get("UpdateStatus") or {}).get("StartedAt", "")),
        )

    def remove_service(self, name: str) -> None:
        """Remove the service `name`; one that is already gone is no error."""
        with contextlib.suppress(NotFound), _classified(f"removing the service {name}"):
            self.client.api.remove_service(name)

    def service_logs(self, name: str, follow: bool = False) -> Iterator[str]:
        """The service's log lines (stdout and stderr) as they come."""
        with _classified(f"reading the log of the service {name}"):
            for chunk in self.client.api.service_logs(name, stdout=True, stderr=True, follow=follow):
                yield chunk.decode("utf-8", errors="replace")
