"""Training workers as Swarm services of one replica each, without restart, endpoint mode dnsrr
(VIP hangs collective ops), on an attachable overlay network; peers by service name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from nbdock import console, contract, swarm
from nbdock import image as images
from nbdock.project import Project
from nbdock.training.model import Training, engine_names, worker_workload

# A task in one of these states has not ended yet.
TASK_PENDING = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"})
TASKS_INTERVAL = 0.25  # seconds between looks at the workers' tasks


class SwarmBackend:
    """Workers as services of the execution image: the pushed digest with REGISTRY, else the
    local image pinned to this node. The project folder is mounted (it must be at the same path
    on the nodes the services run on)."""

    outputs_in_log = False

    def __init__(self, project: Project, training: Training, image_id: str) -> None:
        self.project = project
        self.training = training
        self.engine = project.engine
        node = swarm.require_swarm(project.engine, init=False)
        self.image, self.constraints = images.for_swarm(project, node, execute=True)
        self.labels = {**project.settings.object_labels, contract.LABEL_RUN: training.run_id}
        self.network, self.names = engine_names(project, training)
        self.hosts = [f"{name}:{training.port}" for name in self.names]
        self.started: set[int] = set()
        self._network_made = False

    def start(self, folder: Path) -> None:
        self.engine.create_network(self.network, self.labels, driver="overlay", attachable=True)
        self._network_made = True
        for index, name in enumerate(self.names):
            workload = worker_workload(self.project, self.training, self.hosts, name, index, self.image, folder,
                                       self.network)
            self.engine.create_service(workload, {}, restart=False, constraints=self.constraints)
            self.started.add(index)

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        ended: set[int] = set()
        while True:
            for index in sorted(self.started - ended):
                service = self.engine.service(self.names[index])
                task = service.tasks[0] if service and service.tasks else None
                if task is None or task.state in TASK_PENDING:
                    continue
                ended.add(index)
                if task.state != "complete" and task.error:
                    console.detail([f"worker {index}: {task.error}"])
                yield index, 0 if task.state == "complete" else (task.exit_code or 1)
            time.sleep(TASKS_INTERVAL)

    def logs(self, index: int) -> list[str]:
        return "".join(self.engine.service_logs(self.names[index])).splitlines()

    def follow(self, index: int) -> Iterator[str]:
        yield from self.engine.service_logs(self.names[index], follow=True)

    def stop_all(self) -> None:
        for index in self.started:
            self.engine.remove_service(self.names[index])

    def remove_all(self) -> None:
        for index in self.started:
            self.engine.remove_service(self.names[index])
        swarm.wait_gone(self.engine, [self.names[index] for index in self.started], self.labels)
        if self._network_made:
            self.engine.remove_network(self.network)
