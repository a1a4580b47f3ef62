"""Kubernetes through the user's own kubectl: their kubeconfig, context and auth plugins.

`k8s.py` builds the objects; this module pushes the image they name, writes them to k8s/ for
review, checks the cluster answers before anything is applied, creates the token Secret from
stdin (never from a file), applies with server-side apply, waits for the rollout, forwards a
port on 127.0.0.1 to the server, and runs training as an Indexed Job.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from nbdock import cache, console, contract, image, jupyter, k8s, training
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.settings import Settings
from nbdock.workload import PublishedPort, Workload

MANIFESTS = "k8s"
REQUEST_TIMEOUT = "10s"
OUTPUT_IN_POD = "/tmp/nbdock-output"


class Kubectl:
    """kubectl with K8S_CONTEXT and K8S_NAMESPACE (empty: kubectl's current ones).

    Raises NbdockError when kubectl is not installed.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        binary = shutil.which("kubectl")
        if binary is None:
            raise NbdockError(
                "kubectl is not installed (nbdock hands Kubernetes work to it); install it "
                "(https://kubernetes.io/docs/tasks/tools/) and point it at your cluster"
            )
        self.command = [binary]
        if settings.k8s_context:
            self.command += ["--context", settings.k8s_context]
        if settings.k8s_namespace:
            self.command += ["--namespace", settings.k8s_namespace]

    @functools.cached_property
    def context(self) -> str:
        """K8S_CONTEXT, else kubectl's current context (from the kubeconfig: no cluster asked)."""
        if self.settings.k8s_context:
            return self.settings.k8s_context
        current = subprocess.run([*self.command, "config", "current-context"], capture_output=True, text=True)
        return current.stdout.strip() or "(none set)"

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl; raises NbdockError quoting kubectl's last line when it fails and `check`."""
        completed = subprocess.run([*self.command, *args], input=stdin, capture_output=True, text=True)
        if check and completed.returncode != 0:
            reason = (completed.stderr.strip().splitlines() or ["no reason given"])[-1]
            raise NbdockError(f"kubectl {args[0]} failed in the context {self.context}: {reason}")
        return completed

    def check(self) -> None:
        """Raise NbdockError when the context does not answer, before anything is applied."""
        answered = self.run("get", "--raw", "/version", f"--request-timeout={REQUEST_TIMEOUT}", check=False)
        if answered.returncode != 0:
            reason = (answered.stderr.strip().splitlines() or ["no answer"])[-1]
            raise NbdockError(
                f"the Kubernetes context {self.context} does not answer ({reason}); check "
                f"`kubectl config current-context`, or set K8S_CONTEXT in {self.settings.env_file}"
            )

    def apply(self, objects: list[dict[str, Any]]) -> None:
        """Server-side apply, from stdin, as the field manager nbdock."""
        self.run("apply", "--server-side", "--field-manager=nbdock", "--force-conflicts", "-f", "-",
                 stdin=k8s.to_yaml(objects))

    def delete(self, selector: str, kinds: str) -> str:
        return self.run("delete", kinds, "-l", selector, "--ignore-not-found", "--wait=true").stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json").stdout)


def selector(settings: Settings, component: str) -> str:
    labels = k8s.labels(settings.project_name, component)
    chosen = (contract.K8S_INSTANCE, contract.K8S_MANAGED_BY, contract.K8S_COMPONENT)
    return ",".join(f"{key}={labels[key]}" for key in chosen)


def token(settings: Settings) -> str:
    return jupyter.kept_token(settings.jupyter_token, f"k8s-{settings.checkout_id}")


def server_objects(project: Project) -> list[dict[str, Any]]:
    """Push the serving image, then the server's objects naming it by digest: as Kubernetes
    runs it, the image's own user, the token from a Secret file."""
    settings = project.settings
    workload = Workload(
        name=k8s.object_name(settings.project_name), image=image.push(project),
        command=tuple(jupyter.server_command(settings.container_port)),
        environment=jupyter.token_environment(), secrets={jupyter.TOKEN_SECRET: token(settings)},
        ports=(PublishedPort(settings.container_port, None),), resources=settings.resources,
    )
    return k8s.server_objects(workload, settings.project_name)


def training_objects(project: Project, run: training.Training) -> list[dict[str, Any]]:
    """Push the execution image, then the headless Service and Indexed Job that train `run`."""
    settings = project.settings
    hosts = k8s.worker_hosts(settings.project_name, run.workers, run.port)
    workload = Workload(
        name=k8s.object_name(settings.project_name, "train"), image=image.push(project, execute=True),
        command=run.command(hosts, OUTPUT_IN_POD), environment={"NBDOCK_OUTPUT": OUTPUT_IN_POD},
        resources=settings.resources, health_check=False,
    )
    return k8s.training_objects(workload, settings.project_name, run.workers, run.port)


def manifests(
    project: Project, validate: bool = False, run: training.Training | None = None, server: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Write k8s/server.yaml (unless not `server`) and with `run` k8s/train.yaml, for review and
    commit; the objects by file name. The images are pushed first, since Kubernetes pulls them by
    digest. With `validate`, every object is checked against the Kubernetes schemas offline too.
    Raises NbdockError for no REGISTRY, or a problem the checks find (all listed above it)."""
    sets = {"server.yaml": server_objects(project)} if server else {}
    if run is not None:
        sets["train.yaml"] = training_objects(project, run)
    for name, objects in sets.items():
        problems = k8s.validate(objects) if validate else k8s.check(objects)
        if problems:
            console.detail(problems)
            raise NbdockError(
                f"{MANIFESTS}/{name} would not work on Kubernetes ({len(problems)} problem(s) listed "
                f"above; the first: {problems[0]})"
            )
    settings = project.settings
    name_used = k8s.object_name(settings.project_name)
    if name_used != f"nbdock-{settings.project_name}":
        console.info(f"Objects are named {name_used}: PROJECT_NAME {settings.project_name} as a DNS label.")
    folder = settings.project_dir / MANIFESTS
    for name, objects in sets.items():
        console.info(f"Wrote {k8s.write(objects, folder / name)}")
    return sets


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class KubernetesServer:
    """This project's notebook server on the cluster kubectl points at."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.settings = project.settings
        self.name = k8s.object_name(self.settings.project_name)
        self.forward_key = f"forward-{self.settings.checkout_id}"

    def up(self) -> str:
        """Check the cluster answers, write and apply the objects (the token Secret from stdin),
        wait for the rollout and forward a port on 127.0.0.1; the URL. Nothing is left
        half-applied: a Secret made here is deleted again when the rest cannot be applied."""
        kubectl = Kubectl(self.settings)
        kubectl.check()
        objects = manifests(self.project)["server.yaml"]
        secret = k8s.token_secret(self.settings.project_name, token(self.settings))
        existed = kubectl.run("get", "secret", secret["metadata"]["name"], check=False).returncode == 0
        kubectl.apply([secret])
        try:
            kubectl.apply(objects)
        except NbdockError:
            if not existed:
                kubectl.run("delete", "secret", secret["metadata"]["name"], "--ignore-not-found", check=False)
            raise
        kubectl.run("rollout", "status", f"deployment/{self.name}", f"--timeout={self.settings.ready_timeout:g}s")
        return self.url(kubectl)

    def _forwarded_port(self) -> int | None:
        record = cache.read("forwards", self.forward_key)
        if not record:
            return None
        pid, port = (int(part) for part in record.split(":"))
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return port if jupyter.answers(jupyter.base_url("127.0.0.1", port)) else None

    def url(self, kubectl: Kubectl | None = None) -> str:
        """The URL through `kubectl port-forward` on 127.0.0.1, started in the background if needed.

        Raises NbdockError when the forward does not answer."""
        port = self._forwarded_port()
        if port is None:
            if kubectl is None:
                kubectl = Kubectl(self.settings)
                kubectl.check()
            port = self.settings.host_port or _free_port()
            forward = subprocess.Popen(
                [*kubectl.command, "port-forward", f"service/{self.name}",
                 f"{port}:{self.settings.container_port}", "--address", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            cache.write("forwards", self.forward_key, f"{forward.pid}:{port}")
            deadline = time.monotonic() + self.settings.ready_timeout
            while not jupyter.answers(jupyter.base_url("127.0.0.1", port)):
                if forward.poll() is not None or time.monotonic() > deadline:
                    raise NbdockError(
                        f"kubectl port-forward to service/{self.name} did not answer on 127.0.0.1:{port}; "
                        "is the server running (`invoke k8s.status`)?"
                    )
                time.sleep(0.2)
        return jupyter.lab_url("127.0.0.1", port, token(self.settings))

    def down(self, volumes: bool = False) -> str:
        """Stop the port forward and delete the server's objects (the notebooks claim only with
        `volumes`, so that nothing saved is lost); kubectl's account of what it deleted."""
        record = cache.read("forwards", self.forward_key)
        if record:
            with contextlib.suppress(OSError):
                os.kill(int(record.split(":")[0]), signal.SIGTERM)
            cache.forget("forwards", self.forward_key)
        kinds = "deployment,service,secret" + (",persistentvolumeclaim" if volumes else "")
        deleted = Kubectl(self.settings).delete(selector(self.settings, "server"), kinds)
        cache.forget("tokens", f"k8s-{self.settings.checkout_id}")
        return deleted

    def status(self) -> str:
        kinds = "deployment,pod,service,persistentvolumeclaim"
        return Kubectl(self.settings).run("get", kinds, "-l", selector(self.settings, "server"), "-o", "wide").stdout


def train(project: Project, run: training.Training) -> tuple[list[training.WorkerOutcome], Path]:
    """Write k8s/train.yaml, then (when kubectl answers) apply it, follow the workers' logs until
    the Job completes, fails or runs out of time, collect each worker's log and delete the Job
    and its Service. Raises NbdockError, after the manifests are written, when there is no cluster."""
    settings = project.settings
    image.require_tensorflow(project, image.build(project, execute=True))
    objects = manifests(project, run=run, server=False)["train.yaml"]
    kubectl = Kubectl(settings)
    kubectl.check()
    chosen = selector(settings, "train")
    job = k8s.object_name(settings.project_name, "train")
    kubectl.delete(chosen, "job,service")  # a previous run's Job cannot be applied over
    folder = training.run_folder(project, run)
    started = time.monotonic()
    follow = subprocess.Popen([*kubectl.command, "logs", "-f", "-l", chosen, "--prefix",
                               f"--max-log-requests={run.workers}", "--tail=-1"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        kubectl.apply(objects)
        threading.Thread(target=_show, args=(follow,), daemon=True).start()
        status: dict[str, Any] = {}
        while time.monotonic() - started < run.timeout:
            status = kubectl.json("job", job).get("status", {})
            if status.get("succeeded", 0) >= run.workers or status.get("failed", 0) > 0:
                break
            time.sleep(1)
        outcomes = _pod_outcomes(kubectl, chosen, run, folder, time.monotonic() - started)
    finally:
        follow.terminate()
        kubectl.delete(chosen, "job,service")
    return outcomes, folder


def _show(follow: subprocess.Popen[str]) -> None:
    assert follow.stdout is not None
    for line in follow.stdout:
        console.info(line.rstrip("\n"))


def _pod_outcomes(kubectl: Kubectl, chosen: str, run: training.Training, folder: Path,
                  seconds: float) -> list[training.WorkerOutcome]:
    pods = {int(pod["metadata"]["annotations"].get("batch.kubernetes.io/job-completion-index", -1)): pod
            for pod in kubectl.json("pods", "-l", chosen).get("items", [])}
    hosts = k8s.worker_hosts(kubectl.settings.project_name, run.workers, run.port)
    outcomes = []
    for index in range(run.workers):
        pod = pods.get(index)
        log = kubectl.run("logs", pod["metadata"]["name"], check=False).stdout.splitlines() if pod else []
        (folder / f"worker-{index}.log").write_text("\n".join(log) + "\n", encoding="utf-8")
        phase = (pod or {}).get("status", {}).get("phase", "Pending")
        status: training.Status = "ok" if phase == "Succeeded" else "failed" if phase == "Failed" else "timed out"
        outcomes.append(training.WorkerOutcome(index, hosts[index], status, seconds, log, log[-25:]))
    return outcomes
