"""Training workers on Kubernetes: an Indexed Job behind a headless Service, through the user's
kubectl.

The objects are written to k8s/train.yaml first (for review, and before the cluster is asked).
Pod i is `<job>-<i>.<service>`; its index comes from the Job's completion index. The pods have
no project folder: each worker writes its outputs to its log at the end, and the run loop
unpacks them into the run folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nbdock import image, k8s, localcluster
from nbdock.kubectl import Kubectl, KubectlLike, selector, write_manifests
from nbdock.project import Project
from nbdock.training.model import OUTPUTS_TO_LOG, Training
from nbdock.workload import Workload

OUTPUT_IN_POD = "/tmp/nbdock-output"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
PODS_INTERVAL = 1.0  # seconds between looks at the workers' pods


def training_objects(project: Project, training: Training) -> list[dict[str, Any]]:
    """Push the execution image, then the headless Service and Indexed Job that train `training`."""
    settings = project.settings
    hosts = k8s.worker_hosts(settings.project_name, training.workers, training.port)
    workload = Workload(
        name=k8s.object_name(settings.project_name, "train"), image=image.for_k8s(project, execute=True),
        command=training.command(hosts, OUTPUT_IN_POD),
        environment={"NBDOCK_OUTPUT": OUTPUT_IN_POD, OUTPUTS_TO_LOG: "1"},
        resources=settings.resources, health_check=False,
    )
    objects = k8s.training_objects(workload, settings.project_name, training.workers, training.port)
    return image.local_in_k8s(project, objects, execute=True)


def completion_index(pod: dict[str, Any]) -> int:
    """The worker index of a pod of an Indexed Job (-1 when it has none)."""
    return int(((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION, -1))


def exit_code(pod: dict[str, Any]) -> int | None:
    """The pod's exit code: 0 when it succeeded, its container's code (or 1) when it failed, None
    while it runs."""
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    if phase == "Succeeded":
        return 0
    if phase != "Failed":
        return None
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode"):
            return int(terminated["exitCode"])
    return 1


class KubernetesBackend:
    """Workers as the pods of an Indexed Job (completions = parallelism = N, no retry)."""

    outputs_in_log = True

    def __init__(self, project: Project, training: Training, image_id: str,
                 kubectl: KubectlLike | None = None) -> None:
        """Write k8s/train.yaml (pushing the image it names), then check the cluster answers and
        delete a previous run's Job, which cannot be applied over. Raises NbdockError, after the
        manifests are written, when kubectl is missing or the cluster does not answer."""
        settings = project.settings
        self.objects = training_objects(project, training)
        write_manifests(settings, {"train.yaml": self.objects})
        self.kubectl = kubectl or Kubectl(settings)
        self.kubectl.check()
        if not settings.registry:
            localcluster.load_image(self.kubectl.context, settings.execute_image_name, settings.env_file)
        self.selector = selector(settings, "train")
        self.job = k8s.object_name(settings.project_name, "train")
        self.hosts = k8s.worker_hosts(settings.project_name, training.workers, training.port)
        self.workers = training.workers
        self._seen: dict[int, list[str]] = {index: [] for index in range(training.workers)}
        self._nodes: dict[int, str] = {}
        self.kubectl.delete(self.selector, "job,service")

    def _pods(self) -> dict[int, dict[str, Any]]:
        pods = {completion_index(pod): pod for pod in self.kubectl.pods(self.selector)}
        for index, pod in pods.items():  # kept: a stopped run's pods are gone
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                self._nodes[index] = str(node)
        return pods

    def start(self, folder: Path) -> None:
        self.kubectl.apply(self.objects)

    def exit_codes(self) -> Iterator[tuple[int, int]]:
        ended: set[int] = set()
        while True:
            for index, pod in sorted(self._pods().items()):
                code = exit_code(pod)
                if index in range(self.workers) and index not in ended and code is not None:
                    ended.add(index)
                    yield index, code
            time.sleep(PODS_INTERVAL)

    def _pod_name(self, index: int) -> str | None:
        pod = self._pods().get(index)
        return str(pod["metadata"]["name"]) if pod else None

    def node(self, index: int) -> str:
        return self._nodes.get(index, "-")  # as the last look at the pods (exit_codes) saw it

    def logs(self, index: int) -> list[str]:
        name = self._pod_name(index)
        text = "".join(self.kubectl.logs(f"pod/{name}")) if name else ""
        return (text or "".join(self._seen[index])).splitlines()

    def follow(self, index: int) -> Iterator[str]:
        while True:  # until the pod is past Pending: before that, kubectl has no log to follow
            pod = self._pods().get(index)
            if pod is not None and (pod.get("status") or {}).get("phase", "Pending") != "Pending":
                break
            time.sleep(PODS_INTERVAL / 2)
        for text in self.kubectl.logs(f"pod/{pod['metadata']['name']}", follow=True):
            self._seen[index].append(text)
            yield text

    def stop_all(self) -> None:
        self.kubectl.suspend(self.job)

    def remove_all(self) -> None:
        self.kubectl.delete(self.selector, "job,service")
