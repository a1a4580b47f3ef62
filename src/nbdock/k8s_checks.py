"""Checks of Kubernetes objects before they are written or applied.

`check` finds what a schema cannot see (a selector that matches nothing, a port no container
declares, names that are not DNS labels) and `validate` adds kubernetes-validate's strict
schemas, offline, for chosen versions.
"""

from __future__ import annotations

import re
from typing import Any

from nbdock.errors import NbdockError
from nbdock.k8s import LABEL_VALUE

_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?[0-9]+)?$")
_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")

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
        if not _is_label(value, LABEL_VALUE):
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


