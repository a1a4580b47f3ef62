"""Swarm as a place to run, for every workload on it: the manager node, the image its nodes can
run, and waiting until removed services' containers are gone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nbdock import console, image
from nbdock.engine import EngineLike
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.wait import wait_until

GONE_TIMEOUT = 60.0  # seconds a removed service's tasks get to let go of ports, volumes and networks


def require_swarm(project: Project, init: bool) -> str:
    """This node's id as a Swarm manager; with `init`, make a single-node swarm when there is none.

    Raises NbdockError saying how to get a swarm otherwise.
    """
    node = project.swarm_engine.swarm_node()
    if node is not None:
        return node
    if project.separate_manager:
        raise NbdockError(
            f"the engine SWARM_HOST={project.settings.swarm_host} names is not a Swarm manager; point "
            f"SWARM_HOST in {project.settings.env_file} at a manager of your swarm (`docker node ls` "
            "works there)"
        )
    if not init:
        raise NbdockError(
            "this Docker engine is not a Swarm manager; join or create a swarm (`docker swarm init`), "
            "or pass --init to create a single-node swarm on this machine"
        )
    console.info("Creating a single-node swarm on 127.0.0.1 (`docker swarm leave --force` undoes it).")
    return project.engine.init_swarm("127.0.0.1")


def image_for_swarm(project: Project, node: str, execute: bool = False) -> tuple[str, list[str]]:
    """(image reference, placement constraints): the pushed digest with REGISTRY, else the
    local image pinned to this node, where it exists."""
    if project.settings.registry:
        return image.push(project, execute=execute), []
    if project.separate_manager:
        raise NbdockError(
            f"SWARM_HOST={project.settings.swarm_host} is another engine than the one that builds, so "
            f"its nodes can only pull the image from a registry; set REGISTRY in {project.settings.env_file} "
            "to one every node reaches, such as registry.example:5000/team"
        )
    image_id = image.build(project, execute=execute)
    console.info("REGISTRY is not set: the service runs on this node only, where the image is.")
    return image_id, [f"node.id=={node}"]


def wait_gone(engine: EngineLike, names: Sequence[str], labels: Mapping[str, str],
              timeout: float = GONE_TIMEOUT) -> None:
    """Wait until the removed services `names`, and the containers of their tasks that carry
    `labels`, are gone; after `timeout` seconds, go on regardless."""
    wanted = set(names)
    wait_until(lambda: all(engine.service(name) is None for name in wanted)
               and not any(c.service in wanted for c in engine.containers(labels)), timeout)
