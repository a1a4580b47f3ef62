"""The command line: task listing, `nbdock init`, and clean errors outside Docker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nbdock.settings import KNOWN_KEYS
from nbdock.tasks import SETTING_FLAGS, ns
from tests.helpers.projects import REPO, clean_environment, invoke, nbdock

TASKS = ["base", "build", "dockerfile", "down", "execute", "init", "ip", "k8s.down", "k8s.logs", "k8s.manifests",
         "k8s.status", "k8s.up", "k8s.url", "logs", "push", "run", "status", "stop", "swarm.down", "swarm.logs",
         "swarm.status", "swarm.up", "swarm.url", "train", "up", "url"]
# A value each setting refuses.
INVALID = {
    "HOST_PORT": "abc", "HOST_IP": "nowhere", "BASE_IMAGE": "Not An Image", "EXECUTE_TIMEOUT": "abc",
    "KERNEL": "no kernel!", "BASE_MIRROR": "mirror.example", "TRAIN_WORKERS": "many",
    "TRAIN_BACKEND": "slurm", "TRAIN_TIMEOUT": "-1", "REGISTRY": "http://registry",
}


def test_invoke_lists_every_task_with_a_one_line_help() -> None:
    listing = invoke(REPO, "--list")
    assert listing.returncode == 0, listing.output
    listed = {}
    for line in listing.stdout.splitlines():
        words = line.split(maxsplit=1)
        if len(words) == 2 and line.startswith("  ") and not line.startswith("   "):
            listed[words[0]] = words[1]
    assert sorted(listed) == TASKS
    assert all(help_text.strip() for help_text in listed.values())


def test_nbdock_runs_the_same_tasks_without_a_tasks_file(tmp_path: Path) -> None:
    result = nbdock(tmp_path, "--list")
    assert result.returncode == 0
    assert all(f"  {name} " in result.stdout for name in TASKS)
    assert "--port" in nbdock(tmp_path, "--help", "up").stdout


def test_every_flag_that_feeds_a_setting_is_declared() -> None:
    for name, task in ns.tasks.items():
        for flag, text in task.help.items():
            mentioned = [key for key in re.findall(r"\(([A-Z_]+)", text) if key in KNOWN_KEYS]
            if mentioned:
                assert SETTING_FLAGS[name][flag.replace("-", "_")] == mentioned[0], (name, flag)


@pytest.mark.parametrize(
    ("task", "flag", "key"),
    [(task, flag, key) for task, flags in SETTING_FLAGS.items() for flag, key in flags.items()],
)
def test_a_bad_flag_value_names_the_flag_as_typed(tmp_path: Path, task: str, flag: str, key: str) -> None:
    typed = "--" + flag.replace("_", "-")
    (tmp_path / "notebooks").mkdir()
    result = nbdock(tmp_path, *task.split(), typed, INVALID[key])
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    assert result.message.startswith(f"nbdock: {key} in the {typed} flag is invalid: "), result.output


def test_init_writes_the_three_files_and_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("# my own tasks\n")
    first = nbdock(tmp_path, "init")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "tasks.py").read_text() == "# my own tasks\n"
    assert "Kept tasks.py" in first.stdout
    defaults = REPO / "src" / "nbdock" / "defaults"
    assert (tmp_path / "Dockerfile.template").read_text() == (defaults / "Dockerfile.template").read_text()
    assert (tmp_path / ".env.example").read_text() == (REPO / ".env.example").read_text()
    template = tmp_path / "Dockerfile.template"
    template.write_text("# changed\n")
    assert nbdock(tmp_path, "init").returncode == 0
    assert template.read_text() == "# changed\n"


def test_the_copied_tasks_file_is_the_repositorys() -> None:
    lines = [line.strip() for line in (REPO / "tasks.py").read_text().splitlines() if line.strip()]
    assert len(lines) <= 25 and "from nbdock.tasks import ns" in lines


def test_a_bad_setting_fails_cleanly_before_any_engine_work(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HOST_IP=not-an-ip\n")
    result = nbdock(tmp_path, "up")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"nbdock: HOST_IP in {tmp_path / '.env'} is invalid: 'not-an-ip' is not an IP address such "
        "as 127.0.0.1; fix it (see .env.example for every setting)"
    ]


def test_a_task_run_from_a_subfolder_works_on_the_project(tmp_path: Path) -> None:
    project = tmp_path / "analysis"
    (project / "notebooks" / "deep").mkdir(parents=True)
    (project / "tasks.py").write_text((REPO / "tasks.py").read_text())
    (project / ".env").write_text("HOST_PORT=not-a-port\n")
    result = nbdock(project / "notebooks" / "deep", "dockerfile")
    assert result.returncode == 1
    assert str(project / ".env") in result.message  # the project's settings, not the subfolder's
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    (elsewhere / "tasks.py").write_text("# someone else's tasks\n")
    assert nbdock(elsewhere, "dockerfile").message != result.message


def test_execute_refuses_no_jobs_before_any_engine_work(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "a.ipynb").write_text("{}")
    result = nbdock(tmp_path, "execute", "--jobs", "0", DOCKER_HOST="unix:///nonexistent.sock")
    assert result.returncode == 1 and result.message == "nbdock: --jobs 0 runs nothing; give 1 or more"


@pytest.mark.parametrize("arguments", [["--help"], ["--list"], ["init"]])
def test_a_closed_stdout_is_a_quiet_exit(tmp_path: Path, arguments: list[str]) -> None:
    """`nbdock … | head` must not end in a traceback when head has stopped reading."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        completed = subprocess.run([sys.executable, "-m", "nbdock", *arguments], cwd=tmp_path, stdout=write_end,
                                   stderr=subprocess.PIPE, text=True, env=clean_environment(), timeout=60)
    finally:
        os.close(write_end)
    assert completed.returncode == 141, completed.stderr
    assert "Traceback" not in completed.stderr
