"""Kubernetes through the user's own kubectl: their kubeconfig, context and auth plugins.

`k8s.py` builds the objects; this module writes them to k8s/ for review (checked first),
checks the cluster answers before anything is applied, applies from stdin with server-side
apply, deletes by selector, reads pods and logs, and forwards a port on 127.0.0.1. What runs
there is in server/kubernetes.py and training/kubernetes.py.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from nbdock import console, contract, image, k8s, training
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.settings import Settings
from nbdock.workload import Workload

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

    def delete(self, selector: str, kinds: str) -> list[str]:
        """Delete the objects of `kinds` (comma-separated) that `selector` matches, and wait until
        they are gone; what was deleted, as kind/name."""
        deleted = self.run("delete", kinds, "-l", selector, "--ignore-not-found", "--wait=true", "-o", "name")
        return deleted.stdout.split()

    def json(self, *args: str) -> Any:
        """`kubectl get ARGS -o json`, parsed. Raises NbdockError when kubectl fails or answers
        with something that is not JSON."""
        text = self.run("get", *args, "-o", "json").stdout
        try:
            return json.loads(text)
        except ValueError:
            raise NbdockError(f"kubectl get {' '.join(args)} answered with something that is not JSON "
                              f"in the context {self.context}; is kubectl a real kubectl?") from None

    def pods(self, selector: str) -> list[dict[str, Any]]:
        """The pods `selector` matches, as Kubernetes describes them."""
        return list(self.json("pods", "-l", selector).get("items", []))

    def logs(self, target: str, follow: bool = False) -> Iterator[str]:
        """The log of `target` (`pod/NAME`, `deployment/NAME`) as text pieces; with `follow`, as it
        is written until the container ends. Nothing when kubectl cannot read it (yet)."""
        with subprocess.Popen([*self.command, "logs", target, *(["-f"] if follow else [])], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as reading:
            assert reading.stdout is not None
            try:
                yield from reading.stdout
            finally:
                reading.terminate()

    def suspend(self, job: str) -> None:
        """Suspend the Job `job`: Kubernetes stops its running pods and keeps those that ended."""
        self.run("patch", "job", job, "--type=merge", "-p", '{"spec":{"suspend":true}}', check=False)

    def port_forward(self, target: str, port: int, container_port: int) -> subprocess.Popen[bytes]:
        """`kubectl port-forward` from 127.0.0.1:`port` to `target`, in the background (its own
        session, so that it outlives this process)."""
        return subprocess.Popen(
            [*self.command, "port-forward", target, f"{port}:{container_port}", "--address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )


class KubectlLike(Protocol):
    """What nbdock asks of kubectl; `Kubectl` is the real one, the unit tests have a fake."""

    settings: Settings

    def check(self) -> None: ...

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]: ...

    def apply(self, objects: list[dict[str, Any]]) -> None: ...

    def delete(self, selector: str, kinds: str) -> list[str]: ...

    def pods(self, selector: str) -> list[dict[str, Any]]: ...

    def logs(self, target: str, follow: bool = False) -> Iterator[str]: ...

    def suspend(self, job: str) -> None: ...

    def port_forward(self, target: str, port: int, container_port: int) -> subprocess.Popen[bytes]: ...


def selector(settings: Settings, component: str) -> str:
    labels = k8s.labels(settings.project_name, component)
    chosen = (contract.K8S_INSTANCE, contract.K8S_MANAGED_BY, contract.K8S_COMPONENT)
    return ",".join(f"{key}={labels[key]}" for key in chosen)


def write_manifests(settings: Settings, sets: dict[str, list[dict[str, Any]]], validate: bool = False) -> None:
    """Write each set of objects to k8s/<name> for review and commit, after checking them (with
    `validate` against the Kubernetes schemas offline too). Raises NbdockError for a problem the
    checks find (all listed above it), before anything is written."""
    for name, objects in sets.items():
        problems = k8s.validate(objects) if validate else k8s.check(objects)
        if problems:
            console.detail(problems)
            raise NbdockError(
                f"{MANIFESTS}/{name} would not work on Kubernetes ({len(problems)} problem(s) listed "
                f"above; the first: {problems[0]})"
            )
    name_used = k8s.object_name(settings.project_name)
    if name_used != f"nbdock-{settings.project_name}":
        console.info(f"Objects are named {name_used}: PROJECT_NAME {settings.project_name} as a DNS label.")
    folder = settings.project_dir / MANIFESTS
    for name, objects in sets.items():
        console.info(f"Wrote {k8s.write(objects, folder / name)}")


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


def train(project: Project, run: training.Training) -> tuple[list[training.WorkerOutcome], Path]:
    """Write k8s/train.yaml, then (when kubectl answers) apply it, follow the workers' logs until
    the Job completes, fails or runs out of time, collect each worker's log and delete the Job
    and its Service. Raises NbdockError, after the manifests are written, when there is no cluster."""
    settings = project.settings
    image.require_tensorflow(project, image.build(project, execute=True))
    objects = training_objects(project, run)
    write_manifests(settings, {"train.yaml": objects})
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
