"""`Project`, the kit every workload on every backend starts from.

Its settings, its engine (the real `engine.Engine`, or the unit tests' fake), who the
containers run as, the environment the project declares, the build plan and its Dockerfile,
the mounts and environment variables every container gets, a `Workload` of the project's image,
this checkout's containers, and the refusals worded in the terms of the setting that asked.
What is done with the kit lives beside it: image.py, server/, execute.py, training/.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING

from nbdock import console, contract
from nbdock.context import ContextPlan, plan_context
from nbdock.engine import Container
from nbdock.environment import Environment, read_environment
from nbdock.errors import EngineAPIError, NbdockError, PortTaken
from nbdock.identity import Identity, invoker
from nbdock.settings import Settings
from nbdock.workload import Mount, Workload

if TYPE_CHECKING:
    from nbdock.engine import EngineLike


class Project:
    """The notebooks project in `settings.project_dir`, on the engine that DOCKER_HOST names."""

    def __init__(self, settings: Settings, engine: EngineLike | None = None,
                 swarm_engine: EngineLike | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._swarm_engine = swarm_engine

    @cached_property
    def engine(self) -> EngineLike:
        if self._engine is None:
            from nbdock.engine import Engine

            self._engine = Engine()
        return self._engine

    @cached_property
    def swarm_engine(self) -> EngineLike:
        """The engine of the swarm manager that SWARM_HOST names (a Docker host URL or a docker
        context); without SWARM_HOST, or when it names the build engine, `engine` itself."""
        if self._swarm_engine is None:
            from nbdock.engine import Engine, named_engine

            address, tls = named_engine(self.settings.swarm_host, "SWARM_HOST") if self.settings.swarm_host \
                else ("", None)
            same = not address or address == getattr(self.engine, "address", None)
            self._swarm_engine = self.engine if same else Engine(address, tls)
        return self._swarm_engine

    @property
    def separate_manager(self) -> bool:
        """Whether services run through another engine than the one that builds."""
        return self.swarm_engine is not self.engine

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
            reason = error.reason
            if "could not select device driver" in reason:
                raise NbdockError(
                    f"GPUS={settings.gpus} asks for GPUs, but this Docker engine has no GPU runtime ({reason}); "
                    f"unset GPUS in {settings.env_file}, or install the NVIDIA Container Toolkit"
                ) from None
            if "Range of CPUs" in reason:
                raise NbdockError(f"CPUS={settings.cpus:g} is more than the engine has ({reason}); lower CPUS in "
                                  f"{settings.env_file}") from None
            raise
