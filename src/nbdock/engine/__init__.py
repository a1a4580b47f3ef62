"""The Docker engine, through the Docker SDK for Python: the only package that imports docker.

`Engine` turns a `Workload` into a container or a Swarm service and answers with plain records
(`Container`, `Image`, `Service`), never with SDK objects. Every SDK and connection error is
classified here, once, into a kind of NbdockError (errors.py); callers that know the user's
words catch a kind and word the hint.
"""

from __future__ import annotations

from nbdock.console import LineBuffer
from nbdock.engine.containers import Containers, _secrets_archive, container_options
from nbdock.engine.contexts import engine_address, named_engine, remote_host
from nbdock.engine.images import Images
from nbdock.engine.protocol import EngineLike
from nbdock.engine.records import Container, Image, Node, Service, Task
from nbdock.engine.swarm import Swarm, service_options


class Engine(Images, Containers, Swarm):
    """The Docker engine that DOCKER_HOST (or the current docker context) names, composed of one
    part per resource (images, containers with their networks and volumes, Swarm), as docker-py
    composes its APIClient.

    It connects on first use; connecting asks the engine its API version, so it must answer.
    Every method raises a kind of NbdockError (errors.py) when the engine refuses.
    """


__all__ = [
    "Container", "Engine", "EngineLike", "Image", "LineBuffer", "Node", "Service", "Task", "_secrets_archive",
    "container_options", "engine_address", "named_engine", "remote_host", "service_options",
]
