"""`Project` against a small in-memory engine: run, resume, replace, status, down (no Docker needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nbdock import contract, jupyter
from nbdock.engine import Image
from nbdock.errors import NameConflict, NbdockError, PortTaken
from nbdock.project import Project
from nbdock.server.local import LocalServer
from nbdock.settings import load_settings
from tests.fake_engine import FakeEngine

pytestmark = pytest.mark.usefixtures("servers_answer")


def make(folder: Path, engine: FakeEngine, **env: str) -> Project:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notebooks").mkdir(exist_ok=True)
    (folder / "notebooks" / "a.ipynb").write_text("{}")
    lines = {"PROJECT_NAME": "demo", "RUN_AS": "1234:1234", "HOST_PORT": "8899", **env}
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    settings = load_settings(folder, environ={})
    engine.images.setdefault(settings.image_name, Image("sha256:img", dict(settings.labels)))
    return Project(settings, engine)


def test_run_starts_a_server_with_a_token_file_on_the_loopback(tmp_path: Path) -> None:
    engine = FakeEngine()
    server = LocalServer(make(tmp_path / "demo", engine)).run()
    (container_id,) = engine.running
    workload = engine.workloads[container_id]
    assert not server.reused and server.port == 8899 and server.token
    assert workload.secrets == {jupyter.TOKEN_SECRET: server.token}
    assert server.token not in str(dict(workload.environment))
    assert workload.environment[jupyter.TOKEN_FILE_VARIABLE] == contract.secret_path(jupyter.TOKEN_SECRET)
    assert workload.ports[0].host_ip == "127.0.0.1" and workload.user == "1234:1234"
    assert str(contract.IMAGE_GID) in workload.groups
    assert workload.labels[contract.LABEL_ROLE] == "server"
    assert workload.mounts[0].target == contract.NOTEBOOKS and not workload.mounts[0].read_only


def test_a_second_run_keeps_the_running_server(tmp_path: Path) -> None:
    engine = FakeEngine()
    first = LocalServer(make(tmp_path / "demo", engine)).run()
    engine.calls.clear()
    second = LocalServer(make(tmp_path / "demo", engine)).run()
    assert second.reused and second.token == first.token and second.port == first.port
    assert not [call for call in engine.calls if call.startswith(("create", "remove", "start"))]


def test_a_stopped_server_is_started_again(tmp_path: Path) -> None:
    engine = FakeEngine()
    project = LocalServer(make(tmp_path / "demo", engine))
    project.run()
    (container_id,) = engine.running
    project.stop()
    engine.calls.clear()
    assert LocalServer(make(tmp_path / "demo", engine)).run().reused
    assert engine.calls == [f"start {container_id}"]


def test_changed_settings_replace_the_server(tmp_path: Path) -> None:
    engine = FakeEngine()
    LocalServer(make(tmp_path / "demo", engine)).run()
    (old,) = engine.running
    server = LocalServer(make(tmp_path / "demo", engine, HOST_PORT="8900")).run()
    (new,) = engine.running
    assert new != old and f"remove {old}" in engine.calls and server.port == 8900


def test_a_taken_port_names_the_setting(tmp_path: Path) -> None:
    engine = FakeEngine(taken_ports={8899})
    with pytest.raises(PortTaken, match=r"port 8899 on 127\.0\.0\.1 is already in use.*HOST_PORT"):
        LocalServer(make(tmp_path / "demo", engine)).run()
    assert engine.running == {}


def test_status_and_down_touch_only_this_checkout(tmp_path: Path) -> None:
    engine = FakeEngine()
    decoy = engine.add_container("someone-else", {"purpose": "decoy"})
    project = LocalServer(make(tmp_path / "demo", engine))
    server = project.run()
    (row,) = project.rows()
    assert (row.role, row.state, row.url) == ("server", "running", server.url)
    assert project.down() == ["nbdock-demo"]
    assert list(engine.running) == [decoy.id]


def test_a_container_of_another_checkout_is_never_touched(tmp_path: Path) -> None:
    engine = FakeEngine()
    first = LocalServer(make(tmp_path / "a" / "demo", engine))
    first.run()
    second = LocalServer(make(tmp_path / "b" / "demo", engine))
    with pytest.raises(NameConflict, match=f"the checkout at {tmp_path / 'a' / 'demo'}"):
        second.run()
    assert second.down() == [] and second.stop() == []
    assert len(engine.running) == 1


def test_a_checkout_that_is_gone_is_taken_over(tmp_path: Path) -> None:
    engine = FakeEngine()
    LocalServer(make(tmp_path / "a" / "demo", engine)).run()
    shutil.rmtree(tmp_path / "a")
    server = LocalServer(make(tmp_path / "b" / "demo", engine)).run()
    assert not server.reused and len(engine.running) == 1


def test_a_foreign_container_with_the_name_is_refused(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.add_container("nbdock-demo", {})
    with pytest.raises(NameConflict, match=r"does not belong to project demo.*CONTAINER_NAME"):
        LocalServer(make(tmp_path / "demo", engine)).run()


def test_without_an_image_run_says_how_to_build(tmp_path: Path) -> None:
    engine = FakeEngine()
    project = LocalServer(make(tmp_path / "demo", engine))
    engine.images.clear()
    with pytest.raises(NbdockError, match="invoke build"):
        project.run()


def test_the_port_check_tells_a_taken_port_from_one_waiting_to_close(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:  # as the engine's proxy listens: with SO_REUSEADDR
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        project = make(tmp_path / "demo", FakeEngine(), HOST_PORT=str(port))
        with pytest.raises(PortTaken, match=f"port {port} on 127.0.0.1 is already in use"):
            project.check_port()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end of the port waits in TIME_WAIT
        client.close()
    project.check_port()  # as the engine would, nbdock may bind it again at once


def test_an_address_that_is_not_this_machines_is_named(tmp_path: Path) -> None:
    project = make(tmp_path / "demo", FakeEngine(), HOST_IP="10.255.255.1")  # nothing is sent to it
    with pytest.raises(NbdockError, match=r"HOST_IP 10\.255\.255\.1 is not an address of this machine"):
        project.check_port()
