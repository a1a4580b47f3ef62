"""The one exception type for problems the user can fix, and the kinds the engine tells apart.

`engine.py` decides which kind an engine error is; the caller that knows the user's words (a
setting, a flag, a task) catches the kind it can explain better and words the hint.
"""


class NbdockError(Exception):
    """A user-facing error: its message is one sentence that says what is wrong and how to fix it.

    Tasks turn it into that message on stderr and exit code 1, never a traceback.
    """


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
