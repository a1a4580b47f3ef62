"""Who the containers run as, and what they may write (no engine needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbdock.errors import NbdockError
from nbdock.identity import Identity

USER = Identity(1500, 1500, "user1500", (("team", 4321),))


@pytest.mark.parametrize(
    ("owner", "mode", "writable"),
    [((1500, 1500), 0o755, True), ((0, 0), 0o755, False), ((0, 4321), 0o775, True), ((0, 4321), 0o755, False),
     ((0, 1000), 0o775, True), ((0, 0), 0o777, True), ((1500, 1500), 0o555, False)],
)
def test_what_the_containers_user_may_write(
    tmp_path: Path, owner: tuple[int, int], mode: int, writable: bool
) -> None:
    if os.getuid() != 0:
        pytest.skip("giving a folder to other users needs root (CI runs as root)")
    folder = tmp_path / "outputs"
    folder.mkdir()
    os.chown(folder, *owner)
    folder.chmod(mode)
    assert USER.may_write(folder) is writable
    if writable:
        USER.require_writable(folder, "OUTPUT_DIR")
    else:
        with pytest.raises(NbdockError, match=r"OUTPUT_DIR .* is not writable by uid 1500.*chown"):
            USER.require_writable(folder, "OUTPUT_DIR")
    USER.require_writable(folder / "train" / "run", "OUTPUT_DIR")  # made by nbdock, as root, for the user


def test_the_environment_names_the_user_and_its_groups() -> None:
    assert USER.container_groups() == ("1000", "4321")
    environment = USER.environment()
    assert environment["NB_USER"] == "user1500"
    assert environment["NB_GROUPS"].split()[1] == "team:4321"
