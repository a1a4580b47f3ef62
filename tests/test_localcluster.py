"""Kubernetes without a registry: which local cluster a kubectl context is, and the command line
that loads the image into it (none of these clusters can run here: the loaders are stand-ins that
record how they were called)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nbdock import k8s, k8s_checks
from nbdock.errors import NbdockError
from nbdock.localcluster import IMAGE_ID_ANNOTATION, load_image, local_cluster, use_local_image
from nbdock.workload import PublishedPort, Workload

IMAGE = "nbdock-demo:latest"
ENV = Path("/project/.env")


@pytest.mark.parametrize(("context", "kind", "command"), [
    ("kind-kind", "kind", ["kind", "load", "docker-image", IMAGE, "--name", "kind"]),
    ("kind-dev", "kind", ["kind", "load", "docker-image", IMAGE, "--name", "dev"]),
    ("minikube", "minikube", ["minikube", "image", "load", IMAGE, "--profile", "minikube"]),
    ("k3d-mycluster", "k3d", ["k3d", "image", "import", IMAGE, "--cluster", "mycluster"]),
])
def test_each_local_cluster_gets_the_image_its_own_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, context: str, kind: str, command: list[str]
) -> None:
    calls = tmp_path / "calls"
    loader = tmp_path / command[0]
    loader.write_text(f'#!/bin/sh\necho "$0 $*" >> {calls}\n')
    loader.chmod(loader.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cluster = local_cluster(context, IMAGE)
    assert cluster is not None and cluster.kind == kind
    load_image(context, IMAGE, ENV)
    assert calls.read_text().split() == [str(loader), *command[1:]]


@pytest.mark.parametrize("context", ["docker-desktop", "docker-for-desktop", "rancher-desktop"])
def test_clusters_on_the_engine_itself_need_no_loading(context: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = local_cluster(context, IMAGE)
    assert cluster is not None and cluster.load == ()
    load_image(context, IMAGE, ENV)
    assert f"uses its image {IMAGE} as it is" in capsys.readouterr().out


def test_a_missing_loader_says_what_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NbdockError) as raised:
        load_image("kind-dev", IMAGE, ENV)
    assert "is a kind cluster, whose image loader kind is not installed here" in str(raised.value)
    assert f"run `kind load docker-image {IMAGE} --name dev`" in str(raised.value)


def test_a_loader_that_fails_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loader = tmp_path / "k3d"
    loader.write_text("#!/bin/sh\nexit 1\n")
    loader.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NbdockError, match=r"`k3d image import nbdock-demo:latest --cluster c` failed"):
        load_image("k3d-c", IMAGE, ENV)


@pytest.mark.parametrize("context", ["gke_project_zone_cluster", "arn:aws:eks:eu-west-1:1:cluster/x", "kind-",
                                     "(none set)", "prod"])
def test_a_cluster_nbdock_cannot_tell_is_one_line_saying_what_to_do(context: str) -> None:
    assert local_cluster(context, IMAGE) is None
    with pytest.raises(NbdockError) as raised:
        load_image(context, IMAGE, ENV)
    message = str(raised.value)
    assert f"context {context} is not a local cluster nbdock knows" in message
    assert f"load the image {IMAGE} into its nodes yourself" in message and "set REGISTRY in" in message


def local_objects() -> list[dict[str, object]]:
    workload = Workload(name="nbdock-demo", image=IMAGE, command=("jupyter", "lab"),
                        secrets={"jupyter_token": "t"}, ports=(PublishedPort(8888, None),))
    return use_local_image(k8s.server_objects(workload, "demo"), "sha256:abc")


def test_local_manifests_use_the_local_image_and_pass_the_schemas() -> None:
    objects = local_objects()
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    template = deployment["spec"]["template"]  # type: ignore[index]
    pods = [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]
    assert pods and all(c["image"] == IMAGE and c["imagePullPolicy"] == "IfNotPresent" for c in pods)
    assert template["metadata"]["annotations"][IMAGE_ID_ANNOTATION] == "sha256:abc"
    assert k8s_checks.validate(objects) == []


def test_local_training_manifests_pass_the_schemas() -> None:
    workload = Workload(name="nbdock-demo-train", image="nbdock-demo:execute", command=("python", "t.py"),
                        health_check=False)
    objects = use_local_image(k8s.training_objects(workload, "demo", 2, 2222), "sha256:def")
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert k8s_checks.validate(objects) == []
