"""Copies of the example project, and running `invoke` or `nbdock` in them as a user would."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
# The example project the README starts: a user's project of its own, with notebooks and requirements.
EXAMPLE = REPO / "examples" / "hello"
# A uid and gid that are neither root nor the image's own user (1000): the common case.
PROJECT_OWNER = (1234, 1234)
BASE_IMAGE = "nbdock-test-base:latest"
URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)$")
TEST_PREFIX = "nbdock-test-"


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

    @property
    def message(self) -> str:
        """The last line on stderr: where nbdock puts its one-line error."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def clean_environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NBDOCK_")}
    environment.update(PYTHONUNBUFFERED="1", **extra)
    return environment


def run_in(folder: Path, command: list[str], env: Mapping[str, str], timeout: float = 900) -> Result:
    completed = subprocess.run(
        command, cwd=folder, env=clean_environment(**env), capture_output=True, text=True, timeout=timeout,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def invoke(folder: Path, *args: str, **env: str) -> Result:
    """Run `invoke ARGS` in `folder` as a user would, with the folder's own tasks.py."""
    return run_in(folder, [sys.executable, "-m", "invoke", *args], env)


def nbdock(folder: Path, *args: str, **env: str) -> Result:
    """Run `nbdock ARGS` in `folder` (no tasks.py needed)."""
    return run_in(folder, [sys.executable, "-m", "nbdock", *args], env)


def owner() -> tuple[int, int]:
    """Who the containers run as: the invoker, or under root the project folder's owner."""
    return PROJECT_OWNER if os.getuid() == 0 else (os.getuid(), os.getgid())


@dataclass
class ProjectCopy:
    """A copy of the example project in a folder of its own, under a name of its own."""

    path: Path
    name: str

    @property
    def notebooks(self) -> Path:
        return self.path / "notebooks"

    @property
    def image(self) -> str:
        return f"nbdock-{self.name}:latest"

    def invoke(self, *args: str, **env: str) -> Result:
        return invoke(self.path, *args, **env)

    def write_env(self, **settings: str) -> None:
        lines = [f"{key}={value}" for key, value in settings.items()]
        (self.path / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def add_env(self, **settings: str) -> None:
        with (self.path / ".env").open("a", encoding="utf-8") as env:
            env.writelines(f"{key}={value}\n" for key, value in settings.items())

    def chown(self) -> None:
        """Under root, give the whole copy to PROJECT_OWNER, as a checkout belongs to a user."""
        if os.getuid() != 0:
            return
        for path in [self.path, *self.path.rglob("*")]:
            os.chown(path, *PROJECT_OWNER, follow_symlinks=False)


def new_project(
    root: Path, base_image: str, settings: Mapping[str, str], notebooks: Path = EXAMPLE / "notebooks",
    name: str | None = None,
) -> ProjectCopy:
    """A copy of the example project in a new folder under `root`, owned (under root) by PROJECT_OWNER."""
    name = name or f"{TEST_PREFIX}{secrets.token_hex(4)}"
    path = root / name
    path.mkdir(parents=True)
    shutil.copytree(notebooks, path / "notebooks")
    shutil.copy(EXAMPLE / "requirements.txt", path)
    shutil.copy(REPO / "src" / "nbdock" / "defaults" / "tasks.py", path)
    project = ProjectCopy(path, name)
    project.write_env(**{"PROJECT_NAME": name, "BASE_IMAGE": base_image, "HOST_PORT": "0", **settings})
    project.chown()
    return project


def assert_one_line_failure(result: Result, *phrases: str) -> str:
    """nbdock failed as it should: exit code 1, no traceback, one `nbdock:` line holding `phrases`."""
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert result.message.startswith("nbdock: "), result.output
    for phrase in phrases:
        assert phrase in result.message, result.message
    return result.message
