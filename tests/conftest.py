"""Fixtures. Docker tests fail, not skip, when CI=true and no engine answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cluster import (
    Cluster,
    cluster_root,
    default_storage_driver,
    remove_stale,
    terminate_as_interrupt,
    unavailable,
)
from tests.helpers.images import remove_images_built_on
from tests.helpers.projects import BASE_IMAGE, EXAMPLE, ProjectCopy, clean_environment, new_project
from tests.helpers.tracker import Tracker
from tests.helpers.wait import answers, wait_until

REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """nbdock's cache (build records, tokens) goes to a folder of the test run's own."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield Path(os.environ["XDG_CACHE_HOME"])
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def docker_client() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no Docker engine answers: {error}")
        pytest.skip(f"no Docker engine answers: {error}")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> Iterator[str]:
    """A base image built with `nbdock base`, as a user without a registry would.

    At the end, it and every image built on it are removed, unless NBDOCK_TEST_KEEP_IMAGES=1
    (a quicker loop while developing).
    """
    keep = os.environ.get("NBDOCK_TEST_KEEP_IMAGES") == "1"
    if not (keep and docker_client.images.list(name=BASE_IMAGE)):
        completed = subprocess.run(
            [sys.executable, "-m", "nbdock", "base", "--tag", BASE_IMAGE],
            env=clean_environment(), capture_output=True, text=True, timeout=900,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert completed.stdout.strip().splitlines()[-1] == f"BASE_IMAGE={BASE_IMAGE}"
    base_id = docker_client.images.get(BASE_IMAGE).id
    yield BASE_IMAGE
    if keep:
        return
    remove_images_built_on(docker_client, base_id)
    docker_client.api.remove_image(base_id, force=True)


@pytest.fixture
def tracker(docker_client: Any) -> Iterator[Tracker]:
    """Everything the test makes on the engine, removed afterwards (also when it fails).

    Images stay until the session ends, so that later tests reuse their cached layers.
    """
    made = Tracker(docker_client)
    yield made
    made.cleanup(images=False)


@pytest.fixture
def make_project(
    tmp_path_factory: pytest.TempPathFactory, base_image: str, tracker: Tracker
) -> Callable[..., ProjectCopy]:
    """Copies of the example project; all they made on the engine is removed after the test."""

    def make(notebooks: Path = EXAMPLE / "notebooks", **settings: str) -> ProjectCopy:
        project = new_project(tmp_path_factory.mktemp("project"), base_image, settings, notebooks)
        tracker.project(project.name)
        return project

    return make


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry on loopback: the one .ci/run starts on 127.0.0.1:5000, else Debian's
    docker-registry started here on a free port (the engine trusts loopback registries)."""
    if answers(f"http://{REGISTRY}/v2/"):
        yield REGISTRY
        return
    binary = shutil.which("docker-registry")
    if binary is None:
        message = "no registry answers on 127.0.0.1:5000 and docker-registry is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    folder = tmp_path_factory.mktemp("registry")
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n"
    )
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: answers(f"http://{address}/v2/"), 30, "the registry to answer")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def swarm(docker_client: Any) -> Iterator[bool]:
    """Whether this engine was already a Swarm manager when the session started. Tests make the
    swarm themselves (`swarm.up --init`); at the end it is left only if a test made it."""
    active = docker_client.info().get("Swarm", {}).get("LocalNodeState") == "active"
    bridges = {network.name for network in docker_client.networks.list(names=["docker_gwbridge"])}
    yield active
    if not active and docker_client.info().get("Swarm", {}).get("LocalNodeState") == "active":
        docker_client.swarm.leave(force=True)
        if not bridges:  # the bridge `swarm init` made for this node
            for network in docker_client.networks.list(names=["docker_gwbridge"]):
                network.remove()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real three-node swarm (tests/helpers/cluster.py): one manager and two workers, each an engine
    in namespaces of its own, a registry they all pull from, and this session's folders hidden from
    them. NBDOCK_TEST_CLUSTER_STORAGE_DRIVER picks the nodes' storage driver (default: overlay2 where
    the kernel has overlayfs, else fuse-overlayfs). Started only for sessions that ask for it;
    removed at the end, also after failures and interrupts. Without root or its tools it is
    skipped, and fails instead when `CI=true`."""
    storage_driver = os.environ.get("NBDOCK_TEST_CLUSTER_STORAGE_DRIVER") or default_storage_driver()
    reason = unavailable(storage_driver)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    hidden = tmp_path_factory.getbasetemp().parent
    remove_stale()
    with terminate_as_interrupt():
        made = Cluster.start(cluster_root(hidden), hidden, storage_driver)
        try:
            yield made
        finally:
            made.close()


@pytest.fixture
def servers_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """For unit tests against the fake engine: every Jupyter server answers at once, and nbdock's
    cache is the test's own."""
    from nbdock import jupyter

    monkeypatch.setattr(jupyter, "answers", lambda url, timeout=2.0: True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield


@pytest.fixture(scope="session")
def tf_project(tmp_path_factory: pytest.TempPathFactory, base_image: str, docker_client: Any) -> Iterator[ProjectCopy]:
    """A copy of the distributed TensorFlow example with its execution image built once, for
    every test file that trains (one fixture, so one checkout owns the image)."""
    from nbdock import image
    from nbdock.project import Project
    from nbdock.settings import load_settings
    from tests.helpers.projects import REPO
    from tests.test_training import EXAMPLE as TF_EXAMPLE
    from tests.test_training import FAILING, FAILING_NOTEBOOK

    name = "nbdock-test-tf"
    path = tmp_path_factory.mktemp("tf") / name
    shutil.copytree(TF_EXAMPLE, path)
    shutil.copy(REPO / "tasks.py", path)  # as `nbdock init` would
    (path / "notebooks" / "fails.py").write_text(FAILING)
    (path / "notebooks" / "sleeps.py").write_text("import time\ntime.sleep(600)\n")
    (path / "notebooks" / "k8s_fails.ipynb").write_text(FAILING_NOTEBOOK)
    project = ProjectCopy(path, name)
    project.write_env(PROJECT_NAME=name, BASE_IMAGE=base_image, HOST_PORT="0", TRAIN_PORT="2222")
    project.chown()
    image.build(Project(load_settings(path)), execute=True)
    yield project
    tracker = Tracker(docker_client)
    tracker.project(name)
    tracker.cleanup(images=False)
