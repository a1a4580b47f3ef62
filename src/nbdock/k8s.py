"""Kubernetes manifests from a `Workload`: the notebook server and an Indexed Job of training workers.

The objects mirror what `engine.container_options` and `engine.service_options` ask of Docker: the
workload's command is the container's args (the image's ENTRYPOINT stays), its user and groups run
the pod, its resources are the container's limits and its secrets are files under SECRETS_DIR.
Objects are written as YAML here; k8s_checks.py checks them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from nbdock import contract, jupyter
from nbdock.workload import Resources, Workload

# An Indexed Job's pods are named <job>-<index> with index < 100000, and that must be a DNS label too.
_NAME_LIMIT = 63 - len("-99999")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
# Kubernetes expands $(NAME) in env values, command and args, and turns $$ into $.
_BINARY_UNITS = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
GPU_RESOURCE = "nvidia.com/gpu"
COMPLETION_INDEX = "JOB_COMPLETION_INDEX"
_COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
_SEED = "/seed"
_SHM = "/dev/shm"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def object_name(project_name: str, suffix: str = "") -> str:
    """The name of one of the project's objects: `nbdock-<project>[-<suffix>]`, a DNS-1035 label
    (see `contract.dns_label`) of at most 57 characters, so that an Indexed Job's pod host names
    `<name>-<index>` stay DNS labels too. `suffix` must itself be a-z, 0-9 and '-'.
    """
    return contract.dns_label(f"nbdock-{project_name}", suffix, _NAME_LIMIT)


def _label_value(text: str) -> str:
    if len(text) <= 63 and LABEL_VALUE.match(text):
        return text
    digest = _digest(text)
    kept = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[: 63 - len(digest) - 1].strip("-_.")
    return f"{kept}-{digest}" if kept else digest


def labels(project_name: str, component: str) -> dict[str, str]:
    """The recommended `app.kubernetes.io/*` labels of the project's objects of `component`.

    `component` is "server" or "train". The instance is the project name itself when it is a valid
    label value, else a sanitised, shortened form followed by a hash of the name.
    """
    return {
        contract.K8S_NAME: "nbdock",
        contract.K8S_INSTANCE: _label_value(project_name),
        contract.K8S_MANAGED_BY: "nbdock",
        contract.K8S_COMPONENT: component,
    }


def _metadata(name: str, project_name: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": labels(project_name, component)}


def _literal(text: str) -> str:
    """`text` escaped so that Kubernetes passes it on as written, as Docker does."""
    return text.replace("$", "$$")


def bytes_quantity(size: int) -> str:
    """A size in bytes as a Kubernetes quantity: "1Gi", "1536Mi", or plain bytes such as "1000"."""
    for suffix, unit in _BINARY_UNITS:
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def cpu_quantity(cpus: float) -> str:
    """Fractional CPUs as a Kubernetes quantity in millicores: 1.5 -> "1500m" (at least "1m")."""
    return f"{max(1, round(cpus * 1000))}m"


def _resources(resources: Resources, with_gpus: bool = True) -> dict[str, Any]:
    requested: dict[str, str] = {}
    if resources.cpus:
        requested["cpu"] = cpu_quantity(resources.cpus)
    if resources.memory:
        requested["memory"] = bytes_quantity(resources.memory)
    limits = dict(requested)
    if resources.gpus and with_gpus:
        limits[GPU_RESOURCE] = "1" if resources.gpus == "all" else str(int(resources.gpus))
    result: dict[str, Any] = {}
    if limits:
        result["limits"] = limits
    if requested:
        result["requests"] = requested
    return result


def _pod_security(workload: Workload) -> dict[str, Any]:
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": workload.uid,
        "runAsGroup": workload.gid,
        "fsGroup": workload.gid,
        "fsGroupChangePolicy": "OnRootMismatch",  # no walk over every saved notebook at each start
    }
    if workload.groups:
        context["supplementalGroups"] = [int(group) for group in workload.groups]
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def _environment(workload: Workload) -> list[dict[str, Any]]:
    return [{"name": name, "value": _literal(value)} for name, value in workload.environment.items()]


def _container(name: str, workload: Workload, env: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": workload.image}
    if workload.command is not None:
        container["args"] = [_literal(argument) for argument in workload.command]
    if env:
        container["env"] = env
    return container


def _shm(resources: Resources) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The /dev/shm volume and its mount when the workload asks for a size, as Docker's shm_size."""
    if not resources.shm_size:
        return [], []
    memory = {"medium": "Memory", "sizeLimit": bytes_quantity(resources.shm_size)}
    return [{"name": "shm", "emptyDir": memory}], [{"name": "shm", "mountPath": _SHM}]


def _pod_basics(workload: Workload) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # the environment is the workload's, as with Docker
        "securityContext": _pod_security(workload),
    }


def server_objects(workload: Workload, project_name: str, storage: str = "1Gi") -> list[dict[str, Any]]:
    """The notebook server: a PersistentVolumeClaim, a Service and a Deployment, in that order.

    `workload` is the server's (jupyter.server_command, jupyter.token_environment, the token in
    `secrets`, one published port); the token's value never enters these objects: the pod reads it
    from the Secret `token_secret` makes. The notebooks live on a claim of `storage` (a quantity
    such as "1Gi"), seeded from the image's notebooks without overwriting saved ones; host folders
    (`workload.mounts`) and host ports have no place on a cluster and are left out. GPUS "all" asks
    for one `nvidia.com/gpu`, as Swarm does, since Kubernetes has no "all". Raises ValueError when
    the workload publishes no port or has a secret other than the token.
    """
    if not workload.ports:
        raise ValueError("the server workload publishes no port")
    if set(workload.secrets) - {jupyter.TOKEN_SECRET}:
        raise ValueError(f"only the {jupyter.TOKEN_SECRET} secret reaches the server's pod")
    name = object_name(project_name)
    claim = object_name(project_name, "notebooks")
    port = workload.ports[0].container_port
    shm_volumes, shm_mounts = _shm(workload.resources)

    # --update=none skips existing files quietly; older cp lacks it and its -n does the same.
    seed_script = (f"cp -R --update=none {contract.NOTEBOOKS}/. {_SEED}/ 2>/dev/null"
                   f" || cp -Rn {contract.NOTEBOOKS}/. {_SEED}/")
    seed = {
        "name": "seed",
        "image": workload.image,
        "command": ["sh", "-c", seed_script],
        "volumeMounts": [{"name": "notebooks", "mountPath": _SEED}],
        "securityContext": _container_security(),
    }
    if resources := _resources(workload.resources, with_gpus=False):
        seed["resources"] = resources

    server = _container("server", workload, _environment(workload))
    server["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    if workload.health_check:
        server["readinessProbe"] = {"httpGet": {"path": "/api", "port": "http"}, "periodSeconds": 5}
        server["livenessProbe"] = {
            "httpGet": {"path": "/api", "port": "http"},
            "initialDelaySeconds": 30, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 6,
        }
    server["volumeMounts"] = [
        {"name": "notebooks", "mountPath": contract.NOTEBOOKS},
        {"name": "token", "mountPath": contract.SECRETS_DIR, "readOnly": True},
        *shm_mounts,
    ]
    if resources := _resources(workload.resources):
        server["resources"] = resources
    server["securityContext"] = _container_security()

    pod = {
        **_pod_basics(workload),
        "initContainers": [seed],
        "containers": [server],
        "volumes": [
            {"name": "notebooks", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "token", "secret": {
                "secretName": object_name(project_name, "token"),
                "items": [{"key": jupyter.TOKEN_SECRET, "path": jupyter.TOKEN_SECRET}],
                "defaultMode": 0o440,  # fsGroup owns the files: the server reads them through its group
            }},
            *shm_volumes,
        ],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _metadata(claim, project_name, "server"),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(name, project_name, "server"),
            "spec": {
                "type": "ClusterIP",
                "selector": labels(project_name, "server"),
                "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(name, project_name, "server"),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # two servers on one claim would overwrite each other
                "selector": {"matchLabels": labels(project_name, "server")},
                "template": {"metadata": {"labels": labels(project_name, "server")}, "spec": pod},
            },
        },
    ]


def token_secret(project_name: str, token: str) -> dict[str, Any]:
    """The Secret the server's pod reads its Jupyter token from, as the file `jupyter_token`.

    It holds the token itself, so it is made when the server is applied and never written to a file.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(object_name(project_name, "token"), project_name, "server"),
        "type": "Opaque",
        "stringData": {jupyter.TOKEN_SECRET: token},
    }


def worker_hosts(project_name: str, workers: int, port: int) -> list[str]:
    """The training workers' addresses: pod <job>-<i>, behind the headless Service, on `port`."""
    name = object_name(project_name, "train")
    return [f"{name}-{index}.{name}:{port}" for index in range(workers)]


def tf_config(project_name: str, workers: int, port: int) -> str:
    """Compact TF_CONFIG for worker $(JOB_COMPLETION_INDEX) of `workers` (see `worker_hosts`).

    Kubernetes puts the worker's index in place of the reference when the pod starts.
    """
    hosts = json.dumps(worker_hosts(project_name, workers, port), separators=(",", ":"))
    return f'{{"cluster":{{"worker":{hosts}}},"task":{{"type":"worker","index":$({COMPLETION_INDEX})}}}}'


def training_objects(workload: Workload, project_name: str, workers: int, port: int) -> list[dict[str, Any]]:
    """`workers` training workers: a headless Service and an Indexed Job, in that order.

    Each worker `i` is the pod `<job>-<i>`, reachable as `<job>-<i>.<service>` on `port`, and learns
    its place from TF_CONFIG, which is added after the workload's environment (that must not have
    it). All workers run at once and none is retried: one failure fails the training. Resources and
    GPUs as in `server_objects`. Raises ValueError when `workers` < 1 or the workload has secrets.
    """
    if workers < 1:
        raise ValueError(f"a training needs at least one worker, not {workers}")
    if workload.secrets:
        raise ValueError("secrets do not reach training pods")
    name = object_name(project_name, "train")
    shm_volumes, shm_mounts = _shm(workload.resources)
    env = [
        {"name": COMPLETION_INDEX, "valueFrom": {"fieldRef": {"fieldPath": _COMPLETION_INDEX_FIELD}}},
        *_environment(workload),
        {"name": "TF_CONFIG", "value": tf_config(project_name, workers, port)},
    ]
    worker = _container("worker", workload, env)
    worker["ports"] = [{"name": "tf", "containerPort": port, "protocol": "TCP"}]
    if shm_mounts:
        worker["volumeMounts"] = shm_mounts
    if resources := _resources(workload.resources):
        worker["resources"] = resources
    worker["securityContext"] = _container_security()
    pod = {"restartPolicy": "Never", "subdomain": name, **_pod_basics(workload), "containers": [worker]}
    if shm_volumes:
        pod["volumes"] = shm_volumes
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(name, project_name, "train"),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,  # workers look each other up before they are ready
                "selector": labels(project_name, "train"),
                "ports": [{"name": "tf", "port": port, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _metadata(name, project_name, "train"),
            "spec": {
                "completionMode": "Indexed",
                "completions": workers,
                "parallelism": workers,
                "backoffLimit": 0,
                "template": {"metadata": {"labels": labels(project_name, "train")}, "spec": pod},
            },
        },
    ]


class _Dumper(yaml.SafeDumper):
    """Writes a value that occurs twice out twice, never as an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """`objects` as one YAML document each, keys in the order they were built: same objects, same text."""
    return str(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, explicit_start=True,
                             allow_unicode=True, width=float("inf")))


def write(objects: list[dict[str, Any]], path: Path) -> Path:
    """Write `to_yaml(objects)` to `path`, making its folder if need be; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(objects), encoding="utf-8")
    return path
