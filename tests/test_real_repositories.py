"""Projects shaped like real repositories, against the real engine: Binder folders, notebooks
at the root, data beside the notebooks, bases that have users of their own, kernels from other
machines, two checkouts of one project, and the Dockerfile built by another builder. Requirements
that refer to other files: tests/test_installers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.notebooks import notebook, printed
from tests.helpers.projects import EXAMPLE, REPO, URL, ProjectCopy, assert_one_line_failure
from tests.helpers.tracker import Tracker, project_containers

pytestmark = pytest.mark.docker


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def in_image(client: Any, image: str, command: str) -> str:
    return str(client.containers.run(image, ["sh", "-c", command], remove=True, entrypoint=[]).decode())


@pytest.mark.parametrize(
    ("requirements", "phrase"),
    [
        ("-r requirements-base.txt\n", "refers to requirements-base.txt, which does not exist"),
        ("./libs/missing\n", "refers to ./libs/missing, which does not exist"),
        ("-r ../elsewhere.txt\n", "outside the project folder"),
    ],
)
def test_what_requirements_refer_to_and_cannot_reach_pip_stops_before_the_build(
    make_project: Callable[..., ProjectCopy], requirements: str, phrase: str
) -> None:
    project = make_project()
    (project.path / "requirements.txt").write_text(requirements)
    result = project.invoke("up")
    assert_one_line_failure(result, "requirements.txt line 1", phrase)
    assert "Step 1/" not in result.stdout


def test_a_binder_folder_is_read_the_way_binder_reads_it(
    make_project: Callable[..., ProjectCopy], docker_client: Any
) -> None:
    project = make_project()
    (project.path / "requirements.txt").unlink()
    write(project.path, {
        "binder/requirements.txt": "tabulate==0.9.0\n",
        "binder/apt.txt": "# a system package\ntree\n",
        "binder/postBuild": "#!/bin/sh\nset -e\necho \"built by $(whoami)\" > \"$HOME/post-build.txt\"\n",
    })
    project.chown()
    built = project.invoke("build")
    assert built.returncode == 0, built.output
    found = in_image(docker_client, project.image,
                     "cat $HOME/post-build.txt; command -v tree; /opt/nbdock/venv/bin/python -c 'import tabulate'")
    assert found.splitlines() == ["built by nbdock", "/usr/bin/tree"]


@pytest.mark.parametrize(
    ("files", "phrase"),
    [
        ({"binder/environment.yml": "dependencies: [numpy]\n"}, "binder/environment.yml declares a conda environment"),
        ({".binder/Pipfile": "[packages]\n"}, ".binder/Pipfile declares a Pipenv environment"),
        ({"binder/install.R": "install.packages('x')\n"}, "binder/install.R declares R packages"),
        ({"binder/runtime.txt": "python-2.7\n"}, "binder/runtime.txt asks for Python 2.7, which nbdock cannot build"),
        ({"runtime.txt": "python-3.ten\n"}, "runtime.txt says 'python-3.ten'"),
    ],
)
def test_what_the_image_cannot_do_is_named_before_building(
    make_project: Callable[..., ProjectCopy], files: dict[str, str], phrase: str
) -> None:
    project = make_project()
    write(project.path, files)
    result = project.invoke("up")
    assert_one_line_failure(result, phrase)
    assert "Step 1/" not in result.stdout


def test_a_runtime_other_than_the_chosen_bases_python_builds_with_a_warning(
    make_project: Callable[..., ProjectCopy],
) -> None:
    project = make_project()  # BASE_IMAGE is the test base, with Debian's Python 3.11
    write(project.path, {"runtime.txt": "python-3.10\n"})
    result = project.invoke("build")
    assert result.returncode == 0, result.output
    assert ("nbdock: warning: runtime.txt asks for Python 3.10, but BASE_IMAGE nbdock-test-base:latest has "
            "Python 3.11; building on nbdock-test-base:latest as you chose") in result.stderr


def test_notebooks_at_the_root_send_no_environment_or_old_outputs(
    make_project: Callable[..., ProjectCopy], docker_client: Any
) -> None:
    project = make_project(NOTEBOOKS_DIR=".")
    for name in list(project.notebooks.iterdir()):
        shutil.move(str(name), project.path / name.name)
    project.notebooks.rmdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(project.path / "venv")], check=True)
    (project.path / "venv" / "big.bin").write_bytes(os.urandom(2_000_000))
    write(project.path, {"outputs/old.ipynb": "{}", "Dockerfile.template": (REPO / "Dockerfile.template").read_text()})
    project.chown()
    built = project.invoke("build")
    assert built.returncode == 0, built.output
    sent = next(line for line in built.stdout.splitlines() if line.startswith("Building "))
    assert " KiB of files" in sent and float(sent.split("(")[1].split(" KiB")[0]) < 300, sent  # not venv/'s 2 MB
    listing = in_image(docker_client, project.image, "ls -A /home/nbdock/notebooks").split()
    assert "hello.ipynb" in listing and "requirements.txt" in listing
    for never in ("venv", "outputs", "Dockerfile", "Dockerfile.template", "tasks.py", ".env", ".dockerignore",
                  ".nbdock"):  # .nbdock holds the CA bundle in the context: it never reaches the image
        assert never not in listing


def test_data_beside_the_notebooks_reads_the_same_everywhere(
    make_project: Callable[..., ProjectCopy], docker_client: Any, tracker: Tracker
) -> None:
    project = make_project(MOUNTS="extra")
    write(project.path, {"data/table.csv": "a,b\n1,2\n", "data/lookup.csv": "key\nfound\n",
                         "extra/notes.txt": "more\n"})
    (project.notebooks / "data").symlink_to("../data")
    (project.notebooks / "lookup.csv").symlink_to("../data/lookup.csv")
    (project.notebooks / "reads.ipynb").write_text(notebook(
        "print(open('data/table.csv').read().split()[1], open('lookup.csv').read().split()[1], "
        "open('../extra/notes.txt').read().strip())"
    ))
    project.chown()
    served = project.invoke("up")
    assert served.returncode == 0, served.output
    (server,) = project_containers(docker_client, project.name)
    read = "cat data/table.csv lookup.csv ../extra/notes.txt"
    assert server.exec_run(["sh", "-c", read]).output.decode() == "a,b\n1,2\nkey\nfound\nmore\n"
    assert server.exec_run(["sh", "-c", "echo x > ../data/new.csv"]).exit_code != 0  # read-only
    alone = in_image(docker_client, project.image, "cd /home/nbdock/notebooks && cat data/table.csv lookup.csv")
    assert alone == "a,b\n1,2\nkey\nfound\n"
    executed = project.invoke("execute", "--notebook", "reads.ipynb")
    assert executed.returncode == 0, executed.output
    assert printed(project.path / "outputs" / "reads.ipynb") == "1,2 found more\n"


def test_a_link_that_cannot_resolve_is_named_at_up(make_project: Callable[..., ProjectCopy], tmp_path: Path) -> None:
    project = make_project()
    (tmp_path / "outside.csv").write_text("x\n")
    (project.notebooks / "outside.csv").symlink_to(tmp_path / "outside.csv")
    result = project.invoke("build")
    assert result.returncode == 0, result.output
    assert "notebooks/outside.csv links to the absolute path" in result.stderr


BASES = {
    "uid 1000 is taken (ubuntu:24.04)": "RUN useradd --uid 1000 --user-group --create-home ubuntu",
    "a default user that is not root (Jupyter Docker Stacks)":
        "RUN useradd --uid 1000 --gid 100 --create-home jovyan\nUSER 1000",
    "gid 1000 is another group": "RUN groupadd --gid 1000 staff2 && useradd --uid 1001 someone",
}


@pytest.mark.parametrize("base", sorted(BASES))
def test_bases_that_already_have_a_user_build(
    make_project: Callable[..., ProjectCopy], docker_client: Any, base_image: str, base: str, tmp_path: Path
) -> None:
    tag = f"nbdock-test-base-{abs(hash(base)) % 10**6}:latest"
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\n{BASES[base]}\n")
    docker_client.images.build(path=str(tmp_path), tag=tag, rm=True)
    try:
        project = make_project(BASE_IMAGE=tag, JUPYTER_PACKAGES="six", RUN_AS="1500:1500")
        (project.path / "requirements.txt").unlink()
        built = project.invoke("build")
        assert built.returncode == 0, built.output
        found = docker_client.containers.run(project.image, ["sh", "-c", "id -u; whoami; echo $HOME; touch $HOME/x"],
                                             remove=True, user="1000:1000").decode().split()
        assert found[0] == "1000" and found[2] == "/home/nbdock"
    finally:
        docker_client.images.remove(tag, force=True)


def test_a_base_without_python_is_refused_before_building(
    make_project: Callable[..., ProjectCopy], docker_client: Any, base_image: str, tmp_path: Path
) -> None:
    tag = "nbdock-test-base-no-python:latest"
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nRUN rm -f /usr/bin/python3*\n")
    docker_client.images.build(path=str(tmp_path), tag=tag, rm=True)
    try:
        project = make_project(BASE_IMAGE=tag)
        result = project.invoke("up")
        assert_one_line_failure(result, f"BASE_IMAGE {tag} cannot be built on: it has no python3", "Debian-like")
        assert "Step 1/" not in result.stdout
    finally:
        docker_client.images.remove(tag, force=True)


def test_notebooks_saved_with_other_kernels_run_with_the_images_python(
    make_project: Callable[..., ProjectCopy],
) -> None:
    project = make_project()
    conda = {"name": "conda-env-analysis-py", "display_name": "analysis", "language": "python"}
    (project.notebooks / "conda.ipynb").write_text(notebook("print('ran')", kernel=conda))
    (project.notebooks / "r.ipynb").write_text(notebook("print('x')", kernel={"name": "ir", "language": "R"}))
    project.chown()
    result = project.invoke("execute", "--notebook", "conda.ipynb", "--notebook", "r.ipynb")
    assert result.returncode == 1, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(("conda.", "r."))}
    assert rows["conda.ipynb"].split()[1] == "ok"
    assert "ran with python3: the notebook's kernel conda-env-analysis-py is not in the image" in rows["conda.ipynb"]
    assert rows["r.ipynb"].split()[1] == "failed" and "needs a r kernel (ir)" in rows["r.ipynb"]
    chosen = project.invoke("execute", "--notebook", "conda.ipynb", "--kernel", "python3")
    assert chosen.returncode == 0 and "ran with" not in chosen.stdout, chosen.output
    wrong = project.invoke("execute", "--notebook", "conda.ipynb", "--kernel", "julia")
    assert_one_line_failure(wrong, "the kernel julia is not in the image")


def test_two_checkouts_of_one_project_never_touch_each_other(
    tmp_path: Path, base_image: str, docker_client: Any, tracker: Tracker
) -> None:
    checkouts = []
    for parent in ("a", "b"):
        path = tmp_path / parent / "analysis-nbdock-test"
        shutil.copytree(EXAMPLE / "notebooks", path / "notebooks")
        shutil.copy(EXAMPLE / "requirements.txt", path)
        shutil.copy(REPO / "tasks.py", path)
        (path / ".env").write_text(f"BASE_IMAGE={base_image}\nHOST_PORT=0\n")
        copy = ProjectCopy(path, "analysis-nbdock-test")
        copy.chown()
        checkouts.append(copy)
    tracker.project("analysis-nbdock-test")
    first, second = checkouts
    served = first.invoke("up")
    assert served.returncode == 0, served.output
    refused = second.invoke("up")
    assert_one_line_failure(refused, f"belongs to the checkout at {first.path}", "PROJECT_NAME")
    assert "Step 1/" not in refused.stdout
    kept = second.invoke("down", "--image")
    assert kept.returncode == 0 and f"Kept the image {first.image}: the checkout at {first.path}" in kept.stdout
    assert second.invoke("stop").stdout.strip() == "Nothing was running."
    (running,) = project_containers(docker_client, "analysis-nbdock-test")
    assert running.status == "running" and docker_client.images.list(name=first.image)
    assert first.invoke("down").returncode == 0
    shutil.rmtree(first.path)  # a checkout that is gone is taken over
    assert URL.match(second.invoke("up").last_line)


def test_the_dockerfile_builds_with_another_builder(
    make_project: Callable[..., ProjectCopy], docker_client: Any, tracker: Tracker
) -> None:
    project = make_project()
    write(project.path, {"data/table.csv": "1\n", ".git/config": "x", "outputs/old.ipynb": "{}"})
    (project.notebooks / "data").symlink_to("../data")
    project.chown()
    assert project.invoke("build").returncode == 0
    header = (project.path / "Dockerfile").read_text().splitlines()[:5]
    instruction = next(line for line in header if "cp " in line).split("first: ", 1)[1]
    bundle = os.environ.get("PIP_CERT", "")
    subprocess.run(["sh", "-c", instruction.replace('"$PIP_CERT"', bundle)], cwd=project.path, check=True)
    by_hand = f"{project.image.split(':')[0]}-by-hand:latest"
    built = subprocess.run(["docker", "build", "-t", by_hand, "."], cwd=project.path, capture_output=True, text=True,
                           env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        listing = ("cd / && find home/nbdock opt/nbdock/project -printf '%p %s %m %u\\n' | sort "
                   "&& find home/nbdock opt/nbdock/project -type f -exec md5sum {} + | sort")
        assert in_image(docker_client, by_hand, listing) == in_image(docker_client, project.image, listing)
    finally:
        docker_client.images.remove(by_hand, force=True)


def test_the_wheel_carries_the_defaults(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(next(tmp_path.glob("nbdock-*.whl"))) as wheel:
        names = set(wheel.namelist())
    assert {"nbdock/defaults/Dockerfile.template", "nbdock/defaults/.env.example", "nbdock/defaults/tasks.py"} <= names


def test_execute_builds_what_it_needs_and_keeps_the_serving_image_lean(
    make_project: Callable[..., ProjectCopy], docker_client: Any
) -> None:
    project = make_project()
    result = project.invoke("execute", "--notebook", "hello.ipynb")
    assert result.returncode == 0, result.output
    probe = "/opt/nbdock/venv/bin/python -c 'import papermill' && echo present || echo absent"
    assert in_image(docker_client, project.image.replace(":latest", ":execute"), probe).strip() == "present"
    assert project.invoke("build").returncode == 0
    assert in_image(docker_client, project.image, probe).strip() == "absent"

