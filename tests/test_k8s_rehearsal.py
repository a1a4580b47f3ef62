"""Kubernetes, as far as it can be checked without a cluster: manifests validated offline, the
Deployment's pod rehearsed on the local engine, and kubectl's refusals; a real cluster only when
NBDOCK_TEST_KUBECONTEXT names one."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.helpers.projects import ProjectCopy, assert_one_line_failure, run_in
from tests.helpers.rehearsal import Rehearsal
from tests.helpers.tracker import Tracker
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.docker
URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)$")


def objects(path: Path) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}": o for o in yaml.safe_load_all(path.read_text())}


def answers(url: str, **headers: str) -> int:
    try:
        return requests.get(url, headers=headers, timeout=5).status_code
    except requests.ConnectionError:
        return 0


def test_the_manifests_validate_and_hold_no_token(
    make_project: Callable[..., ProjectCopy], registry: str
) -> None:
    project = make_project(REGISTRY=f"{registry}/nbdock-tests", PROJECT_NAME="k8s_test.v2",
                           JUPYTER_TOKEN="not-in-any-file")
    (project.notebooks / "train.py").write_text("print('trained')\n")
    written = project.invoke("k8s.manifests", "--validate", "--train-script", "train.py", "--workers", "3")
    assert written.returncode == 0, written.output
    assert written.last_line == "Every object passed nbdock's checks and the Kubernetes schemas."
    assert "Objects are named nbdock-k8s-test-v2-" in written.stdout  # PROJECT_NAME as a DNS label
    service, job = yaml.safe_load_all((project.path / "k8s" / "train.yaml").read_text())
    assert job["spec"]["completions"] == 3 and service["spec"]["clusterIP"] == "None"
    manifest = project.path / "k8s" / "server.yaml"
    text = manifest.read_text()
    assert "not-in-any-file" not in text
    found = objects(manifest)
    assert set(found) == {"PersistentVolumeClaim", "Service", "Deployment"}
    deployment = found["Deployment"]
    assert deployment["metadata"]["name"].startswith("nbdock-k8s-test-v2")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(f"{registry}/nbdock-tests/") and "@sha256:" in image
    again = project.invoke("k8s.manifests")
    assert again.returncode == 0 and manifest.read_text() == text


def test_the_deployments_pod_serves_with_its_token_when_rehearsed(
    make_project: Callable[..., ProjectCopy], registry: str, docker_client: Any, tracker: Tracker
) -> None:
    project = make_project(REGISTRY=f"{registry}/nbdock-tests", JUPYTER_TOKEN="rehearsed-token")
    assert project.invoke("k8s.manifests").returncode == 0
    found = objects(project.path / "k8s" / "server.yaml")
    pod = found["Deployment"]["spec"]["template"]["spec"]
    secret = pod["volumes"][1]["secret"]["secretName"]
    rehearsal = Rehearsal(docker_client, tracker.labels, secrets={secret: {"jupyter_token": "rehearsed-token"}})
    container = rehearsal.run(pod, f"{project.name}-pod")
    port = container.attrs["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
    probe = pod["containers"][0]["readinessProbe"]["httpGet"]
    wait_until(lambda: answers(f"http://127.0.0.1:{port}{probe['path']}") == 200, 90, "the rehearsed server")
    status = f"http://127.0.0.1:{port}/api/status"
    assert answers(status, Authorization="token rehearsed-token") == 200
    assert answers(status) == 403
    listing = requests.get(f"http://127.0.0.1:{port}/api/contents", timeout=5,
                           headers={"Authorization": "token rehearsed-token"}).json()
    assert "hello.ipynb" in [entry["name"] for entry in listing["content"]]  # the claim was seeded
    assert container.exec_run(["id", "-u"]).output.decode().strip() == "1000"
    assert "rehearsed-token" not in str(container.attrs)


def test_without_kubectl_k8s_up_says_so(make_project: Callable[..., ProjectCopy], tmp_path: Path) -> None:
    project = make_project(REGISTRY="127.0.0.1:5000/nowhere")
    result = run_in(project.path, [sys.executable, "-m", "invoke", "k8s.up"], {"PATH": str(tmp_path)})
    assert_one_line_failure(result, "kubectl is not installed")
    assert not (project.path / "k8s").exists()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs a kubectl (.ci/run installs one)")
def test_a_context_that_does_not_answer_is_one_line_and_nothing_is_applied(
    make_project: Callable[..., ProjectCopy], tmp_path: Path, registry: str, docker_client: Any
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "contexts:\n- name: nowhere\n  context: {cluster: nowhere, user: nobody}\ncurrent-context: nowhere\n"
        "users:\n- name: nobody\n  user: {token: x}\n"
    )
    project = make_project(REGISTRY=f"{registry}/nbdock-tests")
    assert_one_line_failure(project.invoke("k8s.up", KUBECONFIG=str(config)), "context nowhere does not answer",
                     "K8S_CONTEXT")
    assert not (project.path / "k8s").exists()  # refused before anything was pushed or written
    assert docker_client.images.list(name=f"{registry}/nbdock-tests/nbdock-{project.name}") == []


@pytest.mark.skipif(not os.environ.get("NBDOCK_TEST_KUBECONTEXT"), reason="set NBDOCK_TEST_KUBECONTEXT to a cluster")
def test_on_a_real_cluster(make_project: Callable[..., ProjectCopy]) -> None:
    context = os.environ["NBDOCK_TEST_KUBECONTEXT"]
    registry = os.environ.get("NBDOCK_TEST_REGISTRY", "")
    if not registry:
        pytest.skip("set NBDOCK_TEST_REGISTRY to a registry the cluster pulls from")
    project = make_project(REGISTRY=registry, K8S_CONTEXT=context)
    try:
        started = project.invoke("k8s.up")
        assert started.returncode == 0, started.output
        matched = URL.match(started.last_line)
        assert matched, started.output
        status = f"http://127.0.0.1:{matched.group(1)}/api/status"
        assert answers(status, Authorization=f"token {matched.group(2)}") == 200
        assert answers(status) == 403
    finally:
        assert project.invoke("k8s.down", "--volumes").returncode == 0


def test_without_a_registry_the_manifests_use_the_local_image(make_project: Callable[..., ProjectCopy]) -> None:
    project = make_project()
    (project.notebooks / "train.py").write_text("print('trained')\n")
    written = project.invoke("k8s.manifests", "--validate", "--train-script", "train.py")
    assert written.returncode == 0, written.output
    assert written.last_line == "Every object passed nbdock's checks and the Kubernetes schemas."
    deployment = objects(project.path / "k8s" / "server.yaml")["Deployment"]
    template = deployment["spec"]["template"]
    containers = [*template["spec"]["initContainers"], *template["spec"]["containers"]]
    assert {(c["image"], c["imagePullPolicy"]) for c in containers} == {(project.image, "IfNotPresent")}
    assert template["metadata"]["annotations"]["nbdock.io/image-id"].startswith("sha256:")
    _, job = yaml.safe_load_all((project.path / "k8s" / "train.yaml").read_text())
    worker = job["spec"]["template"]["spec"]["containers"][0]
    assert (worker["image"], worker["imagePullPolicy"]) == (f"nbdock-{project.name}:execute", "IfNotPresent")
