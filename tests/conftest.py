"""Fixtures for tests against a real Docker engine.

Every container and image a test creates is tracked and removed afterwards. With CI=true a
missing engine fails the Docker tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
LABEL_PROJECT = "io.nbdock.project"
# A uid and gid that are neither root nor the image's own user (1000): the common case.
PROJECT_OWNER = (1234, 1234)
BASE_IMAGE = "nbdock-test-base:latest"
URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)$")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def last_line(self) -> str:
        lines = self.stdout.strip().splitlines()
        return lines[-1] if lines else ""


def clean_environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NBDOCK_")}
    environment.update(PYTHONUNBUFFERED="1", **extra)
    return environment


def invoke(project: Path, *args: str, **env: str) -> Result:
    """Run `invoke ARGS` in `project` as a user would, with the project's own tasks.py."""
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project, env=clean_environment(**env), capture_output=True, text=True, timeout=900,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture(scope="session", autouse=True)
def build_records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """nbdock's build records go to a folder of the test run's own, not the user's cache."""
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


def remove_images_built_on(client: Any, base_id: str) -> None:
    """Remove every image (tagged or intermediate) whose chain of parents leads to `base_id`."""
    import docker.errors

    parents = {image["Id"]: image.get("ParentId", "") for image in client.api.images(all=True)}
    depth: dict[str, int] = {}  # how many parents lie between an image and the base
    for image_id in parents:
        ancestor, steps = parents[image_id], 1
        while ancestor and ancestor != base_id:
            ancestor, steps = parents.get(ancestor, ""), steps + 1
        if ancestor == base_id:
            depth[image_id] = steps
    for image_id in sorted(depth, key=depth.__getitem__, reverse=True):  # children first
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_image(image_id, force=True)


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


def project_containers(client: Any, project: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}))


@dataclass
class Project:
    path: Path
    name: str

    @property
    def notebooks(self) -> Path:
        return self.path / "notebooks"

    def invoke(self, *args: str, **env: str) -> Result:
        return invoke(self.path, *args, **env)

    def write_env(self, **settings: str) -> None:
        lines = [f"{key}={value}" for key, value in settings.items()]
        (self.path / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for child in path.rglob("*"):
        os.chown(child, uid, gid, follow_symlinks=False)


def new_project(
    tmp_path_factory: pytest.TempPathFactory,
    base_image: str,
    settings: Mapping[str, str],
    notebooks: Path = REPO / "notebooks",
) -> Project:
    """A copy of the example project under its own name, owned (under root) by PROJECT_OWNER."""
    name = f"nbdock-test-{secrets.token_hex(4)}"
    path = tmp_path_factory.mktemp(name)
    shutil.copytree(notebooks, path / "notebooks")
    shutil.copy(REPO / "requirements.txt", path)
    shutil.copy(REPO / "tasks.py", path)
    project = Project(path, name)
    project.write_env(**{"PROJECT_NAME": name, "BASE_IMAGE": base_image, "HOST_PORT": "0", **settings})
    if os.getuid() == 0:
        _chown_tree(path, *PROJECT_OWNER)
    return project


def remove_containers(client: Any, project: Project) -> None:
    for container in project_containers(client, project.name):
        container.remove(force=True)


@pytest.fixture
def make_project(
    tmp_path_factory: pytest.TempPathFactory, base_image: str, docker_client: Any
) -> Iterator[Callable[..., Project]]:
    """Copies of the example project; their containers are removed after the test."""
    made: list[Project] = []

    def make(**settings: str) -> Project:
        made.append(new_project(tmp_path_factory, base_image, settings))
        return made[-1]

    yield make
    for project in made:
        remove_containers(docker_client, project)


@pytest.fixture
def tracked(docker_client: Any) -> Iterator[Callable[..., Any]]:
    """Start containers for a test (decoys, standalone runs) and remove them all afterwards."""
    started: list[Any] = []

    def run(image: str, **options: Any) -> Any:
        container = docker_client.containers.run(image, detach=True, **options)
        started.append(container)
        return container

    yield run
    for container in started:
        container.remove(force=True)
