"""A large data file in the notebooks folder: the peak memory and time of an `up` with nothing
changed, against the same project without the file. The context is planned from file metadata
and streamed, so neither should grow with the data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.common import chown_to_owner, fmt, invoke, make_folder, met, table

DATA = 400 * 2**20
# A fresh interpreter whose only child is the `up`: its children's peak resident memory is that up's.
MEASURE = (
    "import resource, subprocess, sys, time; started = time.perf_counter(); "
    "done = subprocess.run([sys.executable, '-m', 'invoke', 'up'], capture_output=True); "
    "assert done.returncode == 0, done.stderr; "
    "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _unchanged_up(folder: Path, runs: int) -> tuple[float, float]:
    """(median seconds, largest peak MiB) of `runs` unchanged `up`s."""
    measured = []
    for _ in range(max(3, runs)):
        output = subprocess.run([sys.executable, "-c", MEASURE], cwd=folder, capture_output=True, text=True,
                                check=True).stdout.split()
        measured.append((float(output[0]), int(output[1]) / 1024))
    seconds = sorted(time for time, _ in measured)[len(measured) // 2]
    return seconds, max(peak for _, peak in measured)


def scenario(root: Path, base_image: str, runs: int) -> list[str]:
    small = make_folder(root, "bench-small", base_image)
    large = make_folder(root, "bench-large", base_image)
    with (large / "notebooks" / "data.bin").open("wb") as data:
        data.truncate(DATA)
    chown_to_owner(large)
    print("large data", flush=True)
    try:
        for folder in (small, large):
            invoke(folder, "up")
        small_time, small_peak = _unchanged_up(small, runs)
        large_time, large_peak = _unchanged_up(large, runs)
    finally:
        for folder in (small, large):
            invoke(folder, "down", "--image")
    ratio, over = large_peak / small_peak, large_time - small_time
    return table(
        ["unchanged `up`", f"with a {DATA // 2**20} MiB file", "without it", "target", "result"],
        [
            ["peak memory", f"{large_peak:.0f} MiB", f"{small_peak:.0f} MiB", "≤ 1.1x without",
             f"{ratio:.2f}x: {met(ratio <= 1.1)}"],
            ["time", fmt(large_time), fmt(small_time), "≤ without + 0.1 s", f"{over:+.2f} s: {met(over <= 0.1)}"],
        ],
    )
