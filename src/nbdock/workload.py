"""One description of a container to run, shared by every backend nbdock hands work to.

The notebook server, each headless run and each training worker is a `Workload`.
`engine/containers.py` turns one into a container, `engine/swarm.py` into a Swarm service and
`k8s.py` into a pod template, so a field added here reaches every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from nbdock import contract


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Mount:
    """A host folder or file (`kind="bind"`) or a named volume, at `target` in the container."""

    source: str
    target: str
    read_only: bool = False
    kind: Literal["bind", "volume"] = "bind"
    # A volume that Swarm creates on a node for a task gets these labels, and this volume
    # driver with its options (empty: the node's local driver).
    labels: tuple[tuple[str, str], ...] = ()
    driver: str = ""
    driver_options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PublishedPort:
    """`container_port` published on `host_ip`:`host_port` (None: any free port)."""

    container_port: int
    host_port: int | None
    host_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class Resources:
    """Requests for the container: CPUs (fractional), memory and shared memory (bytes), GPUs.

    `gpus` is "all", a count such as "2", or "" for none. None means the engine's default.
    """

    cpus: float | None = None
    memory: int | None = None
    shm_size: int | None = None
    gpus: str = ""


@dataclass(frozen=True)
class Workload:
    """Everything an engine needs to run one container of a project's image.

    `user` is "uid:gid"; `groups` are supplementary group ids. `secrets` maps a name to its value,
    delivered as the file `contract.secret_path(name)` (readable by `user` only) and never as an
    environment variable. `health_check` False turns the image's HEALTHCHECK off.
    """

    name: str
    image: str
    command: tuple[str, ...] | None = None
    user: str = f"{contract.IMAGE_UID}:{contract.IMAGE_GID}"
    groups: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=_frozen)
    secrets: Mapping[str, str] = field(default_factory=_frozen)
    mounts: tuple[Mount, ...] = ()
    labels: Mapping[str, str] = field(default_factory=_frozen)
    ports: tuple[PublishedPort, ...] = ()
    network: str | None = None
    init: bool = True
    health_check: bool = True
    # Docker's restart policy (`unless-stopped`, `on-failure:3`...); `no` for runs that end.
    restart: str = "no"
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        for name in ("environment", "secrets", "labels"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def uid(self) -> int:
        return int(self.user.split(":")[0])

    @property
    def gid(self) -> int:
        return int(self.user.split(":")[1])
