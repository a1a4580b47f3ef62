"""Build steps ended by a signal from outside the step: which signal, the likely cause, what to do.

A shell reports a command killed by signal N with the exit code 128 + N, and the engine quotes that
code in its error (`returned a non-zero code: 137`). A step killed that way did not fail on its
own: pip or apt never saw the error, so the requirements are not where to look.
"""

from __future__ import annotations

import re
import signal

_EXIT_CODE = re.compile(r"(?:non-zero code|exit code):? (\d+)")
_SIGNAL_BASE = 128


def exit_code(error: str) -> int | None:
    """The step's exit code quoted in the engine's build error, or None when it quotes none."""
    matched = _EXIT_CODE.search(error)
    return int(matched.group(1)) if matched else None


def signal_of(code: int) -> signal.Signals | None:
    """The signal an exit code above 128 stands for (137 → SIGKILL), or None."""
    try:
        return signal.Signals(code - _SIGNAL_BASE) if code > _SIGNAL_BASE else None
    except ValueError:
        return None


def killed_step(error: str, doing: str) -> str | None:
    """What to tell the user when the build step (`doing`: "installing the requirements with
    pip", ...) was ended by a signal, going by the exit code in the engine's `error`; None when
    the step ended on its own."""
    code = exit_code(error)
    killed = signal_of(code) if code is not None else None
    if code is None or killed is None:
        return None
    if killed is signal.SIGKILL:
        return (f"the step was killed while {doing} (exit code {code}, SIGKILL), most likely for memory: the "
                "engine's memory limit or the machine's OOM killer (`dmesg` names it); give the engine more "
                "memory (Docker Desktop: Settings, Resources) or stop what else uses it, then build again")
    if killed in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        return (f"the step was stopped from outside while {doing} (exit code {code}, {killed.name}): the engine "
                "or the machine was shutting down, or a CI job ran out of time; build again")
    return (f"the step crashed while {doing} (exit code {code}, {killed.name}), in native code rather than "
            "in the project's files; build again, and if it repeats, try another version of the package or "
            "of BASE_IMAGE")
