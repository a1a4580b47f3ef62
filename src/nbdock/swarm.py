"""Swarm as a place to run, for every workload on it: the manager node, waiting until removed
services' containers are gone, removing their network (the image its nodes run is
`image.for_swarm`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nbdock import console
from nbdock.engine import EngineLike
from nbdock.errors import EngineAPIError, NbdockError
from nbdock.wait import wait_until

GONE_TIMEOUT = 60.0  # seconds a removed service's tasks get to let go of ports, volumes and networks


def require_swarm(engine: EngineLike, init: bool, manager: str = "", env_file: Path | None = None) -> str:
    """This node's id as a Swarm manager; with `init`, make a single-node swarm when there is none.
    `manager` is SWARM_HOST (set in `env_file`) when it names another engine than the build engine:
    no swarm is made there.

    Raises NbdockError saying how to get a swarm otherwise.
    """
    node = engine.swarm_node()
    if node is not None:
        return node
    if manager:
        raise NbdockError(
            f"the engine SWARM_HOST={manager} names is not a Swarm manager; point SWARM_HOST in "
            f"{env_file or '.env'} at a manager of your swarm (`docker node ls` works there)"
        )
    if not init:
        raise NbdockError(
            "this Docker engine is not a Swarm manager; join or create a swarm (`docker swarm init`), "
            "or pass --init to create a single-node swarm on this machine"
        )
    console.info("Creating a single-node swarm on 127.0.0.1 (`docker swarm leave --force` undoes it).")
    return engine.init_swarm("127.0.0.1")


def wait_gone(engine: EngineLike, names: Sequence[str], labels: Mapping[str, str],
              timeout: float = GONE_TIMEOUT) -> None:
    """Wait until the removed services `names`, and the containers of their tasks that carry
    `labels`, are gone; after `timeout` seconds, go on regardless."""
    wanted = set(names)
    wait_until(lambda: all(engine.service(name) is None for name in wanted)
               and not any(c.service in wanted for c in engine.containers(labels)), timeout)


def remove_network(engine: EngineLike, name: str, timeout: float = GONE_TIMEOUT) -> None:
    """Remove the overlay network `name` of services just removed, asking again while the
    manager refuses because their tasks still hold it; after `timeout` seconds its refusal is
    raised (EngineAPIError). The tasks' containers are left to Swarm, which removes them on
    every node within seconds: waiting for that would only delay the caller."""
    refusals: list[EngineAPIError] = []

    def removed() -> bool:
        try:
            engine.remove_network(name)
        except EngineAPIError as refusal:
            refusals[:] = [refusal]
            return False
        return True

    if not wait_until(removed, timeout):
        raise refusals[0]
