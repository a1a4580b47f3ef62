"""The one exception type for problems the user can fix, and the kinds the engine tells apart.

`engine/connection.py` decides which kind an engine error is; the caller that knows the user's words (a
setting, a flag, a task) catches the kind it can explain better and words the hint.
"""


class NbdockError(Exception):
    """A user-facing error: its message is one sentence that says what is wrong and how to fix it.

    Tasks turn it into that message on stderr and exit code 1, never a traceback. `reason` is
    what the engine (or another tool) said, as data, for a caller that words it better; by
    default the message itself.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


class EngineUnreachable(NbdockError):
    """No Docker engine answers at the configured address."""


class EnginePermissionDenied(NbdockError):
    """The engine answers, but this user may not use it."""


class NotFound(NbdockError):
    """A container, image, service, network, volume or secret does not exist."""


class PortTaken(NbdockError):
    """A port to publish is already in use on the host."""


class NameConflict(NbdockError):
    """An object with that name already exists."""


class EngineAPIError(NbdockError):
    """The engine refused a request for another reason; the message quotes the engine."""


class BuildFailed(NbdockError):
    """A build step failed: `step` is the Dockerfile instruction, `error` the engine's reason,
    `tail` the step's last output lines."""

    def __init__(self, step: str, error: str, tail: list[str]) -> None:
        super().__init__(f"the build failed at `{step}`: {error}", reason=error)
        self.step = step
        self.error = error
        self.tail = tail

    @property
    def base_image_missing(self) -> bool:
        """True when the failing step is FROM and the engine could not get that image."""
        return self.step.upper().startswith("FROM ") and any(
            hint in self.error
            for hint in ("pull access denied", "not found", "no such host", "manifest unknown",
                         "repository does not exist", "dial tcp", "connection refused")
        )
