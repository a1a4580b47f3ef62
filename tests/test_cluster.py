"""The three-node test swarm itself: separate engines, a registry all of them pull from, addresses,
overlay networking, secrets, the hidden project folder, drain, and a node going down and coming back.

Everything a test makes on the swarm carries its own label and is removed by it afterwards.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cluster import Cluster, Node
from tests.helpers.tracker import TEST_LABEL
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.docker
PORT = 8000  # what the test image's server listens on
# Each server writes the hostname of the node it runs on where it serves from, then serves.
SERVE = "mkdir -p /tmp/www && echo \"$NODE\" > /tmp/www/node && exec python3 -m http.server 8000 -d /tmp/www"


def get(address: str, port: int, path: str = "/node") -> tuple[int, str]:
    """(status, body) of GET http://address:port/path; raises OSError when nothing answers."""
    connection = http.client.HTTPConnection(address, port, timeout=3)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def answer(address: str, port: int, path: str = "/node") -> str | None:
    """The body served at address:port/path, or None while it does not answer with 200."""
    with contextlib.suppress(OSError):
        status, body = get(address, port, path)
        if status == 200:
            return body
    return None


def build_image(docker_client: Any, base_image: str, reference: str, label: str) -> None:
    dockerfile = (f"FROM {base_image}\nLABEL {TEST_LABEL}={label}\n"
                  f'CMD ["python3", "-m", "http.server", "{PORT}", "-d", "/tmp"]\n')
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=reference, rm=True)


def push(docker_client: Any, reference: str) -> str:
    """Push `reference` from the host engine; its digest (sha256:...)."""
    repository, tag = reference.rsplit(":", 1)
    digest = ""
    for line in docker_client.images.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
        digest = line.get("aux", {}).get("Digest", digest)
    assert digest.startswith("sha256:"), f"the push of {reference} reported no digest"
    return digest


@pytest.fixture(scope="module")
def web_image(cluster: Cluster, docker_client: Any, base_image: str) -> Iterator[str]:
    """A tiny image with a Python web server, built on the host engine and pushed to the cluster's
    registry; its tag on the host is removed afterwards (the nodes' copies go with the cluster)."""
    label = secrets.token_hex(4)
    reference = f"{cluster.registry}/nbdock-cluster-web:{label}"
    build_image(docker_client, base_image, reference, label)
    try:
        push(docker_client, reference)
        yield reference
    finally:
        docker_client.images.remove(reference, force=True)


@dataclass
class SwarmObjects:
    """Services, networks and secrets one test makes through the manager, all under one label."""

    manager: Any
    labels: dict[str, str]
    image: str
    name: str  # prefix of every object's name

    def serve(self, name: str, node: Node | None, script: str = SERVE, published: int | None = None,
              **options: Any) -> Any:
        """A service running `script` in the test image, on `node` (None: anywhere) with endpoint
        mode dnsrr, its port 8000 published on `published` of its node (host mode) if given."""
        from docker.types import EndpointSpec

        ports = {published: (PORT, "tcp", "host")} if published else {}
        constraints = [f"node.hostname=={node.hostname}"] if node else []
        return self.manager.services.create(
            self.image, command=["sh", "-c", script], name=f"{self.name}-{name}", labels=self.labels,
            container_labels=self.labels, constraints=constraints, env=["NODE={{.Node.Hostname}}"],
            endpoint_spec=EndpointSpec(mode="dnsrr", ports=ports), **options,
        )

    def tasks(self, service: Any, state: str) -> list[dict[str, Any]]:
        return [task for task in service.tasks() if task["Status"]["State"] == state]

    def running_on(self, service: Any, cluster: Cluster, timeout: float = 90) -> list[str]:
        """Wait until `service` has a running task; the hostnames of the nodes running its tasks."""
        hostnames = {node_id: hostname for hostname, node_id in cluster.node_ids.items()}
        running = wait_until(lambda: self.tasks(service, "running"), timeout, f"a running task of {service.name}",
                             interval=0.5)
        return sorted(hostnames[task["NodeID"]] for task in running)

    def remove(self) -> None:
        import docker.errors

        selector = {"label": f"{TEST_LABEL}={self.labels[TEST_LABEL]}"}
        for service in self.manager.services.list(filters=selector):
            with contextlib.suppress(docker.errors.NotFound):
                service.remove()

        def removed(kind: Any) -> bool:
            for found in kind.list(filters=selector):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    found.remove()
            return not kind.list(filters=selector)

        # Networks and secrets are free only once the services' tasks are gone.
        wait_until(lambda: removed(self.manager.secrets), 60, "the test's secrets to go", interval=0.5)
        wait_until(lambda: removed(self.manager.networks), 60, "the test's networks to go", interval=0.5)


@pytest.fixture
def swarm_objects(cluster: Cluster, web_image: str) -> Iterator[SwarmObjects]:
    label = secrets.token_hex(4)
    with contextlib.closing(cluster.client()) as manager:
        made = SwarmObjects(manager, {TEST_LABEL: label}, web_image, f"nbdc-test-{label}")
        try:
            yield made
        finally:
            made.remove()


def test_three_ready_nodes_with_distinct_hostnames_addresses_and_engines(cluster: Cluster) -> None:
    with contextlib.closing(cluster.client()) as manager:
        listed = manager.nodes.list()
    by_hostname = {node.attrs["Description"]["Hostname"]: node.attrs for node in listed}
    assert sorted(by_hostname) == sorted(node.hostname for node in cluster.nodes)
    for node in cluster.nodes:
        attrs = by_hostname[node.hostname]
        assert attrs["Status"]["State"] == "ready", attrs["Status"]
        assert attrs["Status"]["Addr"] == node.address
        assert attrs["Spec"]["Role"] == ("manager" if node is cluster.manager else "worker")
    engines = []
    for node in cluster.nodes:
        with contextlib.closing(cluster.client(node)) as client:
            info = client.info()
        assert info["Name"] == node.hostname
        engines.append((info["ID"], info["DockerRootDir"], info["Swarm"]["NodeID"]))
    for column in zip(*engines, strict=True):
        assert len(set(column)) == len(cluster.nodes), engines


def test_an_image_pushed_from_the_host_is_pulled_by_every_node_with_the_same_digest(
    cluster: Cluster, docker_client: Any, base_image: str
) -> None:
    label = secrets.token_hex(4)
    reference = f"{cluster.registry}/nbdock-cluster-pull:{label}"
    repository = reference.rsplit(":", 1)[0]
    build_image(docker_client, base_image, reference, label)
    try:
        digest = push(docker_client, reference)
        pulled = []
        for node in cluster.nodes:
            with contextlib.closing(cluster.client(node)) as client:
                assert client.images.list(name=repository) == [], f"{node.hostname} had the image before the pull"
                image = client.images.pull(repository, tag=label)
                pulled.append((image.id, image.attrs["RepoDigests"]))
        assert pulled == [(docker_client.images.get(reference).id, [f"{repository}@{digest}"])] * len(cluster.nodes)
    finally:
        docker_client.images.remove(reference, force=True)


def test_a_host_mode_port_answers_only_at_the_address_of_the_node_running_the_task(
    cluster: Cluster, swarm_objects: SwarmObjects
) -> None:
    second, third = cluster.nodes[1], cluster.nodes[2]
    service = swarm_objects.serve("web", second, published=18080)
    assert swarm_objects.running_on(service, cluster) == [second.hostname]
    assert wait_until(lambda: answer(second.address, 18080), 30, "the server on node 2") == f"{second.hostname}\n"
    with pytest.raises(ConnectionRefusedError):
        get(third.address, 18080)


def test_an_overlay_network_with_dnsrr_connects_tasks_on_two_nodes_by_service_name(
    cluster: Cluster, swarm_objects: SwarmObjects
) -> None:
    second, third = cluster.nodes[1], cluster.nodes[2]
    network = swarm_objects.manager.networks.create(f"{swarm_objects.name}-net", driver="overlay", attachable=True,
                                                    labels=swarm_objects.labels)
    server = swarm_objects.serve("server", third, networks=[network.id])
    # The client serves what it fetched from the server by name, once it got it.
    fetch = (f"import urllib.request; print(urllib.request.urlopen('http://{server.name}:{PORT}/node', "
             "timeout=2).read().decode(), end='')")
    script = ("mkdir -p /tmp/www && (python3 -m http.server 8000 -d /tmp/www &) && "
              f"until python3 -c \"{fetch}\" > /tmp/www/fetching; do sleep 0.5; done && "
              "mv /tmp/www/fetching /tmp/www/fetched && sleep infinity")
    client = swarm_objects.serve("client", second, script, published=18081, networks=[network.id])
    assert swarm_objects.running_on(server, cluster) == [third.hostname]
    assert swarm_objects.running_on(client, cluster) == [second.hostname]
    fetched = wait_until(lambda: answer(second.address, 18081, "/fetched"), 60, "the client to reach the server")
    assert fetched == f"{third.hostname}\n"


def test_a_secret_reaches_a_task_on_a_worker(cluster: Cluster, swarm_objects: SwarmObjects) -> None:
    from docker.types import SecretReference

    third = cluster.nodes[2]
    value = secrets.token_hex(16)
    secret = swarm_objects.manager.secrets.create(name=f"{swarm_objects.name}-secret", data=value.encode(),
                                                  labels=swarm_objects.labels)
    service = swarm_objects.serve(
        "secret", third, f"exec python3 -m http.server {PORT} -d /run/secrets", published=18082,
        secrets=[SecretReference(secret.id, secret.name, filename="token")],
    )
    assert swarm_objects.running_on(service, cluster) == [third.hostname]
    assert wait_until(lambda: answer(third.address, 18082, "/token"), 30, "the secret to be served") == value


def test_a_bind_mount_of_the_hidden_folder_is_rejected_on_a_node_though_the_path_exists_on_the_host(
    cluster: Cluster, swarm_objects: SwarmObjects, tmp_path: Path
) -> None:
    from docker.types import Mount

    second = cluster.nodes[1]
    (tmp_path / "notebook.ipynb").write_text("{}")
    assert cluster.hidden in tmp_path.resolve().parents
    hidden = swarm_objects.serve("hidden", second, mounts=[Mount("/data", str(tmp_path), type="bind")])
    visible = swarm_objects.serve("visible", second, mounts=[Mount("/data", "/etc", type="bind", read_only=True)])
    rejected = wait_until(lambda: swarm_objects.tasks(hidden, "rejected"), 60, "the task to be rejected")
    assert "bind source path does not exist" in rejected[0]["Status"]["Err"]
    assert str(tmp_path) in rejected[0]["Status"]["Err"]
    assert swarm_objects.running_on(visible, cluster) == [second.hostname]
    assert (tmp_path / "notebook.ipynb").read_text() == "{}"


def test_a_drained_node_runs_no_task_until_it_is_active_again(
    cluster: Cluster, swarm_objects: SwarmObjects
) -> None:
    from docker.types import ServiceMode

    second = cluster.nodes[1]
    cluster.drain(second)
    try:
        assert cluster.node_state(second) == ("ready", "drain")
        service = swarm_objects.serve("everywhere", None, mode=ServiceMode("global"))
        others = sorted(node.hostname for node in cluster.nodes if node is not second)
        assert wait_until(lambda: len(swarm_objects.tasks(service, "running")) == 2, 90, "two running tasks")
        assert swarm_objects.running_on(service, cluster) == others
    finally:
        cluster.activate(second)
    assert cluster.node_state(second) == ("ready", "active")
    assert wait_until(lambda: len(swarm_objects.tasks(service, "running")) == 3, 90, "a task on the node again")
    assert swarm_objects.running_on(service, cluster) == sorted(node.hostname for node in cluster.nodes)


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
def test_a_stopped_node_goes_down_and_comes_back_ready(
    cluster: Cluster, swarm_objects: SwarmObjects, kill: bool
) -> None:
    third = cluster.nodes[2]
    service = swarm_objects.serve("pinned", third, published=18083)
    assert swarm_objects.running_on(service, cluster) == [third.hostname]
    assert wait_until(lambda: answer(third.address, 18083), 30, "the server on node 3") == f"{third.hostname}\n"
    try:
        started = time.monotonic()
        cluster.stop_node(third, kill=kill)
        assert cluster.processes(third) == []  # the engine, its shims and the task's container
        with pytest.raises(OSError):  # refused, or no answer where a killed engine left its port forward
            get(third.address, 18083)
        wait_until(lambda: cluster.node_state(third)[0] == "down", 60, "node 3 to be down", interval=0.5)
        print(f"node 3 down after {time.monotonic() - started:.1f} s", end=" ")
    finally:
        cluster.start_node(third)
    wait_until(lambda: cluster.node_state(third)[0] == "ready", 60, "node 3 to be ready again", interval=0.5)
    print(f"and ready {time.monotonic() - started:.1f} s after the stop", end=" ")
    assert wait_until(lambda: answer(third.address, 18083), 90, "the server back on node 3") == f"{third.hostname}\n"
