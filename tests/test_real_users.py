"""Real users and machines, against the real engine: the server as a named user with the
invoker's groups, installs at run time, values that must be encoded, paths docker's short syntax
cannot carry, unreadable files, resources, large data, and JupyterLab's calls home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.helpers.notebooks import notebook, printed
from tests.helpers.projects import ProjectCopy, Result, assert_one_line_failure, clean_environment, new_project
from tests.helpers.tracker import Tracker, project_containers

pytestmark = pytest.mark.docker
SERVER_UID = 1500
TEAM_GID = 4321


def as_user(project: ProjectCopy, *args: str, groups: tuple[int, ...] = ()) -> Result:
    """`invoke ARGS` run by uid SERVER_UID (not root), in `groups` and the docker socket's group."""
    socket_group = os.stat("/var/run/docker.sock").st_gid
    home = project.path.parent / "home"
    home.mkdir(exist_ok=True)
    os.chown(home, SERVER_UID, SERVER_UID)
    command = ["setpriv", f"--reuid={SERVER_UID}", f"--regid={SERVER_UID}",
               f"--groups={','.join(str(g) for g in (*groups, socket_group))}", "--",
               sys.executable, "-m", "invoke", *args]
    completed = subprocess.run(command, cwd=project.path, capture_output=True, text=True, timeout=900,
                               env=clean_environment(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache")))
    return Result(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def user_project(base_image: str, tracker: Tracker) -> Iterator[ProjectCopy]:
    """A project owned by uid SERVER_UID in a folder that user may enter (pytest's own folders
    are private to root), for nbdock run by that user."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running nbdock as another user needs root and setpriv (CI runs as root)")
    folder = Path(tempfile.mkdtemp(prefix="nbdock-test-"))
    folder.chmod(0o755)
    project = new_project(folder, base_image, {})
    tracker.project(project.name)
    subprocess.run(["chown", "-R", f"{SERVER_UID}:{SERVER_UID}", str(project.path)], check=True)
    yield project
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def served(make_project: Callable[..., ProjectCopy]) -> Iterator[tuple[ProjectCopy, str]]:
    project = make_project(RUN_AS=f"{SERVER_UID}:{SERVER_UID}")
    result = project.invoke("up")
    assert result.returncode == 0, result.output
    yield project, result.last_line


def test_the_server_has_a_name_and_a_home_whatever_its_uid(
    served: tuple[ProjectCopy, str], docker_client: Any
) -> None:
    project, _ = served
    (server,) = project_containers(docker_client, project.name)
    check = ("whoami; python -c 'import getpass, pathlib; print(getpass.getuser()); "
             "pathlib.Path.home().joinpath(\"probe\").write_text(\"x\")'; echo $HOME; "
             "bash -ic 'echo ${PS1@P}' 2>/dev/null")
    found = server.exec_run(["sh", "-c", check]).output.decode().splitlines()
    assert found[0] == found[1] == "user1500" and found[2] == "/home/nbdock", found
    assert "I have no name" not in "\n".join(found)
    image = project.image
    alone = docker_client.containers.run(image, ["sh", "-c", "whoami && touch $HOME/x"], remove=True,
                                         user=f"{SERVER_UID}:{SERVER_UID}", group_add=["1000"]).decode()
    assert alone.strip() == "nbdock"


def test_a_headless_run_has_a_name_too(make_project: Callable[..., ProjectCopy]) -> None:
    project = make_project(RUN_AS=f"{SERVER_UID}:{SERVER_UID}")
    (project.notebooks / "who.ipynb").write_text(notebook(
        "import getpass, pathlib\npathlib.Path.home().joinpath('x').write_text('x')\nprint(getpass.getuser())"
    ))
    project.chown()
    result = project.invoke("execute", "--notebook", "who.ipynb")
    assert result.returncode == 0, result.output
    assert printed(project.path / "outputs" / "who.ipynb") == "user1500\n"


def test_packages_install_at_run_time_through_the_proxy(make_project: Callable[..., ProjectCopy]) -> None:
    project = make_project()
    (project.notebooks / "install.ipynb").write_text(notebook(
        "%pip install --quiet --no-deps six==1.16.0", "import six\nprint(six.__version__)"
    ))
    project.chown()
    result = project.invoke("execute", "--notebook", "install.ipynb")
    assert result.returncode == 0, result.output
    assert printed(project.path / "outputs" / "install.ipynb").strip().endswith("1.16.0")


def test_the_invokers_groups_come_along(user_project: ProjectCopy) -> None:
    project = user_project
    team = project.path / "team-notebooks"
    team.mkdir()
    os.chown(team, 0, TEAM_GID)
    team.chmod(0o2775)
    with (project.path / ".env").open("a") as env:
        env.write("NOTEBOOKS_DIR=team-notebooks\n")
    served = as_user(project, "up", groups=(TEAM_GID,))
    assert served.returncode == 0, served.output
    url = urlparse(served.last_line)
    token = parse_qs(url.query)["token"][0]
    saved = requests.put(f"http://{url.netloc}/api/contents/shared.ipynb", timeout=10,
                         headers={"Authorization": f"token {token}"},
                         data=json.dumps({"type": "notebook", "content": {"cells": [], "metadata": {},
                                                                          "nbformat": 4, "nbformat_minor": 5}}))
    assert saved.status_code == 201, saved.text
    made = team / "shared.ipynb"
    assert (made.stat().st_uid, made.stat().st_gid) == (SERVER_UID, TEAM_GID)
    assert as_user(project, "down").returncode == 0


@pytest.mark.parametrize("token", ["lab#2024+team", "a&b=c%20d", "schön/ß?x"])
def test_a_token_with_url_characters_logs_in_from_the_printed_url(
    make_project: Callable[..., ProjectCopy], token: str
) -> None:
    project = make_project()
    with (project.path / ".env").open("a") as env:
        env.write(f"JUPYTER_TOKEN='{token}'\n")
    result = project.invoke("up")
    assert result.returncode == 0, result.output
    status = [line.strip() for line in project.invoke("status").stdout.splitlines() if "/lab?token=" in line]
    for url in (result.last_line, project.invoke("url").last_line, *status):
        assert parse_qs(urlparse(url).query)["token"] == [token]
        session = requests.Session()
        assert session.get(url, timeout=10).status_code == 200
        api = url.split("/lab?")[0] + "/api/status"
        assert session.get(api, timeout=10, headers={"Authorization": f"token {token}"}).status_code == 200


def test_a_token_nbdock_cannot_carry_is_refused_at_settings_time(make_project: Callable[..., ProjectCopy]) -> None:
    project = make_project()
    with (project.path / ".env").open("a") as env:
        env.write("JUPYTER_TOKEN='two words'\n")
    assert_one_line_failure(project.invoke("up"), "JUPYTER_TOKEN", "spaces")


def test_any_folder_name_serves_and_executes(
    tmp_path: Path, base_image: str, tracker: Tracker, docker_client: Any
) -> None:
    # A colon (Docker's volume separator), a comma (--mount's) and a space, in one name: one build.
    project = new_project(tmp_path / "exp:baseline, v2 with space", base_image, {})
    tracker.project(project.name)
    served = project.invoke("up")
    assert served.returncode == 0, served.output
    executed = project.invoke("execute", "--notebook", "hello.ipynb")
    assert executed.returncode == 0, executed.output
    assert (project.path / "outputs" / "hello.ipynb").is_file()


def test_a_file_the_user_cannot_read_is_one_line(user_project: ProjectCopy, docker_client: Any) -> None:
    project = user_project
    locked = project.notebooks / "cache" / "model.pkl"
    locked.parent.mkdir()
    locked.write_bytes(b"left by a root container")
    locked.chmod(0o600)  # owned by root
    result = as_user(project, "up")
    assert_one_line_failure(result, str(locked), "Permission denied", "chown", ".dockerignore")
    assert project_containers(docker_client, project.name) == []
    (project.path / ".dockerignore").write_text("notebooks/cache\n")
    assert as_user(project, "build").returncode == 0
    # A folder the user may not enter: one line too; one nbdock never sends is not even read.
    (project.path / ".dockerignore").unlink()
    locked.unlink()
    locked.parent.chmod(0o700)  # owned by root
    assert_one_line_failure(as_user(project, "build"), str(locked.parent), "Permission denied")
    locked.parent.rmdir()
    checkpoints = project.notebooks / ".ipynb_checkpoints"
    checkpoints.mkdir(mode=0o700, exist_ok=True)
    os.chown(checkpoints, 0, 0)
    assert as_user(project, "build").returncode == 0


def test_resources_reach_the_server_and_a_killed_kernel_is_explained(
    make_project: Callable[..., ProjectCopy], docker_client: Any
) -> None:
    project = make_project(SHM_SIZE="64m", MEMORY="600m", CPUS="1.5")
    (project.notebooks / "shm.ipynb").write_text(notebook(  # as a PyTorch data loader's workers do
        "x = 1", "from multiprocessing import shared_memory\n"
        "block = shared_memory.SharedMemory(create=True, size=200 * 2**20)\n"
        "for start in range(0, len(block.buf), 2**20):\n    block.buf[start:start + 2**20] = bytes(2**20)"
    ))
    (project.notebooks / "memory.ipynb").write_text(notebook("hog = bytearray(1200 * 2**20)\nprint(len(hog))"))
    project.chown()
    result = project.invoke("execute", "--notebook", "shm.ipynb", "--notebook", "memory.ipynb")
    assert result.returncode == 1, result.output
    assert "shm.ipynb: killed" in result.stdout and "block.buf[start:start + 2**20]" in result.stdout
    assert "SHM_SIZE=64m" in result.stdout
    assert "memory.ipynb: killed" in result.stdout and "MEMORY=600m" in result.stdout
    roomier = project.invoke("execute", "--notebook", "shm.ipynb", NBDOCK_SHM_SIZE="1g")
    assert roomier.returncode == 0, roomier.output
    served = project.invoke("up")
    assert served.returncode == 0, served.output
    (server,) = project_containers(docker_client, project.name)
    assert server.attrs["HostConfig"]["ShmSize"] == 64 * 2**20
    assert server.attrs["HostConfig"]["Memory"] == 600 * 2**20
    assert server.attrs["HostConfig"]["NanoCpus"] == 1_500_000_000


def test_an_unchanged_up_does_not_read_large_data_again(make_project: Callable[..., ProjectCopy]) -> None:
    project = make_project()
    with (project.notebooks / "big.bin").open("wb") as big:
        big.truncate(300 * 2**20)
    project.chown()
    first = project.invoke("up")
    assert first.returncode == 0, first.output
    assert "the build context is 300 MiB, mostly notebooks/big.bin (300 MiB)" in first.stderr
    assert "(300 MiB of files)" in first.stdout
    # A fresh interpreter whose only child is the `up`: its children's peak is that `up`'s.
    measure = ("import resource, subprocess, sys; done = subprocess.run([sys.executable, '-m', 'invoke', 'up'], "
               "capture_output=True, text=True); print(done.returncode, 'is up to date' in done.stdout, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    measured = subprocess.run([sys.executable, "-c", measure], cwd=project.path, capture_output=True, text=True,
                              env=clean_environment())
    code, skipped, peak_kib = measured.stdout.split()
    assert (code, skipped) == ("0", "True"), measured.stdout + measured.stderr
    assert int(peak_kib) < 150 * 1024, f"peak {int(peak_kib) / 1024:.0f} MiB for a 300 MiB data file"


def test_jupyterlab_does_not_phone_home(served: tuple[ProjectCopy, str]) -> None:
    _, url = served
    base, token = url.split("/lab?")[0], parse_qs(urlparse(url).query)["token"][0]
    headers = {"Authorization": f"token {token}"}
    settings = requests.get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification",
                            headers=headers, timeout=10).json()
    properties = settings["schema"]["properties"]
    assert properties["fetchNews"]["default"] == "false"
    assert properties["checkForUpdates"]["default"] is False
    assert requests.get(f"{base}/lab/api/news", headers=headers, timeout=10).json() == {"news": []}

