"""The example the README's first command starts looks like a user's project (no engine needed)."""

from __future__ import annotations

import re
import subprocess
import sys

from nbdock.context import plan_context
from nbdock.environment import read_environment
from nbdock.settings import load_settings, project_folder
from tests.helpers.projects import EXAMPLE, REPO, clean_environment


def first_command() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    return str(blocks[0]).strip()


def test_the_readmes_first_command_runs_in_the_example_folder() -> None:
    command = first_command()
    assert command.startswith("pip install . && cd examples/hello && "), command
    assert command.endswith("invoke up --base-image nbdock-base")
    assert (EXAMPLE / "notebooks" / "hello.ipynb").is_file() and (EXAMPLE / "requirements.txt").is_file()


def test_the_example_is_its_own_project_and_does_not_install_nbdock() -> None:
    assert project_folder(EXAMPLE / "notebooks") == EXAMPLE  # invoke finds the example's own tasks.py
    settings = load_settings(EXAMPLE, environ={})
    environment = read_environment(EXAMPLE)
    assert not environment.install_project and not environment.needs_project
    plan = plan_context(settings, environment)
    sent = {entry.name for entry in plan.entries}
    assert "requirements.txt" in sent and "notebooks/hello.ipynb" in sent
    assert not any(path.startswith(("src", "pyproject.toml", "tests")) for path in sent), sent


def test_invoke_in_the_example_lists_nbdocks_tasks() -> None:
    listed = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=EXAMPLE, env=clean_environment(),
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert " up " in listed.stdout
