"""Kubernetes through the user's own kubectl: their kubeconfig, context and auth plugins.

`k8s.py` builds the objects; this module writes them to k8s/ for review (checked first),
checks the cluster answers before anything is applied, applies from stdin with server-side
apply, deletes by selector, reads pods and logs, and forwards a port on 127.0.0.1. What runs
there is in server/k8s.py and training/k8s.py.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any, Protocol

from nbdock import console, contract, k8s, k8s_checks
from nbdock.errors import NbdockError
from nbdock.settings import Settings

MANIFESTS = "k8s"
REQUEST_TIMEOUT = "10s"


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

    @property
    def context(self) -> str: ...

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
        problems = k8s_checks.validate(objects) if validate else k8s_checks.check(objects)
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
