"""Benchmark nbdock against doing the same by hand, scenario by scenario, in one run.

    python -m bench.run [--runs N] [--quick] [--only NAME ...] [--base-image NAME] [--write]

Each scenario is a module of this package (updown, execute, ...) that returns its Markdown
tables; `--write` stores them all, with the machine and date, in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import bigdata, cluster, execute, handwritten, swarm, train, updown
from bench.common import REPO, docker_client, run

RESULTS = REPO / "bench" / "RESULTS.md"
# paramiko, which the Docker SDK imports at every start when it is installed (~0.1 s here).
SSH_EXTRA = "installed (paramiko: every nbdock start imports it)"
Scenario = Callable[[Path, str, str, int], list[str]]
# The cold builds of `handwritten` and `updown` remove every image built on the base, so they run last.
SCENARIOS: dict[str, Scenario] = {
    "bigdata": lambda root, base, base_id, runs: bigdata.scenario(root, base, runs),
    "swarm": lambda root, base, base_id, runs: swarm.scenario(root, base, runs),
    "cluster": lambda root, base, base_id, runs: cluster.scenario(root, base, runs),
    "train": lambda root, base, base_id, runs: train.scenario(root, base, runs),
    "execute": lambda root, base, base_id, runs: execute.scenario(root, base, runs),
    "handwritten": handwritten.scenario,
    "updown": updown.scenario,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case (median is reported)")
    parser.add_argument("--quick", action="store_true", help="one run per case, as in CI")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--base-image", default="nbdock-base", help="local base image to build on")
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS.relative_to(REPO)}")
    arguments = parser.parse_args()
    runs = 1 if arguments.quick else arguments.runs
    client = docker_client()
    if not client.images.list(name=arguments.base_image):
        print(f"building the base image {arguments.base_image}", flush=True)
        run([sys.executable, "-m", "nbdock", "base", "--tag", arguments.base_image], REPO)
    base_id = client.images.get(arguments.base_image).id
    root = Path(tempfile.mkdtemp(prefix="nbdock-bench-"))
    lines: list[str] = []
    try:
        for name in arguments.only or SCENARIOS:
            (root / name).mkdir()
            tables = SCENARIOS[name](root / name, arguments.base_image, base_id, runs)
            print("\n".join(tables), flush=True)
            lines += ["", f"## {name}", "", *tables]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    header = [
        f"Measured {datetime.date.today()} on {platform.node() or 'this machine'}: {os.cpu_count()} cores, "
        f"{platform.platform()}, Docker {client.version()['Version']}; median of {runs} run(s); "
        f"`python -m bench.run{' --quick' if arguments.quick else ''}`; the ssh extra "
        f"{SSH_EXTRA if importlib.util.find_spec('paramiko') else 'not installed'}.",
    ]
    print("\n".join(header + lines))
    if arguments.write:
        RESULTS.write_text("# Benchmark results\n\n" + "\n".join(header + lines) + "\n")


if __name__ == "__main__":
    main()
