"""Render Dockerfile.template (the project's own, else nbdock's default) into Dockerfile.

The template is handed what the context actually packs (`context.ContextPlan`), so the
Dockerfile copies exactly those files, from the paths they have in the project.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
from collections.abc import Iterable
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from nbdock import cache, contract, jupyter
from nbdock.context import ContextPlan, outermost
from nbdock.environment import Environment
from nbdock.errors import NbdockError
from nbdock.settings_declared import UV_REQUIREMENT


def default_file(name: str) -> Path:
    """One of the files nbdock ships for `nbdock init` (the template, .env.example, tasks.py)."""
    return Path(str(resources.files("nbdock") / "defaults" / name))


def template_path(project_dir: Path) -> Path:
    own = project_dir / contract.TEMPLATE
    return own if own.is_file() else default_file(contract.TEMPLATE)


def _quoted(packages: str) -> str:
    """pip requirement specifiers for a shell line: `jupyterlab>=4` must not become a redirection."""
    return " ".join(shlex.quote(spec) for spec in packages.split())


def _uv_options(environment: Environment) -> str:
    """What pip takes from a requirements file and uv only from its command line."""
    options = ["--require-hashes"] if environment.hashes else []  # pip: one hash asks for all
    options += ["--prerelease", "allow"] if environment.pre else []
    for host in environment.trusted_hosts:
        options += ["--allow-insecure-host", host]
    return "".join(f"{shlex.quote(option)} " for option in options)


def _install_steps(plan: ContextPlan) -> tuple[list[str], list[str], list[str]]:
    """The environment's files as three copies, each just before the step that installs from it:
    what the requirements read, the project's package, postBuild. Editing a later one then leaves
    the earlier installs cached. When a folder of one copy holds a path of another, all go in
    the first copy, together."""
    environment = plan.environment
    post_build = [environment.post_build] if environment.post_build else []
    requirements = list(outermost(path for path in environment.sources if path not in post_build))

    def new(paths: Iterable[PurePosixPath], earlier: list[PurePosixPath]) -> list[PurePosixPath]:
        return [path for path in paths if not any(path == e or e in path.parents for e in earlier)]

    package = new(outermost(plan.package), [*requirements, *post_build])
    post_build = new(post_build, [*requirements, *package])
    every = [*requirements, *package, *post_build]
    if len(outermost(every)) != len(every):
        return [path.as_posix() for path in outermost(every)], [], []
    return ([path.as_posix() for path in requirements], [path.as_posix() for path in package],
            [path.as_posix() for path in post_build])


def render(plan: ContextPlan, execute: bool = False) -> str:
    """The Dockerfile text for `plan`; with `execute`, the image for headless and training runs.

    The same plan always gives the same text, so a text once rendered is remembered (cache kind
    `dockerfiles`, keyed by the template and every value it is given) and an unchanged project
    neither imports nor compiles Jinja2 again. Raises NbdockError naming the template's file and
    line for a syntax error, or the value it uses that nbdock does not provide.
    """
    path = template_path(plan.settings.project_dir)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as error:
        raise NbdockError(f"cannot read {path} ({error.strerror}); make it readable") from None
    values = _values(plan, execute)
    key = hashlib.sha256(json.dumps([source, values], sort_keys=True).encode()).hexdigest()
    remembered = cache.read("dockerfiles", key)
    if remembered is not None:
        return str(json.loads(remembered))
    text = _render(path, source, values)
    cache.write("dockerfiles", key, json.dumps(text))
    return text


def _values(plan: ContextPlan, execute: bool) -> dict[str, Any]:
    """What the template is given (plain data)."""
    settings, environment = plan.settings, plan.environment
    project_root = contract.project_root_in_container(settings.notebooks_relative)
    linked = [
        [source.as_posix(), posixpath.join(str(project_root), source.as_posix())]
        for source in plan.linked
    ]
    requirements_files, package_files, post_build_files = _install_steps(plan)
    return {
        "base_image": settings.base_image,
        "uid": contract.IMAGE_UID,
        "gid": contract.IMAGE_GID,
        "home": contract.HOME,
        "notebooks": contract.NOTEBOOKS,
        "venv": contract.VENV,
        "project_source": contract.PROJECT_SOURCE,
        "entrypoint": contract.ENTRYPOINT,
        "installer": settings.installer,
        "uv_requirement": _quoted(UV_REQUIREMENT),
        "requirements_options": _uv_options(environment) if settings.installer == "uv" else "",
        "jupyter_packages": _quoted(settings.jupyter_packages),
        "execute_packages": _quoted(settings.execute_packages),
        "execute": execute,
        "apt": environment.apt.as_posix() if environment.apt else "",
        "requirements": environment.requirements.as_posix() if environment.requirements else "",
        "post_build": environment.post_build.as_posix() if environment.post_build else "",
        "install_project": environment.install_project,
        "requirements_files": requirements_files,
        "package_files": package_files,
        "post_build_files": post_build_files,
        "ca_cert": contract.CA_CERT_IN_CONTEXT if settings.ca_cert is not None else "",
        "container_port": settings.container_port,
        "server_command": json.dumps(jupyter.server_command(settings.container_port)),
        "labels": " ".join(f'{key}="{value}"' for key, value in sorted(settings.image_labels.items())),
        "notebooks_dir": settings.notebooks_relative.as_posix(),
        "linked": linked,
    }


def _render(path: Path, source: str, values: dict[str, Any]) -> str:
    import jinja2

    jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    jinja.filters["dirname"] = posixpath.dirname
    try:
        return jinja.from_string(source).render(**values)
    except jinja2.TemplateSyntaxError as error:
        raise NbdockError(
            f"{path}:{error.lineno}: the template has a syntax error ({error.message}); "
            "fix that line or delete the file to use nbdock's default template"
        ) from None
    except jinja2.UndefinedError as error:
        raise NbdockError(
            f"{path}: the template uses a value nbdock does not provide ({error.message}); "
            f"compare it with nbdock's default template at {default_file(contract.TEMPLATE)}"
        ) from None


def is_generated(path: Path) -> bool:
    """True when the file at `path` was written by nbdock (or does not exist)."""
    if not path.exists():
        return True
    return path.read_text(encoding="utf-8", errors="replace").startswith(contract.GENERATED_MARKER)


def write(project_dir: Path, text: str) -> Path:
    """Write the rendered `text` to Dockerfile in the project folder (untouched when the same).

    A Dockerfile that nbdock did not generate is the user's work: it is never overwritten;
    raises NbdockError instead, as for a template that does not mark its output as generated.
    """
    target = project_dir / contract.DOCKERFILE
    if not is_generated(target):
        raise NbdockError(
            f"{target} was not generated by nbdock, so nbdock will not overwrite it; "
            f"move it aside, or turn it into {contract.TEMPLATE} (nbdock's default is at "
            f"{default_file(contract.TEMPLATE)})"
        )
    if not text.startswith(contract.GENERATED_MARKER):
        raise NbdockError(
            f"{template_path(project_dir)} does not start its output with the line "
            f"'{contract.GENERATED_MARKER} ...'; keep that first line in the template so nbdock "
            "can tell its Dockerfile from yours"
        )
    try:
        if target.exists() and target.read_text(encoding="utf-8") == text:
            return target
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise NbdockError(f"cannot write {target} ({error.strerror}); make the folder writable") from None
    return target
