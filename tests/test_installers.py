"""uv builds the environment pip would build, against the real engine: the same requirements files,
with everything they can refer to, on a base whose pip settings uv must be handed, give the same
installed distributions (`pip freeze --all` in both images) with INSTALLER=uv as with INSTALLER=pip,
and the packages import in the image as the notebooks would import them."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.projects import ProjectCopy

pytestmark = pytest.mark.docker



def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def local_package(folder: Path, name: str) -> Path:
    write(folder / name, {
        "pyproject.toml": "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n"
                          f"[project]\nname = '{name}'\nversion = '1.0'\n",
        f"{name}/__init__.py": f"WHO = '{name}'\n",
    })
    return folder / name


def wheel(source: Path, target: Path) -> str:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(target), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return next(target.glob(f"{source.name}-*.whl")).name


@pytest.fixture(scope="module")
def pip_settings_base(docker_client: Any, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test base with pip settings of its own, as a company's base image has them: a folder of
    wheels pip finds through PIP_FIND_LINKS, and a timeout. uv reads neither by itself."""
    folder = tmp_path_factory.mktemp("base")
    wheel(local_package(folder / "src", "basepkg"), folder / "wheels")
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY wheels /opt/base-wheels\n"
        "ENV PIP_FIND_LINKS=/opt/base-wheels PIP_DEFAULT_TIMEOUT=120\n"
    )
    tag = "nbdock-test-base-pip-settings:latest"
    docker_client.images.build(path=str(folder), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


def every_kind(project: ProjectCopy, tmp_path: Path) -> None:
    """requirements.txt with each kind of line pip reads, a project package and postBuild."""
    local_package(project.path / "libs", "mypkg")
    local_package(project.path / "libs", "editpkg")
    wheel_name = wheel(local_package(tmp_path, "wheelpkg"), project.path / "dist")
    wheel(local_package(tmp_path, "linkpkg"), project.path / "wheels")
    write(project.path, {
        "requirements.txt": "-r requirements-base.txt\n-c constraints.txt\n"
                            "--index-url https://pypi.org/simple\n--extra-index-url https://pypi.org/simple\n"
                            f"./libs/mypkg\n-e ./libs/editpkg\ndist/{wheel_name}\n--find-links ./wheels\nlinkpkg\n"
                            "basepkg  # only in the base's PIP_FIND_LINKS\n"
                            "six; python_version >= '3'\ntoolz; python_version < '3'\n",
        "requirements-base.txt": "tabulate\n",
        "constraints.txt": "tabulate==0.9.0\n",
        "pyproject.toml": "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n"
                          "[project]\nname = 'analysis'\nversion = '0.1'\n[tool.setuptools.packages.find]\n"
                          "where = ['src']\n",
        "src/analysis/__init__.py": "WHO = 'analysis'\n",
        "postBuild": "#!/bin/sh\nset -e\npip install --no-deps --quiet six==1.16.0\n"
                     "echo built > \"$HOME/post-build.txt\"\n",
    })


IMPORTS = "import analysis, editpkg, linkpkg, mypkg, wheelpkg; print(analysis.WHO, editpkg.WHO, mypkg.WHO)"


def installed(client: Any, image: str) -> tuple[str, str]:
    """`pip freeze --all` in the image, and what else the build left: postBuild's file, uv, and
    what the every_kind packages say when the notebooks' folder imports them."""
    script = ("pip freeze --all; echo ---; cat $HOME/post-build.txt 2>/dev/null; "
              "ls -d /tmp/nbdock-uv /tmp/nbdock-ca.pem 2>/dev/null; command -v uv; "
              f"python -c {shlex.quote(IMPORTS)} 2>/dev/null; true")
    output = client.containers.run(image, ["sh", "-c", script], remove=True).decode()
    freeze, _, rest = output.partition("---\n")
    return freeze, rest


# What uv reads only from its command line (hash-checking mode, --pre, --trusted-host) is
# checked where the Dockerfile is rendered: tests/test_dockerfile.py.
def test_uv_builds_the_environment_pip_builds(
    make_project: Callable[..., ProjectCopy], docker_client: Any, pip_settings_base: str, tmp_path: Path,
) -> None:
    environments = {}
    for installer in ("uv", "pip"):
        project = make_project(BASE_IMAGE=pip_settings_base, INSTALLER=installer)
        every_kind(project, tmp_path / installer)
        project.chown()
        built = project.invoke("build")
        assert built.returncode == 0, built.output
        assert ("uv pip install" in built.stdout) == (installer == "uv"), built.stdout
        environments[installer] = installed(docker_client, project.image)
    uv_freeze, uv_rest = environments["uv"]
    pip_freeze, pip_rest = environments["pip"]
    assert uv_freeze == pip_freeze
    assert uv_rest == pip_rest  # postBuild ran alike; neither uv nor the CA bundle is in the image
    assert "uv==" not in uv_freeze and "pip==" in uv_freeze  # pip stays for `%pip install`
    for name in ("analysis", "basepkg", "editpkg", "linkpkg", "mypkg", "tabulate==0.9.0", "wheelpkg"):
        assert name in uv_freeze, uv_freeze
    assert "toolz" not in uv_freeze and uv_rest.split() == ["built", "analysis", "editpkg", "mypkg"]
