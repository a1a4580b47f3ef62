"""What every benchmark scenario shares: running commands, timing, project copies, reporting.

Every time is the median of N runs measured in one run of `python -m bench.run`, and each is
compared with doing the same by hand in that same run: a shared machine is noisy, ratios are not.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "hello"
OWNER = (1234, 1234)  # under root, the projects belong to a user, as a checkout would
TOKEN = "bench-token"


def run(command: Sequence[str], cwd: Path, **env: str) -> str:
    """Run `command` in `cwd`; its stdout. Raises RuntimeError with its output when it fails."""
    completed = subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("NBDOCK_")}, **env},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout


def invoke(folder: Path, *args: str) -> str:
    return run([sys.executable, "-m", "invoke", *args], folder)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_api(port: int, timeout: float = 120, token: str = "") -> None:
    """Poll `GET /api` (with `token`, /api/status) on 127.0.0.1:`port` until it answers 200."""
    path = f"/api/status?token={token}" if token else "/api"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port}")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_of(runs: int, action: Callable[[], object], prepare: Callable[[], object] | None = None) -> float:
    """The median wall time of `action` over `runs` runs, `prepare` run untimed before each."""
    times = []
    for _ in range(runs):
        if prepare is not None:
            prepare()
        times.append(timed(action))
    return statistics.median(times)


def fmt(seconds: float) -> str:
    return f"{seconds:.2f} s"


def chown_to_owner(folder: Path) -> None:
    if os.getuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, *OWNER, follow_symlinks=False)


def user_spec() -> str:
    uid, gid = OWNER if os.getuid() == 0 else (os.getuid(), os.getgid())
    return f"{uid}:{gid}"


def make_folder(root: Path, name: str, base_image: str, extra_env: str = "",
                notebooks: Path = EXAMPLE / "notebooks",
                requirements: Path = EXAMPLE / "requirements.txt") -> Path:
    """A copy of the example project with nbdock's Dockerfile and .dockerignore written, so the
    same files build by hand; the CA bundle where that Dockerfile expects it."""
    folder = root / name
    folder.mkdir()
    shutil.copytree(notebooks, folder / "notebooks")
    shutil.copy(requirements, folder / "requirements.txt")
    shutil.copy(REPO / "src" / "nbdock" / "defaults" / "tasks.py", folder)
    (folder / ".env").write_text(f"PROJECT_NAME={name}\nBASE_IMAGE={base_image}\nHOST_PORT=0\n{extra_env}")
    run([sys.executable, "-m", "nbdock", "dockerfile"], folder)
    bundle = os.environ.get("PIP_CERT")
    if bundle:
        (folder / ".nbdock").mkdir()
        shutil.copy(bundle, folder / ".nbdock" / "ca.pem")
    chown_to_owner(folder)
    return folder


@dataclass
class Row:
    """One case of a scenario: the times of each way of doing it, its target and verdict."""

    case: str
    times: dict[str, list[float]] = field(default_factory=dict)
    target: str = ""
    verdict: str = ""

    def median(self, tool: str) -> float:
        return statistics.median(self.times[tool])

    def over(self, tool: str, reference: str) -> float:
        return self.median(tool) - self.median(reference)

    def ratio(self, tool: str, reference: str) -> float:
        return self.median(tool) / self.median(reference)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def met(ok: bool) -> str:
    return "met" if ok else "not met"


def docker_client() -> Any:
    import docker

    return docker.from_env()
