"""`invoke up` and `invoke down` on a copy of the example project, against the real engine."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from nbdock.contract import LABEL_PROJECT
from tests.helpers.projects import URL, ProjectCopy, Result, owner
from tests.helpers.tracker import Tracker, project_containers
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.docker


@dataclass
class Served:
    project: ProjectCopy
    result: Result
    port: int
    token: str

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


def serve(project: ProjectCopy) -> Served:
    result = project.invoke("up")
    assert result.returncode == 0, result.output
    matched = URL.match(result.last_line)
    assert matched, f"the last line of `up` is not the URL: {result.last_line!r}\n{result.output}"
    return Served(project, result, int(matched.group(1)), matched.group(2))


@pytest.fixture
def served(make_project: Callable[..., ProjectCopy]) -> Iterator[Served]:
    yield serve(make_project())


def save_notebook(served: Served, name: str) -> None:
    notebook = {
        "type": "notebook",
        "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
    }
    response = requests.put(
        f"{served.api}/contents/{name}", data=json.dumps(notebook), headers=served.auth, timeout=10
    )
    assert response.status_code == 201, response.text


def test_up_serves_the_notebooks_with_token_auth(served: Served, docker_client: Any) -> None:
    assert requests.get(f"{served.api}/status", headers=served.auth, timeout=10).status_code == 200
    assert requests.get(f"{served.api}/status", timeout=10).status_code == 403
    assert requests.get(f"{served.api}/status?token=wrong", timeout=10).status_code == 403

    listing = requests.get(f"{served.api}/contents", headers=served.auth, timeout=10).json()
    assert "hello.ipynb" in [entry["name"] for entry in listing["content"]]

    (container,) = project_containers(docker_client, served.project.name)
    assert container.labels[LABEL_PROJECT] == served.project.name
    assert container.attrs["HostConfig"]["Init"] is True
    bindings = container.attrs["HostConfig"]["PortBindings"]["8888/tcp"]
    assert bindings[0]["HostIp"] == "127.0.0.1"
    uid = container.exec_run(["id", "-u"]).output.decode().strip()
    assert uid == str(owner()[0])
    assert uid != "0"
    # The token is a file only the server's user may read: not in inspect output, not in the log.
    assert served.token not in json.dumps(container.attrs)
    assert served.token not in container.logs().decode()
    token_file = container.exec_run(["stat", "-c", "%u %a", "/run/secrets/jupyter_token"]).output.decode()
    assert token_file.split() == [uid, "400"]


def test_a_saved_notebook_lands_on_the_host_and_belongs_to_the_user(served: Served) -> None:
    save_notebook(served, "saved.ipynb")
    saved = served.project.notebooks / "saved.ipynb"
    assert saved.is_file()
    assert (saved.stat().st_uid, saved.stat().st_gid) == owner()
    assert json.loads(saved.read_text())["nbformat"] == 4


def test_a_second_up_changes_nothing(served: Served, docker_client: Any) -> None:
    (before,) = project_containers(docker_client, served.project.name)
    image = docker_client.images.get(f"nbdock-{served.project.name}:latest").id
    again = served.project.invoke("up")
    assert again.returncode == 0, again.output
    assert again.last_line == served.result.last_line
    assert "is up to date" in again.stdout and "Step 1/" not in again.stdout
    assert docker_client.images.get(f"nbdock-{served.project.name}:latest").id == image
    (after,) = project_containers(docker_client, served.project.name)
    assert after.id == before.id
    assert after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]


def test_url_and_status_report_the_running_server(served: Served) -> None:
    url = served.project.invoke("url")
    assert url.returncode == 0 and url.last_line == served.result.last_line
    status = served.project.invoke("status")
    assert "running" in status.stdout and served.result.last_line in status.stdout
    address = served.project.invoke("ip").stdout.splitlines()
    assert address[0] == "browser:   127.0.0.1"
    ipaddress.ip_address(address[1].removeprefix("container: "))


def test_down_removes_only_this_projects_containers_and_keeps_the_work(
    served: Served, docker_client: Any, tracker: Tracker, base_image: str
) -> None:
    decoy = tracker.run(base_image, command=["sleep", "300"], labels={"purpose": "decoy"})
    save_notebook(served, "kept.ipynb")

    down = served.project.invoke("down")
    assert down.returncode == 0, down.output

    decoy.reload()
    assert decoy.status == "running"
    assert project_containers(docker_client, served.project.name) == []
    assert (served.project.notebooks / "kept.ipynb").is_file()
    assert (served.project.notebooks / "hello.ipynb").is_file()
    image = docker_client.images.get(f"nbdock-{served.project.name}:latest")
    assert image.labels[LABEL_PROJECT] == served.project.name

    again = served.project.invoke("down")
    assert again.returncode == 0 and "Nothing to remove." in again.stdout


def test_stop_then_up_starts_the_same_container_again(served: Served, docker_client: Any) -> None:
    (before,) = project_containers(docker_client, served.project.name)
    assert served.project.invoke("stop").returncode == 0
    before.reload()
    assert before.status == "exited"
    again = serve(served.project)
    (after,) = project_containers(docker_client, served.project.name)
    assert after.id == before.id and after.status == "running"
    assert again.token == served.token


def test_editing_a_notebook_rebuilds_without_reinstalling(
    served: Served, docker_client: Any
) -> None:
    image_before = docker_client.images.get(f"nbdock-{served.project.name}:latest").id
    hello = served.project.notebooks / "hello.ipynb"
    notebook = json.loads(hello.read_text())
    notebook["cells"][0]["source"] = ["# Edited\n"]
    hello.write_text(json.dumps(notebook))

    rebuilt = served.project.invoke("up")
    assert rebuilt.returncode == 0, rebuilt.output
    steps = _steps(rebuilt.stdout)
    installs = [step for step in steps if "pip install" in step.instruction]
    assert len(installs) == 2 and all(step.cached for step in installs), rebuilt.stdout
    (copy_notebooks,) = [step for step in steps if "notebooks/ " in step.instruction]
    assert not copy_notebooks.cached
    assert docker_client.images.get(f"nbdock-{served.project.name}:latest").id != image_before
    # The server sees the notebooks through its mount, so it keeps running.
    assert "already running" in rebuilt.stdout
    assert URL.match(rebuilt.last_line)
    # down --image takes the earlier build along, which the server ran until now.
    removed = served.project.invoke("down", "--image")
    assert "1 earlier build(s)" in removed.stdout, removed.output
    assert docker_client.images.list(filters={"label": f"{LABEL_PROJECT}={served.project.name}"}) == []


def test_the_image_serves_jupyter_on_its_own(
    served: Served, docker_client: Any, tracker: Tracker
) -> None:
    image = docker_client.images.get(f"nbdock-{served.project.name}:latest")
    config = image.attrs["Config"]
    assert config["User"] == "1000:1000"
    assert "8888/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD"

    standalone = tracker.run(image.id, ports={"8888/tcp": ("127.0.0.1", None)})
    standalone.reload()
    port = standalone.attrs["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/api"), 60, "the stand-alone server")
    assert requests.get(f"http://127.0.0.1:{port}/api/status", timeout=5).status_code == 403
    assert "token=" in standalone.logs().decode()

    listing = standalone.exec_run(["sh", "-c", "ls -A /home/nbdock/notebooks /tmp"]).output.decode()
    assert "hello.ipynb" in listing
    assert ".env" not in listing and "nbdock-ca.pem" not in listing
    history = " ".join(layer.get("CreatedBy", "") for layer in image.history())
    assert "ca.pem" not in history


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@dataclass
class Step:
    instruction: str
    cached: bool


def _steps(build_output: str) -> list[Step]:
    steps: list[Step] = []
    for line in build_output.splitlines():
        if line.startswith("Step "):
            steps.append(Step(line.split(" : ", 1)[1], cached=False))
        elif line.strip() == "---> Using cache" and steps:
            steps[-1].cached = True
    return steps


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_with(served: Served) -> bool:
    try:
        return requests.get(f"{served.api}/contents", headers=served.auth, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def server_container(docker_client: Any, project: ProjectCopy) -> Any:
    (container,) = project_containers(docker_client, project.name)
    return container


def test_a_server_restarted_by_docker_keeps_its_url_and_token(
    make_project: Callable[..., ProjectCopy], docker_client: Any
) -> None:
    served = serve(make_project(HOST_PORT=str(free_port())))
    container = server_container(docker_client, served.project)
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"

    container.restart(timeout=5)  # what an engine restart or a reboot does to it
    wait_until(lambda: answers_with(served), 60, "the server to answer again after docker restart")

    container.reload()
    started = container.attrs["State"]["StartedAt"]
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)  # the main process dies, as in a crash
    container.reload()
    wait_until(lambda: container.reload() or container.attrs["State"]["StartedAt"] != started, 60,
               "Docker to start the killed server again")
    wait_until(lambda: answers_with(served), 60, "the server to answer after its main process was killed")
    assert served.project.invoke("url").last_line == served.result.last_line


def test_restart_no_keeps_a_dead_server_dead(make_project: Callable[..., ProjectCopy], docker_client: Any) -> None:
    served = serve(make_project(RESTART="no"))
    container = server_container(docker_client, served.project)
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] in ("no", "")
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
    wait_until(lambda: container.reload() or container.status == "exited", 30, "the killed server to stay exited")
    time.sleep(2)
    container.reload()
    assert container.status == "exited" and container.attrs["RestartCount"] == 0
