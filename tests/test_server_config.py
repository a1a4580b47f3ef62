"""A project that configures its own server (a jupyter_server_config.py in the image): `up` finds
where and how it answers, or says in one line why nbdock's URL cannot work with it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.helpers.projects import ProjectCopy, assert_one_line_failure
from tests.helpers.tracker import project_containers

pytestmark = pytest.mark.docker
URL = re.compile(r"^http://127\.0\.0\.1:(\d+)(/[^?]*)lab\?token=([0-9a-f]+)$")


def configured(make_project: Callable[..., ProjectCopy], *lines: str) -> ProjectCopy:
    """A project whose postBuild writes `lines` into the image user's jupyter_server_config.py."""
    project = make_project()
    config = "\n".join(lines)
    post_build = project.path / "postBuild"
    post_build.write_text(f'#!/bin/sh\nset -e\nmkdir -p "$HOME/.jupyter"\ncat > "$HOME/.jupyter/'
                          f"jupyter_server_config.py\" <<'CONFIG'\n{config}\nCONFIG\n")
    post_build.chmod(0o755)
    return project


# One image for every setting the printed URL must follow or survive (each costs a build): the
# server normalises a base_url without slashes; nbdock's command line wins over the port, root_dir
# and ip; a password does not stop the token from logging in. Each alone: tests/test_serverinfo.py.
@pytest.mark.parametrize(("lines", "prefix"), [
    (['c.ServerApp.base_url = "team"', "c.ServerApp.port = 9999", 'c.ServerApp.root_dir = "/tmp"',
      'c.ServerApp.ip = "127.0.0.1"', "from jupyter_server.auth import passwd",
      'c.PasswordIdentityProvider.hashed_password = passwd("secret")'], "/team/"),
])
def test_the_printed_url_is_where_the_configured_server_answers(
    make_project: Callable[..., ProjectCopy], lines: list[str], prefix: str
) -> None:
    project = configured(make_project, *lines)
    result = project.invoke("up")
    assert result.returncode == 0, result.output
    matched = URL.match(result.last_line)
    assert matched, result.last_line
    port, path, token = matched.groups()
    assert path == prefix
    listing = requests.get(f"http://127.0.0.1:{port}{path}api/contents", headers={"Authorization": f"token {token}"},
                           timeout=10)
    assert listing.status_code == 200 and "hello.ipynb" in [e["name"] for e in listing.json()["content"]]
    lab = requests.get(result.last_line, timeout=10)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    assert project.invoke("url").last_line == result.last_line


@pytest.mark.parametrize(("lines", "phrases"), [
    (['c.IdentityProvider.token = ""', "from jupyter_server.auth import passwd",
      'c.PasswordIdentityProvider.hashed_password = passwd("secret")'],
     ("turns token authentication off", "a password")),
    (['c.ServerApp.sock = "/tmp/jupyter.sock"'], ("the Unix socket /tmp/jupyter.sock", "ServerApp.sock")),
])
def test_a_server_nbdocks_url_cannot_use_is_one_line_not_a_timeout(
    make_project: Callable[..., ProjectCopy], docker_client: Any, lines: list[str], phrases: tuple[str, ...]
) -> None:
    project = configured(make_project, *lines)
    result = project.invoke("up", NBDOCK_READY_TIMEOUT="60")
    assert_one_line_failure(result, *phrases)
    assert "did not answer" not in result.stderr
    assert project_containers(docker_client, project.name) == []
