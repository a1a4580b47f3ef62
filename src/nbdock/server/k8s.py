"""The notebook server on Kubernetes: a Deployment with a claim for the notebooks and a Service,
applied through the user's kubectl, reached through `kubectl port-forward` on 127.0.0.1.

The token is a Secret created from stdin, never written into k8s/server.yaml.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

from nbdock import cache, image, jupyter, k8s, localcluster
from nbdock.errors import NbdockError
from nbdock.kubectl import Kubectl, KubectlLike, selector, write_manifests
from nbdock.project import Project
from nbdock.settings import Settings
from nbdock.wait import wait_until
from nbdock.workload import PublishedPort, Workload


def token(settings: Settings) -> str:
    return jupyter.kept_token(settings.jupyter_token, f"k8s-{settings.checkout_id}")


def server_objects(project: Project) -> list[dict[str, Any]]:
    """Push the serving image, then the server's objects naming it by digest: as Kubernetes
    runs it, the image's own user, the token from a Secret file."""
    settings = project.settings
    workload = Workload(
        name=k8s.object_name(settings.project_name), image=image.for_k8s(project),
        command=tuple(jupyter.server_command(settings.container_port)),
        environment=jupyter.token_environment(), secrets={jupyter.TOKEN_SECRET: token(settings)},
        ports=(PublishedPort(settings.container_port, None),), resources=settings.resources,
    )
    return image.local_in_k8s(project, k8s.server_objects(workload, settings.project_name))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class KubernetesServer:
    """This project's notebook server on the cluster kubectl points at."""

    def __init__(self, project: Project, volumes: bool = False, kubectl: KubectlLike | None = None) -> None:
        """`volumes` makes `down` delete the notebooks claim too; `kubectl` is the user's (by default)."""
        self.project = project
        self.settings = project.settings
        self.volumes = volumes
        self._kubectl = kubectl
        self.name = k8s.object_name(self.settings.project_name)
        self.forward_key = f"forward-{self.settings.checkout_id}"

    @property
    def kubectl(self) -> KubectlLike:
        """The user's kubectl, found on first use (raises NbdockError when it is not installed)."""
        if self._kubectl is None:
            self._kubectl = Kubectl(self.settings)
        return self._kubectl

    def up(self) -> str:
        """Check the cluster answers, write and apply the objects (the token Secret from stdin),
        wait for the rollout and forward a port on 127.0.0.1; the URL. Nothing is left
        half-applied: a Secret made here is deleted again when the rest cannot be applied."""
        kubectl = self.kubectl
        kubectl.check()
        objects = server_objects(self.project)
        write_manifests(self.settings, {"server.yaml": objects})
        if not self.settings.registry:
            localcluster.load_image(kubectl.context, self.settings.image_name, self.settings.env_file)
        secret = k8s.token_secret(self.settings.project_name, token(self.settings))
        existed = kubectl.run("get", "secret", secret["metadata"]["name"], check=False).returncode == 0
        kubectl.apply([secret])
        try:
            kubectl.apply(objects)
        except NbdockError:
            if not existed:
                kubectl.run("delete", "secret", secret["metadata"]["name"], "--ignore-not-found", check=False)
            raise
        kubectl.run("rollout", "status", f"deployment/{self.name}", f"--timeout={self.settings.ready_timeout:g}s")
        return self._url(checked=True)

    def _forwarded_port(self) -> int | None:
        record = cache.read("forwards", self.forward_key)
        if not record:
            return None
        try:
            pid, port = (int(part) for part in record.split(":"))
            os.kill(pid, 0)
        except (OSError, ValueError):  # gone, or a record nbdock cannot read: start a new forward
            return None
        return port if jupyter.answers(jupyter.base_url("127.0.0.1", port)) else None

    def url(self) -> str:
        """The URL through `kubectl port-forward` on 127.0.0.1, started in the background if needed.

        Raises NbdockError when the context or the forward does not answer."""
        return self._url(checked=False)

    def _url(self, checked: bool) -> str:
        port = self._forwarded_port()
        if port is None:
            if not checked:
                self.kubectl.check()
            port = self.settings.host_port or _free_port()
            forward = self.kubectl.port_forward(f"service/{self.name}", port, self.settings.container_port)
            cache.write("forwards", self.forward_key, f"{forward.pid}:{port}")
            address = jupyter.base_url("127.0.0.1", port)
            answered = wait_until(lambda: forward.poll() is not None or jupyter.answers(address),
                                  self.settings.ready_timeout)
            if not answered or forward.poll() is not None:
                raise NbdockError(
                    f"kubectl port-forward to service/{self.name} did not answer on 127.0.0.1:{port}; "
                    "is the server running (`invoke k8s.status`)?"
                )
        return jupyter.lab_url("127.0.0.1", port, token(self.settings))

    def down(self) -> list[str]:
        """Stop the port forward and delete the server's objects (the notebooks claim only with
        `volumes`, so that nothing saved is lost); the objects deleted, as kind/name."""
        record = cache.read("forwards", self.forward_key)
        if record:
            with contextlib.suppress(OSError):
                os.kill(int(record.split(":")[0]), signal.SIGTERM)
            cache.forget("forwards", self.forward_key)
        kinds = "deployment,service,secret" + (",persistentvolumeclaim" if self.volumes else "")
        deleted = self.kubectl.delete(selector(self.settings, "server"), kinds)
        cache.forget("tokens", f"k8s-{self.settings.checkout_id}")
        return deleted

    def status(self) -> list[str]:
        """kubectl's table of the server's Deployment, pods, Service and claim."""
        kinds = "deployment,pod,service,persistentvolumeclaim"
        shown = self.kubectl.run("get", kinds, "-l", selector(self.settings, "server"), "-o", "wide").stdout
        return shown.rstrip().splitlines() or [f"Project {self.settings.project_name} has nothing on the cluster."]

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The server's log, through kubectl; with `follow`, as it is written."""
        yield from self.kubectl.logs(f"deployment/{self.name}", follow=follow)


