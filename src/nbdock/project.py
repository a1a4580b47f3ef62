"""One project's images and notebook server: build, run, up, stop, down, status, logs, url, ip.

Each operation is a method of `Project`, usable without invoke; the tasks only parse flags.
`Project` speaks to the engine through `engine.Engine` (or any object with its methods, as the
unit tests' fake engine), and only ever stops or removes objects that carry this checkout's
labels.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from nbdock import baseimage, cache, console, contract, dockerfile, jupyter
from nbdock.context import ContextPlan, describe_size, plan_context, write_archive, write_dockerignore
from nbdock.engine import BuildFailed, Container
from nbdock.environment import Environment, read_environment
from nbdock.errors import EngineAPIError, NameConflict, NbdockError, PortTaken
from nbdock.identity import Identity, invoker
from nbdock.settings import Settings
from nbdock.workload import Mount, PublishedPort, Workload

if TYPE_CHECKING:
    from nbdock.engine import Engine


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
    role: str
    state: str
    health: str
    image: str
    url: str | None


class Project:
    """The notebooks project in `settings.project_dir`, on the engine that DOCKER_HOST names."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self._engine = engine

    @cached_property
    def engine(self) -> Engine:
        if self._engine is None:
            from nbdock.engine import Engine

            self._engine = Engine()
        return self._engine

    @cached_property
    def environment(self) -> Environment:
        return read_environment(self.settings.project_dir, self.settings.installer)

    @cached_property
    def plan(self) -> ContextPlan:
        plan = plan_context(self.settings, self.environment)
        for warning in plan.warnings:
            console.warn(warning)
        return plan

    @cached_property
    def dockerfile_text(self) -> str:
        return dockerfile.render(self.plan)

    @cached_property
    def identity(self) -> Identity:
        return invoker(self.settings)

    @cached_property
    def browser_host(self) -> str:
        """The host a browser on this machine uses: the engine's host if remote, else HOST_IP."""
        return self.engine.remote_host or {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(
            self.settings.host_ip, self.settings.host_ip
        )

    @property
    def labels(self) -> dict[str, str]:
        return self.settings.labels

    # -- images ----------------------------------------------------------------------------

    @cached_property
    def base_image_id(self) -> str:
        """The base image's id, or "" when the engine does not have it (the build pulls it)."""
        base = self.engine.image(self.settings.base_image)
        return base.id if base else ""

    def check_base(self) -> None:
        """Refuse, before building, a base image the Dockerfile cannot work with."""
        if not self.base_image_id:
            return
        facts = baseimage.probe_base(self.engine, self.settings.base_image, self.base_image_id)
        runtime = (self.environment.folder / contract.RUNTIME).as_posix()
        baseimage.check_base(facts, self.settings.base_image, self.environment.python, runtime)

    def _other_checkout(self, folder: str | None) -> str | None:
        """`folder` when it is another checkout that still exists; one that is gone is taken over."""
        if not folder or folder == str(self.settings.project_dir) or not Path(folder).is_dir():
            return None
        return folder

    def _check_owner(self, folder: str | None, what: str) -> None:
        """Refuse to touch `what` when another checkout of a project of the same name, at
        `folder`, made it."""
        if self._other_checkout(folder) is None:
            return
        raise NameConflict(
            f"{what} belongs to the checkout at {folder}, which has the same project name "
            f"{self.settings.project_name}; set PROJECT_NAME in {self.settings.env_file} to "
            "another name so that both can run"
        )

    def build(self, no_cache: bool = False, execute: bool = False) -> str:
        """Write the Dockerfile and .dockerignore, then build the image, each step shown live;
        its id. With `execute`, build the image for headless and training runs instead.

        When the image was built from exactly these files on this base, the build is skipped.
        Raises NbdockError when the base, a file or a build step fails, naming which and why.
        """
        settings = self.settings
        plan = self.plan
        self.check_base()
        text = dockerfile.render(plan, execute=True) if execute else self.dockerfile_text
        if not execute:
            dockerfile.write(settings.project_dir, text)
            write_dockerignore(plan)
        tag = settings.execute_image_name if execute else settings.image_name
        digest = plan.digest(text, self.base_image_id)
        current = self.engine.image(tag)
        if current is not None:
            self._check_owner(cache.read("owners", current.id), f"the image {tag}")
            if not no_cache and cache.read("builds", current.id) == digest:
                console.info(f"Image {tag} is up to date.")
                return current.id
        hint = describe_size(plan)
        if hint:
            console.warn(hint)
        console.info(f"Building {tag} from {settings.base_image} ({console.size(plan.size)} of files)")
        with tempfile.TemporaryFile(prefix="nbdock-context-") as archive:
            write_archive(plan, text, archive)
            try:
                image_id = self.engine.build(archive, tag, no_cache, show=_show_build_line)
            except BuildFailed as failure:
                raise self._build_error(failure) from None
        cache.write("builds", image_id, digest)
        cache.write("owners", image_id, str(settings.project_dir))
        return image_id

    def _build_error(self, failure: BuildFailed) -> NbdockError:
        settings = self.settings
        if failure.base_image_missing:
            return NbdockError(
                f"the base image {settings.base_image} is not on this machine and could not "
                f"be pulled ({failure.error}); build one with `invoke base` and set BASE_IMAGE "
                f"in {settings.env_file} to the name it prints"
            )
        console.detail([f"failed step: {failure.step}", *failure.tail])
        step = failure.step
        if any("CERTIFICATE_VERIFY_FAILED" in line or "invalid peer certificate" in line for line in failure.tail):
            culprit = (f"pip or uv could not verify a certificate, as behind a TLS-intercepting proxy; set CA_CERT in "
                       f"{settings.env_file} to the proxy's CA bundle (the one your own pip uses)")
        elif "pip install" in step:
            culprit = "a package that will not install: check the requirements file and the log above"
        elif "apt-get" in step:
            culprit = f"a system package that will not install: check {self.environment.apt}"
        elif contract.POST_BUILD in step:
            culprit = f"{self.environment.post_build} failed: its output is above"
        else:
            culprit = "see the step's output above"
        return NbdockError(f"the build failed at `{step}` ({failure.error}); {culprit}")

    # -- server ----------------------------------------------------------------------------

    def mounts(self, notebooks_read_only: bool) -> tuple[Mount, ...]:
        """The notebooks folder, link targets (read-only) and MOUNTS folders, at the places
        the image has them; and the CA bundle, so that pip at run time trusts the same proxy."""
        settings = self.settings
        root = contract.project_root_in_container(settings.notebooks_relative)
        mounts = [Mount(str(settings.require_notebooks()), contract.NOTEBOOKS, read_only=notebooks_read_only)]
        if root is not None:
            mounts += [
                Mount(str(settings.project_dir / path), str(root / path), read_only=True)
                for path in self.plan.linked
            ]
            for folder, writable in settings.mounts:
                source = settings.project_dir / folder
                if not source.is_dir():
                    raise NbdockError(
                        f"MOUNTS in {settings.env_file} names {folder}, which is not a folder in "
                        f"{settings.project_dir}; create it or remove it from MOUNTS"
                    )
                mounts.append(Mount(str(source.resolve()), str(root / folder), read_only=not writable))
        if settings.ca_cert is not None:
            mounts.append(Mount(str(settings.ca_cert), contract.CA_CERT_IN_CONTAINER, read_only=True))
        return tuple(mounts)

    def environment_variables(self) -> dict[str, str]:
        """What every container of the project gets: the user's name and groups, the CA bundle."""
        variables = self.identity.environment()
        if self.settings.ca_cert is not None:
            variables["PIP_CERT"] = contract.CA_CERT_IN_CONTAINER
        return variables

    def workload(self, name: str, image: str, role: str, **fields: object) -> Workload:
        """A workload of this project's image as the invoking user, with its labels and resources."""
        identity = self.identity
        return Workload(
            name=name, image=image, user=identity.user, groups=identity.container_groups(),
            labels={**self.settings.object_labels, contract.LABEL_ROLE: role},
            resources=self.settings.resources, **fields,  # type: ignore[arg-type]
        )

    def server_workload(self, image_id: str, token: str) -> Workload:
        """The notebook server, labelled with a digest of everything it depends on."""
        settings = self.settings
        workload = self.workload(
            settings.container_name, image_id, "server",
            command=tuple(jupyter.server_command(settings.container_port, self.identity.is_root)),
            environment={**self.environment_variables(), **jupyter.token_environment()},
            secrets={jupyter.TOKEN_SECRET: token},
            mounts=self.mounts(notebooks_read_only=False),
            ports=(PublishedPort(settings.container_port, settings.host_port or None, settings.host_ip),),
        )
        return replace(workload, labels={**workload.labels, contract.LABEL_STATE: self._wanted(workload)})

    def _wanted(self, workload: Workload) -> str:
        """A digest of what the server depends on: a change means a new container. The notebooks
        are mounted, so a rebuild that only copied new notebooks into the image keeps the server;
        a generated token is no part of it, a configured one is."""
        environment = self.plan.environment_digest(self.dockerfile_text, self.base_image_id)
        described = {
            "environment": environment,
            "workload": [workload.name, list(workload.command or ()), workload.user, list(workload.groups),
                         sorted(workload.environment.items()), [repr(m) for m in workload.mounts],
                         [repr(p) for p in workload.ports], repr(workload.resources)],
            "token": self.settings.jupyter_token,
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()

    def containers(self, role: str | None = None) -> list[Container]:
        """This checkout's containers (servers, headless and training runs), or those of `role`;
        never the tasks of its Swarm services, which `swarm.py` manages."""
        labels = {**self.labels, **({contract.LABEL_ROLE: role} if role else {})}
        return [c for c in self.engine.containers(labels) if c.service is None]

    def check_port(self, host_ip: str | None = None) -> None:
        """Before building: HOST_IP (or `host_ip`) must be an address of this machine and
        HOST_PORT free on it, unless this project's own server holds it. Raises PortTaken or
        NbdockError naming the setting; says nothing for a remote engine, which binds elsewhere."""
        settings = self.settings
        host_ip = host_ip or settings.host_ip
        if self.engine.remote_host:
            return
        port = settings.host_port
        if port and any(port in c.ports.values() for c in self.containers("server") if c.running):
            port = 0
        with socket.socket(socket.AF_INET6 if ":" in host_ip else socket.AF_INET) as probe:
            # As the engine's own proxy does: a connection in TIME_WAIT does not hold the port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host_ip, port))
            except OSError as error:
                if error.errno == errno.EADDRNOTAVAIL:
                    raise NbdockError(
                        f"HOST_IP {host_ip} is not an address of this machine; set HOST_IP in "
                        f"{settings.env_file} to one of its addresses (127.0.0.1 keeps the server private)"
                    ) from None
                if error.errno == errno.EADDRINUSE:
                    raise self._port_taken(host_ip) from None
                # Anything else (a port below 1024 for a user) is the engine's to bind, as root.

    def _port_taken(self, host_ip: str | None = None) -> NbdockError:
        settings = self.settings
        return PortTaken(
            f"port {settings.host_port} on {host_ip or settings.host_ip} is already in use; stop what uses "
            f"it, or set HOST_PORT in {settings.env_file} to another port (0 picks a free one)"
        )

    @contextmanager
    def refusals(self) -> Iterator[None]:
        """Word what the engine refuses when it starts this project's containers in the terms of
        the setting that asked for it."""
        settings = self.settings
        try:
            yield
        except PortTaken:
            raise self._port_taken() from None
        except EngineAPIError as error:
            reason = str(error).split(" failed: ", 1)[-1]
            if "could not select device driver" in reason:
                raise NbdockError(
                    f"GPUS={settings.gpus} asks for GPUs, but this Docker engine has no GPU runtime ({reason}); "
                    f"unset GPUS in {settings.env_file}, or install the NVIDIA Container Toolkit"
                ) from None
            if "Range of CPUs" in reason:
                raise NbdockError(f"CPUS={settings.cpus:g} is more than the engine has ({reason}); lower CPUS in "
                                  f"{settings.env_file}") from None
            raise

    def check_name(self) -> list[Container]:
        """This checkout's server containers; raises NameConflict when CONTAINER_NAME is taken
        by a container that is not one of them (another checkout's, or someone else's)."""
        settings = self.settings
        ours = self.containers("server")
        same_name = self.engine.container(settings.container_name)
        if same_name is not None and same_name.id not in {c.id for c in ours}:
            if same_name.labels.get(contract.LABEL_PROJECT) == settings.project_name:
                folder = same_name.labels.get(contract.LABEL_FOLDER)
                self._check_owner(folder, f"the container {settings.container_name}")
                return [*ours, same_name]  # its checkout is gone: this one takes its place
            raise NameConflict(
                f"a container named {settings.container_name} exists but does not belong to "
                f"project {settings.project_name}; remove it or set CONTAINER_NAME in {settings.env_file}"
            )
        return ours

    def run(self) -> Server:
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
        with self.refusals():
            container = self.engine.run(workload)
        return self._until_ready(container, reused=False)

    def _resume(self, container: Container) -> Server:
        if container.running:
            console.info(f"{container.name} is already running.")
        else:
            console.info(f"Starting {container.name} again.")
            with self.refusals():
                self.engine.start(container.id)
        return self._until_ready(container, reused=True)

    def _until_ready(self, container: Container, reused: bool) -> Server:
        """Wait for the server; if it does not come up, remove the container and say why."""
        try:
            current = self.engine.container(container.id) or container
            port = current.ports.get(self.settings.container_port)
            if port is None:
                raise NbdockError(
                    f"{container.name} publishes no port for {self.settings.container_port}; "
                    "run `invoke down` and `invoke up` to start it afresh"
                )
            outcome = jupyter.wait_until_ready(
                jupyter.base_url(self.browser_host, port),
                lambda: bool((self.engine.container(container.id) or current).running),
                self.settings.ready_timeout,
            )
            if outcome != "ready":
                console.detail(self.engine.logs(container.id, tail=30))
                raise self._start_failure(self.engine.container(container.id), outcome == "exited")
        except BaseException:
            self.engine.remove(container.id)
            raise
        return Server(container.name, self.browser_host, port, self._token(current), reused)

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
        if self.settings.jupyter_token:
            return self.settings.jupyter_token
        data = self.engine.read_file(container.id, contract.secret_path(jupyter.TOKEN_SECRET))
        return data.decode() if data else ""

    def up(self, no_cache: bool = False) -> Server:
        """Check what can be checked, build the image if anything changed, then start the
        server or keep it running."""
        self.settings.require_notebooks()
        self.mounts(notebooks_read_only=False)
        self.check_name()
        self.check_port()
        self.build(no_cache=no_cache)
        return self.run()

    def stop(self) -> list[str]:
        """Stop this checkout's running containers (only those); their names."""
        stopped = []
        for container in self.containers():
            if container.running:
                self.engine.stop(container.id)
                stopped.append(container.name)
        return stopped

    def down(self, remove_image: bool = False) -> list[str]:
        """Stop and remove this checkout's containers; with remove_image its images too, and the
        earlier builds it left untagged (those still in use stay)."""
        removed = []
        for container in self.containers():
            self.engine.remove(container.id)
            removed.append(container.name)
        if remove_image:
            for tag in (self.settings.image_name, self.settings.execute_image_name):
                image = self.engine.image(tag)
                other = self._other_checkout(cache.read("owners", image.id)) if image else None
                if other:
                    console.info(f"Kept the image {tag}: the checkout at {other} built it.")
                elif image is not None and self.engine.remove_image(tag):
                    removed.append(tag)
            earlier = 0
            for image_id in self.engine.untagged_images(self.settings.image_labels):
                if cache.read("owners", image_id) == str(self.settings.project_dir):
                    with contextlib.suppress(EngineAPIError):  # still in use by a container: kept
                        earlier += self.engine.remove_image(image_id)
            if earlier:
                removed.append(f"{earlier} earlier build(s)")
        return removed

    def server(self) -> Server:
        """The running server of this checkout. Raises NbdockError when none is running."""
        for container in self.containers("server"):
            port = container.ports.get(self.settings.container_port)
            if container.running and port is not None:
                return Server(container.name, self.browser_host, port, self._token(container), reused=True)
        raise NbdockError(
            f"no notebook server of project {self.settings.project_name} is running; "
            "start one with `invoke up`"
        )

    def status(self) -> list[ContainerStatus]:
        """This checkout's containers: name, role, state, health, image, and a server's URL."""
        current = self.engine.image(self.settings.image_name)
        rows = []
        for container in self.containers():
            image = (
                self.settings.image_name if current is not None and container.image_id == current.id
                else f"{container.image_id.removeprefix('sha256:')[:12]} (an earlier build)"
            )
            port = container.ports.get(self.settings.container_port)
            role = container.labels.get(contract.LABEL_ROLE, "")
            url = None
            if role == "server" and container.running and port is not None:
                url = jupyter.lab_url(self.browser_host, port, self._token(container))
            rows.append(ContainerStatus(container.name, role, container.state, container.health, image, url))
        return rows

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The server's log; with follow, as it is written until Ctrl-C. Raises NbdockError when
        there is no server container."""
        containers = self.containers("server")
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
        running = [c for c in self.containers("server") if c.running]
        return self.browser_host, running[0].address if running else None


def _show_build_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
