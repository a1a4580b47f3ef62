"""Images on the engine: look up, build (each line shown as it comes), import, tag, push, remove."""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Mapping
from typing import IO

from nbdock import console
from nbdock.console import LineBuffer
from nbdock.engine.connection import Connected, _classified, _label_filter
from nbdock.engine.records import Image
from nbdock.errors import BuildFailed, EngineAPIError, NotFound

BUILD_TAIL_LINES = 25
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


def dockerignore_matcher(patterns: list[str]) -> Callable[[str], bool]:
    """Whether a path (relative, `/`-separated) is left out of a build context by these
    `.dockerignore` patterns, `!` exceptions included, as the Docker SDK packs a context."""
    from docker.utils.build import PatternMatcher

    matches: Callable[[str], bool] = PatternMatcher(patterns).matches
    return matches


class Images(Connected):
    """The images part of `Engine`."""

    def image(self, name: str) -> Image | None:
        """The image `name` (a reference or an id), or None when the engine has none by that name."""
        try:
            with _classified(f"looking up the image {name}"):
                attrs = self.client.api.inspect_image(name)
        except NotFound:
            return None
        return Image(
            id=str(attrs["Id"]),
            labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        )

    def build(
        self, context: IO[bytes], tag: str, no_cache: bool = False, show: Callable[[str], None] = print,
    ) -> str:
        """Build the tar build context read from `context` into `tag`; the new image's id.

        Each output line is passed to `show` as it arrives. Raises BuildFailed naming the step.
        """
        step = ""
        tail: collections.deque[str] = collections.deque(maxlen=BUILD_TAIL_LINES)
        lines = LineBuffer()
        image_id = ""

        def take(line: str) -> None:
            nonlocal step
            line = console.plain(line)  # the classic builder colours a step's stderr red
            show(line)
            matched = _STEP.match(line)
            if matched:
                step = matched.group(3)
                tail.clear()
            elif line.strip():
                tail.append(line.rstrip())

        with _classified(f"building {tag}"):
            chunks = self.client.api.build(
                fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                nocache=no_cache, decode=True,
            )
            for chunk in chunks:
                if "error" in chunk:
                    for line in lines.flush():
                        take(line)
                    raise BuildFailed(step, console.plain(str(chunk["error"])).strip(), list(tail))
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                text = chunk.get("stream") or (chunk["status"] + "\n" if "status" in chunk else "")
                for line in lines.feed(text):
                    take(line)
            for line in lines.flush():
                take(line)
        if not image_id:
            built = self.image(tag)
            image_id = built.id if built else ""
        return image_id

    def import_image(self, archive: str, repository: str, tag: str, changes: list[str]) -> None:
        """Import a root file system tar at path `archive` as `repository:tag`."""
        with _classified(f"importing the image {repository}:{tag}"):
            self.client.api.import_image(src=archive, repository=repository, tag=tag, changes=changes)

    def tag(self, image: str, repository: str, tag: str) -> None:
        with _classified(f"tagging {image} as {repository}:{tag}"):
            self.client.api.tag(image, repository, tag)

    def push(self, repository: str, tag: str, show: Callable[[str], None]) -> str:
        """Push `repository:tag`, each progress line passed to `show`; the pushed digest."""
        digest = ""
        shown: dict[str, str] = {}
        with _classified(f"pushing {repository}:{tag}"):
            for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    reason = str(chunk["error"]).strip()
                    raise EngineAPIError(f"pushing {repository}:{tag} failed: {reason}", reason=reason)
                digest = str((chunk.get("aux") or {}).get("Digest", digest))
                if "status" in chunk:
                    layer = chunk.get("id", "")
                    parts = (layer, chunk["status"], chunk.get("progress", ""))
                    line = " ".join(part for part in parts if part)
                    if shown.get(layer) != chunk["status"] or not layer:  # a line per state change
                        shown[layer] = chunk["status"]
                        show(line)
        if not digest:
            reason = "the registry returned no digest"
            raise EngineAPIError(f"pushing {repository}:{tag} failed: {reason}", reason=reason)
        return digest

    def untagged_images(self, labels: Mapping[str, str]) -> list[str]:
        """Ids of the images that carry all of `labels` and no tag any more (earlier builds)."""
        with _classified("listing images"):
            found = self.client.api.images(filters={**_label_filter(labels), "dangling": True})
            return [str(image["Id"]) for image in found]

    def remove_image(self, name: str) -> bool:
        """Remove the image `name`; False when there was none."""
        try:
            with _classified(f"removing the image {name}"):
                self.client.api.remove_image(name)
        except NotFound:
            return False
        return True
