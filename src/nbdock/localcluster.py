"""Kubernetes on the user's own machine without a registry: the local image, loaded into the cluster.

Without REGISTRY the manifests name the image by its own tag with `imagePullPolicy: IfNotPresent`,
and the image is put into the cluster's nodes the way that cluster wants it. Which cluster it is
comes from the kubectl context's name, as each tool names its contexts: `kind-<cluster>`,
`k3d-<cluster>`, `minikube` (or the profile's name, `minikube` by default), `docker-desktop`,
`rancher-desktop`. A pod template carries the image's id, so that a new build rolls out although
the tag stays the same.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbdock import console
from nbdock.errors import NbdockError

IMAGE_ID_ANNOTATION = "nbdock.io/image-id"
PULL_POLICY = "IfNotPresent"
# Clusters that run on the Docker engine itself and see its images as they are.
_SHARING_THE_ENGINE = {"docker-desktop": "Docker Desktop", "docker-for-desktop": "Docker Desktop",
                       "rancher-desktop": "Rancher Desktop"}


@dataclass(frozen=True)
class LocalCluster:
    """A cluster on this machine: its kind, and the command that loads an image into it (empty
    when it shares the engine's images)."""

    kind: str
    load: tuple[str, ...]


def local_cluster(context: str, image: str) -> LocalCluster | None:
    """The local cluster the kubectl `context` names, with the command that loads `image` into
    it; None when the name is not one a local cluster tool gives."""
    if context in _SHARING_THE_ENGINE:
        return LocalCluster(_SHARING_THE_ENGINE[context], ())
    if context.startswith("kind-") and len(context) > len("kind-"):
        return LocalCluster("kind", ("kind", "load", "docker-image", image, "--name", context.removeprefix("kind-")))
    if context.startswith("k3d-") and len(context) > len("k3d-"):
        return LocalCluster("k3d", ("k3d", "image", "import", image, "--cluster", context.removeprefix("k3d-")))
    if context == "minikube":
        return LocalCluster("minikube", ("minikube", "image", "load", image, "--profile", context))
    return None


def use_local_image(objects: list[dict[str, Any]], image_id: str) -> list[dict[str, Any]]:
    """`objects` with every container of their pod templates set to `imagePullPolicy:
    IfNotPresent`, and the templates annotated with `image_id` so that a rebuild rolls out."""
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if template is None:
            continue
        pod = template.get("spec", {})
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            container["imagePullPolicy"] = PULL_POLICY
        template.setdefault("metadata", {}).setdefault("annotations", {})[IMAGE_ID_ANNOTATION] = image_id
    return objects


def load_image(context: str, image: str, env_file: Path) -> None:
    """Put the local `image` into the cluster of kubectl's `context`, as that cluster wants it.

    Raises NbdockError, before anything is applied, when nbdock cannot tell the cluster (one line
    saying what to run, or to set REGISTRY), when its tool is not installed, or when loading fails.
    """
    cluster = local_cluster(context, image)
    if cluster is None:
        raise NbdockError(
            f"REGISTRY is not set and the Kubernetes context {context} is not a local cluster nbdock knows (kind, "
            f"minikube, k3d, Docker Desktop, Rancher Desktop); load the image {image} into its nodes yourself "
            f"and run k8s.up again, or set REGISTRY in {env_file} to a registry the cluster pulls from"
        )
    if not cluster.load:
        console.info(f"{cluster.kind} runs on this Docker engine and uses its image {image} as it is.")
        return
    shown = " ".join(cluster.load)
    if shutil.which(cluster.load[0]) is None:
        raise NbdockError(
            f"the context {context} is a {cluster.kind} cluster, whose image loader {cluster.load[0]} is not "
            f"installed here; run `{shown}` where it is, then k8s.up again (or set REGISTRY in {env_file})"
        )
    console.info(f"Loading {image} into the {cluster.kind} cluster: {shown}")
    if subprocess.run(list(cluster.load)).returncode != 0:
        raise NbdockError(
            f"`{shown}` failed (its output is above); check that the {cluster.kind} cluster of the context "
            f"{context} is running, or set REGISTRY in {env_file}"
        )

