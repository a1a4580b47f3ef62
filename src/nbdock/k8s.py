"""Kubernetes manifests from a `Workload`: the notebook server and an Indexed Job of training workers.

The objects mirror what `engine.container_options` and `engine.service_options` ask of Docker: the
workload's command is the container's args (the image's ENTRYPOINT stays), its user and groups run
the pod, its resources are the container's limits and its secrets are files under SECRETS_DIR.
`check` finds what a schema cannot see (a selector that matches nothing, a port no container
declares) and `validate` adds kubernetes-validate's strict schemas, offline, for chosen versions.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from nbdock import contract, jupyter
from nbdock.errors import NbdockError
from nbdock.workload import Resources, Workload

# An Indexed Job's pods are named <job>-<index> with index < 100000, and that must be a DNS label too.
_NAME_LIMIT = 63 - len("-99999")
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?[0-9]+)?$")
# Kubernetes expands $(NAME) in env values, command and args, and turns $$ into $.
_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")
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
    if len(text) <= 63 and _LABEL_VALUE.match(text):
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


# -- checks ------------------------------------------------------------------------------------


def _name(obj: dict[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("name")


def _ref(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{_name(obj)}"


def _template(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") not in ("Deployment", "Job"):
        return None
    template: dict[str, Any] = (obj.get("spec") or {}).get("template") or {}
    return template


def _pod_labels(template: dict[str, Any]) -> dict[str, str]:
    return dict((template.get("metadata") or {}).get("labels") or {})


def _shown(selector: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in selector.items())


def _selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    return bool(selector) and all(pod_labels.get(key) == value for key, value in selector.items())


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def _is_label(name: object, pattern: re.Pattern[str]) -> bool:
    return isinstance(name, str) and len(name) <= 63 and bool(pattern.match(name))


def _metadata_problems(obj: dict[str, Any]) -> list[str]:
    ref = _ref(obj)
    name = _name(obj)
    problems = []
    if obj.get("kind") == "Service" and not _is_label(name, _DNS_1035_LABEL):
        problems.append(f"{ref}: the name {name!r} is not a DNS-1035 label (at most 63 of a-z, 0-9 and '-', "
                        "starting with a letter and ending with a letter or digit); rename it")
    elif not _is_label(name, _DNS_1123_LABEL):
        problems.append(f"{ref}: the name {name!r} is not a DNS label (at most 63 of a-z, 0-9 and '-', "
                        "starting and ending with a letter or digit); rename it")
    template = _template(obj)
    all_labels = {**((obj.get("metadata") or {}).get("labels") or {}),
                  **(_pod_labels(template) if template is not None else {})}
    for key, value in all_labels.items():
        if not _is_label(value, _LABEL_VALUE):
            problems.append(f"{ref}: the label {key}={value!r} has an invalid value (at most 63 letters, "
                            "digits, '-', '_' and '.', starting and ending with a letter or digit); "
                            "change it")
    return problems


def _quantities(obj: dict[str, Any]) -> list[tuple[str, object]]:
    """Every resource quantity in `obj`, with where it is."""
    spec = obj.get("spec") or {}
    found: list[tuple[str, object]] = []
    if obj.get("kind") == "PersistentVolumeClaim":
        found += [(f"the {key} request", value)
                  for key, value in ((spec.get("resources") or {}).get("requests") or {}).items()]
    pod = (_template(obj) or {}).get("spec") or {}
    for container in _containers(pod):
        for kind in ("limits", "requests"):
            found += [(f"the container {container.get('name')}'s {key} {kind[:-1]}", value)
                      for key, value in ((container.get("resources") or {}).get(kind) or {}).items()]
    for volume in pod.get("volumes") or []:
        if "sizeLimit" in (volume.get("emptyDir") or {}):
            found.append((f"the volume {volume.get('name')}'s sizeLimit", volume["emptyDir"]["sizeLimit"]))
    return found


def _quantity_problems(obj: dict[str, Any]) -> list[str]:
    return [
        f"{_ref(obj)}: {where} {value!r} is not a Kubernetes quantity such as 1Gi, 512Mi or 1500m; correct it"
        for where, value in _quantities(obj)
        if not _QUANTITY.match(str(value))
    ]


def _controller_problems(obj: dict[str, Any], template: dict[str, Any],
                         services: list[dict[str, Any]]) -> list[str]:
    """The Deployment's or Job's own fields: its selector, and a Job's workers and their names."""
    ref = _ref(obj)
    spec = obj.get("spec") or {}
    pod_labels = _pod_labels(template)
    problems = []
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if obj.get("kind") == "Job" and spec.get("selector") and not spec.get("manualSelector"):
        problems.append(f"{ref}: spec.selector is set without spec.manualSelector: true, which Kubernetes "
                        "rejects; remove the selector and let Kubernetes make one")
    elif spec.get("selector") and not _selects(selector, pod_labels):
        problems.append(f"{ref}: spec.selector.matchLabels {_shown(selector)} does not match the pod "
                        f"template's labels {_shown(pod_labels)}, so it manages no pods; make the two equal")
    if obj.get("kind") != "Job":
        return problems
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    if completions != parallelism:
        problems.append(f"{ref}: completions ({completions}) differs from parallelism ({parallelism}), so "
                        "not all workers run at once; set both to the number of workers")
    indexed = spec.get("completionMode") == "Indexed"
    subdomain = (template.get("spec") or {}).get("subdomain")
    if indexed or subdomain is not None:
        headless = {_name(s): s for s in services
                    if (s.get("spec") or {}).get("clusterIP") == "None"}
        if subdomain not in headless:
            problems.append(f"{ref}: the pods' subdomain {subdomain!r} is not the name of a headless Service "
                            "(clusterIP: None) among these objects, so their host names do not resolve; "
                            "set it to that Service's name")
        elif not _selects((headless[subdomain].get("spec") or {}).get("selector") or {}, pod_labels):
            problems.append(f"{ref}: the headless Service {subdomain} named as the pods' subdomain does not "
                            "select them, so their host names do not resolve; give it the pods' labels as "
                            "its selector")
    if indexed and isinstance(completions, int) and completions > 0:
        host = f"{_name(obj)}-{completions - 1}"
        if not _is_label(host, _DNS_1123_LABEL):
            problems.append(f"{ref}: the last worker's host name {host!r} is not a DNS label of at most 63 "
                            "characters; shorten the Job's name")
    return problems


def _pod_problems(obj: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    """The pod's own consistency: its user, its volume mounts and the order of its variables."""
    ref = _ref(obj)
    problems = []
    security = pod.get("securityContext") or {}
    if security.get("runAsNonRoot") and security.get("runAsUser") == 0:
        problems.append(f"{ref}: the pods must not run as root but runAsUser is 0, so they never start; "
                        "run them as another user")
    declared = {volume.get("name") for volume in pod.get("volumes") or []}
    for container in _containers(pod):
        where = f"{ref}: the container {container.get('name')}"
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in declared:
                problems.append(f"{where} mounts the volume {mount.get('name')!r}, which the pod does not "
                                "declare; add it to the pod's volumes or remove the mount")
        defined: set[str] = set()
        for variable in container.get("env") or []:
            for reference in _REFERENCE.finditer(str(variable.get("value", ""))):
                used = reference.group(2)
                if used and used not in defined:
                    problems.append(f"{where} sets {variable.get('name')} from $({used}), which is not "
                                    "defined earlier in its env, so Kubernetes leaves it unexpanded; "
                                    f"define {used} before {variable.get('name')}")
            defined.add(variable.get("name"))
    return problems


def _service_problems(service: dict[str, Any], templates: list[dict[str, Any]]) -> list[str]:
    """A Service's selector must reach pods among the objects, and its ports must be theirs."""
    ref = _ref(service)
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector:
        return []
    selected = [template for template in templates if _selects(selector, _pod_labels(template))]
    if not selected:
        return [f"{ref}: its selector {_shown(selector)} matches no pod template among these objects; "
                "make it equal to the labels of the pods it should reach"]
    declared: set[object] = set()
    for template in selected:
        for container in (template.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                declared |= {port.get("name"), port.get("containerPort")} - {None}
    problems = []
    for port in spec.get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        if target not in declared:
            problems.append(f"{ref}: the port {port.get('name') or port.get('port')} targets {target!r}, "
                            "which no container of the pods it selects declares as a containerPort; "
                            "declare that port or target one that is")
    return problems


def check(objects: list[dict[str, Any]]) -> list[str]:
    """nbdock's own checks of manifests, for what a schema cannot see; one sentence per problem.

    Names and label values; quantities; a Deployment's or Job's selector against its pod labels;
    a Job's completions against its parallelism, its pods' subdomain against the headless Services
    and its last pod's host name; pods running as non-root user 0; volume mounts of undeclared
    volumes; env values referring to variables not defined before them; Services whose selector
    matches no pod template or whose target port no selected container declares. [] when all is well.
    """
    templates = [template for obj in objects if (template := _template(obj)) is not None]
    services = [obj for obj in objects if obj.get("kind") == "Service"]
    problems: list[str] = []
    for obj in objects:
        problems += _metadata_problems(obj) + _quantity_problems(obj)
        template = _template(obj)
        if template is not None:
            problems += _controller_problems(obj, template, services)
            problems += _pod_problems(obj, template.get("spec") or {})
        if obj.get("kind") == "Service":
            problems += _service_problems(obj, templates)
    return problems


# -- schemas and files -------------------------------------------------------------------------


def bundled_versions() -> list[str]:
    """The Kubernetes versions ("1.25", ...) whose schemas kubernetes-validate has, oldest first."""
    from kubernetes_validate import utils

    return list(dict.fromkeys(utils.major_minor(version) for version in utils.all_versions()))


def validate(objects: list[dict[str, Any]], versions: list[str] | None = None) -> list[str]:
    """Problems with `objects` for each of `versions`, [] when there are none.

    Each object is checked against the strict schema (no unknown fields) of each version, offline;
    `versions` are such as "1.30" (default: the oldest and newest bundled). Each problem reads
    "<kind>/<name> for Kubernetes <version>: <reason>"; `check`'s sentences follow. Raises
    NbdockError when a version is not one kubernetes-validate has schemas for.
    """
    import kubernetes_validate
    from kubernetes_validate import utils

    bundled = bundled_versions()
    problems = []
    for version in versions if versions is not None else [bundled[0], bundled[-1]]:
        if utils.major_minor(version.removeprefix("v")) not in bundled:
            raise NbdockError(f"there are no schemas for Kubernetes {version} (kubernetes-validate "
                              f"{kubernetes_validate.__version__} has {bundled[0]} to {bundled[-1]}); "
                              "choose one of those or upgrade kubernetes-validate")
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = ".".join(str(part) for part in error.path)
                problems.append(f"{_ref(obj)} for Kubernetes {version}: {where + ': ' if where else ''}"
                                f"{error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{_ref(obj)} for Kubernetes {version}: there is no kind {obj.get('kind')} "
                                f"in {obj.get('apiVersion')}")
    return problems + check(objects)


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
