"""Pushing the project's images to REGISTRY; the digest-pinned references Swarm and Kubernetes use.

Every push is done again (a registry that already has the layers answers at once), so the
reference `name@sha256:...` always names what the registry holds now.
"""

from __future__ import annotations

from collections.abc import Callable

from nbdock import console
from nbdock.errors import EngineAPIError, EngineUnreachable, NbdockError
from nbdock.project import Project
from nbdock.settings import Settings, split_reference

# What a registry's refusal says -> what to tell the user.
_REFUSALS = (
    (("server gave HTTP response to HTTPS client",),
     "it speaks plain HTTP, which the engine only accepts from registries on 127.0.0.1 or listed under "
     "insecure-registries in /etc/docker/daemon.json; serve it over TLS or list it there"),
    (("x509", "certificate"),
     "its TLS certificate is not trusted by the engine; put the CA in /etc/docker/certs.d/<registry>/ca.crt"),
    (("unauthorized", "authentication required", "denied", "forbidden"),
     "it wants credentials; log in with `docker login <registry>` and push again"),
    (("connection refused", "no such host", "dial tcp", "i/o timeout", "no route to host", "timeout"),
     "nothing answers there; check the address in REGISTRY and that the registry is running"),
)


def repository(settings: Settings, execute: bool = False) -> tuple[str, str]:
    """(repository in REGISTRY, tag) for the serving image, or with `execute` the execution image."""
    name, tag = split_reference(settings.execute_image_name if execute else settings.image_name)
    return f"{settings.registry}/{name.rsplit('/', 1)[-1]}", tag


def require_registry(settings: Settings) -> str:
    if not settings.registry:
        raise NbdockError(
            f"REGISTRY is not set; set it in {settings.env_file} to the registry other machines pull "
            "from, such as registry.example:5000/team"
        )
    return settings.registry


def push(project: Project, execute: bool = False, show: Callable[[str], None] = console.info) -> str:
    """Build the image if stale, tag it for REGISTRY and push it, each step shown; the pushed
    `repository@sha256:...` reference. Raises NbdockError when REGISTRY is unset or refuses,
    saying why and how to fix it; a refused push leaves no tag behind."""
    settings = project.settings
    registry = require_registry(settings)
    image_id = project.build(execute=execute)
    target, tag = repository(settings, execute)
    engine = project.engine
    engine.tag(image_id, target, tag)
    console.info(f"Pushing {target}:{tag}")
    try:
        digest = engine.push(target, tag, show)
    except (EngineAPIError, EngineUnreachable) as error:
        engine.remove_image(f"{target}:{tag}")
        reason = str(error).split(" failed: ", 1)[-1]
        fix = next((fix for hints, fix in _REFUSALS if any(h in reason.lower() for h in hints)), "see its reason")
        raise NbdockError(f"REGISTRY {registry} refused the push of {target}:{tag} ({reason}); {fix}") from None
    return f"{target}@{digest}"
