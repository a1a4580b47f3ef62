"""Who runs in the containers: the invoking user, with their name and supplementary groups.

Files the server saves in a mounted folder belong to that user, and what the user may do on the
host (a team folder of a group they are in), the server may do in the container. The image's
entrypoint turns NB_USER and NB_GROUPS into entries of the container's user database, so the
user has a name and a home whatever their uid.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nbdock import console, contract
from nbdock.errors import NbdockError
from nbdock.settings import Settings


@dataclass(frozen=True)
class Identity:
    """A user: uid, primary gid, name, and supplementary groups as (name, gid) pairs."""

    uid: int
    gid: int
    name: str
    groups: tuple[tuple[str, int], ...] = ()

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def container_groups(self) -> tuple[str, ...]:
        """Supplementary group ids in the container: the user's, and the image's environment
        group, whose members may install packages into the virtual environment."""
        gids = {gid for _, gid in self.groups} | {contract.IMAGE_GID}
        return tuple(str(gid) for gid in sorted(gids - {self.gid}))

    def may_write(self, folder: Path) -> bool:
        """Whether this user (with its groups, and the image's environment group) may write
        `folder`, by its owner, group and mode."""
        status = folder.stat()
        if self.uid == 0:
            return True
        if status.st_uid == self.uid:
            return bool(status.st_mode & 0o200)
        if status.st_gid in {self.gid, contract.IMAGE_GID, *(gid for _, gid in self.groups)}:
            return bool(status.st_mode & 0o020)
        return bool(status.st_mode & 0o002)

    def require_writable(self, folder: Path, setting: str) -> None:
        """Raise NbdockError when the nearest existing part of `folder` (what nbdock will create
        below it is made for this user) is not writable by this user."""
        existing = next(path for path in (folder, *folder.parents) if path.exists())
        if existing == folder or os.getuid() != 0:
            checked = existing
        else:
            return  # nbdock, as root, makes the rest and hands it to the user
        if not self.may_write(checked):
            raise NbdockError(
                f"{setting} {folder} is not writable by uid {self.uid}, whom the containers run as; "
                f"chown it to that user (`sudo chown -R {self.uid} {checked}`) or set {setting} in .env to "
                "another folder"
            )

    def hand_over(self, made: Sequence[Path]) -> None:
        """Give what nbdock just `made` (folders, files) to this user, when nbdock runs as root and
        the containers do not: they write there. Raises OSError when a path cannot be changed."""
        if os.getuid() == 0 and not self.is_root:
            for path in made:
                os.chown(path, self.uid, self.gid)

    def environment(self) -> dict[str, str]:
        """What the image's entrypoint reads to name the user and their groups."""
        named = [(group_name(self.gid), self.gid), *self.groups]
        return {"NB_USER": self.name, "NB_GROUPS": " ".join(f"{name}:{gid}" for name, gid in named)}


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"group{gid}"


def _account(uid: int, gid: int) -> Identity:
    """uid and gid with the host's name for that user and its supplementary groups: the groups
    this process has when it is that user, else those the host's group database gives it."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = ""
    own = uid == os.getuid()
    gids = os.getgroups() if own else os.getgrouplist(name, gid) if name else []
    groups = tuple(sorted({(group_name(g), g) for g in gids if g != gid}, key=lambda pair: pair[1]))
    return Identity(uid, gid, name or f"user{uid}", groups)


def invoker(settings: Settings) -> Identity:
    """Who the containers run as: RUN_AS if set; else the invoking user; when that is root,
    the owner of the notebooks folder. Only when that folder belongs to root too do they run
    as root, and then nbdock says so: they have no more rights than the root user who asked.
    """
    if settings.run_as:
        uid, gid = (int(part) for part in settings.run_as.split(":"))
    elif os.getuid() != 0:
        uid, gid = os.getuid(), os.getgid()
    else:
        owner = Path(settings.notebooks_path).stat()
        uid, gid = owner.st_uid, owner.st_gid
    identity = _account(uid, gid)
    if identity.is_root:
        why = (f"RUN_AS={settings.run_as} says so" if settings.run_as
               else f"{settings.notebooks_path} belongs to root; chown that folder to a user, or set RUN_AS=uid:gid, "
                    "to run them as that user")
        console.warn(f"the containers run as root, because {why}")
    return identity
