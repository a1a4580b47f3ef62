"""The notebook server as a Docker Swarm service, derived from the same Workload as the local one.

What it makes impossible, or says in one line: the token is a Docker secret read from a file
(never in `docker service inspect` or the logs); the endpoint mode is dnsrr with a host-mode
published port (the ingress mesh and VIP mode hang some traffic); Swarm publishes on every
interface whatever HOST_IP says, so nbdock refuses unless HOST_IP is 0.0.0.0 or `--public`;
the notebooks live in a named volume seeded from the image and kept by `swarm.down`; without
REGISTRY the service is pinned to this node, where the image is.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NoReturn

from nbdock import cache, console, contract, jupyter, swarm
from nbdock import image as images
from nbdock.engine import Node, Service, Task
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.wait import wait_until
from nbdock.workload import Mount, PublishedPort, Workload

TASK_FAILED = {"failed", "rejected", "shutdown", "orphaned", "remove"}
TASKS_INTERVAL = 1.0  # seconds between looks at a starting service's tasks
OUT_OF_MEMORY = 137  # the exit code of a container the kernel killed for memory (SIGKILL)
UPDATE_SETTLE = 30.0  # seconds beyond READY_TIMEOUT that Swarm's update (and its rollback) may take
VOLUME_NODES = "swarm-volume-nodes"  # cache kind: the node that holds a server's notebooks volume


def _failed_ids(service: Service) -> frozenset[str]:
    return frozenset(task.id for task in service.tasks if task.state in TASK_FAILED)


class ServerFailed(NbdockError):
    """The server's task failed or never answered; `reason` says how, in one clause."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str
    error: str
    url: str | None
    node: str = ""  # the hostname (address) of the node that runs its latest task


class SwarmServer:
    """This checkout's notebook server on the swarm of the project's engine."""

    def __init__(self, project: Project, init: bool = False, public: bool = False, volumes: bool = False) -> None:
        """`init` makes a single-node swarm when there is none, `public` accepts that Swarm
        publishes on every interface, `volumes` makes `down` remove the notebooks volume too."""
        self.project = project
        self.settings = project.settings
        self.init = init
        self.public = public
        self.volumes = volumes
        self.name = contract.dns_label(self.settings.container_name)
        self.volume = f"{self.name}-notebooks"
        self._image = ""

    @property
    def labels(self) -> dict[str, str]:
        return {**self.settings.labels, contract.LABEL_ROLE: "server"}

    @cached_property
    def token(self) -> str:
        return jupyter.kept_token(self.settings.jupyter_token, f"swarm-{self.settings.checkout_id}")

    def check_public(self, public: bool) -> None:
        """Swarm binds a published port on every interface: refuse unless that is what was asked."""
        host_ip = self.settings.host_ip
        if host_ip not in {"0.0.0.0", "::"} and not public:
            raise NbdockError(
                f"Swarm publishes the server on every interface of the node, whatever HOST_IP says "
                f"({host_ip}); set HOST_IP=0.0.0.0 in {self.settings.env_file} or pass --public to "
                "accept that (the token still protects it)"
            )

    def workload(self, image: str, secret: str) -> Workload:
        settings = self.settings
        workload = Workload(
            name=self.name, image=image,
            command=tuple(jupyter.server_command(settings.container_port)),
            environment=jupyter.token_environment(),
            secrets={jupyter.TOKEN_SECRET: self.token},
            mounts=(Mount(self.volume, contract.NOTEBOOKS, kind="volume",
                          labels=tuple(sorted(settings.object_labels.items())),
                          driver=settings.swarm_volume_driver,
                          driver_options=settings.swarm_volume_options),),
            labels={**settings.object_labels, contract.LABEL_ROLE: "server"},
            ports=(PublishedPort(settings.container_port, settings.host_port or None, "0.0.0.0"),),
            resources=settings.resources,
        )
        state = hashlib.sha256(json.dumps([
            workload.image, list(workload.command or ()), sorted(workload.environment.items()), secret,
            [repr(m) for m in workload.mounts], [repr(p) for p in workload.ports], repr(workload.resources),
        ]).encode()).hexdigest()
        return replace(workload, labels={**workload.labels, contract.LABEL_STATE: state})

    def service(self) -> Service | None:
        found = self.project.swarm_engine.services(self.labels)
        return found[0] if found else None

    def up(self) -> str:
        """Start the service (or keep the one running as wanted) and wait until Jupyter answers;
        the URL to open. Raises NbdockError for a refused setting, or a service that does not
        come up (it is then removed, with its secret, and the volume when this run made it)."""
        self.check_public(self.public)
        self.project.settings.require_notebooks()
        manager = self.settings.swarm_host if self.project.separate_manager else ""
        node = swarm.require_swarm(self.project.swarm_engine, self.init, manager, self.settings.env_file)
        current = self.service()
        if (current is None or not self._published_port(current)) and not self.project.separate_manager:
            self.project.check_port("0.0.0.0")
        if self.name != self.settings.container_name:
            console.info(f"Service name: {self.name} (CONTAINER_NAME as a DNS name, which Swarm requires).")
        volume_node = self._volume_node(node)
        image, constraints = images.for_swarm(self.project, node)
        self._image = image
        if volume_node is not None and f"node.id=={volume_node.id}" not in constraints:
            constraints.append(f"node.id=={volume_node.id}")
        secret = f"{self.name}-token-{hashlib.sha256(self.token.encode()).hexdigest()[:8]}"
        wanted = self.workload(image, secret)
        engine = self.project.swarm_engine
        if current is not None and current.labels.get(contract.LABEL_STATE) == wanted.labels[contract.LABEL_STATE]:
            console.info(f"Service {self.name} is already running as wanted.")
            return self._until_ready(_failed_ids(current))  # failures of earlier tasks are no news
        if current is not None:
            # Updated in place by Swarm, rolled back if the new task fails. The endpoint mode is
            # dnsrr in every spec nbdock writes, so no stale address is left in DNS.
            console.info(f"Updating the service {self.name}: its settings or image changed.")
            secrets = engine.secrets(self.settings.labels)
            if secret not in secrets:
                secrets[secret] = engine.create_secret(secret, self.token, self.settings.object_labels)
            engine.update_service(wanted, {jupyter.TOKEN_SECRET: (secrets[secret], secret)}, restart=True,
                                  constraints=constraints)
            return self._until_updated(current.update_started, secret)
        # A volume on another node (or of a driver) is made by Swarm there, from the mount's options.
        on_this_node = volume_node is not None and volume_node.id == node
        made_volume = on_this_node and self.volume not in engine.volumes(self.settings.labels)
        if made_volume:
            engine.create_volume(self.volume, self.settings.object_labels)
        secrets = engine.secrets(self.settings.labels)
        if secret not in secrets:
            secrets[secret] = engine.create_secret(secret, self.token, self.settings.object_labels)
        for stale in set(secrets) - {secret}:
            if stale.startswith(f"{self.name}-token-"):
                engine.remove_secret(stale)
        console.info(f"Creating the service {self.name}.")
        try:
            engine.create_service(wanted, {jupyter.TOKEN_SECRET: (secrets[secret], secret)}, restart=True,
                                  constraints=constraints)
            return self._until_ready()
        except BaseException:
            self._remove_service_and_secrets()
            if made_volume:  # nothing can have been saved in it
                engine.remove_volume(self.volume)
            raise

    def _until_updated(self, before: str, secret: str) -> str:
        """Wait for Swarm's update to end; the URL once the new server answers. Raises
        NbdockError saying what failed when the update was rolled back (by Swarm, when the new
        task failed within its monitor period, or here, when it failed later or never answered):
        the previous server answers again."""
        try:
            return self._until_update_ends(before, secret)
        except ServerFailed as failure:
            engine = self.project.swarm_engine
            service = self.service()
            if service is None or not engine.restore_previous(self.name):
                raise
            self._until_update_ends(service.update_started, secret, check=False)
            raise self._rolled_back(failure.reason) from None

    def _rolled_back(self, reason: str) -> NbdockError:
        return NbdockError(
            f"the new settings of {self.name} did not start ({reason}); the service was rolled back "
            "and the previous server answers again (`invoke swarm.url` prints its URL)"
        )

    def _until_update_ends(self, before: str, secret: str, check: bool = True) -> str:
        ended = {"completed", "rollback_completed", "paused", "rollback_paused"}
        found: list[Service] = []

        def settled() -> bool:
            service = self.service()
            if service is None:
                raise NbdockError(f"the service {self.name} vanished while updating; run `invoke swarm.up` again")
            found[:] = [service]
            return service.update_started != before and service.update_state in ended

        timeout = self.settings.ready_timeout + UPDATE_SETTLE
        if not wait_until(settled, timeout, jupyter.POLL_INTERVAL):
            self._did_not_come_up(f"Swarm's update did not end within {timeout:g} s")
        state = found[0].update_state
        if state == "completed" and not check:
            return self._until_ready(_failed_ids(found[0]))
        if state == "completed":
            url = self._until_ready()
            engine = self.project.swarm_engine
            for stale in set(engine.secrets(self.settings.labels)) - {secret}:
                if stale.startswith(f"{self.name}-token-"):
                    engine.remove_secret(stale)
            return url
        nodes = self._nodes()
        failed = [task for task in found[0].tasks if task.state in TASK_FAILED and task.error]
        reason = self._failure(failed[0], nodes, self._image) if failed else f"Swarm's update ended {state}"
        if state == "rollback_completed":
            self._until_ready(_failed_ids(found[0]))
            raise self._rolled_back(reason)
        raise NbdockError(f"Swarm's update of {self.name} stopped ({state}: {reason}); `docker service ps "
                          f"{self.name}` on the manager shows its tasks")

    def _published_port(self, service: Service) -> int | None:
        endpoint = self._endpoint(service)
        return endpoint[1] if endpoint else None

    def _endpoint(self, service: Service, nodes: dict[str, Node] | None = None) -> tuple[str, int] | None:
        """(host, port) where the task that is up answers. Swarm reports the port only once the
        task's first health check passed, though the port answers at once: until then it is
        HOST_PORT, or what the task's container publishes when it runs on the manager."""
        for task in service.tasks:
            if task.state not in {"starting", "running"}:
                continue
            port = task.ports.get(self.settings.container_port) or self.settings.host_port or None
            if port is None and task.container_id:
                container = self.project.swarm_engine.container(task.container_id)
                if container is not None:
                    port = container.ports.get(self.settings.container_port)
            if port is not None:
                return self._host(task, self._nodes() if nodes is None else nodes), port
        return None

    def _nodes(self) -> dict[str, Node]:
        return {node.id: node for node in self.project.swarm_engine.nodes()}

    def _host(self, task: Task, nodes: dict[str, Node]) -> str:
        """Where a browser reaches a host-mode port of `task`: the address Swarm reports for its
        node; the host of SWARM_HOST when the task runs on that manager and it is remote; on
        the build engine's own single swarm, the host as for a local server."""
        node = nodes.get(task.node_id or "")
        engine = self.project.swarm_engine
        if node is None or node.address in {"", "0.0.0.0", "::"}:
            return self.project.browser_host
        if node.id == engine.swarm_node():
            if not self.project.separate_manager:
                return self.project.browser_host
            if engine.remote_host:
                return engine.remote_host
        return node.address

    def _where(self, task: Task, nodes: dict[str, Node]) -> str:
        node = nodes.get(task.node_id or "")
        return f"node {node.hostname} ({node.address})" if node else "its node"

    def _failure(self, task: Task, nodes: dict[str, Node], image: str) -> str:
        """What went wrong with `task`, in the terms of the setting that fixes it."""
        where = self._where(task, nodes)
        settings = self.settings
        if "No such image" in task.error or "pull" in task.error.lower():
            return (
                f"{where} could not pull {image} ({task.error}): it must reach REGISTRY {settings.registry}, "
                "over TLS unless that node's engine lists it under insecure-registries, and be logged in "
                "when the registry asks for credentials"
            )
        if task.exit_code == OUT_OF_MEMORY:
            limit = console.size(settings.memory) if settings.memory else "no limit"
            return (
                f"the server ran out of memory on {where} (exit code 137, killed by the kernel); raise MEMORY "
                f"in {settings.env_file} (now {limit}) or give that node more memory"
            )
        if task.state == "pending":
            if "host-mode port" in task.error:
                return (
                    f"Swarm cannot place it: port {settings.host_port} is taken on every node it may run on "
                    f"({task.error}); set HOST_PORT in {settings.env_file} to another port"
                )
            return f"Swarm cannot place it ({task.error}); `docker node ls` on the manager shows the nodes"
        if "address already in use" in task.error or "port is already allocated" in task.error:
            return (f"port {settings.host_port} is in use on {where} ({task.error}); set HOST_PORT in "
                    f"{settings.env_file} to another port")
        return f"on {where}: {task.error}"

    def _until_ready(self, ignore: frozenset[str] = frozenset()) -> str:
        """Poll the published port every POLL_INTERVAL; look at the service's tasks (several
        engine calls) only every TASKS_INTERVAL seconds, or until a port is known. Failed tasks
        whose ids are in `ignore` (those of a spec rolled back) say nothing."""
        looked_at = 0.0
        address = url = states = ""

        def answers() -> bool:
            nonlocal looked_at, address, url, states
            if not address or time.monotonic() - looked_at >= TASKS_INTERVAL:
                looked_at = time.monotonic()
                service = self.service()
                if service is None:
                    raise NbdockError(f"the service {self.name} vanished while starting; run `invoke swarm.up` again")
                nodes = self._nodes()
                endpoint = self._endpoint(service, nodes)
                if endpoint is not None:
                    address = jupyter.base_url(*endpoint)
                    url = jupyter.lab_url(*endpoint, self.token)
                states = ", ".join(task.state for task in service.tasks) or "none"
                failed = [task for task in service.tasks
                          if task.state in TASK_FAILED and task.error and task.id not in ignore]
                unplaced = [task for task in service.tasks[:1]
                            if task.state == "pending" and "no suitable node" in task.error]
                if failed or unplaced:
                    self._did_not_come_up(self._failure((failed or unplaced)[0], nodes, self._image))
            return bool(address) and jupyter.answers(address)

        if not wait_until(answers, self.settings.ready_timeout, jupyter.POLL_INTERVAL):
            self._did_not_come_up(
                f"no answer within {self.settings.ready_timeout:g} s from {address or 'a published port'}; "
                f"its tasks: {states}"
            )
        return url

    def _volume_key(self) -> str:
        manager = str(getattr(self.project.swarm_engine, "address", ""))
        return f"{self.settings.checkout_id}-{hashlib.sha256(manager.encode()).hexdigest()[:8]}"

    def _volume_node(self, manager: str) -> Node | None:
        """The node that holds the notebooks volume, where the server must run: the one recorded
        at the first `swarm.up`, else the manager when it takes tasks, else the first ready node.
        None with SWARM_VOLUME_DRIVER (a volume every node mounts). Raises NbdockError when the
        recorded node is drained or down."""
        if self.settings.swarm_volume_driver:
            return None
        nodes = self._nodes()
        recorded = nodes.get(cache.read(VOLUME_NODES, self._volume_key()) or "")
        if recorded is not None:
            problem = self._unavailable(recorded)
            if problem:
                raise NbdockError(problem)
            return recorded
        ready = sorted((n for n in nodes.values() if n.state == "ready" and n.availability == "active"),
                       key=lambda n: (n.id != manager, n.hostname))
        if not ready:
            raise NbdockError("no node of the swarm is ready and active to run the server; `docker node ls` on "
                              "the manager says why")
        chosen = ready[0]
        cache.write(VOLUME_NODES, self._volume_key(), chosen.id)
        if len(nodes) > 1:
            console.info(f"The notebooks volume {self.volume} lives on node {chosen.hostname}: the server stays "
                         "there (SWARM_VOLUME_DRIVER gives a volume every node mounts).")
        return chosen

    def _unavailable(self, node: Node) -> str:
        """One line when `node`, which holds the notebooks volume, cannot run the server; else ""."""
        if node.state == "ready" and node.availability == "active":
            return ""
        why = {"drain": "drained", "pause": "paused"}.get(node.availability) if node.state == "ready" else \
            f"{node.state} (its engine does not answer the manager)"
        return (
            f"the notebooks of {self.name} are in the volume {self.volume} on node {node.hostname} "
            f"({node.address}), which is {why}; bring that node back (`docker node update --availability "
            f"active {node.hostname}`, or start its engine), or copy the notebooks off it and remove the "
            f"volume there to start afresh on another node"
        )

    def volume_problem(self) -> str:
        """The line `_unavailable` gives for the recorded volume node, or ""."""
        if self.settings.swarm_volume_driver:
            return ""
        recorded = self._nodes().get(cache.read(VOLUME_NODES, self._volume_key()) or "")
        return self._unavailable(recorded) if recorded is not None else ""

    def _did_not_come_up(self, reason: str) -> NoReturn:
        lines = list(self.project.swarm_engine.service_logs(self.name))
        console.detail("".join(lines).splitlines()[-30:])
        raise ServerFailed(f"the service {self.name} did not come up ({reason}); the end of its log is above",
                           reason=reason)

    def _remove_service_and_secrets(self) -> list[str]:
        engine = self.project.swarm_engine
        removed = []
        for service in engine.services(self.labels):
            engine.remove_service(service.name)
            swarm.wait_gone(engine, [service.name], self.settings.labels)
            removed.append(service.name)
        for secret in engine.secrets(self.settings.labels):
            if secret.startswith(f"{self.name}-token-"):
                engine.remove_secret(secret)
                removed.append(secret)
        return removed

    def down(self) -> list[str]:
        """Remove the service and its secret; the notebooks volume only with `volumes`, so that
        nothing a user saved is lost by default. Names what it removed."""
        if self.project.swarm_engine.swarm_node() is None:
            return []
        removed = self._remove_service_and_secrets()
        if self.volumes and self.volume in self.project.swarm_engine.volumes(self.settings.labels):
            self.project.swarm_engine.remove_volume(self.volume)
            removed.append(self.volume)
        if self.volumes:
            cache.forget(VOLUME_NODES, self._volume_key())
        cache.forget("tokens", f"swarm-{self.settings.checkout_id}")
        return removed

    def url(self) -> str:
        """The URL of the running service. Raises NbdockError when none is running."""
        service = self.service() if self.project.swarm_engine.swarm_node() else None
        endpoint = self._endpoint(service) if service else None
        if endpoint is None:
            problem = self.volume_problem() if service else ""
            raise NbdockError(problem or (
                f"no Swarm service of project {self.settings.project_name} is running; start one with "
                "`invoke swarm.up`"
            ))
        return jupyter.lab_url(*endpoint, self.token)

    def status(self) -> list[str]:
        """Lines for people: each Swarm service of this project, its state and URL; or that there
        is none."""
        rows = self.rows()
        if not rows:
            return [f"Project {self.settings.project_name} has no Swarm service."]
        lines = []
        for row in rows:
            where = f"  on {row.node}" if row.node else ""
            lines.append(f"{row.name}  {row.state}{where}" + (f"  {row.error}" if row.error else ""))
            if row.url:
                lines.append(f"  {row.url}")
        problem = self.volume_problem()
        if problem:
            lines.append(problem[0].upper() + problem[1:])
        return lines

    def rows(self) -> list[ServiceStatus]:
        """This project's Swarm services: name, state of the latest task, its error, the URL."""
        if self.project.swarm_engine.swarm_node() is None:
            return []
        rows = []
        nodes = self._nodes()
        for service in self.project.swarm_engine.services(self.settings.labels):
            task = service.tasks[0] if service.tasks else None
            endpoint = self._endpoint(service, nodes)
            url = jupyter.lab_url(*endpoint, self.token) if endpoint else None
            node = nodes.get(task.node_id or "") if task else None
            rows.append(ServiceStatus(service.name, task.state if task else "pending",
                                      task.error if task else "", url,
                                      f"{node.hostname} ({node.address})" if node else ""))
        return rows

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The service's log; with `follow`, as it is written. Raises NbdockError when there is
        no service."""
        if self.project.swarm_engine.swarm_node() is None or self.service() is None:
            raise NbdockError(f"project {self.settings.project_name} has no Swarm service; start one with "
                              "`invoke swarm.up`")
        yield from self.project.swarm_engine.service_logs(self.name, follow=follow)
