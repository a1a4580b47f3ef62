"""The invoke tasks. Each one parses its flags and calls the typed functions that do the work.

A project's tasks.py only needs `from nbdock.tasks import ns`. Every task goes through one exit
point (`_user_errors`): an NbdockError becomes `nbdock: <message>` on stderr and exit code 1,
and so do an OSError and a failed subprocess wherever they come from; Ctrl-C becomes `nbdock:
interrupted` and exit code 130.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from nbdock import console
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.server import Server
from nbdock.settings import IMAGE_REFERENCE, Flag, Settings, load_settings, project_folder

F = TypeVar("F", bound=Callable[..., Any])

# For each task, its flags that feed a setting: flag (as a Python name) -> setting KEY. An
# invalid value is then reported against the flag the user typed.
SETTING_FLAGS: dict[str, dict[str, str]] = {
    "build": {"base_image": "BASE_IMAGE"},
    "run": {"port": "HOST_PORT", "host_ip": "HOST_IP"},
    "up": {"port": "HOST_PORT", "host_ip": "HOST_IP", "base_image": "BASE_IMAGE"},
    "execute": {"timeout": "EXECUTE_TIMEOUT", "kernel": "KERNEL"},
    "base": {"mirror": "BASE_MIRROR"},
    "train": {"workers": "TRAIN_WORKERS", "backend": "TRAIN_BACKEND", "timeout": "TRAIN_TIMEOUT"},
    "k8s.manifests": {"workers": "TRAIN_WORKERS"},
}


def _user_errors(body: F) -> F:
    """Turn NbdockError (and Ctrl-C) into one line on stderr and a non-zero exit code; a closed
    stdout (`| head`) into a quiet exit."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except NbdockError as error:
            raise Exit(f"nbdock: {error}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("nbdock: interrupted", code=130) from None
        except BrokenPipeError:
            console.silence_stdout()
            raise Exit(code=141) from None  # 128 + SIGPIPE, as a shell reports it
        except subprocess.CalledProcessError as error:
            command = error.cmd if isinstance(error.cmd, str) else " ".join(map(str, error.cmd[:2]))
            raise Exit(f"nbdock: `{command}` failed with exit code {error.returncode}; its output is above",
                       code=1) from None
        except OSError as error:
            where = f" ({error.filename})" if error.filename else ""
            raise Exit(f"nbdock: {error.strerror or error}{where}; check that the file or folder exists and "
                       "that you may use it", code=1) from None

    return wrapper  # type: ignore[return-value]


def nbdock_task(flags: dict[str, str] | None = None, **options: Any) -> Callable[[F], Task[Any]]:
    """invoke's @task, with flag help texts, and user errors turned into clean exits."""

    def decorate(body: F) -> Task[Any]:
        made: Task[Any] = task(help=flags or {}, **options)(_user_errors(body))
        return made

    return decorate


def _settings(task_name: str = "", **values: object) -> Settings:
    """The project's settings, with the task's flags that feed settings (see SETTING_FLAGS)."""
    keys = SETTING_FLAGS.get(task_name, {})
    flags = {keys[name]: Flag("--" + name.replace("_", "-"), value) for name, value in values.items()}
    settings = load_settings(project_folder(Path.cwd()), flags)
    for warning in settings.warnings:
        console.warn(warning)
    return settings


def _project(task_name: str = "", **values: object) -> Project:
    return Project(_settings(task_name, **values))


def _up(server: Server) -> None:
    console.info(server.up())


def _down(server: Server) -> None:
    removed = server.down()
    console.info(f"Removed {', '.join(removed)}." if removed else "Nothing to remove.")


def _status(server: Server) -> None:
    for line in server.status():
        console.info(line)


def _logs(server: Server, follow: bool) -> None:
    try:
        for text in server.logs(follow=follow):
            console.write(text)
    except KeyboardInterrupt:
        return


_SERVER_FLAGS = {
    "port": "host port to publish the server on (HOST_PORT; 0 picks a free one)",
    "host-ip": "host address to publish on (HOST_IP, default 127.0.0.1)",
}
_BUILD_FLAGS = {
    "base-image": "image to build on (BASE_IMAGE)",
    "no-cache": "rebuild every layer instead of reusing cached ones",
}


@nbdock_task()
def dockerfile(c: Context) -> None:
    """Write Dockerfile (and .dockerignore) from Dockerfile.template and the settings."""
    from nbdock import image
    from nbdock.context import write_dockerignore
    from nbdock.dockerfile import write

    project = _project()
    console.info(f"Wrote {write(project.settings.project_dir, image.dockerfile_text(project))}")
    ignore = write_dockerignore(project.plan)
    if ignore is not None:
        console.info(f"Wrote {ignore}")


@nbdock_task(flags=_BUILD_FLAGS)
def build(c: Context, base_image: str | None = None, no_cache: bool = False) -> None:
    """Build the project's image, each step shown live (skipped when nothing changed)."""
    from nbdock import image

    image.build(_project("build", base_image=base_image), no_cache=no_cache)


@nbdock_task(flags=_SERVER_FLAGS)
def run(c: Context, port: str | None = None, host_ip: str | None = None) -> None:
    """Start the notebook server from the built image and wait until it answers."""
    from nbdock.server.local import LocalServer

    console.info(LocalServer(_project("run", port=port, host_ip=host_ip)).run().url)


@nbdock_task(flags={**_BUILD_FLAGS, **_SERVER_FLAGS})
def up(
    c: Context,
    port: str | None = None,
    host_ip: str | None = None,
    base_image: str | None = None,
    no_cache: bool = False,
) -> None:
    """Write the Dockerfile, build, run, and print the URL to open (the last line)."""
    from nbdock.server.local import LocalServer

    _up(LocalServer(_project("up", port=port, host_ip=host_ip, base_image=base_image), no_cache=no_cache))


@nbdock_task()
def url(c: Context) -> None:
    """Print the URL of the running notebook server, token included."""
    from nbdock.server.local import LocalServer

    console.info(LocalServer(_project()).url())


@nbdock_task()
def ip(c: Context) -> None:
    """Print the address a browser should use and the container's own address."""
    from nbdock.server.local import LocalServer

    browser, container = LocalServer(_project()).addresses()
    console.info(f"browser:   {browser}")
    console.info(f"container: {container or '(no running container)'}")


@nbdock_task()
def stop(c: Context) -> None:
    """Stop this project's containers (found by label; never anyone else's)."""
    from nbdock.server.local import LocalServer

    stopped = LocalServer(_project()).stop()
    console.info(f"Stopped {', '.join(stopped)}." if stopped else "Nothing was running.")


@nbdock_task(flags={"image": "remove the project's images too"})
def down(c: Context, image: bool = False) -> None:
    """Stop and remove this project's containers; the images stay unless --image."""
    from nbdock.server.local import LocalServer

    _down(LocalServer(_project(), remove_images=image))


@nbdock_task()
def status(c: Context) -> None:
    """Show this project's containers, their state, health and URL."""
    from nbdock.server.local import LocalServer

    _status(LocalServer(_project()))


@nbdock_task(flags={"follow": "keep printing new lines until Ctrl-C"})
def logs(c: Context, follow: bool = False) -> None:
    """Print the notebook server's log."""
    from nbdock.server.local import LocalServer

    _logs(LocalServer(_project()), follow)


@nbdock_task(flags={
    "tag": "name for the image (default nbdock-base)",
    "suite": "Debian (or Ubuntu) release to bootstrap (default: the host's)",
    "mirror": "apt mirror URL (BASE_MIRROR; default: the host's apt sources)",
})
def base(c: Context, tag: str | None = None, suite: str | None = None, mirror: str | None = None) -> None:
    """Build a local base image with Python from Debian packages (no registry needed)."""
    from nbdock import baseimage
    from nbdock.engine import Engine

    settings = _settings("base", mirror=mirror)
    suite = suite or baseimage.host_suite() or "bookworm"
    chosen_mirror = settings.base_mirror or baseimage.host_mirror(suite)
    if not chosen_mirror:
        raise NbdockError(
            f"no apt mirror for {suite} was found in /etc/apt/sources.list*; set BASE_MIRROR in "
            ".env (or pass --mirror) to a Debian mirror URL"
        )
    tag = tag or "nbdock-base"
    if not IMAGE_REFERENCE.match(tag):
        raise NbdockError(f"--tag {tag!r} is not an image name such as nbdock-base or nbdock-base:bookworm")
    baseimage.build_base(Engine(), tag, suite, chosen_mirror)
    console.info(f"Built {tag}. Use it with this line in .env:")
    console.info(f"BASE_IMAGE={tag}")


@nbdock_task(
    flags={
        "notebook": "a notebook to run (repeatable; default: every notebook in NOTEBOOKS_DIR)",
        "parameter": "name=value for the cell tagged `parameters` (repeatable; 3 is an int)",
        "jobs": "how many notebooks run at once, each in its own container",
        "html": "also write an HTML rendering of each executed notebook",
        "timeout": "seconds one notebook may run (EXECUTE_TIMEOUT)",
        "kernel": "the kernel to run every notebook with (KERNEL; default: the notebook's own)",
    },
    iterable=["notebook", "parameter"],
)
def execute(
    c: Context,
    notebook: list[str] | None = None,
    parameter: list[str] | None = None,
    jobs: int = 1,
    html: bool = False,
    timeout: str | None = None,
    kernel: str | None = None,
) -> None:
    """Run notebooks headless in the project's image with papermill; results in OUTPUT_DIR."""
    from nbdock import execute as headless

    project = _project("execute", timeout=timeout, kernel=kernel)
    settings = project.settings
    outcomes = headless.execute(project, notebook or [], parameter or [], jobs, html,
                                settings.execute_timeout, settings.kernel)
    for outcome in outcomes:
        if outcome.status != "ok":
            for line in headless.explain(outcome):
                console.info(line)
    for line in headless.summary(outcomes, settings.project_dir):
        console.info(line)
    failed = [outcome for outcome in outcomes if outcome.status != "ok"]
    if failed:
        raise NbdockError(
            f"{len(failed)} of {len(outcomes)} notebooks did not run to the end "
            f"({', '.join(o.notebook for o in failed)}); see the table above"
        )


@nbdock_task()
def push(c: Context) -> None:
    """Push the image to REGISTRY, progress shown live; print its digest-pinned reference."""
    from nbdock import image

    console.info(image.push(_project()))


@nbdock_task(
    name="up",
    flags={"init": "create a single-node swarm on 127.0.0.1 if this engine has none",
           "public": "accept that Swarm publishes on every interface, whatever HOST_IP says"},
)
def swarm_up(c: Context, init: bool = False, public: bool = False) -> None:
    """Serve the notebooks as a Docker Swarm service; print the URL to open (the last line)."""
    from nbdock.server.swarm import SwarmServer

    _up(SwarmServer(_project(), init=init, public=public))


@nbdock_task(name="down", flags={"volumes": "also remove the notebooks volume (what was saved in it is lost)"})
def swarm_down(c: Context, volumes: bool = False) -> None:
    """Remove this project's Swarm service and its secret; the notebooks volume stays unless --volumes."""
    from nbdock.server.swarm import SwarmServer

    _down(SwarmServer(_project(), volumes=volumes))


@nbdock_task(name="status")
def swarm_status(c: Context) -> None:
    """Show this project's Swarm services, their state and URL."""
    from nbdock.server.swarm import SwarmServer

    _status(SwarmServer(_project()))


@nbdock_task(name="url")
def swarm_url(c: Context) -> None:
    """Print the URL of this project's Swarm service, token included."""
    from nbdock.server.swarm import SwarmServer

    console.info(SwarmServer(_project()).url())


@nbdock_task(name="logs", flags={"follow": "keep printing new lines until Ctrl-C"})
def swarm_logs(c: Context, follow: bool = False) -> None:
    """Print the log of this project's Swarm service."""
    from nbdock.server.swarm import SwarmServer

    _logs(SwarmServer(_project()), follow)


@nbdock_task(
    name="manifests",
    flags={
        "validate": "also check every object against the Kubernetes schemas, offline",
        "train-script": "also write the training Job for this script in NOTEBOOKS_DIR",
        "train-notebook": "also write the training Job for this notebook in NOTEBOOKS_DIR",
        "workers": "training workers (TRAIN_WORKERS)",
        "parameter": "name=value for the notebook's `parameters` cell (repeatable)",
    },
    iterable=["parameter"],
)
def k8s_manifests(c: Context, validate: bool = False, train_script: str | None = None,
                  train_notebook: str | None = None, workers: str | None = None,
                  parameter: list[str] | None = None) -> None:
    """Write k8s/ (server, and training with --train-*) for review; with REGISTRY, push the image first."""
    from nbdock import kubectl
    from nbdock.server.k8s import server_objects
    from nbdock.training import k8s as k8s_training
    from nbdock.training import model

    project = _project("k8s.manifests", workers=workers)
    settings = project.settings
    run = None
    if train_script or train_notebook:
        run = model.prepare(project, train_script, train_notebook, parameter or [], settings.train_workers,
                            settings.train_port, settings.train_timeout)
    sets = {"server.yaml": server_objects(project)}
    if run is not None:
        sets["train.yaml"] = k8s_training.training_objects(project, run)
    kubectl.write_manifests(settings, sets, validate=validate)
    if validate:
        console.info("Every object passed nbdock's checks and the Kubernetes schemas.")


@nbdock_task(name="up")
def k8s_up(c: Context) -> None:
    """Apply the server to the cluster kubectl points at; print a URL through port-forward."""
    from nbdock.server.k8s import KubernetesServer

    _up(KubernetesServer(_project()))


@nbdock_task(name="down", flags={"volumes": "also delete the notebooks claim (what was saved in it is lost)"})
def k8s_down(c: Context, volumes: bool = False) -> None:
    """Delete this project's server objects from the cluster; the notebooks claim stays unless --volumes."""
    from nbdock.server.k8s import KubernetesServer

    _down(KubernetesServer(_project(), volumes=volumes))


@nbdock_task(name="status")
def k8s_status(c: Context) -> None:
    """Show this project's server objects on the cluster."""
    from nbdock.server.k8s import KubernetesServer

    _status(KubernetesServer(_project()))


@nbdock_task(name="logs", flags={"follow": "keep printing new lines until Ctrl-C"})
def k8s_logs(c: Context, follow: bool = False) -> None:
    """Print the log of this project's server on the cluster."""
    from nbdock.server.k8s import KubernetesServer

    _logs(KubernetesServer(_project()), follow)


@nbdock_task(name="url")
def k8s_url(c: Context) -> None:
    """Print the server's URL through kubectl port-forward on 127.0.0.1."""
    from nbdock.server.k8s import KubernetesServer

    console.info(KubernetesServer(_project()).url())


@nbdock_task(
    flags={
        "workers": "how many workers (TRAIN_WORKERS, default 2)",
        "script": "a Python script in NOTEBOOKS_DIR to run on every worker",
        "notebook": "a notebook in NOTEBOOKS_DIR to run on every worker (papermill)",
        "parameter": "name=value for the notebook's `parameters` cell (repeatable)",
        "backend": "where the workers run: local, swarm or k8s (TRAIN_BACKEND)",
        "timeout": "seconds the whole run may take (TRAIN_TIMEOUT)",
    },
    iterable=["parameter"],
)
def train(c: Context, workers: str | None = None, script: str | None = None, notebook: str | None = None,
          parameter: list[str] | None = None, backend: str | None = None, timeout: str | None = None) -> None:
    """Train with TensorFlow on N workers of the project's image, each with its TF_CONFIG."""
    from nbdock.training import model
    from nbdock.training.run import train as train_on

    project = _project("train", workers=workers, backend=backend, timeout=timeout)
    settings = project.settings
    run = model.prepare(project, script, notebook, parameter or [], settings.train_workers,
                        settings.train_port, settings.train_timeout)
    outcomes, folder = train_on(project, run, settings.train_backend)
    for line in model.explain(outcomes, run.timeout):
        console.info(line)
    for line in model.summary(outcomes):
        console.info(line)
    console.info(f"Logs and the chief's outputs: {folder}")
    problem = model.verdict(outcomes, run.timeout)
    if problem:
        raise NbdockError(problem)


@nbdock_task()
def init(c: Context) -> None:
    """Add tasks.py, Dockerfile.template and .env.example to this folder (never overwrites)."""
    from nbdock.dockerfile import default_file

    for name in ("tasks.py", "Dockerfile.template", ".env.example"):
        target = Path.cwd() / name
        if target.exists() or target.is_symlink():
            console.info(f"Kept {name}: it already exists.")
            continue
        try:
            shutil.copyfile(default_file(name), target)
        except OSError as error:
            raise NbdockError(f"cannot write {target} ({error.strerror}); run init in your folder") from None
        console.info(f"Wrote {name}")
    console.info("Next: put your notebooks in notebooks/ (or set NOTEBOOKS_DIR), then `invoke up`.")


ns = Collection(
    dockerfile, build, run, up, url, ip, stop, down, status, logs, execute, base, init, push,
    train,
    Collection("swarm", swarm_up, swarm_down, swarm_status, swarm_url, swarm_logs),
    Collection("k8s", k8s_manifests, k8s_up, k8s_down, k8s_status, k8s_url, k8s_logs),
)
