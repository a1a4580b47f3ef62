"""Removing what a test session or a benchmark built on a base image."""

from __future__ import annotations

import contextlib
from typing import Any


def remove_images_built_on(client: Any, base_id: str) -> None:
    """Remove every image (tagged or intermediate) whose chain of parents leads to `base_id`."""
    import docker.errors

    parents = {image["Id"]: image.get("ParentId", "") for image in client.api.images(all=True)}
    depth: dict[str, int] = {}  # how many parents lie between an image and the base
    for image_id in parents:
        ancestor, steps = parents[image_id], 1
        while ancestor and ancestor != base_id:
            ancestor, steps = parents.get(ancestor, ""), steps + 1
        if ancestor == base_id:
            depth[image_id] = steps
    for image_id in sorted(depth, key=depth.__getitem__, reverse=True):  # children first
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.api.remove_image(image_id, force=True)
