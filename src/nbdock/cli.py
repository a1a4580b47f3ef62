"""The `nbdock` command: the same tasks as `invoke`, with no tasks.py needed."""

from __future__ import annotations

from invoke.program import Program

from nbdock import __version__
from nbdock.tasks import ns

program = Program(namespace=ns, name="nbdock", binary="nbdock", version=__version__)


def main() -> None:
    program.run()
