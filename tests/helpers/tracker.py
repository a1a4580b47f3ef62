"""One tracker for everything a test makes on the engine, removed by label at teardown.

Projects made by tests are named `nbdock-test-<hex>` and everything nbdock makes for them carries
`io.nbdock.project=<name>`; what a test makes itself (decoys, stand-alone runs) carries the
tracker's own label. `cleanup` removes all of it, also when the test failed.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from nbdock.contract import LABEL_PROJECT

TEST_LABEL = "io.nbdock.test"


def _quietly(action: Callable[[], object]) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        action()


class Tracker:
    """Tracks test projects and test-made objects on one engine."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.projects: set[str] = set()
        self.labels = {TEST_LABEL: secrets.token_hex(4)}

    def project(self, name: str) -> str:
        self.projects.add(name)
        return name

    def run(self, image: str, **options: Any) -> Any:
        """Start a container the test owns (a decoy, a stand-alone run)."""
        labels = {**options.pop("labels", {}), **self.labels}
        return self.client.containers.run(image, detach=True, labels=labels, **options)

    def _filters(self) -> Iterable[dict[str, str]]:
        yield {"label": f"{TEST_LABEL}={self.labels[TEST_LABEL]}"}
        for name in sorted(self.projects):
            yield {"label": f"{LABEL_PROJECT}={name}"}

    def leftovers(self, project: str) -> list[str]:
        """Every container, service, network, volume and secret left with `project`'s label."""
        label = {"label": f"{LABEL_PROJECT}={project}"}
        found = [f"container {c.name}" for c in project_containers(self.client, project)]
        found += [f"network {n.name}" for n in self.client.networks.list(filters=label)]
        found += [f"volume {v.name}" for v in self.client.volumes.list(filters=label)]
        if self.swarm_active():
            found += [f"service {s.name}" for s in self.client.services.list(filters=label)]
            found += [f"secret {s.name}" for s in self.client.secrets.list(filters=label)]
        return found

    def swarm_active(self) -> bool:
        swarm = self.client.info().get("Swarm", {})  # services and secrets: a manager's to list
        return bool(swarm.get("LocalNodeState") == "active" and swarm.get("ControlAvailable"))

    def cleanup(self, images: bool = True) -> None:
        swarm = self.swarm_active()
        for filters in self._filters():
            if swarm:
                for service in self.client.services.list(filters=filters):
                    _quietly(service.remove)
            for container in self.client.containers.list(all=True, filters=filters, ignore_removed=True):
                _quietly(functools.partial(container.remove, force=True))
            if swarm:
                for secret in self.client.secrets.list(filters=filters):
                    _quietly(secret.remove)
            for network in self.client.networks.list(filters=filters):
                _quietly(network.remove)
            for volume in self.client.volumes.list(filters=filters):
                _quietly(functools.partial(volume.remove, force=True))
            if images:
                for image in self.client.images.list(filters=filters):
                    _quietly(functools.partial(self.client.images.remove, image.id, force=True))


def project_containers(client: Any, project: str) -> list[Any]:
    """Every container, running or not, that carries `project`'s label."""
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"},
                                       ignore_removed=True))
