"""Swarm on the engine: the nodes, secrets and services; a `Workload` in, a `Service` record with
its tasks back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from nbdock.engine.connection import Connected, _classified, _label_filter
from nbdock.engine.records import Node, Service, Task
from nbdock.errors import NotFound
from nbdock.workload import Workload

UPDATE_MONITOR_NS = 10_000_000_000  # a new server task that fails within 10 s fails the update


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


class Swarm(Connected):
    """The Swarm part of `Engine`."""

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
