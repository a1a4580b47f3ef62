"""Training workers as Swarm services of one replica each, without restart, endpoint mode dnsrr
(VIP hangs collective ops), on an attachable overlay network; peers by service name.

With REGISTRY the workers may run on any node: each is pinned to a node of its own (at most
TRAIN_WORKERS_PER_NODE on one), runs the script or notebook the image holds (no node has the
project folder) and writes its outputs to its log at the end, which the run loop unpacks into the
run folder here, as on Kubernetes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from nbdock import console, contract, swarm
from nbdock import image as images
from nbdock.engine import Node
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.training.k8s import OUTPUT_IN_POD
from nbdock.training.model import OUTPUTS_TO_LOG, Training, engine_names, worker_workload

# A task in one of these states has not ended yet.
TASK_PENDING = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"})
TASKS_INTERVAL = 0.25  # seconds between looks at the workers' tasks
NODE_LOST = 255  # the exit code given to a worker whose node went down


def spread(nodes: list[Node], workers: int, per_node: int, env_file: Path) -> list[Node]:
    """The node of each worker: round the ready, active nodes (by hostname), at most `per_node`
    workers on one. Raises NbdockError when there are too few nodes for that."""
    ready = sorted((n for n in nodes if n.state == "ready" and n.availability == "active"), key=lambda n: n.hostname)
    if len(ready) * per_node < workers:
        raise NbdockError(
            f"{workers} workers at most {per_node} to a node need {-(-workers // per_node)} ready nodes, and the "
            f"swarm has {len(ready)}; lower --workers, or raise TRAIN_WORKERS_PER_NODE in {env_file}"
        )
    return [ready[index % len(ready)] for index in range(workers)]


class SwarmBackend:
    """Workers as services of the execution image: the pushed digest with REGISTRY, else the
    local image pinned to this node. The project folder is mounted (it must be at the same path
    on the nodes the services run on)."""

    def __init__(self, project: Project, training: Training, image_id: str) -> None:
        self.project = project
        self.training = training
        self.engine = project.swarm_engine
        manager = project.settings.swarm_host if project.separate_manager else ""
        node = swarm.require_swarm(self.engine, False, manager, project.settings.env_file)
        self.outputs_in_log = bool(project.settings.registry)
        nodes = self.engine.nodes()
        self.placement = spread(nodes, training.workers, project.settings.train_workers_per_node,
                                project.settings.env_file) if self.outputs_in_log else []
        here = next((n.hostname for n in nodes if n.id == node), "-")  # without REGISTRY, all run here
        self.node_names = [n.hostname for n in self.placement] or [here] * training.workers
        self.image, self.constraints = images.for_swarm(project, node, execute=True)
        self.labels = {**project.settings.object_labels, contract.LABEL_RUN: training.run_id}
        self.network, self.names = engine_names(project, training)
        self.hosts = [f"{name}:{training.port}" for name in self.names]
        self.started: set[int] = set()
        self.final_logs: dict[int, list[str]] = {}
        self._network_made = False

    def start(self, folder: Path) -> None:
        self.engine.create_network(self.network, self.labels, driver="overlay", attachable=True)
        self._network_made = True
        for index, name in enumerate(self.names):
            workload = worker_workload(self.project, self.training, self.hosts, name, index, self.image, folder,
                                       self.network)
            constraints = self.constraints
            if self.placement:
                node = self.placement[index]
                constraints = [*constraints, f"node.id=={node.id}"]
                console.info(f"Worker {index} runs on node {node.hostname} ({node.address}).")
                workload = replace(
                    workload, mounts=(), command=self.training.command(self.hosts, OUTPUT_IN_POD),
                    environment={**workload.environment, "NBDOCK_OUTPUT": OUTPUT_IN_POD, OUTPUTS_TO_LOG: "1"})
            self.engine.create_service(workload, {}, restart=False, constraints=constraints)
            self.started.add(index)

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        ended: set[int] = set()
        while True:
            down = {n.id: n for n in self.engine.nodes() if n.state == "down"} if self.placement else {}
            for index in sorted(self.started - ended):
                service = self.engine.service(self.names[index])
                task = service.tasks[0] if service and service.tasks else None
                lost = down.get(task.node_id or "") if task is not None else None
                if lost is not None:
                    ended.add(index)
                    console.detail([f"worker {index}: its node {lost.hostname} ({lost.address}) went down"])
                    yield index, NODE_LOST
                    continue
                if task is None or task.state in TASK_PENDING:
                    continue
                ended.add(index)
                if task.state != "complete" and task.error:
                    console.detail([f"worker {index}: {task.error}"])
                yield index, 0 if task.state == "complete" else (task.exit_code or 1)
            time.sleep(TASKS_INTERVAL)

    def node(self, index: int) -> str:
        return self.node_names[index]

    def logs(self, index: int) -> list[str]:
        if index in self.final_logs:
            return self.final_logs[index]
        return "".join(self.engine.service_logs(self.names[index])).splitlines()

    def follow(self, index: int) -> Iterator[str]:
        yield from self.engine.service_logs(self.names[index], follow=True)

    def stop_all(self) -> None:
        for index in self.started:  # a removed service has no log left to read: keep it first
            self.final_logs[index] = self.logs(index)
            self.engine.remove_service(self.names[index])

    def remove_all(self) -> None:
        for index in self.started:
            self.engine.remove_service(self.names[index])
        if self._network_made:
            swarm.remove_network(self.engine, self.network)
