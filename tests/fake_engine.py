"""A small in-memory engine that satisfies `engine.EngineLike`, for unit tests of the servers and
the training run loop: containers, images, and a swarm whose services' tasks run at once."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO

from nbdock import contract
from nbdock.engine import Container, Image, Node, Service, Task
from nbdock.errors import NameConflict, NotFound, PortTaken
from nbdock.workload import Workload


def _matches(found: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(found.get(k) == v for k, v in labels.items())


@dataclass
class FakeEngine:
    images: dict[str, Image] = field(default_factory=dict)
    running: dict[str, Container] = field(default_factory=dict)
    workloads: dict[str, Workload] = field(default_factory=dict)
    taken_ports: set[int] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    remote_host: str | None = None
    node: str | None = None  # this engine's Swarm node id: None when it is no manager
    service_workloads: dict[str, Workload] = field(default_factory=dict)
    service_constraints: dict[str, list[str]] = field(default_factory=dict)
    updates: dict[str, int] = field(default_factory=dict)  # service name -> how often it was updated
    task_states: dict[str, str] = field(default_factory=dict)  # service name -> its task's state
    secret_values: dict[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    volume_labels: dict[str, Mapping[str, str]] = field(default_factory=dict)
    networks: dict[str, Mapping[str, str]] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)  # container name -> the code its wait answers
    # a word of an exec'd command (a notebook's name) -> its exit code, None for a timeout; 137 runs out of memory
    exec_codes: dict[str, int | None] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _starts: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def image(self, name: str) -> Image | None:
        return self.images.get(name)

    def add_container(self, name: str, labels: Mapping[str, str], state: str = "running") -> Container:
        container = Container(name=name, id=f"id{next(self._ids)}", state=state, health="healthy",
                              image_id="sha256:other", labels=dict(labels))
        self.running[container.id] = container
        return container

    def build(self, context: IO[bytes], tag: str, no_cache: bool = False,
              show: Callable[[str], None] = print) -> str:
        self.calls.append(f"build {tag}")
        image = Image(f"sha256:{tag}", {})
        self.images[tag] = image
        return image.id

    def import_image(self, archive: str, repository: str, tag: str, changes: list[str]) -> None:
        self.images[f"{repository}:{tag}"] = Image(f"sha256:{repository}", {})

    def tag(self, image: str, repository: str, tag: str) -> None:
        self.calls.append(f"tag {repository}:{tag}")

    def push(self, repository: str, tag: str, show: Callable[[str], None]) -> str:
        self.calls.append(f"push {repository}:{tag}")
        return "sha256:" + "0" * 64

    def untagged_images(self, labels: Mapping[str, str]) -> list[str]:
        return []

    def remove_image(self, name: str) -> bool:
        return self.images.pop(name, None) is not None

    def containers(self, labels: Mapping[str, str]) -> list[Container]:
        return [c for c in self.running.values() if _matches(c.labels, labels)]

    def container(self, name: str) -> Container | None:
        return next((c for c in self.running.values() if name in {c.name, c.id}), None)

    def create(self, workload: Workload) -> Container:
        self.calls.append(f"create {workload.name}")
        if self.container(workload.name) is not None:
            raise NameConflict(f"the name {workload.name} is taken")
        image = self.images.get(workload.image) or next(
            (i for i in self.images.values() if i.id == workload.image), None
        )
        container = Container(
            name=workload.name, id=f"id{next(self._ids)}", state="created", health="starting",
            image_id=image.id if image else workload.image, labels=dict(workload.labels),
        )
        self.running[container.id] = container
        self.workloads[container.id] = workload
        return container

    def run(self, workload: Workload) -> Container:
        created = self.create(workload)
        try:
            self.start(created.id)
        except PortTaken:
            self.remove(created.id)
            raise
        return self.running[created.id]

    def start(self, container: str) -> None:
        self.calls.append(f"start {container}")
        current = self.running[container]
        workload = self.workloads.get(container)
        ports = {}
        for index, port in enumerate(workload.ports if workload else ()):
            if port.host_port in self.taken_ports:
                raise PortTaken(f"starting {container} failed: port is already allocated")
            ports[port.container_port] = port.host_port or 49000 + index
        self.running[container] = replace(current, state="running", ports=ports or current.ports,
                                          started_at=f"2026-01-01T00:00:{next(self._starts):02d}Z")

    def stop(self, container: str) -> None:
        self.calls.append(f"stop {container}")
        self.running[container] = replace(self.running[container], state="exited", exit_code=0)

    def remove(self, container: str) -> None:
        self.calls.append(f"remove {container}")
        self.running.pop(container, None)

    def kill(self, container: str) -> None:
        self.calls.append(f"kill {container}")

    def wait(self, container: str, timeout: float | None) -> int | None:
        found = self.running.get(container)
        return self.exit_codes.get(found.name, 0) if found else 0

    def exec_run(self, container: str, command: Sequence[str], timeout: float | None,
                 tail: int = 40) -> tuple[int | None, list[str]]:
        self.calls.append(f"exec {container} {' '.join(command)}")
        code = next((code for word, code in self.exec_codes.items() if word in " ".join(command)), 0)
        if code in (None, 137):
            self.running[container] = replace(self.running[container], state="exited", oom_killed=code == 137)
        return code, ["a log line"]

    def logs(self, container: str, tail: int | None = None) -> list[str]:
        return ["a log line"]

    def read_folder(self, container: str, path: str) -> dict[str, bytes]:
        return {}  # a server that writes no runtime file: the root URL is polled

    def follow_logs(self, container: str) -> Iterator[str]:
        yield "a log line\n"

    def probe(self, image: str, command: list[str], user: str = "0:0") -> tuple[int, str]:
        return 0, ""

    def create_network(self, name: str, labels: Mapping[str, str], driver: str = "bridge",
                       internal: bool = False, attachable: bool = False) -> None:
        self.calls.append(f"create network {name}")
        self.networks[name] = dict(labels)

    def remove_network(self, name: str) -> None:
        self.calls.append(f"remove network {name}")
        self.networks.pop(name, None)

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        return sorted(name for name, found in self.volume_labels.items() if _matches(found, labels))

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        self.calls.append(f"create volume {name}")
        self.volume_labels[name] = dict(labels)

    def remove_volume(self, name: str) -> None:
        self.calls.append(f"remove volume {name}")
        self.volume_labels.pop(name, None)

    def swarm_node(self) -> str | None:
        return self.node

    def init_swarm(self, address: str) -> str:
        self.calls.append(f"init swarm {address}")
        self.node = "node1"
        return self.node

    def nodes(self) -> list[Node]:
        return [Node(self.node, "fake", "127.0.0.1", "ready", "active", True)] if self.node else []

    def create_secret(self, name: str, value: str, labels: Mapping[str, str]) -> str:
        self.calls.append(f"create secret {name}")
        self.secret_values[name] = (value, dict(labels))
        return f"secret-{name}"

    def secrets(self, labels: Mapping[str, str]) -> dict[str, str]:
        return {name: f"secret-{name}" for name, (_, found) in self.secret_values.items() if _matches(found, labels)}

    def remove_secret(self, name: str) -> None:
        self.calls.append(f"remove secret {name}")
        self.secret_values.pop(name, None)

    def create_service(self, workload: Workload, secrets: Mapping[str, tuple[str, str]], restart: bool,
                       constraints: list[str]) -> str:
        self.calls.append(f"create service {workload.name}")
        if workload.name in self.service_workloads:
            raise NameConflict(f"the service {workload.name} exists")
        self.service_workloads[workload.name] = workload
        self.service_constraints[workload.name] = list(constraints)
        self.task_states.setdefault(workload.name, "running")
        return f"service-{workload.name}"

    def _service_record(self, name: str) -> Service:
        workload = self.service_workloads[name]
        ports = {p.container_port: p.host_port or 30000 + index for index, p in enumerate(workload.ports)}
        state = self.task_states.get(name, "running")
        task = Task(state=state, error="it broke" if state == "failed" else "", container_id=None, ports=ports,
                    exit_code=1 if state == "failed" else 0, node_id=self.node)
        updates = self.updates.get(name, 0)
        return Service(name=name, id=f"service-{name}", labels=dict(workload.labels), tasks=(task,),
                       update_state="completed" if updates else "", update_started=str(updates or ""))

    def update_service(self, workload: Workload, secrets: Mapping[str, tuple[str, str]], restart: bool,
                       constraints: list[str]) -> None:
        self.calls.append(f"update service {workload.name}")
        self.service_workloads[workload.name] = workload
        self.service_constraints[workload.name] = list(constraints)
        self.updates[workload.name] = self.updates.get(workload.name, 0) + 1

    def restore_previous(self, name: str) -> bool:
        self.calls.append(f"restore service {name}")
        return False

    def services(self, labels: Mapping[str, str]) -> list[Service]:
        return [self._service_record(name) for name, workload in self.service_workloads.items()
                if _matches(workload.labels, labels)]

    def service(self, name: str) -> Service | None:
        return self._service_record(name) if name in self.service_workloads else None

    def remove_service(self, name: str) -> None:
        self.calls.append(f"remove service {name}")
        self.service_workloads.pop(name, None)

    def service_logs(self, name: str, follow: bool = False) -> Iterator[str]:
        yield f"{name} says hello\n"

    def read_file(self, container: str, path: str) -> bytes | None:
        workload = self.workloads.get(container)
        if workload is None or path != contract.secret_path("jupyter_token"):
            raise NotFound(path)
        return workload.secrets["jupyter_token"].encode()
