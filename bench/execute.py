"""`invoke execute` on small notebooks, serially and with --jobs 2, against papermill on the host."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, chown_to_owner, fmt, invoke, make_folder, median_of, met, run, table

NOTEBOOKS = 4


def scenario(root: Path, base_image: str, runs: int) -> list[str]:
    folder = make_folder(root, "bench-execute", base_image)
    shutil.rmtree(folder / "notebooks")
    (folder / "notebooks").mkdir()
    small = REPO / "tests" / "data" / "execute" / "greet.ipynb"
    for index in range(NOTEBOOKS):
        shutil.copy(small, folder / "notebooks" / f"n{index}.ipynb")
    chown_to_owner(folder)
    print("execute", flush=True)
    invoke(folder, "execute", "--notebook", "n0.ipynb")  # builds the execution image once
    host_outputs = Path(tempfile.mkdtemp(prefix="nbdock-bench-papermill-"))

    def on_host() -> None:
        for notebook in sorted((folder / "notebooks").glob("*.ipynb")):
            run([sys.executable, "-m", "papermill", "--no-progress-bar", str(notebook),
                 str(host_outputs / notebook.name)], folder)

    try:
        one = median_of(runs, lambda: invoke(folder, "execute", "--notebook", "n0.ipynb"))
        serial = median_of(runs, lambda: invoke(folder, "execute"))
        parallel = median_of(runs, lambda: invoke(folder, "execute", "--jobs", "2"))
        host = median_of(runs, on_host)
    finally:
        shutil.rmtree(host_outputs, ignore_errors=True)
        invoke(folder, "down", "--image")
    # What a run is made of: each further notebook costs (serial - one) / (N - 1); the rest of one
    # notebook's run is the start (nbdock, the image check, the job's container) and the clean-up.
    per_notebook = (serial - one) / (NOTEBOOKS - 1)
    start = one - per_notebook
    return table(
        [f"{NOTEBOOKS} small notebooks", "time", "vs papermill on the host", "target", "result"],
        [
            ["papermill on the host, one after another", fmt(host), "1.00x", "", ""],
            ["`invoke execute`", fmt(serial), f"{serial / host:.2f}x", "≤ 1.3x", met(serial <= 1.3 * host)],
            ["`invoke execute --jobs 2`", fmt(parallel), f"{parallel / host:.2f}x", "≤ 0.8x",
             met(parallel <= 0.8 * host)],
            ["of `invoke execute`: each notebook / the start and clean-up", f"{fmt(per_notebook)} / {fmt(start)}",
             f"host: {fmt(host / NOTEBOOKS)} a notebook", "", ""],
        ],
    )
