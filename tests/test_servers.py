"""The Swarm and Kubernetes servers against fakes of the engine and of kubectl (no engine, no
cluster): what they make, keep, refuse and remove."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbdock import contract
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.server.k8s import KubernetesServer
from nbdock.server.swarm import SwarmServer
from nbdock.settings import Settings, load_settings
from tests.fake_engine import FakeEngine

pytestmark = pytest.mark.usefixtures("servers_answer")


def make(folder: Path, engine: FakeEngine, **env: str) -> Project:
    (folder / "notebooks").mkdir(parents=True, exist_ok=True)
    (folder / "notebooks" / "a.ipynb").write_text("{}")
    lines = {"PROJECT_NAME": "demo", "RUN_AS": "1234:1234", "HOST_PORT": "0", **env}
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return Project(load_settings(folder, environ={}), engine)


def test_swarm_up_without_a_swarm_says_how_to_make_one(tmp_path: Path) -> None:
    engine = FakeEngine()
    with pytest.raises(NbdockError, match=r"not a Swarm manager.*--init"):
        SwarmServer(make(tmp_path, engine, HOST_IP="0.0.0.0")).up()
    assert not engine.service_workloads


def test_swarm_up_refuses_a_private_host_ip_unless_public(tmp_path: Path) -> None:
    engine = FakeEngine(node="node1")
    with pytest.raises(NbdockError, match=r"HOST_IP=0\.0\.0\.0.*--public"):
        SwarmServer(make(tmp_path, engine)).up()
    assert SwarmServer(make(tmp_path, engine), public=True).up().startswith("http://127.0.0.1:30000/lab?token=")


def test_swarm_up_pins_the_service_to_this_node_with_its_token_as_a_secret(tmp_path: Path) -> None:
    engine = FakeEngine(node="node1")
    server = SwarmServer(make(tmp_path, engine, HOST_IP="0.0.0.0"))
    url = server.up()
    (workload,) = engine.service_workloads.values()
    (secret,) = engine.secret_values
    assert url.endswith(f"token={server.token}") and engine.secret_values[secret][0] == server.token
    assert server.token not in str(dict(workload.environment)) and workload.labels[contract.LABEL_ROLE] == "server"
    assert workload.mounts[0].kind == "volume" and f"create volume {server.volume}" in engine.calls
    engine.calls.clear()
    assert SwarmServer(make(tmp_path, engine, HOST_IP="0.0.0.0")).up() == url  # kept as it runs
    assert not [call for call in engine.calls if call.startswith(("create", "remove"))]


def test_swarm_down_keeps_the_notebooks_volume_unless_asked(tmp_path: Path) -> None:
    engine = FakeEngine(node="node1")
    project = make(tmp_path, engine, HOST_IP="0.0.0.0")
    server = SwarmServer(project)
    server.up()
    assert server.status()[0].startswith(f"{server.name}  running")
    assert "".join(server.logs()) == f"{server.name} says hello\n"
    removed = server.down()
    assert server.name in removed and server.volume not in removed and engine.volumes({}) == [server.volume]
    assert SwarmServer(project, volumes=True).down() == [server.volume] and engine.volumes({}) == []
    assert server.status() == ["Project demo has no Swarm service."]


def test_a_swarm_service_whose_task_fails_is_removed_with_its_secret(tmp_path: Path) -> None:
    engine = FakeEngine(node="node1")
    engine.task_states[contract.dns_label("nbdock-demo")] = "failed"
    with pytest.raises(NbdockError, match=r"did not come up \(on node fake \(127\.0\.0\.1\): it broke\)"):
        SwarmServer(make(tmp_path, engine, HOST_IP="0.0.0.0")).up()
    assert not engine.service_workloads and not engine.secret_values and not engine.volume_labels


class FakeKubectl:
    """A kubectl that records what it was asked and answers like an empty, healthy cluster."""

    context = "docker-desktop"

    def __init__(self, settings: Settings, refuse_apply: bool = False) -> None:
        self.settings = settings
        self.refuse_apply = refuse_apply
        self.applied: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.forwards: list[subprocess.Popen[bytes]] = []

    def check(self) -> None:
        self.calls.append("check")

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(" ".join(args))
        code = 1 if args[:2] == ("get", "secret") else 0
        return subprocess.CompletedProcess(list(args), code, stdout="NAME  READY\nnbdock-demo  1/1\n", stderr="")

    def apply(self, objects: list[dict[str, Any]]) -> None:
        if self.refuse_apply and any(o["kind"] == "Deployment" for o in objects):
            raise NbdockError("kubectl apply failed in the context test: forbidden")
        self.applied += objects

    def delete(self, selector: str, kinds: str) -> list[str]:
        self.calls.append(f"delete {kinds} -l {selector}")
        return [f"{kind}/nbdock-demo" for kind in kinds.split(",")]

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return []

    def logs(self, target: str, follow: bool = False) -> Iterator[str]:
        yield f"{target} says hello\n"

    def suspend(self, job: str) -> None:
        self.calls.append(f"suspend {job}")

    def port_forward(self, target: str, port: int, container_port: int) -> subprocess.Popen[bytes]:
        self.calls.append(f"port-forward {target} {port}:{container_port}")
        forward = subprocess.Popen(["sleep", "30"])
        self.forwards.append(forward)
        return forward


@pytest.fixture
def kubectl_for(tmp_path: Path) -> Iterator[Any]:
    made: list[FakeKubectl] = []

    def make_kubectl(project: Project, **options: bool) -> FakeKubectl:
        made.append(FakeKubectl(project.settings, **options))
        return made[-1]

    yield make_kubectl
    for kubectl in made:
        for forward in kubectl.forwards:
            forward.kill()
            forward.wait()


def test_kubernetes_up_applies_the_secret_then_the_server_and_forwards_a_port(tmp_path: Path, kubectl_for: Any) -> None:
    project = make(tmp_path, FakeEngine(), REGISTRY="registry.test:5000/team")
    kubectl = kubectl_for(project)
    url = KubernetesServer(project, kubectl=kubectl).up()
    kinds = [o["kind"] for o in kubectl.applied]
    assert kinds[0] == "Secret" and set(kinds[1:]) == {"PersistentVolumeClaim", "Service", "Deployment"}
    assert url.startswith("http://127.0.0.1:") and "token=" in url
    assert kubectl.calls[0] == "check" and any(call.startswith("port-forward service/") for call in kubectl.calls)
    assert (tmp_path / "k8s" / "server.yaml").is_file()
    assert KubernetesServer(project, kubectl=kubectl).url() == url  # the running forward is reused


def test_a_refused_kubernetes_apply_takes_its_new_secret_back(tmp_path: Path, kubectl_for: Any) -> None:
    project = make(tmp_path, FakeEngine(), REGISTRY="registry.test:5000/team")
    kubectl = kubectl_for(project, refuse_apply=True)
    with pytest.raises(NbdockError, match="forbidden"):
        KubernetesServer(project, kubectl=kubectl).up()
    assert any(call.startswith("delete secret") for call in kubectl.calls)


def test_kubernetes_down_keeps_the_claim_unless_asked(tmp_path: Path, kubectl_for: Any) -> None:
    project = make(tmp_path, FakeEngine())
    kubectl = kubectl_for(project)
    assert "persistentvolumeclaim/nbdock-demo" not in KubernetesServer(project, kubectl=kubectl).down()
    assert "persistentvolumeclaim/nbdock-demo" in KubernetesServer(project, volumes=True, kubectl=kubectl).down()
    server = KubernetesServer(project, kubectl=kubectl)
    assert server.status() == ["NAME  READY", "nbdock-demo  1/1"]
    assert "".join(server.logs()) == "deployment/nbdock-demo says hello\n"
