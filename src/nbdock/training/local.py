"""Training workers as containers on the local engine, on a network of their own (internal: no
way out), named per worker; peers find each other by container name."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from nbdock import contract
from nbdock.project import Project
from nbdock.training.model import Training, engine_names, worker_workload


class LocalBackend:
    """Workers as containers of the execution image; the run folder is mounted in each."""

    outputs_in_log = False

    def __init__(self, project: Project, training: Training, image_id: str) -> None:
        self.project = project
        self.training = training
        self.engine = project.engine
        self.image = image_id
        self.labels = {**project.settings.object_labels, contract.LABEL_RUN: training.run_id}
        self.network, self.names = engine_names(project, training)
        self.hosts = [f"{name}:{training.port}" for name in self.names]
        self.ids: dict[int, str] = {}
        self._ended: queue.Queue[tuple[int, int]] = queue.Queue()
        self._network_made = False

    def start(self, folder: Path) -> None:
        self.engine.create_network(self.network, self.labels, internal=True)
        self._network_made = True
        for index, name in enumerate(self.names):
            workload = worker_workload(self.project, self.training, self.hosts, name, index, self.image, folder,
                                       self.network)
            container = self.engine.create(workload)
            self.ids[index] = container.id
            self.engine.start(container.id)
            threading.Thread(target=self._wait, args=(index, container.id), daemon=True).start()

    def _wait(self, index: int, container: str) -> None:
        code = self.engine.wait(container, None)
        self._ended.put((index, -1 if code is None else code))

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        while True:
            yield self._ended.get()

    def node(self, index: int) -> str:
        return self.engine.remote_host or socket.gethostname()

    def logs(self, index: int) -> list[str]:
        return self.engine.logs(self.ids[index]) if index in self.ids else []

    def follow(self, index: int) -> Iterator[str]:
        yield from self.engine.follow_logs(self.ids[index])

    def stop_all(self) -> None:
        for container in self.ids.values():
            self.engine.kill(container)

    def remove_all(self) -> None:
        for container in self.ids.values():
            self.engine.remove(container)
        if self._network_made:
            self.engine.remove_network(self.network)
