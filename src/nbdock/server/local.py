"""The notebook server as a container on the local engine (or the engine DOCKER_HOST names).

`LocalServer` starts it (or keeps the one running as wanted), waits until Jupyter answers,
and stops, removes, shows and reads only this checkout's containers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

from nbdock import cache, console, contract, image, jupyter, serverinfo
from nbdock.engine import Container, EngineLike
from nbdock.errors import EngineAPIError, NameConflict, NbdockError
from nbdock.project import Project
from nbdock.serverinfo import ServerInfo
from nbdock.settings import Settings
from nbdock.workload import PublishedPort, Workload


@dataclass(frozen=True)
class RunningServer:
    """A running notebook server."""

    container: str
    host: str
    port: int
    token: str
    reused: bool
    info: ServerInfo | None = None

    @property
    def url(self) -> str:
        if self.info is not None:
            return self.info.lab_url(self.host, self.port, self.token)
        return jupyter.lab_url(self.host, self.port, self.token)


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    role: str
    state: str
    health: str
    image: str
    url: str | None


class LocalServer:
    """This checkout's notebook server as a container; `no_cache` rebuilds every layer on `up`,
    `remove_images` makes `down` remove the project's images too."""

    def __init__(self, project: Project, no_cache: bool = False, remove_images: bool = False) -> None:
        self.project = project
        self.settings: Settings = project.settings
        self.no_cache = no_cache
        self.remove_images = remove_images

    @property
    def engine(self) -> EngineLike:
        return self.project.engine

    @property
    def browser_host(self) -> str:
        return self.project.browser_host

    def server_workload(self, image_id: str, token: str) -> Workload:
        """The notebook server, labelled with a digest of everything it depends on."""
        settings = self.settings
        workload = self.project.workload(
            settings.container_name, image_id, "server",
            command=tuple(jupyter.server_command(settings.container_port, self.project.identity.is_root)),
            environment={**self.project.environment_variables(), **jupyter.token_environment(),
                         **serverinfo.runtime_environment()},
            secrets={jupyter.TOKEN_SECRET: token},
            mounts=self.project.mounts(notebooks_read_only=False),
            ports=(PublishedPort(settings.container_port, settings.host_port or None, settings.host_ip),),
            restart=settings.restart,
        )
        return replace(workload, labels={**workload.labels, contract.LABEL_STATE: self.state_digest(workload)})

    def state_digest(self, workload: Workload) -> str:
        """A digest of what the server depends on: a change means a new container. The notebooks
        are mounted, so a rebuild that only copied new notebooks into the image keeps the server;
        a generated token is no part of it, a configured one is."""
        project = self.project
        environment = project.plan.environment_digest(image.dockerfile_text(project), project.base_image_id)
        described = {
            "environment": environment,
            "workload": [workload.name, list(workload.command or ()), workload.user, list(workload.groups),
                         sorted(workload.environment.items()), [repr(m) for m in workload.mounts],
                         [repr(p) for p in workload.ports], repr(workload.resources), workload.restart],
            "token": self.settings.jupyter_token,
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()

    def check_name(self) -> list[Container]:
        """This checkout's server containers; raises NameConflict when CONTAINER_NAME is taken
        by a container that is not one of them (another checkout's, or someone else's)."""
        settings = self.settings
        ours = self.project.containers("server")
        same_name = self.engine.container(settings.container_name)
        if same_name is not None and same_name.id not in {c.id for c in ours}:
            if same_name.labels.get(contract.LABEL_PROJECT) == settings.project_name:
                folder = same_name.labels.get(contract.LABEL_FOLDER)
                image.check_owner(self.project, folder, f"the container {settings.container_name}")
                return [*ours, same_name]  # its checkout is gone: this one takes its place
            raise NameConflict(
                f"a container named {settings.container_name} exists but does not belong to "
                f"project {settings.project_name}; remove it or set CONTAINER_NAME in {settings.env_file}"
            )
        return ours

    def run(self) -> RunningServer:
        """Start the server (or keep the one already running as wanted) and wait until it
        answers. Raises NbdockError when there is no image, the port or name is taken, or the
        server does not come up (its container is then removed)."""
        settings = self.settings
        image = self.engine.image(settings.image_name)
        if image is None:
            raise NbdockError(
                f"there is no image {settings.image_name} yet; build it with `invoke build` "
                "(or start everything with `invoke up`)"
            )
        token = settings.jupyter_token or jupyter.new_token()
        workload = self.server_workload(image.id, token)
        ours = self.check_name()
        for container in ours:
            if container.labels.get(contract.LABEL_STATE) == workload.labels[contract.LABEL_STATE]:
                return self._resume(container)
        for container in ours:
            console.info(f"Replacing {container.name}: its settings or environment changed.")
            self.engine.remove(container.id)
        console.info(f"Starting {settings.container_name} on {settings.host_ip}.")
        with self.project.refusals():
            container = self.engine.run(workload)
        return self._until_ready(container, reused=False)

    def _resume(self, container: Container) -> RunningServer:
        if container.running:
            console.info(f"{container.name} is already running.")
        else:
            console.info(f"Starting {container.name} again.")
            with self.project.refusals():
                self.engine.start(container.id)
        return self._until_ready(container, reused=True)

    def _until_ready(self, container: Container, reused: bool) -> RunningServer:
        """Wait for the server; if it does not come up, remove the container and say why."""
        try:
            current = self.engine.container(container.id) or container
            port = current.ports.get(self.settings.container_port)
            if port is None:
                raise NbdockError(
                    f"{container.name} publishes no port for {self.settings.container_port}; "
                    "run `invoke down` and `invoke up` to start it afresh"
                )
            outcome, info = serverinfo.wait_until_ready(
                self.engine, container.id, current.started_at, self.browser_host, port,
                lambda: bool((self.engine.container(container.id) or current).running),
                self.settings.ready_timeout, self.settings.container_port, self.settings.env_file,
            )
            if outcome != "ready":
                console.detail(self.engine.logs(container.id, tail=30))
                raise self._start_failure(self.engine.container(container.id), outcome == "exited")
        except BaseException:
            self.engine.remove(container.id)
            raise
        return self._running(current, port, reused, info)

    def _start_failure(self, exited: Container | None, died: bool) -> NbdockError:
        settings = self.settings
        if not died:
            return NbdockError(
                f"the notebook server did not answer within {settings.ready_timeout:g} s (the end of its log is "
                f"above); raise READY_TIMEOUT in {settings.env_file} if the machine is slow"
            )
        code = exited.exit_code if exited else None
        if exited is not None and (exited.oom_killed or code == 137):
            limit = f"MEMORY={settings.memory // 2**20}m" if settings.memory else "the machine's memory"
            return NbdockError(f"the notebook server was killed during start-up, out of memory ({limit}); raise "
                               f"MEMORY in {settings.env_file}")
        return NbdockError(f"the notebook server exited during start-up (exit code {code}); the end of its log "
                           "is above")

    def _token(self, container: Container) -> str:
        """JUPYTER_TOKEN, or the token generated for `container`: it is the container's for its
        whole life, so it is remembered (0600) by container id rather than copied out again."""
        if self.settings.jupyter_token:
            return self.settings.jupyter_token
        token = cache.read("tokens", container.id)
        if not token:
            data = self.engine.read_file(container.id, contract.secret_path(jupyter.TOKEN_SECRET))
            token = data.decode() if data else ""
            if token:
                cache.write("tokens", container.id, token, private=True)
        return token

    def _running(self, container: Container, port: int, reused: bool, info: ServerInfo | None = None) -> RunningServer:
        """The server in `container` as a browser reaches it on host `port`."""
        if info is None:
            info = serverinfo.read(self.engine, container.id, container.started_at)
        return RunningServer(container.name, self.browser_host, port, self._token(container), reused, info)

    def up(self) -> str:
        """Check what can be checked, build the image if anything changed, then start the
        server or keep it running; the URL to open."""
        self.settings.require_notebooks()
        self.project.mounts(notebooks_read_only=False)
        self.check_name()
        self.project.check_port()
        image.build(self.project, no_cache=self.no_cache)
        server = self.run()
        console.info("Jupyter is ready" + (" (already running)." if server.reused else "."))
        return server.url

    def stop(self) -> list[str]:
        """Stop this checkout's running containers (only those); their names."""
        stopped = []
        for container in self.project.containers():
            if container.running:
                self.engine.stop(container.id)
                stopped.append(container.name)
        return stopped

    def down(self) -> list[str]:
        """Stop and remove this checkout's containers; with `remove_images` its images too, and
        the earlier builds it left untagged (those still in use stay). Names what it removed."""
        removed = []
        for container in self.project.containers():
            self.engine.remove(container.id)
            cache.forget("tokens", container.id)
            removed.append(container.name)
        if self.remove_images:
            for tag in (self.settings.image_name, self.settings.execute_image_name):
                found = self.engine.image(tag)
                other = image.other_checkout(self.project, cache.read("owners", found.id)) if found else None
                if other:
                    console.info(f"Kept the image {tag}: the checkout at {other} built it.")
                elif found is not None and self.engine.remove_image(tag):
                    removed.append(tag)
            earlier = 0
            for image_id in self.engine.untagged_images(self.settings.image_labels):
                if cache.read("owners", image_id) == str(self.settings.project_dir):
                    with contextlib.suppress(EngineAPIError):  # still in use by a container: kept
                        earlier += self.engine.remove_image(image_id)
            if earlier:
                removed.append(f"{earlier} earlier build(s)")
        return removed

    def server(self) -> RunningServer:
        """The running server of this checkout. Raises NbdockError when none is running."""
        for container in self.project.containers("server"):
            port = container.ports.get(self.settings.container_port)
            if container.running and port is not None:
                return self._running(container, port, reused=True)
        raise NbdockError(
            f"no notebook server of project {self.settings.project_name} is running; "
            "start one with `invoke up`"
        )

    def url(self) -> str:
        """The URL of the running server. Raises NbdockError when none is running."""
        return self.server().url

    def status(self) -> list[str]:
        """Lines for people: each container of this checkout with its role, state, health and
        image, a server's URL below it; or that there is none."""
        rows = self.rows()
        if not rows:
            return [f"Project {self.settings.project_name} has no container."]
        lines = []
        for row in rows:
            lines.append(f"{row.name}  {row.role}  {row.state}  health: {row.health}  image: {row.image}")
            if row.url:
                lines.append(f"  {row.url}")
        return lines

    def rows(self) -> list[ContainerStatus]:
        """This checkout's containers: name, role, state, health, image, and a server's URL."""
        current = self.engine.image(self.settings.image_name)
        rows = []
        for container in self.project.containers():
            shown = (
                self.settings.image_name if current is not None and container.image_id == current.id
                else f"{container.image_id.removeprefix('sha256:')[:12]} (an earlier build)"
            )
            port = container.ports.get(self.settings.container_port)
            role = container.labels.get(contract.LABEL_ROLE, "")
            url = None
            if role == "server" and container.running and port is not None:
                url = self._running(container, port, reused=True).url
            rows.append(ContainerStatus(container.name, role, container.state, container.health, shown, url))
        return rows

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The server's log; with follow, as it is written until Ctrl-C. Raises NbdockError when
        there is no server container."""
        containers = self.project.containers("server")
        if not containers:
            raise NbdockError(
                f"project {self.settings.project_name} has no server container; start one with "
                "`invoke up`"
            )
        if follow:
            yield from self.engine.follow_logs(containers[0].id)
        else:
            yield from (line + "\n" for line in self.engine.logs(containers[0].id))

    def addresses(self) -> tuple[str, str | None]:
        """(the address a browser uses, the server container's own address, or None)."""
        running = [c for c in self.project.containers("server") if c.running]
        return self.browser_host, running[0].address if running else None

