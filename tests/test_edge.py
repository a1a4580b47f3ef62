"""The one exit point: every error a task can meet ends as one `nbdock:` line and an exit code."""

from __future__ import annotations

import subprocess

import pytest
from invoke.exceptions import Exit

from nbdock.errors import NbdockError
from nbdock.tasks import _user_errors


def failing(error: BaseException) -> None:
    raise error


@pytest.mark.parametrize(("error", "phrase"), [
    (NbdockError("HOST_PORT is taken"), "nbdock: HOST_PORT is taken"),
    (PermissionError(13, "Permission denied", "/srv/outputs"), "nbdock: Permission denied (/srv/outputs)"),
    (OSError(28, "No space left on device"), "nbdock: No space left on device"),
    (subprocess.CalledProcessError(1, ["mmdebstrap", "--variant=minbase"]),
     "nbdock: `mmdebstrap --variant=minbase` failed"),
])
def test_an_error_is_one_line_and_exit_code_1(error: BaseException, phrase: str) -> None:
    with pytest.raises(Exit) as ended:
        _user_errors(failing)(error)
    message = str(ended.value.message)
    assert ended.value.code == 1 and message.startswith(phrase) and "\n" not in message


def test_ctrl_c_is_130() -> None:
    with pytest.raises(Exit) as ended:
        _user_errors(failing)(KeyboardInterrupt())
    assert ended.value.code == 130 and ended.value.message == "nbdock: interrupted"
