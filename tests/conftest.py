"""Fixtures. Docker tests fail, not skip, when CI=true and no engine answers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.images import remove_images_built_on
from tests.helpers.projects import BASE_IMAGE, REPO, ProjectCopy, clean_environment, new_project
from tests.helpers.tracker import Tracker


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

    def make(notebooks: Path = REPO / "notebooks", **settings: str) -> ProjectCopy:
        project = new_project(tmp_path_factory.mktemp("project"), base_image, settings, notebooks)
        tracker.project(project.name)
        return project

    return make
