"""What nbdock tells the user: progress on stdout, warnings on stderr, each line written whole."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Sequence
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOCK = threading.Lock()  # lines from several threads (training workers' logs) never mix


def _write(stream: TextIO, text: str) -> None:
    with _LOCK:
        stream.write(text)
        stream.flush()


def silence_stdout() -> None:
    """Send what is still to be printed nowhere: the reader of stdout has gone (`| head`), and
    Python would otherwise fail again flushing it at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def plain(text: str) -> str:
    """`text` without terminal colour codes (pip and TensorFlow colour their errors)."""
    return _ANSI.sub("", text)


def size(count: int) -> str:
    """A byte count for people: 850 bytes, 12.3 KiB, 400 MiB, 1.7 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{count} bytes"


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell, two spaces between."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))] if rows else []
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def info(message: str) -> None:
    _write(sys.stdout, message + "\n")


def write(text: str) -> None:
    """Text as it comes (a log's pieces), on stdout, without a line end added."""
    _write(sys.stdout, text)


def warn(message: str) -> None:
    _write(sys.stderr, f"nbdock: warning: {message}\n")


def detail(lines: list[str]) -> None:
    """Evidence for an error that follows (a log tail, a failed step's output), on stderr."""
    _write(sys.stderr, "".join(f"  | {plain(line)}\n" for line in lines))


class LineBuffer:
    """Whole lines out of a stream whose pieces split lines anywhere (the engine sends a build
    step's text and its newline as two pieces)."""

    def __init__(self) -> None:
        self._partial = ""

    def feed(self, text: str) -> list[str]:
        """The lines `text` completes, without their line ends; the rest waits for the next piece."""
        *complete, self._partial = (self._partial + text).split("\n")
        return [line.rstrip("\r") for line in complete]

    def flush(self) -> list[str]:
        """The unfinished last line, if any: the stream has ended."""
        rest, self._partial = self._partial, ""
        return [rest.rstrip("\r")] if rest else []
