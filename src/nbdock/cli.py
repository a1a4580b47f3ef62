"""The `nbdock` command: the same tasks as `invoke`, with no tasks.py needed."""

from __future__ import annotations

from invoke.program import Program

from nbdock import __version__, console
from nbdock.tasks import ns

program = Program(namespace=ns, name="nbdock", binary="nbdock", version=__version__)


def main() -> None:
    try:
        program.run()
    except BrokenPipeError:  # `nbdock --help | head`
        console.silence_stdout()
        raise SystemExit(141) from None
