"""A small in-memory engine with `engine.Engine`'s methods, for unit tests of `Project`."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from nbdock import contract
from nbdock.engine import Container, Image
from nbdock.errors import NameConflict, NotFound, PortTaken
from nbdock.workload import Workload


@dataclass
class FakeEngine:
    images: dict[str, Image] = field(default_factory=dict)
    running: dict[str, Container] = field(default_factory=dict)
    workloads: dict[str, Workload] = field(default_factory=dict)
    taken_ports: set[int] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    remote_host: str | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def image(self, name: str) -> Image | None:
        return self.images.get(name)

    def add_container(self, name: str, labels: Mapping[str, str], state: str = "running") -> Container:
        container = Container(name=name, id=f"id{next(self._ids)}", state=state, health="healthy",
                              image_id="sha256:other", labels=dict(labels))
        self.running[container.id] = container
        return container

    def containers(self, labels: Mapping[str, str]) -> list[Container]:
        return [c for c in self.running.values() if all(c.labels.get(k) == v for k, v in labels.items())]

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
        self.running[container] = replace(current, state="running", ports=ports or current.ports)

    def stop(self, container: str) -> None:
        self.calls.append(f"stop {container}")
        self.running[container] = replace(self.running[container], state="exited", exit_code=0)

    def remove(self, container: str) -> None:
        self.calls.append(f"remove {container}")
        self.running.pop(container, None)

    def logs(self, container: str, tail: int | None = None) -> list[str]:
        return ["a log line"]

    def read_folder(self, container: str, path: str) -> dict[str, bytes]:
        return {}  # a server that writes no runtime file: the root URL is polled

    def read_file(self, container: str, path: str) -> bytes | None:
        workload = self.workloads.get(container)
        if workload is None or path != contract.secret_path("jupyter_token"):
            raise NotFound(path)
        return workload.secrets["jupyter_token"].encode()
