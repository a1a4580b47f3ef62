"""The project's images: check the base, build, push to REGISTRY, and facts probed once per image.

A build is skipped when the image was built from exactly these files on this base. Every push
is done again (a registry that already has the layers answers at once), so the reference
`name@sha256:...` always names what the registry holds now. What a probe finds in an image
(its Jupyter kernels, whether TensorFlow imports) is remembered per image id.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from nbdock import baseimage, cache, console, contract, dockerfile, killed, localcluster
from nbdock.context import describe_size, write_archive, write_dockerignore
from nbdock.errors import BuildFailed, EngineAPIError, EngineUnreachable, NameConflict, NbdockError
from nbdock.notebooks import DEFAULT_KERNEL
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


def dockerfile_text(project: Project) -> str:
    """The project's Dockerfile, rendered from its template and build plan."""
    return dockerfile.render(project.plan)


def for_swarm(project: Project, node: str, execute: bool = False) -> tuple[str, list[str]]:
    """(image reference, placement constraints) for a Swarm service: the pushed digest with
    REGISTRY, else the local image pinned to the node `node`, where it exists."""
    if project.settings.registry:
        return push(project, execute=execute), []
    if project.separate_manager:
        raise NbdockError(
            f"SWARM_HOST={project.settings.swarm_host} is another engine than the one that builds, so "
            f"its nodes can only pull the image from a registry; set REGISTRY in {project.settings.env_file} "
            "to one every node reaches, such as registry.example:5000/team"
        )
    image_id = build(project, execute=execute)
    console.info("REGISTRY is not set: the service runs on this node only, where the image is.")
    return image_id, [f"node.id=={node}"]


def for_k8s(project: Project, execute: bool = False) -> str:
    """The image Kubernetes manifests name: with REGISTRY the pushed digest (see push); without
    it the local image's own tag, built if stale (see localcluster)."""
    settings = project.settings
    if settings.registry:
        return push(project, execute=execute)
    build(project, execute=execute)
    return settings.execute_image_name if execute else settings.image_name


def local_in_k8s(project: Project, objects: list[dict[str, Any]], execute: bool = False) -> list[dict[str, Any]]:
    """`objects`; without REGISTRY with every pod template using the local image (see use_local_image)."""
    settings = project.settings
    if settings.registry:
        return objects
    local = project.engine.image(settings.execute_image_name if execute else settings.image_name)
    return localcluster.use_local_image(objects, local.id if local else "")


def check_base(project: Project) -> None:
    """Refuse, before building, a base image the Dockerfile cannot work with (NbdockError)."""
    if not project.base_image_id:
        return
    facts = baseimage.probe_base(project.engine, project.settings.base_image, project.base_image_id)
    runtime = (project.environment.folder / contract.RUNTIME).as_posix()
    baseimage.check_base(facts, project.settings.base_image, project.environment.python, runtime)


def other_checkout(project: Project, folder: str | None) -> str | None:
    """`folder` when it is another checkout that still exists; one that is gone is taken over."""
    if not folder or folder == str(project.settings.project_dir) or not Path(folder).is_dir():
        return None
    return folder


def check_owner(project: Project, folder: str | None, what: str) -> None:
    """Refuse to touch `what` when another checkout of a project of the same name, at
    `folder`, made it. Raises NameConflict saying how to tell the two apart."""
    if other_checkout(project, folder) is None:
        return
    raise NameConflict(
        f"{what} belongs to the checkout at {folder}, which has the same project name "
        f"{project.settings.project_name}; set PROJECT_NAME in {project.settings.env_file} to "
        "another name so that both can run"
    )


def build(project: Project, no_cache: bool = False, execute: bool = False) -> str:
    """Write the Dockerfile and .dockerignore, then build the image, each step shown live;
    its id. With `execute`, build the image for headless and training runs instead.

    When the image was built from exactly these files on this base, the build is skipped.
    Raises NbdockError when the base, a file or a build step fails, naming which and why.
    """
    settings = project.settings
    plan = project.plan
    check_base(project)
    text = dockerfile.render(plan, execute=execute)
    if not execute:
        dockerfile.write(settings.project_dir, text)
        write_dockerignore(plan)
    tag = settings.execute_image_name if execute else settings.image_name
    digest = plan.digest(text, project.base_image_id)
    current = project.engine.image(tag)
    if current is not None:
        check_owner(project, cache.read("owners", current.id), f"the image {tag}")
        if not no_cache and cache.read("builds", current.id) == digest:
            console.info(f"Image {tag} is up to date.")
            return current.id
    hint = describe_size(plan)
    if hint:
        console.warn(hint)
    console.info(f"Building {tag} from {settings.base_image} ({console.size(plan.size)} of files)")
    with tempfile.TemporaryFile(prefix="nbdock-context-") as archive:
        write_archive(plan, text, archive)
        try:
            image_id = project.engine.build(archive, tag, no_cache, show=console.info)
        except BuildFailed as failure:
            raise _build_error(project, failure) from None
    cache.write("builds", image_id, digest)
    cache.write("owners", image_id, str(settings.project_dir))
    return image_id


def _build_error(project: Project, failure: BuildFailed) -> NbdockError:
    settings = project.settings
    if failure.base_image_missing:
        return NbdockError(
            f"the base image {settings.base_image} is not on this machine and could not "
            f"be pulled ({failure.error}); build one with `invoke base` and set BASE_IMAGE "
            f"in {settings.env_file} to the name it prints"
        )
    console.detail([f"failed step: {failure.step}", *failure.tail])
    step = failure.step
    stopped = killed.killed_step(failure.error, _doing(step, project.environment.post_build))
    if stopped is not None:
        culprit = stopped
    elif any("CERTIFICATE_VERIFY_FAILED" in line or "invalid peer certificate" in line for line in failure.tail):
        culprit = (f"pip or uv could not verify a certificate, as behind a TLS-intercepting proxy; set CA_CERT in "
                   f"{settings.env_file} to the proxy's CA bundle (the one your own pip uses)")
    elif "pip install" in step:
        culprit = "a package that will not install: check the requirements file and the log above"
    elif "apt-get" in step:
        culprit = f"a system package that will not install: check {project.environment.apt}"
    elif contract.POST_BUILD in step:
        culprit = f"{project.environment.post_build} failed: its output is above"
    else:
        culprit = "see the step's output above"
    return NbdockError(f"the build failed at `{step}` ({failure.error}); {culprit}")


def _doing(step: str, post_build: PurePosixPath | None) -> str:
    """What a build step does, in words, for a message about it."""
    if "pip install" in step:
        return "installing packages with pip"
    if "apt-get" in step:
        return "installing system packages with apt"
    if contract.POST_BUILD in step:
        return f"running {post_build}"
    return f"running `{step}`"


def repository(settings: Settings, execute: bool = False) -> tuple[str, str]:
    """(repository in REGISTRY, tag) for the serving image, or with `execute` the execution image."""
    name, tag = split_reference(settings.execute_image_name if execute else settings.image_name)
    return f"{settings.registry}/{name.rsplit('/', 1)[-1]}", tag


def require_registry(settings: Settings) -> str:
    """REGISTRY. Raises NbdockError when it is not set, saying where to set it."""
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
    image_id = build(project, execute=execute)
    target, tag = repository(settings, execute)
    engine = project.engine
    engine.tag(image_id, target, tag)
    console.info(f"Pushing {target}:{tag}")
    try:
        digest = engine.push(target, tag, show)
    except (EngineAPIError, EngineUnreachable) as error:
        engine.remove_image(f"{target}:{tag}")
        reason = error.reason
        fix = next((fix for hints, fix in _REFUSALS if any(h in reason.lower() for h in hints)), "see its reason")
        raise NbdockError(f"REGISTRY {registry} refused the push of {target}:{tag} ({reason}); {fix}") from None
    return f"{target}@{digest}"


def _probe(project: Project, image_id: str, command: list[str]) -> tuple[int, str]:
    return project.engine.probe(image_id, command, f"{contract.IMAGE_UID}:{contract.IMAGE_GID}")


def kernels(project: Project, image_id: str) -> set[str]:
    """The Jupyter kernels the image has, probed once per image id."""

    def find() -> str:
        code, output = _probe(project, image_id, ["jupyter", "kernelspec", "list", "--json"])
        try:
            names = sorted(json.loads(output[output.index("{"):])["kernelspecs"]) if code == 0 else []
        except (ValueError, KeyError):
            names = []
        return " ".join(names or [DEFAULT_KERNEL])

    return set(cache.remembered("kernels", image_id, find).split())


def require_tensorflow(project: Project, image_id: str) -> None:
    """Raise NbdockError, before any worker starts, when TensorFlow does not import in the image
    (probed once per image id)."""

    def find() -> str:
        code, output = _probe(project, image_id, ["python", "-c", "import tensorflow"])
        return "ok" if code == 0 else (output.strip().splitlines() or ["it does not import"])[-1]

    reason = cache.remembered("tensorflow", image_id, find)
    if reason != "ok":
        requirements = project.environment.requirements or PurePosixPath(contract.REQUIREMENTS)
        raise NbdockError(
            f"TensorFlow does not import in the image ({reason}); add tensorflow-cpu (or tensorflow) "
            f"to {requirements.as_posix()} and train again"
        )

