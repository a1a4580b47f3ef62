"""One project's image and notebook server: build, run, up, stop, down, status, logs, url, ip.

Each operation is a method of `Project`, usable without invoke; the tasks only parse flags.
Only containers that carry the project's label are ever stopped or removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from nbdock import buildcache, console, dockerfile, engine, jupyter
from nbdock.context import build_context, environment_digest
from nbdock.errors import NbdockError
from nbdock.settings import ENV_FILE, LABEL_PROJECT, Settings

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

LABEL_SERVER = "io.nbdock.server"


@dataclass(frozen=True)
class Server:
    """A running notebook server."""

    container: str
    host: str
    port: int
    token: str
    reused: bool

    @property
    def url(self) -> str:
        return jupyter.lab_url(self.host, self.port, self.token)


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    state: str
    health: str
    image: str
    url: str | None


class Project:
    """The notebooks project in `settings.project_dir`, on the engine that DOCKER_HOST names."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def client(self) -> DockerClient:
        return engine.connect()

    @cached_property
    def dockerfile_text(self) -> str:
        return dockerfile.render(self.settings)

    @cached_property
    def browser_host(self) -> str:
        """The host a browser on this machine uses: the engine's host if remote, else HOST_IP."""
        remote = engine.remote_host(engine.engine_address())
        if remote:
            return remote
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.settings.host_ip, self.settings.host_ip)

    # -- image -------------------------------------------------------------------------------

    @cached_property
    def base_image_id(self) -> str:
        """The base image's id, or "" when the engine does not have it (the build pulls it)."""
        base = engine.image_attrs(self.client, self.settings.base_image)
        return str(base["Id"]) if base else ""

    def build(self, no_cache: bool = False) -> str:
        """Write the Dockerfile and build the image, each step shown live; its id.

        When the image was built from exactly these files on this base, the build is skipped.
        """
        settings = self.settings
        dockerfile.write(settings, self.dockerfile_text)
        archive = build_context(settings, self.dockerfile_text)
        digest = buildcache.context_digest(archive, self.base_image_id)
        current = engine.image_attrs(self.client, settings.image_name)
        if current and not no_cache and buildcache.recorded(current["Id"]) == digest:
            console.info(f"Image {settings.image_name} is up to date.")
            return str(current["Id"])
        console.info(
            f"Building {settings.image_name} from {settings.base_image} "
            f"({len(archive) / 1024:.1f} KiB of context)"
        )
        result = engine.build(self.client, archive, settings.image_name, no_cache)
        if isinstance(result, engine.BuildFailure):
            if result.is_base_image_missing:
                raise NbdockError(
                    f"the base image {settings.base_image} is not on this machine and could not "
                    f"be pulled ({result.error}); build one with `invoke base` and set BASE_IMAGE "
                    f"in {settings.project_dir / ENV_FILE} to the name it prints"
                )
            console.detail([f"failed step: {result.step}", *result.tail])
            raise NbdockError(
                f"the build failed at `{result.step}` ({result.error}); fix that step "
                "(a package that will not install: check requirements.txt) and build again"
            )
        buildcache.record(result, digest)
        return result

    # -- server ------------------------------------------------------------------------------

    @cached_property
    def server_user(self) -> str:
        """uid:gid for the server, so that what it saves on the host belongs to the right user.

        RUN_AS if set; else the invoking user; when that is root, the owner of the notebooks
        folder. Only when that folder belongs to root too does the server run as root, and
        then it says so: it has no more rights than the root user who started it.
        """
        settings = self.settings
        if settings.run_as:
            user = settings.run_as
        elif os.getuid() != 0:
            user = f"{os.getuid()}:{os.getgid()}"
        else:
            owner = settings.notebooks_path.stat()
            user = f"{owner.st_uid}:{owner.st_gid}"
        if user.split(":")[0] == "0":
            console.warn(
                f"the notebook server runs as root, because {settings.notebooks_path} belongs "
                "to root; chown that folder to a user, or set RUN_AS=uid:gid, to run it as that user"
            )
        return user

    def _wanted_server(self, user: str) -> str:
        """A digest of everything the running server depends on: a change means a new container.

        The notebooks are mounted from the host, so a rebuild that only copied new notebooks into
        the image keeps the running server.
        """
        settings = self.settings
        environment = environment_digest(self.dockerfile_text, self.base_image_id, settings)
        return hashlib.sha256(json.dumps({
            "environment": environment,
            "host_ip": settings.host_ip,
            "host_port": settings.host_port,
            "container_port": settings.container_port,
            "user": user,
            "notebooks": str(settings.notebooks_path),
            "token": settings.jupyter_token,
            "name": settings.container_name,
        }, sort_keys=True).encode()).hexdigest()

    def containers(self) -> list[Container]:
        """All of this project's containers: servers and headless runs."""
        return engine.project_containers(self.client, LABEL_PROJECT, self.settings.project_name)

    def server_containers(self) -> list[Container]:
        return [c for c in self.containers() if LABEL_SERVER in c.labels]

    def run(self) -> Server:
        """Start the server (or keep the one already running as wanted) and wait until it answers."""
        settings = self.settings
        notebooks = settings.require_notebooks()
        image = engine.image_attrs(self.client, settings.image_name)
        if image is None:
            raise NbdockError(
                f"there is no image {settings.image_name} yet; build it with `invoke build` "
                "(or start everything with `invoke up`)"
            )
        user = self.server_user
        wanted = self._wanted_server(user)
        ours = self.server_containers()
        same_name = engine.container_named(self.client, settings.container_name)
        if same_name is not None and same_name.id not in {c.id for c in ours}:
            raise NbdockError(
                f"a container named {settings.container_name} exists but does not belong to "
                f"project {settings.project_name}; remove it or set CONTAINER_NAME in .env"
            )
        for container in ours:
            if container.labels.get(LABEL_SERVER) == wanted:
                return self._resume(container)
        for container in ours:
            console.info(f"Replacing {container.name}: its settings or environment changed.")
            engine.remove(container)
        token = settings.jupyter_token or jupyter.new_token()
        options = {
            "image": image["Id"],
            "command": jupyter.server_command(settings.container_port, user.startswith("0:")),
            "name": settings.container_name,
            "detach": True,
            "init": True,
            "user": user,
            "labels": {**settings.labels, LABEL_SERVER: wanted},
            "environment": {"JUPYTER_TOKEN": token},
            "ports": {
                f"{settings.container_port}/tcp": (settings.host_ip, settings.host_port or None)
            },
            "volumes": {str(notebooks): {"bind": jupyter.NOTEBOOKS, "mode": "rw"}},
        }
        console.info(f"Starting {settings.container_name} on {settings.host_ip}.")
        container = engine.start(self.client, options, settings.host_ip, settings.host_port)
        return self._until_ready(container, reused=False)

    def _resume(self, container: Container) -> Server:
        if container.status == "running":
            console.info(f"{container.name} is already running.")
            return self._until_ready(container, reused=True)
        console.info(f"Starting {container.name} again.")
        engine.start_again(container, self.settings.host_ip, self.settings.host_port)
        return self._until_ready(container, reused=True)

    def _until_ready(self, container: Container, reused: bool) -> Server:
        """Wait for the server; if it does not come up, remove the container and say why."""
        try:
            with engine.translated(f"inspecting the container {container.name}"):
                container.reload()
            port = engine.published_port(container, self.settings.container_port)
            if port is None:
                raise NbdockError(
                    f"{container.name} publishes no port for {self.settings.container_port}; "
                    "run `invoke down` and `invoke up` to start it afresh"
                )
            outcome = jupyter.wait_until_ready(
                jupyter.base_url(self.browser_host, port),
                lambda: engine.is_running(container),
                self.settings.ready_timeout,
            )
            if outcome != "ready":
                console.detail(engine.log_tail(container))
                state = container.attrs.get("State", {})
                raise NbdockError(
                    f"the notebook server exited during start-up (exit code {state.get('ExitCode')});"
                    " the end of its log is above"
                    if outcome == "exited" else
                    f"the notebook server did not answer within {self.settings.ready_timeout:g} s "
                    "(the end of its log is above); raise READY_TIMEOUT in .env if the machine "
                    "is slow"
                )
        except BaseException:
            engine.remove(container)
            raise
        token = engine.container_env(container).get("JUPYTER_TOKEN", "")
        return Server(container.name, self.browser_host, port, token, reused)

    def up(self, no_cache: bool = False) -> Server:
        """Build the image if anything changed, then start the server or keep it running."""
        self.build(no_cache=no_cache)
        return self.run()

    def stop(self) -> list[str]:
        """Stop this project's running containers (only those); their names."""
        stopped = []
        for container in self.containers():
            if container.status == "running":
                engine.stop(container)
                stopped.append(str(container.name))
        return stopped

    def down(self, remove_image: bool = False) -> list[str]:
        """Stop and remove this project's containers (and with remove_image, its image)."""
        removed = []
        for container in self.containers():
            if container.status == "running":
                engine.stop(container)
            engine.remove(container)
            removed.append(str(container.name))
        if remove_image and engine.remove_image(self.client, self.settings.image_name):
            removed.append(self.settings.image_name)
        return removed

    def server(self) -> Server:
        """The running server of this project."""
        for container in self.server_containers():
            port = engine.published_port(container, self.settings.container_port)
            if container.status == "running" and port is not None:
                token = engine.container_env(container).get("JUPYTER_TOKEN", "")
                return Server(str(container.name), self.browser_host, port, token, reused=True)
        raise NbdockError(
            f"no notebook server of project {self.settings.project_name} is running; "
            "start one with `invoke up`"
        )

    def status(self) -> list[ContainerStatus]:
        current = engine.image_attrs(self.client, self.settings.image_name) or {}
        rows = []
        for container in self.containers():
            image_id = str(container.attrs.get("Image", ""))
            image = (
                self.settings.image_name if image_id == current.get("Id")
                else f"{image_id.removeprefix('sha256:')[:12]} (an earlier build)"
            )
            state = container.attrs.get("State", {})
            port = engine.published_port(container, self.settings.container_port)
            token = engine.container_env(container).get("JUPYTER_TOKEN", "")
            running = container.status == "running" and port is not None
            rows.append(ContainerStatus(
                name=str(container.name),
                state=str(container.status),
                health=str(state.get("Health", {}).get("Status", "-")),
                image=image,
                url=jupyter.lab_url(self.browser_host, port, token) if running and port else None,
            ))
        return rows

    def logs(self, follow: bool = False) -> None:
        """Print the server's log; with follow, keep printing until Ctrl-C."""
        containers = self.server_containers()
        if not containers:
            raise NbdockError(
                f"project {self.settings.project_name} has no server container; start one with "
                "`invoke up`"
            )
        container = containers[0]
        with engine.translated(f"reading the log of {container.name}"):
            if not follow:
                sys.stdout.write(container.logs().decode("utf-8", errors="replace"))
                return
            try:
                for chunk in container.logs(stream=True, follow=True):
                    sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                    sys.stdout.flush()
            except KeyboardInterrupt:
                return

    def addresses(self) -> tuple[str, str | None]:
        """(the address a browser uses, the container's own address on its network or None)."""
        container_ip = None
        for container in self.server_containers():
            if container.status == "running":
                container_ip = engine.container_address(container)
        return self.browser_host, container_ip

