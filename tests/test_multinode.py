"""`swarm.*` through a remote manager on the real three-node test swarm (tests/helpers/cluster.py):
the image built on this machine's engine, pushed to the cluster's registry, the service made by the
manager, its task on any node; the project folder exists on this machine only."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.utils

from nbdock.contract import LABEL_PROJECT, dns_label
from tests.helpers.cluster import Cluster, Node
from tests.helpers.projects import ProjectCopy, Result, assert_one_line_failure, clean_environment
from tests.helpers.tracker import Tracker
from tests.helpers.wait import wait_until
from tests.test_training import assert_trained, summary_rows

pytestmark = pytest.mark.docker
URL = re.compile(r"^http://([\d.]+):(\d+)/lab\?token=([0-9a-f]+)$")


@pytest.fixture
def node_trackers(cluster: Cluster) -> Iterator[list[Tracker]]:
    """A tracker per node engine: what a test's projects left on any node is removed afterwards."""
    clients = [cluster.client(node) for node in cluster.nodes]
    trackers = [Tracker(client) for client in clients]
    yield trackers
    for node in cluster.nodes:  # a test that drained a node and failed gives it back
        with contextlib.suppress(Exception):
            cluster.activate(node)
    for tracker in trackers:
        with contextlib.suppress(Exception):
            tracker.cleanup(images=False)
    for client in clients:
        client.close()


@pytest.fixture
def remote_project(make_project: Callable[..., ProjectCopy], cluster: Cluster,
                   node_trackers: list[Tracker]) -> Callable[..., ProjectCopy]:
    """A project that builds here and deploys through the cluster's manager."""

    def make(**settings: str) -> ProjectCopy:
        values = {"SWARM_HOST": cluster.manager_host, "REGISTRY": f"{cluster.registry}/nbdock-tests",
                  "HOST_IP": "0.0.0.0", "HOST_PORT": "0", **settings}
        project = make_project(**values)
        for tracker in node_trackers:
            tracker.project(project.name)
        return project

    return make


def node_at(cluster: Cluster, address: str) -> Node:
    return next(node for node in cluster.nodes if node.address == address)


def service_task_node(cluster: Cluster, service: str) -> str:
    """The hostname of the node running the service's task."""
    with contextlib.closing(cluster.client()) as manager:
        tasks = manager.api.tasks(filters={"service": service, "desired-state": "running"})
        nodes = {n["ID"]: n["Description"]["Hostname"] for n in manager.api.nodes()}
    placed = [task["NodeID"] for task in tasks if task.get("NodeID")]  # a pending task has no node yet
    return nodes[placed[0]] if placed else ""


def answers(host: str, port: int, token: str) -> bool:
    try:
        return requests.get(f"http://{host}:{port}/api/status", timeout=5,
                            headers={"Authorization": f"token {token}"}).status_code == 200
    except requests.RequestException:
        return False


def served_at(started: Result) -> tuple[str, int, str]:
    """(host, port, token) of the URL a successful `swarm.up` printed last."""
    assert started.returncode == 0, started.output
    matched = URL.match(started.last_line)
    assert matched, started.output
    return matched.group(1), int(matched.group(2)), matched.group(3)


def test_without_registry_a_remote_manager_is_refused_in_one_line(
    remote_project: Callable[..., ProjectCopy], node_trackers: list[Tracker]
) -> None:
    project = remote_project(REGISTRY="")
    assert_one_line_failure(project.invoke("swarm.up"), "SWARM_HOST=", "REGISTRY", "pull")
    assert all(tracker.leftovers(project.name) == [] for tracker in node_trackers)


def test_a_context_name_that_does_not_exist_is_one_line(remote_project: Callable[..., ProjectCopy]) -> None:
    project = remote_project(SWARM_HOST="no-such-context-here")
    assert_one_line_failure(project.invoke("swarm.up"), "SWARM_HOST=no-such-context-here", "docker context")


def test_a_manager_that_does_not_answer_is_one_line(remote_project: Callable[..., ProjectCopy],
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    socket = tmp_path_factory.mktemp("nowhere") / "docker.sock"
    project = remote_project(SWARM_HOST=f"unix://{socket}")
    assert_one_line_failure(project.invoke("swarm.up"), "cannot reach the swarm manager", "SWARM_HOST")
    assert_one_line_failure(project.invoke("swarm.status"), "cannot reach the swarm manager")


def assert_serves_through(project: ProjectCopy, cluster: Cluster, **env: str) -> None:
    """`swarm.up` through the manager SWARM_HOST names ends with a URL that answers at a node's
    address; `swarm.status` names that node; `swarm.down --volumes` leaves nothing on the swarm."""
    started = project.invoke("swarm.up", **env)
    try:
        host, port, token = served_at(started)
        node = node_at(cluster, host)
        assert answers(host, port, token)
        status = project.invoke("swarm.status", **env)
        assert status.returncode == 0 and f"on {node.hostname} ({node.address})" in status.stdout, status.output
    finally:
        down = project.invoke("swarm.down", "--volumes", **env)
        assert down.returncode == 0, down.output
    with contextlib.closing(cluster.client()) as manager:
        assert manager.services.list(filters={"label": f"{LABEL_PROJECT}={project.name}"}) == []


def test_a_manager_over_ssh_or_named_by_a_tls_context_serves_as_through_its_socket(
    remote_project: Callable[..., ProjectCopy], cluster: Cluster, tmp_path: Path
) -> None:
    home = tmp_path / "home"  # the Docker SDK's ssh reads ~/.ssh: the key and known_hosts
    with cluster.serve_ssh(cluster.manager, home) as ssh_url:
        project = remote_project(SWARM_HOST=ssh_url)
        known_hosts = home / ".ssh" / "known_hosts"
        known = known_hosts.read_text()
        known_hosts.write_text("")
        assert_one_line_failure(project.invoke("swarm.up", HOME=str(home)), "cannot reach the swarm manager",
                                "known_hosts")
        known_hosts.write_text(known)
        assert_serves_through(project, cluster, HOME=str(home))

    config = tmp_path / "docker-config"  # a docker context as the CLI writes it, in a config of its own
    config.mkdir()
    (config / "config.json").write_text("{}")
    tls = ",".join(f"{name}={path}" for name, path in cluster.tls_files.items())
    subprocess.run(["docker", "context", "create", "nbdock-test-manager", "--docker",
                    f"host={cluster.manager_tls_host},{tls}"], env={**os.environ, "DOCKER_CONFIG": str(config)},
                   check=True, capture_output=True)
    project.add_env(SWARM_HOST=cluster.manager_tls_host)  # the later line wins
    assert_one_line_failure(project.invoke("swarm.up", DOCKER_CONFIG=str(config)), "TLS", "docker context")
    project.add_env(SWARM_HOST="nbdock-test-manager")
    # Another CA bundle for everything else, as behind a TLS-intercepting proxy: the context's CA still wins.
    assert_serves_through(project, cluster, DOCKER_CONFIG=str(config),
                          REQUESTS_CA_BUNDLE=requests.utils.DEFAULT_CA_BUNDLE_PATH)


def test_a_registry_the_nodes_cannot_reach_is_one_line_naming_the_node_and_the_service_is_removed(
    remote_project: Callable[..., ProjectCopy], registry: str, node_trackers: list[Tracker], cluster: Cluster
) -> None:
    # The host's own registry answers on this machine's loopback, which no node reaches.
    project = remote_project(REGISTRY=f"{registry}/nbdock-tests")
    failed = assert_one_line_failure(project.invoke("swarm.up"), "could not pull", "REGISTRY")
    assert re.search(r"node \S+ \(10\.77\.\d+\.\d+\)", failed), failed
    leftovers = [item for tracker in node_trackers for item in tracker.leftovers(project.name)
                 if not item.startswith("volume ")]
    assert leftovers == []


def test_the_server_on_a_remote_manager_answers_at_its_node_and_stays_with_its_volume(
    remote_project: Callable[..., ProjectCopy], cluster: Cluster, node_trackers: list[Tracker]
) -> None:
    project = remote_project()
    service = dns_label(f"nbdock-{project.name}")
    started = project.invoke("swarm.up")
    try:
        host, port, token = served_at(started)
        node = node_at(cluster, host)  # an address of the node the task runs on, not 127.0.0.1
        assert service_task_node(cluster, service) == node.hostname
        assert answers(host, port, token)
        others = [other for other in cluster.nodes if other is not node]
        assert not any(answers(other.address, port, token) for other in others)  # a host-mode port

        with contextlib.closing(cluster.client()) as manager:
            spec = manager.api.inspect_service(service)["Spec"]
            inspected = subprocess.run(["docker", "-H", cluster.manager_host, "service", "inspect", service],
                                       capture_output=True, text=True)
        assert spec["TaskTemplate"]["ContainerSpec"]["Image"].startswith(f"{cluster.registry}/nbdock-tests/")
        assert f"node.id=={cluster.node_id(node)}" in spec["TaskTemplate"]["Placement"]["Constraints"]
        assert token not in inspected.stdout + inspected.stderr

        status = project.invoke("swarm.status")
        assert status.returncode == 0 and f"on {node.hostname} ({node.address})" in status.stdout, status.output
        assert project.invoke("swarm.url").last_line == started.last_line

        # Draining another node leaves the server where it is.
        other = others[0]
        cluster.drain(other)
        try:
            assert service_task_node(cluster, service) == node.hostname
            assert answers(host, port, token)
            again = project.invoke("swarm.up")
            assert again.returncode == 0 and again.last_line == started.last_line, again.output
        finally:
            cluster.activate(other)

        # Draining the volume's node stops the server and says so; nothing starts empty elsewhere.
        cluster.drain(node)
        try:
            wait_until(lambda: not answers(host, port, token), 60, "the server to stop on the drained node")
            status = project.invoke("swarm.status")
            assert status.returncode == 0, status.output
            assert f"volume {service}-notebooks on node {node.hostname}" in \
                status.stdout and "drained" in status.stdout, status.output
            assert not any(answers(o.address, port, token) for o in others)
            refused = project.invoke("swarm.up")
            assert_one_line_failure(refused, f"on node {node.hostname}", "drained", "--availability active")
        finally:
            cluster.activate(node)
        back = project.invoke("swarm.up")
        assert back.returncode == 0, back.output
        assert URL.match(back.last_line) and URL.match(back.last_line).group(1) == node.address  # type: ignore[union-attr]
    finally:
        down = project.invoke("swarm.down")
        assert down.returncode == 0, down.output
        with contextlib.closing(cluster.client()) as manager:
            labelled = {"label": f"{LABEL_PROJECT}={project.name}"}
            assert manager.services.list(filters=labelled) == []
            assert manager.secrets.list(filters=labelled) == []


@contextlib.contextmanager
def port_held_on(node: Node, port: int) -> Iterator[None]:
    """A process outside Docker listening on `port` of `node` (in the node's network namespace)."""
    holder = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{node.namespace}", sys.executable, "-c",
         f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {port})); s.listen(); "
         "print('ready', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_port_taken_on_the_servers_node_is_one_line_naming_the_node_and_the_port(
    remote_project: Callable[..., ProjectCopy], cluster: Cluster, node_trackers: list[Tracker]
) -> None:
    # Free on this machine, taken on the manager, where the notebooks volume (and so the server) goes.
    project = remote_project(HOST_PORT="18877")
    with port_held_on(cluster.manager, 18877):
        failed = project.invoke("swarm.up")
    message = assert_one_line_failure(failed, "18877", f"node {cluster.manager.hostname}", "HOST_PORT")
    assert "in use" in message, message
    with contextlib.closing(cluster.client()) as manager:
        assert manager.services.list(filters={"label": f"{LABEL_PROJECT}={project.name}"}) == []
    wait_until(lambda: all(not [item for item in tracker.leftovers(project.name) if item.startswith("container")]
                           for tracker in node_trackers), 30, "Swarm to remove the failed task")


def test_a_lost_volume_node_is_named_and_no_empty_server_starts_elsewhere(
    remote_project: Callable[..., ProjectCopy], cluster: Cluster, node_trackers: list[Tracker]
) -> None:
    project = remote_project()
    service = dns_label(f"nbdock-{project.name}")
    cluster.drain(cluster.manager)  # so the volume goes to a worker, which can be lost without the swarm
    try:
        started = project.invoke("swarm.up")
    finally:
        cluster.activate(cluster.manager)
    try:
        host, port, token = served_at(started)
        node = node_at(cluster, host)
        assert node is not cluster.manager
        others = [other for other in cluster.nodes if other is not node]
        cluster.stop_node(node, kill=True)
        try:
            wait_until(lambda: cluster.node_state(node)[0] == "down", 120, f"the manager to see {node.hostname} down")
            status = project.invoke("swarm.status")
            assert status.returncode == 0, status.output
            assert f"volume {service}-notebooks on node {node.hostname}" in status.stdout, status.output
            assert "which is down (its engine does not answer the manager)" in status.stdout, status.output
            refused = project.invoke("swarm.up")
            assert_one_line_failure(refused, f"on node {node.hostname}", "down", "start its engine")
            assert service_task_node(cluster, service) in ("", node.hostname)
            assert not any(answers(other.address, port, token) for other in others)
        finally:
            cluster.start_node(node)
        wait_until(lambda: cluster.node_state(node)[0] == "ready", 120, f"{node.hostname} to rejoin")
        back = project.invoke("swarm.up")
        assert back.returncode == 0 and served_at(back)[0] == node.address, back.output
        wait_until(lambda: answers(node.address, served_at(back)[1], served_at(back)[2]), 60,
                   "the server to answer on its node again")
    finally:
        down = project.invoke("swarm.down")
        assert down.returncode == 0, down.output


@pytest.mark.parametrize(("broken", "said"), [
    ({"MEMORY": "6m"}, "out of memory"),  # killed by the kernel as it starts: exit code 137
])
def test_an_update_that_cannot_start_rolls_back_and_the_old_server_answers(
    remote_project: Callable[..., ProjectCopy], cluster: Cluster, broken: dict[str, str], said: str
) -> None:
    project = remote_project(HOST_PORT="18888")
    started = project.invoke("swarm.up")
    try:
        host, port, token = served_at(started)
        good = (project.path / ".env").read_text()
        (project.path / ".env").write_text(good + "".join(f"{k}={v}\n" for k, v in broken.items()))
        failed = project.invoke("swarm.up")
        message = assert_one_line_failure(failed, "did not start", said, "rolled back")
        if "MEMORY" in broken:
            assert "raise MEMORY" in message
        assert answers(host, port, token)  # the previous server, its token and volume
        (project.path / ".env").write_text(good)
        again = project.invoke("swarm.up")
        assert again.returncode == 0 and again.last_line == started.last_line, again.output
    finally:
        down = project.invoke("swarm.down")
        assert down.returncode == 0, down.output


@pytest.fixture
def tf_on_cluster(tf_project: ProjectCopy, cluster: Cluster,
                  node_trackers: list[Tracker]) -> Iterator[ProjectCopy]:
    """The TensorFlow example pointed at the cluster: built here, pushed to its registry."""
    env = tf_project.path / ".env"
    before = env.read_text()
    env.write_text(before + f"SWARM_HOST={cluster.manager_host}\nREGISTRY={cluster.registry}/nbdock-tests\n")
    # The example's global batch (64) splits over 1, 2 or 4 workers; three need one that 3 divides.
    three = tf_project.notebooks / "train_three.py"
    three.write_text((tf_project.notebooks / "train.py").read_text().replace('"BATCH_SIZE", 64', '"BATCH_SIZE", 96'))
    for tracker in node_trackers:
        tracker.project(tf_project.name)
    try:
        yield tf_project
    finally:
        env.write_text(before)
        three.unlink()


def worker_nodes(result: Any) -> list[str]:
    return re.findall(r"^Worker \d+ runs on node (\S+) \(", result.stdout, re.MULTILINE)


def test_three_workers_train_on_three_nodes_and_the_chief_outputs_come_back(
    tf_on_cluster: ProjectCopy, cluster: Cluster, node_trackers: list[Tracker]
) -> None:
    result = tf_on_cluster.invoke("train", "--workers", "3", "--script", "train_three.py", "--backend", "swarm")
    folder = assert_trained(tf_on_cluster, result, workers=3)
    assert sorted(worker_nodes(result)) == sorted(node.hostname for node in cluster.nodes)
    assert [row[-3] for row in summary_rows(result, 3)] == worker_nodes(result)  # the summary names them too
    chief = json.loads((folder / "result.json").read_text())  # written on a node, collected here
    assert chief["workers"] == 3
    # The services and their network are gone at once; Swarm then removes the tasks' containers.
    wait_until(lambda: all(tracker.leftovers(tf_on_cluster.name) == [] for tracker in node_trackers), 30,
               "Swarm to remove the workers on every node")


def test_a_node_lost_mid_run_ends_the_run_naming_the_worker_and_the_node(
    tf_on_cluster: ProjectCopy, cluster: Cluster, node_trackers: list[Tracker]
) -> None:
    victim = cluster.nodes[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "train", "--workers", "3", "--script", "sleeps.py", "--backend", "swarm"],
        cwd=tf_on_cluster.path, env=clean_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with contextlib.closing(cluster.client(victim)) as engine:
            wait_until(lambda: any(c.status == "running" for c in engine.containers.list(
                filters={"label": f"{LABEL_PROJECT}={tf_on_cluster.name}"})), 300, "a worker on the victim node")
        cluster.stop_node(victim, kill=True)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        cluster.start_node(victim)
    assert process.returncode == 1, output
    assert re.search(rf"worker \d: its node {victim.hostname} \({victim.address}\) went down", output), output
    assert "Traceback" not in output
    with contextlib.closing(cluster.client()) as manager:
        assert manager.services.list(filters={"label": f"{LABEL_PROJECT}={tf_on_cluster.name}"}) == []
