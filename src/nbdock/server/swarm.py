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
from nbdock.engine import Service
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.wait import wait_until
from nbdock.workload import Mount, PublishedPort, Workload

TASK_FAILED = {"failed", "rejected", "shutdown", "orphaned", "remove"}
TASKS_INTERVAL = 1.0  # seconds between looks at a starting service's tasks


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str
    error: str
    url: str | None


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
            mounts=(Mount(self.volume, contract.NOTEBOOKS, kind="volume"),),
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
        found = self.project.engine.services(self.labels)
        return found[0] if found else None

    def up(self) -> str:
        """Start the service (or keep the one running as wanted) and wait until Jupyter answers;
        the URL to open. Raises NbdockError for a refused setting, or a service that does not
        come up (it is then removed, with its secret, and the volume when this run made it)."""
        self.check_public(self.public)
        self.project.settings.require_notebooks()
        node = swarm.require_swarm(self.project.engine, self.init)
        current = self.service()
        if current is None or not self._published_port(current):
            self.project.check_port("0.0.0.0")
        if self.name != self.settings.container_name:
            console.info(f"Service name: {self.name} (CONTAINER_NAME as a DNS name, which Swarm requires).")
        image, constraints = images.for_swarm(self.project, node)
        secret = f"{self.name}-token-{hashlib.sha256(self.token.encode()).hexdigest()[:8]}"
        wanted = self.workload(image, secret)
        engine = self.project.engine
        if current is not None and current.labels.get(contract.LABEL_STATE) == wanted.labels[contract.LABEL_STATE]:
            console.info(f"Service {self.name} is already running as wanted.")
            return self._until_ready()
        if current is not None:
            # Recreated, not updated: an endpoint changed in place can leave a stale address in DNS.
            console.info(f"Replacing the service {self.name}: its settings or image changed.")
            engine.remove_service(current.name)
            swarm.wait_gone(engine, [current.name], self.settings.labels)
        made_volume = self.volume not in engine.volumes(self.settings.labels)
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

    def _published_port(self, service: Service) -> int | None:
        """The host port of the task that is up. Swarm reports it only once the task's first
        health check passed, though the port answers at once: until then it is HOST_PORT, or
        what the task's container on this engine publishes."""
        for task in service.tasks:
            if task.state not in {"starting", "running"}:
                continue
            if self.settings.container_port in task.ports:
                return task.ports[self.settings.container_port]
            if self.settings.host_port:
                return self.settings.host_port
            container = self.project.engine.container(task.container_id) if task.container_id else None
            if container is not None and self.settings.container_port in container.ports:
                return container.ports[self.settings.container_port]
        return None

    def _until_ready(self) -> str:
        """Poll the published port every POLL_INTERVAL; look at the service's tasks (several
        engine calls) only every TASKS_INTERVAL seconds, or until a port is known."""
        looked_at = 0.0
        address = url = states = ""

        def answers() -> bool:
            nonlocal looked_at, address, url, states
            if not address or time.monotonic() - looked_at >= TASKS_INTERVAL:
                looked_at = time.monotonic()
                service = self.service()
                if service is None:
                    raise NbdockError(f"the service {self.name} vanished while starting; run `invoke swarm.up` again")
                port = self._published_port(service)
                if port is not None:
                    address = jupyter.base_url(self.project.browser_host, port)
                    url = jupyter.lab_url(self.project.browser_host, port, self.token)
                states = ", ".join(task.state for task in service.tasks) or "none"
                failed = [task for task in service.tasks if task.state in TASK_FAILED and task.error]
                if failed:
                    self._did_not_come_up(failed[0].error)
            return bool(address) and jupyter.answers(address)

        if not wait_until(answers, self.settings.ready_timeout, jupyter.POLL_INTERVAL):
            self._did_not_come_up(
                f"no answer within {self.settings.ready_timeout:g} s from {address or 'a published port'}; "
                f"its tasks: {states}"
            )
        return url

    def _did_not_come_up(self, reason: str) -> NoReturn:
        lines = list(self.project.engine.service_logs(self.name))
        console.detail("".join(lines).splitlines()[-30:])
        raise NbdockError(f"the service {self.name} did not come up ({reason}); the end of its log is above")

    def _remove_service_and_secrets(self) -> list[str]:
        engine = self.project.engine
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
        if self.project.engine.swarm_node() is None:
            return []
        removed = self._remove_service_and_secrets()
        if self.volumes and self.volume in self.project.engine.volumes(self.settings.labels):
            self.project.engine.remove_volume(self.volume)
            removed.append(self.volume)
        cache.forget("tokens", f"swarm-{self.settings.checkout_id}")
        return removed

    def url(self) -> str:
        """The URL of the running service. Raises NbdockError when none is running."""
        service = self.service() if self.project.engine.swarm_node() else None
        port = self._published_port(service) if service else None
        if port is None:
            raise NbdockError(
                f"no Swarm service of project {self.settings.project_name} is running; start one with "
                "`invoke swarm.up`"
            )
        return jupyter.lab_url(self.project.browser_host, port, self.token)

    def status(self) -> list[str]:
        """Lines for people: each Swarm service of this project, its state and URL; or that there
        is none."""
        rows = self.rows()
        if not rows:
            return [f"Project {self.settings.project_name} has no Swarm service."]
        lines = []
        for row in rows:
            lines.append(f"{row.name}  {row.state}" + (f"  {row.error}" if row.error else ""))
            if row.url:
                lines.append(f"  {row.url}")
        return lines

    def rows(self) -> list[ServiceStatus]:
        """This project's Swarm services: name, state of the latest task, its error, the URL."""
        if self.project.engine.swarm_node() is None:
            return []
        rows = []
        for service in self.project.engine.services(self.settings.labels):
            task = service.tasks[0] if service.tasks else None
            port = self._published_port(service)
            url = jupyter.lab_url(self.project.browser_host, port, self.token) if port else None
            rows.append(ServiceStatus(service.name, task.state if task else "pending",
                                      task.error if task else "", url))
        return rows

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The service's log; with `follow`, as it is written. Raises NbdockError when there is
        no service."""
        if self.project.engine.swarm_node() is None or self.service() is None:
            raise NbdockError(f"project {self.settings.project_name} has no Swarm service; start one with "
                              "`invoke swarm.up`")
        yield from self.project.engine.service_logs(self.name, follow=follow)
