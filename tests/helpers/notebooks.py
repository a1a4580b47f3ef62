"""Writing small notebooks for a test, and reading what an executed one printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PYTHON = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook(*sources: str, kernel: dict[str, str] | None = None) -> str:
    """A notebook (nbformat 4) with one code cell per source, for `kernel` (default: python3)."""
    cells: list[dict[str, Any]] = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
        for source in sources
    ]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": kernel or PYTHON}, "nbformat": 4,
                       "nbformat_minor": 5})


def printed(path: Path) -> str:
    """Everything the executed notebook at `path` printed, in order."""
    cells = json.loads(path.read_text())["cells"]
    return "".join("".join(output.get("text", "")) for cell in cells for output in cell.get("outputs", []))
