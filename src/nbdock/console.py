"""What nbdock tells the user: progress on stdout, warnings on stderr."""

from __future__ import annotations

import sys


def info(message: str) -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    print(f"nbdock: warning: {message}", file=sys.stderr, flush=True)


def detail(lines: list[str]) -> None:
    """Evidence for an error that follows (a log tail, a failed step's output), on stderr."""
    for line in lines:
        print(f"  | {line}", file=sys.stderr)
    sys.stderr.flush()
