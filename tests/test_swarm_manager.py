"""SWARM_HOST: build and push on the project's engine, services through the manager (fake engines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbdock.engine import Image
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.server.swarm import SwarmServer
from nbdock.settings import load_settings
from tests.fake_engine import FakeEngine

pytestmark = pytest.mark.usefixtures("servers_answer")


def make(folder: Path, builder: FakeEngine, manager: FakeEngine, **env: str) -> Project:
    (folder / "notebooks").mkdir(parents=True)
    (folder / "notebooks" / "a.ipynb").write_text("{}")
    lines = {"PROJECT_NAME": "demo", "RUN_AS": "1234:1234", "HOST_PORT": "8899", "HOST_IP": "0.0.0.0",
             "SWARM_HOST": "tcp://manager.example:2376", **env}
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    settings = load_settings(folder, environ={})
    builder.images.setdefault(settings.image_name, Image("sha256:img", dict(settings.labels)))
    return Project(settings, builder, manager)


def test_a_manager_other_than_the_builder_needs_a_registry(tmp_path: Path) -> None:
    builder, manager = FakeEngine(), FakeEngine(node="m1", remote_host="manager.example")
    with pytest.raises(NbdockError, match=r"SWARM_HOST=tcp://manager\.example:2376 .* set REGISTRY"):
        SwarmServer(make(tmp_path, builder, manager)).up()
    assert not [call for call in manager.calls if call.startswith("create")]


def test_builds_and_pushes_here_and_runs_through_the_manager_pinned_to_the_volume_node(tmp_path: Path) -> None:
    builder, manager = FakeEngine(), FakeEngine(node="m1", remote_host="manager.example")
    url = SwarmServer(make(tmp_path, builder, manager, REGISTRY="registry.example:5000/team")).up()
    assert any(call.startswith("push registry.example:5000/team/") for call in builder.calls)
    assert not any(call.startswith(("push", "tag")) for call in manager.calls)
    assert builder.service_workloads == {} and builder.secret_values == {} and builder.volume_labels == {}
    (name,) = manager.service_workloads
    assert manager.service_workloads[name].image.startswith("registry.example:5000/team/")
    assert manager.service_constraints[name] == ["node.id==m1"]
    (mount,) = manager.service_workloads[name].mounts
    assert dict(mount.labels)["io.nbdock.project"] == "demo"
    assert url.startswith("http://manager.example:8899/lab?token=")  # the manager's task, a remote manager


def test_a_volume_driver_lifts_the_pin_and_reaches_the_mount(tmp_path: Path) -> None:
    builder, manager = FakeEngine(), FakeEngine(node="m1", remote_host="manager.example")
    project = make(tmp_path, builder, manager, REGISTRY="registry.example:5000/team", SWARM_VOLUME_DRIVER="local",
                   SWARM_VOLUME_OPTIONS="type=nfs o=addr=10.0.0.5,rw device=:/exports/nb")
    SwarmServer(project).up()
    (name,) = manager.service_workloads
    assert manager.service_constraints[name] == []
    (mount,) = manager.service_workloads[name].mounts
    assert (mount.driver, dict(mount.driver_options)["o"]) == ("local", "addr=10.0.0.5,rw")


def test_changed_settings_update_the_service_in_place_instead_of_removing_it(tmp_path: Path) -> None:
    builder, manager = FakeEngine(), FakeEngine(node="m1", remote_host="manager.example")
    project = make(tmp_path, builder, manager, REGISTRY="registry.example:5000/team")
    SwarmServer(project).up()
    (tmp_path / ".env").write_text((tmp_path / ".env").read_text() + "MEMORY=2g\n")
    manager.calls.clear()
    SwarmServer(Project(load_settings(tmp_path, environ={}), builder, manager)).up()
    assert [call for call in manager.calls if "service" in call] == ["update service nbdock-demo"]
    assert manager.service_workloads["nbdock-demo"].resources.memory == 2 * 2**30


def test_workers_spread_one_to_a_node_unless_more_are_allowed(tmp_path: Path) -> None:
    from nbdock.engine import Node
    from nbdock.training.swarm import spread

    nodes = [Node(f"id{i}", f"node{i}", f"10.0.0.{i}", "ready", "active", i == 1) for i in (3, 1, 2)]
    nodes.append(Node("id4", "node4", "10.0.0.4", "ready", "drain", False))
    assert [n.hostname for n in spread(nodes, 3, 1, tmp_path / ".env")] == ["node1", "node2", "node3"]
    with pytest.raises(NbdockError, match=r"need 4 ready nodes, and the swarm has 3; .* TRAIN_WORKERS_PER_NODE"):
        spread(nodes, 4, 1, tmp_path / ".env")
    assert [n.hostname for n in spread(nodes, 4, 2, tmp_path / ".env")] == ["node1", "node2", "node3", "node1"]
