"""The notebook server on each backend: `local` (a container), `swarm` (a Swarm service) and
`k8s` (a Deployment reached through `kubectl port-forward`), all behind `Server`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class Server(Protocol):
    """What the tasks do with a notebook server, on any backend."""

    def up(self) -> str:
        """Start the server, or keep the one running as wanted; the URL to open."""

    def down(self) -> list[str]:
        """Stop and remove what the server is made of (what was saved stays); what was removed."""

    def status(self) -> list[str]:
        """Lines for people: what the server is made of, its state and URL."""

    def url(self) -> str:
        """The URL of the running server, token included."""

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The server's log as text pieces; with `follow`, as it is written."""
