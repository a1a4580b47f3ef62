"""`push` to a real registry and `swarm.*` on a real single-node swarm (made here when absent)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import requests

from nbdock.contract import LABEL_PROJECT, dns_label
from tests.helpers.projects import ProjectCopy, assert_one_line_failure
from tests.helpers.tracker import Tracker
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.docker
DIGEST_REFERENCE = re.compile(r"^(127\.0\.0\.1:\d+/[\w/.-]+)@(sha256:[0-9a-f]{64})$")
URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)$")


def save_notebook(port: int, token: str, name: str) -> None:
    notebook = {"type": "notebook",
                "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}
    response = requests.put(f"http://127.0.0.1:{port}/api/contents/{name}", data=json.dumps(notebook),
                            headers={"Authorization": f"token {token}"}, timeout=10)
    assert response.status_code == 201, response.text


def listing(port: int, token: str) -> list[str]:
    response = requests.get(f"http://127.0.0.1:{port}/api/contents", timeout=10,
                            headers={"Authorization": f"token {token}"})
    return [entry["name"] for entry in response.json()["content"]]


def engine_state() -> str:
    """What the engine shows of services, tasks and containers: evidence when a service did not come up."""
    commands = [["docker", "service", "ls"], ["docker", "ps", "-a", "--no-trunc"]]
    services = subprocess.run(["docker", "service", "ls", "-q"], capture_output=True, text=True).stdout.split()
    commands += [["docker", "service", "ps", "--no-trunc", service] for service in services]
    return "\n".join(subprocess.run(c, capture_output=True, text=True).stdout for c in commands)


def test_without_a_swarm_up_says_how_to_get_one(
    make_project: Callable[..., ProjectCopy], swarm: bool, tracker: Tracker
) -> None:
    if swarm:
        pytest.skip("this engine was a Swarm manager before the tests; a test leaves it be")
    project = make_project(HOST_IP="0.0.0.0")
    assert_one_line_failure(project.invoke("swarm.up"), "not a Swarm manager", "--init", "docker swarm init")
    assert_one_line_failure(project.invoke("swarm.logs"), "has no Swarm service", "swarm.up")
    assert tracker.leftovers(project.name) == []


def test_a_loopback_host_ip_is_refused_without_public(
    make_project: Callable[..., ProjectCopy], tracker: Tracker
) -> None:
    project = make_project()
    assert_one_line_failure(project.invoke("swarm.up", "--init"), "every interface", "HOST_IP=0.0.0.0", "--public")
    assert tracker.leftovers(project.name) == []


def test_an_unreachable_registry_is_one_line_and_leaves_nothing(
    make_project: Callable[..., ProjectCopy], docker_client: Any, tracker: Tracker
) -> None:
    project = make_project(REGISTRY="127.0.0.1:1/team")
    assert_one_line_failure(project.invoke("push"), "REGISTRY 127.0.0.1:1/team refused the push", "nothing answers")
    assert docker_client.images.list(name="127.0.0.1:1/team/" + project.image.split(":")[0]) == []
    assert tracker.leftovers(project.name) == []


def test_push_prints_a_digest_that_pulls_back(
    make_project: Callable[..., ProjectCopy], registry: str, docker_client: Any
) -> None:
    project = make_project(REGISTRY=f"{registry}/nbdock-tests")
    pushed = project.invoke("push")
    assert pushed.returncode == 0, pushed.output
    matched = DIGEST_REFERENCE.match(pushed.last_line)
    assert matched, pushed.output
    assert "Pushed" in pushed.stdout or "Layer already exists" in pushed.stdout
    repository, digest = matched.groups()
    manifest = requests.get(f"http://{registry}/v2/{repository.split('/', 1)[1]}/manifests/{digest}",
                            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
                            timeout=10)
    assert manifest.status_code == 200
    docker_client.images.remove(f"{repository}:latest")
    pulled = docker_client.images.pull(pushed.last_line)
    assert pulled.id == docker_client.images.get(project.image).id


def test_the_server_as_a_swarm_service(
    make_project: Callable[..., ProjectCopy], registry: str, swarm: bool, tracker: Tracker, docker_client: Any,
    base_image: str,
) -> None:
    name = f"swarm_{secrets.token_hex(3)}.v2"  # `_` and `.` are no part of a DNS name
    service_name = dns_label(f"nbdock-{name}")
    project = make_project(REGISTRY=f"{registry}/nbdock-tests", HOST_IP="0.0.0.0", PROJECT_NAME=name)
    tracker.project(name)
    decoy = None
    started = project.invoke("swarm.up", "--init")
    assert started.returncode == 0, started.output + engine_state()
    assert f"Service name: {service_name}" in started.stdout
    matched = URL.match(started.last_line)
    assert matched, started.output
    port, token = int(matched.group(1)), matched.group(2)
    try:
        decoy = docker_client.services.create(base_image, ["sleep", "600"], name="nbdock-test-decoy",
                                              labels=tracker.labels)
        api = f"http://127.0.0.1:{port}/api/status"
        assert requests.get(api, headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200
        assert requests.get(api, timeout=10).status_code == 403

        service = docker_client.services.get(service_name)
        spec = service.attrs["Spec"]
        assert spec["TaskTemplate"]["ContainerSpec"]["Image"].startswith(f"{registry}/nbdock-tests/")
        assert "@sha256:" in spec["TaskTemplate"]["ContainerSpec"]["Image"]
        assert spec["EndpointSpec"]["Mode"] == "dnsrr"
        assert spec["TaskTemplate"]["ContainerSpec"]["User"] == "1000:1000"
        inspected = subprocess.run(["docker", "service", "inspect", service.id], capture_output=True, text=True)
        assert token not in inspected.stdout + inspected.stderr

        def logs() -> str:
            read = subprocess.run(["docker", "service", "logs", service.id], capture_output=True, text=True)
            return read.stdout + read.stderr

        wait_until(lambda: "token=..." in logs(), 30, "the server's log")
        assert token not in logs()

        version = service.attrs["Version"]["Index"]
        again = project.invoke("swarm.up", "--init")
        assert again.returncode == 0 and again.last_line == started.last_line, again.output + engine_state()
        assert "already running as wanted" in again.stdout
        unchanged = docker_client.services.get(service_name)
        assert (unchanged.id, unchanged.attrs["Version"]["Index"]) == (service.id, version)

        assert "hello.ipynb" in listing(port, token)  # the volume was seeded from the image
        save_notebook(port, token, "kept.ipynb")
        assert project.invoke("url").returncode != 0  # no local server: swarm.url is the one
        assert project.invoke("swarm.url").last_line == started.last_line

        down = project.invoke("swarm.down")
        assert down.returncode == 0, down.output
        assert tracker.leftovers(name) == [f"volume {service_name}-notebooks"]
        decoy.reload()
        assert decoy.name == "nbdock-test-decoy"

        restarted = project.invoke("swarm.up", "--init")
        assert restarted.returncode == 0, restarted.output + engine_state()
        matched = URL.match(restarted.last_line)
        assert matched, restarted.output
        port, token = int(matched.group(1)), matched.group(2)
        wait_until(lambda: "kept.ipynb" in listing(port, token), 30, "the saved notebook after a restart")
    finally:
        final = project.invoke("swarm.down", "--volumes")
        assert final.returncode == 0, final.output
        labelled = {"label": f"{LABEL_PROJECT}={name}"}
        assert docker_client.services.list(filters=labelled) == []
        assert docker_client.secrets.list(filters=labelled) == []
        assert docker_client.networks.list(filters=labelled) == []
        assert docker_client.volumes.list(filters=labelled) == []
        if decoy is not None:
            decoy.remove()
