"""The one exception type for problems the user can fix."""


class NbdockError(Exception):
    """A user-facing error: its message is one sentence that says what is wrong and how to fix it.

    Tasks turn it into that message on stderr and a non-zero exit code, never a traceback.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
