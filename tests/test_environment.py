"""What a project declares as its environment: requirements and what they refer to, Binder's folders."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest

from nbdock.environment import read_environment
from nbdock.errors import NbdockError


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def sources(folder: Path) -> list[str]:
    return [path.as_posix() for path in read_environment(folder).sources]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"requirements.txt": "-r requirements-base.txt\n", "requirements-base.txt": "six\n"},
         ["requirements-base.txt", "requirements.txt"]),
        ({"requirements.txt": "-c constraints.txt\nsix\n", "constraints.txt": "six<2\n"},
         ["constraints.txt", "requirements.txt"]),
        ({"requirements.txt": "--requirement=reqs/base.txt\n", "reqs/base.txt": "-r more.txt\n",
          "reqs/more.txt": "six\n"}, ["reqs/base.txt", "reqs/more.txt", "requirements.txt"]),
        ({"requirements.txt": "./libs/mypkg\n", "libs/mypkg/pyproject.toml": ""},
         ["libs/mypkg", "requirements.txt"]),
        ({"requirements.txt": "-e ./libs/mypkg[dev]\n", "libs/mypkg/setup.py": ""},
         ["libs/mypkg", "requirements.txt"]),
        ({"requirements.txt": "wheels/six-1.16.0-py2.py3-none-any.whl\n",
          "wheels/six-1.16.0-py2.py3-none-any.whl": ""},
         ["requirements.txt", "wheels/six-1.16.0-py2.py3-none-any.whl"]),
        ({"requirements.txt": "--find-links ./wheels\nsix\n", "wheels/six.whl": ""},
         ["requirements.txt", "wheels"]),
        ({"requirements.txt": "-f wheels --no-index\nsix\n", "wheels/six.whl": ""},
         ["requirements.txt", "wheels"]),
        ({"requirements.txt": "mypkg @ file:./libs/mypkg\n", "libs/mypkg/setup.py": ""},
         ["libs/mypkg", "requirements.txt"]),
        ({"requirements.txt": "six==1.16.0 \\\n  --hash=sha256:abc  # pinned\n"}, ["requirements.txt"]),
        ({"requirements.txt": "git+https://example.org/x.git#egg=x\n-i https://pypi.example/simple\n"},
         ["requirements.txt"]),
    ],
)
def test_what_requirements_refer_to_is_sent(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    assert sources(write(tmp_path, files)) == expected


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"requirements.txt": "-r requirements-base.txt\n"},
         "requirements.txt line 1 refers to requirements-base.txt, which does not exist"),
        ({"requirements.txt": "six\n./libs/missing\n"},
         "requirements.txt line 2 refers to ./libs/missing, which does not exist"),
        ({"requirements.txt": "-r ../shared.txt\n"}, "outside the project folder"),
        ({"requirements.txt": "--find-links /opt/wheels\n"}, "outside the project folder"),
    ],
)
def test_what_cannot_reach_pip_is_named_before_building(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    (tmp_path / "project").mkdir()
    with pytest.raises(NbdockError, match=message):
        read_environment(write(tmp_path / "project", files))


def test_a_project_that_is_a_package_is_installed(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[project]\nname = 'mypkg'\n", "src/mypkg/__init__.py": "",
                     "requirements.txt": "six\n"})
    environment = read_environment(tmp_path)
    assert environment.install_project and environment.needs_project
    write(tmp_path, {"requirements.txt": "-e .\n"})
    environment = read_environment(tmp_path)
    assert not environment.install_project and environment.needs_project and environment.editable


def test_a_binder_folder_wins_over_the_top_level(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "ignored\n", "binder/requirements.txt": "six\n",
                     "binder/apt.txt": "graphviz\n", "binder/postBuild": "#!/bin/sh\necho hi\n",
                     "binder/runtime.txt": "python-3.11\n"})
    environment = read_environment(tmp_path)
    assert environment.requirements == PurePosixPath("binder/requirements.txt")
    assert environment.apt == PurePosixPath("binder/apt.txt")
    assert environment.post_build == PurePosixPath("binder/postBuild")
    assert environment.python == (3, 11)
    assert sources(tmp_path) == ["binder/postBuild", "binder/requirements.txt"]


def test_dot_binder_is_read_too_but_not_both(tmp_path: Path) -> None:
    write(tmp_path, {".binder/requirements.txt": "six\n"})
    assert read_environment(tmp_path).requirements == PurePosixPath(".binder/requirements.txt")
    write(tmp_path, {"binder/requirements.txt": "six\n"})
    with pytest.raises(NbdockError, match=r"both binder/ and \.binder/"):
        read_environment(tmp_path)


@pytest.mark.parametrize(
    "name", ["environment.yml", "environment.yaml", "Pipfile", "install.R", "Project.toml", "default.nix"]
)
def test_an_environment_nbdock_cannot_build_is_named(tmp_path: Path, name: str) -> None:
    write(tmp_path, {f"binder/{name}": "x\n"})
    with pytest.raises(NbdockError, match=f"binder/{name} declares .*binder/requirements.txt"):
        read_environment(tmp_path)
    write(tmp_path, {"binder/requirements.txt": "six\n"})
    (warning,) = read_environment(tmp_path).warnings
    assert f"binder/{name}" in warning and "ignores" in warning


def test_a_runtime_that_is_not_python_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"runtime.txt": "r-4.1-2022-01-01\n"})
    with pytest.raises(NbdockError, match=r"runtime\.txt says 'r-4\.1-2022-01-01'"):
        read_environment(tmp_path)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"requirements.txt": "six\nmypkg --global-option=--fast\n"},
         "requirements.txt line 2: uv does not take --global-option on a requirement line"),
        ({"requirements.txt": "-r more.txt\n", "more.txt": "six --config-settings=key=value\n"},
         "more.txt line 1: uv does not take --config-settings"),
        ({"requirements.txt": "--prefer-binary\nsix\n"}, "requirements.txt line 1: uv has no --prefer-binary"),
        ({"binder/requirements.txt": "--find-links wheels\nsix\n", "wheels/six.whl": ""},
         "binder/requirements.txt line 1: --find-links wheels is found from the project folder, as pip "
         "finds it, but uv looks for it beside the file; write it as ../wheels"),
    ],
)
def test_what_uv_would_read_otherwise_than_pip_is_named_before_building(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    write(tmp_path, files)
    with pytest.raises(NbdockError, match=re.escape(message)) as raised:
        read_environment(tmp_path, installer="uv")
    assert "INSTALLER=pip" in str(raised.value) and "\n" not in str(raised.value)
    read_environment(tmp_path, installer="pip")  # pip reads it as it always has


def test_what_pip_reads_from_a_file_and_uv_from_its_command_line_is_recorded(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "-r more.txt\n--pre\n--trusted-host a.example\nsix\n",
                     "more.txt": "toolz==1.0.0 \\\n  --hash=sha256:" + "0" * 64 + "\n--trusted-host a.example\n"})
    environment = read_environment(tmp_path, installer="uv")
    assert (environment.hashes, environment.pre, environment.trusted_hosts) == (True, True, ("a.example",))
    plain = read_environment(write(tmp_path / "plain", {"requirements.txt": "six\n"}), installer="uv")
    assert (plain.hashes, plain.pre, plain.trusted_hosts) == (False, False, ())


def test_find_links_beside_a_top_level_file_is_the_same_for_uv_and_pip(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "--find-links wheels\nsix\n", "wheels/six.whl": ""})
    assert read_environment(tmp_path, installer="uv").sources == (
        PurePosixPath("requirements.txt"), PurePosixPath("wheels"))
