"""The plain records the engine answers with: an image, a container, a Swarm service and its
tasks, its nodes; never SDK objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
    started_at: str = ""  # when it last started (State.StartedAt), "" when it never did

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
