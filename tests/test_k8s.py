"""Kubernetes manifests: strict schemas of the oldest and newest bundled versions, nbdock's own checks."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nbdock import contract, engine, jupyter, k8s, k8s_checks
from nbdock.errors import NbdockError
from nbdock.workload import Mount, PublishedPort, Resources, Workload

PROJECT = "my_project.v2"
TOKEN = "0123456789abcdef-the-token-itself"
IMAGE = f"registry:5000/nbdock-{PROJECT}@sha256:{'0' * 64}"
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
RESOURCES = Resources(cpus=1.5, memory=2 * 2**30, shm_size=2**30, gpus="2")

Objects = list[dict[str, Any]]


def server_workload(resources: Resources = RESOURCES) -> Workload:
    return Workload(
        name=f"nbdock-{PROJECT}",
        image=IMAGE,
        command=tuple(jupyter.server_command(8888)),
        user="1000:1000",
        groups=("100", "1001"),
        environment={"NB_USER": "ann", "NB_GROUPS": "ann:1000 users:100", **jupyter.token_environment()},
        secrets={jupyter.TOKEN_SECRET: TOKEN},
        mounts=(Mount("/home/ann/project/notebooks", contract.NOTEBOOKS),),
        labels={contract.LABEL_PROJECT: PROJECT, contract.LABEL_ROLE: "server"},
        ports=(PublishedPort(8888, None),),
        resources=resources,
    )


def training_workload() -> Workload:
    return Workload(
        name=f"nbdock-{PROJECT}-train",
        image=IMAGE,
        command=("python", "train.py", "--epochs", "3"),
        user="1000:1000",
        environment={"NB_USER": "ann", "EPOCHS": "3"},
        resources=Resources(cpus=4, memory=8 * 2**30, shm_size=512 * 2**20, gpus="all"),
    )


def server() -> Objects:
    return k8s.server_objects(server_workload(), PROJECT)


def training(workers: int = 3) -> Objects:
    return k8s.training_objects(training_workload(), PROJECT, workers, 2222)


def of_kind(objects: Objects, kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def pod_spec(objects: Objects, kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = of_kind(objects, kind)["spec"]["template"]["spec"]
    return spec


# -- schemas -------------------------------------------------------------------------------------


def test_server_objects_pass_the_strict_schemas_and_the_checks() -> None:
    assert [obj["kind"] for obj in server()] == ["PersistentVolumeClaim", "Service", "Deployment"]
    assert k8s_checks.validate(server()) == []


def test_training_objects_pass_the_strict_schemas_and_the_checks() -> None:
    assert [obj["kind"] for obj in training()] == ["Service", "Job"]
    assert k8s_checks.validate(training()) == []
    assert k8s_checks.validate(training(workers=1)) == []


def test_the_token_secret_passes_the_schemas() -> None:
    assert k8s_checks.validate([k8s.token_secret(PROJECT, TOKEN)]) == []


def test_the_default_versions_are_the_oldest_and_newest_bundled() -> None:
    versions = k8s_checks.bundled_versions()
    assert len(versions) >= 2
    assert versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))))
    broken = copy.deepcopy(server())
    broken[2]["spec"]["replica"] = 1
    problems = k8s_checks.validate(broken)
    name = k8s.object_name(PROJECT)
    assert [problem.split(":")[0] for problem in problems] == [
        f"Deployment/{name} for Kubernetes {versions[0]}",
        f"Deployment/{name} for Kubernetes {versions[-1]}",
    ]
    assert all("replica" in problem for problem in problems)


def test_a_version_without_schemas_is_an_error() -> None:
    with pytest.raises(NbdockError, match=r"no schemas for Kubernetes 1\.2 "):
        k8s_checks.validate(server(), ["1.2"])


def test_an_unknown_api_version_is_a_problem() -> None:
    broken = copy.deepcopy(server())
    broken[2]["apiVersion"] = "apps/v1beta1"
    assert f"Deployment/{k8s.object_name(PROJECT)} for Kubernetes 1.30: there is no kind Deployment" in (
        k8s_checks.validate(broken, ["1.30"])[0]
    )


# -- the server ----------------------------------------------------------------------------------


def test_the_token_appears_nowhere_in_the_server_manifests() -> None:
    assert TOKEN not in k8s.to_yaml(server())
    assert TOKEN not in json.dumps(server())
    secret = k8s.token_secret(PROJECT, TOKEN)
    assert secret["metadata"]["name"] == k8s.object_name(PROJECT, "token")
    assert secret["stringData"] == {jupyter.TOKEN_SECRET: TOKEN}


def test_yaml_is_stable_and_reads_back_as_built() -> None:
    text = k8s.to_yaml(server() + training())
    assert text == k8s.to_yaml(server() + training())
    assert list(yaml.safe_load_all(text)) == server() + training()
    assert "&id" not in text and "*id" not in text
    assert text.index("apiVersion") < text.index("kind") < text.index("metadata") < text.index("spec")


def test_write_makes_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "k8s" / "server.yaml"
    assert k8s.write(server(), path) == path
    assert path.read_text(encoding="utf-8") == k8s.to_yaml(server())


def test_the_deployment_runs_one_restricted_server_with_the_workloads_command_as_args() -> None:
    objects = server()
    deployment = of_kind(objects, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == k8s.labels(PROJECT, "server")
    assert spec["template"]["metadata"]["labels"] == k8s.labels(PROJECT, "server")
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
        "fsGroupChangePolicy": "OnRootMismatch", "supplementalGroups": [100, 1001],
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
    }
    assert container["image"] == IMAGE
    assert container["args"] == jupyter.server_command(8888) and "command" not in container
    environment = server_workload().environment
    assert container["env"] == [{"name": key, "value": value} for key, value in environment.items()]
    assert container["ports"] == [{"name": "http", "containerPort": 8888, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/api", "port": "http"}
    assert "namespace" not in deployment["metadata"]


def test_the_notebooks_live_on_a_claim_seeded_without_overwriting() -> None:
    objects = server()
    claim = of_kind(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == k8s.object_name(PROJECT, "notebooks")
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    pod = pod_spec(objects, "Deployment")
    (seed,) = pod["initContainers"]
    assert seed["image"] == IMAGE and seed["command"][:2] == ["sh", "-c"]
    assert f"cp -Rn {contract.NOTEBOOKS}/. /seed/" in seed["command"][2]
    assert seed["volumeMounts"] == [{"name": "notebooks", "mountPath": "/seed"}]
    assert seed["securityContext"] == pod["containers"][0]["securityContext"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["notebooks"]["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    mounts = {mount["mountPath"]: mount for mount in pod["containers"][0]["volumeMounts"]}
    assert mounts[contract.NOTEBOOKS]["name"] == "notebooks"
    assert k8s.server_objects(server_workload(), PROJECT, storage="20Gi")[0]["spec"]["resources"] == {
        "requests": {"storage": "20Gi"}
    }


def test_the_token_is_a_read_only_file_the_servers_group_reads() -> None:
    pod = pod_spec(server(), "Deployment")
    token = next(volume for volume in pod["volumes"] if volume["name"] == "token")
    assert token["secret"]["secretName"] == k8s.object_name(PROJECT, "token")
    assert token["secret"]["defaultMode"] == 0o440
    assert token["secret"]["items"] == [{"key": jupyter.TOKEN_SECRET, "path": jupyter.TOKEN_SECRET}]
    mount = next(mount for mount in pod["containers"][0]["volumeMounts"] if mount["name"] == "token")
    assert mount == {"name": "token", "mountPath": contract.SECRETS_DIR, "readOnly": True}
    token_file = server_workload().environment[jupyter.TOKEN_FILE_VARIABLE]
    assert token_file == contract.secret_path(token["secret"]["items"][0]["path"])


def test_the_service_reaches_the_servers_http_port() -> None:
    objects = server()
    service = of_kind(objects, "Service")
    assert service["metadata"]["name"] == of_kind(objects, "Deployment")["metadata"]["name"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == k8s.labels(PROJECT, "server")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8888, "targetPort": "http", "protocol": "TCP"}
    ]


def test_resources_become_limits_and_shared_memory() -> None:
    pod = pod_spec(server(), "Deployment")
    (container,) = pod["containers"]
    assert container["resources"] == {
        "limits": {"cpu": "1500m", "memory": "2Gi", "nvidia.com/gpu": "2"},
        "requests": {"cpu": "1500m", "memory": "2Gi"},
    }
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}} in pod["volumes"]
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert "nvidia.com/gpu" not in pod["initContainers"][0]["resources"]["limits"]
    plain = pod_spec(k8s.server_objects(server_workload(Resources()), PROJECT), "Deployment")
    assert "resources" not in plain["containers"][0]
    assert all(volume["name"] != "shm" for volume in plain["volumes"])


@pytest.mark.parametrize(
    ("size", "quantity"),
    [(2**30, "1Gi"), (3 * 2**29, "1536Mi"), (512 * 2**20, "512Mi"), (4096, "4Ki"), (1000, "1000"),
     (2**41, "2Ti")],
)
def test_bytes_become_binary_quantities(size: int, quantity: str) -> None:
    assert k8s.bytes_quantity(size) == quantity


@pytest.mark.parametrize(
    ("cpus", "quantity"), [(1.5, "1500m"), (2.0, "2000m"), (0.25, "250m"), (0.0001, "1m")]
)
def test_cpus_become_millicores(cpus: float, quantity: str) -> None:
    assert k8s.cpu_quantity(cpus) == quantity


def test_dollar_signs_reach_the_container_as_written() -> None:
    workload = Workload(name="x", image=IMAGE, command=("sh", "-c", 'echo "$HOME" $$ $(HOME)'),
                        environment={"PASSWORD": "pa$$word$(HOME)"}, secrets={jupyter.TOKEN_SECRET: TOKEN},
                        ports=(PublishedPort(8888, None),))
    (container,) = pod_spec(k8s.server_objects(workload, PROJECT), "Deployment")["containers"]
    assert container["args"] == ["sh", "-c", 'echo "$$HOME" $$$$ $$(HOME)']
    assert container["env"] == [{"name": "PASSWORD", "value": "pa$$$$word$$(HOME)"}]
    assert k8s_checks.check(k8s.server_objects(workload, PROJECT)) == []


def test_only_the_token_secret_reaches_the_server() -> None:
    workload = Workload(name="x", image=IMAGE, secrets={"other": "value"}, ports=(PublishedPort(8888, None),))
    with pytest.raises(ValueError, match="only the jupyter_token secret"):
        k8s.server_objects(workload, PROJECT)


# -- GPUs, the same workload on every engine -----------------------------------------------------


@pytest.mark.parametrize(("gpus", "kubernetes", "docker", "swarm"), [("2", "2", 2, 2), ("all", "1", -1, 1)])
def test_gpus_translate_alike_for_docker_swarm_and_kubernetes(
    gpus: str, kubernetes: str, docker: int, swarm: int
) -> None:
    workload = server_workload(Resources(gpus=gpus))
    (container,) = pod_spec(k8s.server_objects(workload, PROJECT), "Deployment")["containers"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": kubernetes}}
    (request,) = engine.container_options(workload)["device_requests"]
    assert request["Count"] == docker and request["Capabilities"] == [["gpu"]]
    # how secrets reach a Swarm service is no part of this: the same workload without them
    options = engine.service_options(dataclasses.replace(workload, secrets={}), {}, True, [])
    assert options["resources"]["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": swarm}}
    ]
    assert options["args"] == list(workload.command or ())
    assert engine.container_options(workload)["command"] == list(workload.command or ())


# -- training ------------------------------------------------------------------------------------


def test_an_indexed_job_runs_every_worker_once_behind_a_headless_service() -> None:
    objects = training(workers=4)
    service, job = of_kind(objects, "Service"), of_kind(objects, "Job")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == k8s.labels(PROJECT, "train")
    assert job["spec"]["template"]["metadata"]["labels"] == k8s.labels(PROJECT, "train")
    assert service["spec"]["ports"] == [{"name": "tf", "port": 2222, "protocol": "TCP"}]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["subdomain"] == service["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["python", "train.py", "--epochs", "3"] and "command" not in container
    assert container["ports"] == [{"name": "tf", "containerPort": 2222, "protocol": "TCP"}]
    assert container["resources"]["limits"] == {"cpu": "4000m", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}} in pod["volumes"]
    for name in (service["metadata"]["name"], job["metadata"]["name"]):
        assert DNS_1035_LABEL.match(name) and len(name) <= 63


def test_tf_config_follows_the_completion_index_and_lists_every_worker() -> None:
    objects = training(workers=3)
    job = of_kind(objects, "Job")
    service = of_kind(objects, "Service")["metadata"]["name"]
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [variable["name"] for variable in env]
    assert names == ["JOB_COMPLETION_INDEX", "NB_USER", "EPOCHS", "TF_CONFIG"]
    assert env[0]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
    }
    value = env[-1]["value"]
    assert " " not in value
    config = json.loads(value.replace("$(JOB_COMPLETION_INDEX)", "2"))
    hosts = [f"{job['metadata']['name']}-{index}.{service}:2222" for index in range(3)]
    assert config == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 2}}


def test_a_training_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        training(workers=0)


# -- names and labels ----------------------------------------------------------------------------

PROJECT_NAMES = ["My_Project.v2", "my_project.v2", "my-project-v2", "my.project.v2", "2024-analysis",
                 "a", "x" * 100, "x" * 99 + "y", "x" * 99 + "_", "analysis", "my--project", "_", ""]


@pytest.mark.parametrize("project", PROJECT_NAMES)
@pytest.mark.parametrize("suffix", ["", "notebooks", "token", "train"])
def test_object_names_are_dns_labels(project: str, suffix: str) -> None:
    name = k8s.object_name(project, suffix)
    assert DNS_1035_LABEL.match(name), name
    assert len(name) + len("-99999") <= 63, name  # room for an Indexed Job's pod host names
    assert name.startswith("nbdock-") and name.endswith(f"-{suffix}" if suffix else "")
    assert k8s.object_name(project, suffix) == name


def test_object_names_keep_a_clean_project_name_and_stay_distinct() -> None:
    assert k8s.object_name("2024-analysis") == "nbdock-2024-analysis"
    assert k8s.object_name("analysis", "train") == "nbdock-analysis-train"
    assert k8s.object_name("My_Project.v2").startswith("nbdock-my-project-v2-")
    for suffix in ("", "train"):
        names = {k8s.object_name(project, suffix) for project in PROJECT_NAMES}
        assert len(names) == len(PROJECT_NAMES)


@pytest.mark.parametrize("project", PROJECT_NAMES)
def test_labels_are_valid_and_tell_projects_apart(project: str) -> None:
    found = k8s.labels(project, "server")
    assert found == {
        "app.kubernetes.io/name": "nbdock",
        "app.kubernetes.io/instance": found["app.kubernetes.io/instance"],
        "app.kubernetes.io/managed-by": "nbdock",
        "app.kubernetes.io/component": "server",
    }
    for value in found.values():
        assert LABEL_VALUE.match(value) and len(value) <= 63, value
    instances = {k8s.labels(name, "train")["app.kubernetes.io/instance"] for name in PROJECT_NAMES}
    assert len(instances) == len(PROJECT_NAMES)
    assert k8s.labels("2024-analysis", "train")["app.kubernetes.io/instance"] == "2024-analysis"


def test_objects_of_a_long_project_pass() -> None:
    long = "x" * 100
    assert k8s_checks.check(k8s.server_objects(server_workload(), long)) == []
    assert k8s_checks.check(k8s.training_objects(training_workload(), long, 8, 2222)) == []


# -- nbdock's own checks -------------------------------------------------------------------------


def remove_index(objects: Objects) -> None:
    env = objects[1]["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append(env.pop(0))


def mount_undeclared(objects: Objects) -> None:
    mounts = objects[2]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    mounts.append({"name": "cache", "mountPath": "/cache"})


def set_path(*path: Any, value: Any) -> Callable[[Objects], None]:
    def breaks(objects: Objects) -> None:
        target: Any = objects
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return breaks


SERVER, TRAIN = k8s.object_name(PROJECT), k8s.object_name(PROJECT, "train")
POD = ("spec", "template", "spec")
CONTAINER = (*POD, "containers", 0)
BROKEN = {
    "service selects nothing": (
        "server", set_path(1, "spec", "selector", "app.kubernetes.io/component", value="web"),
        f"Service/{SERVER}: its selector", "matches no pod template"),
    "service targets an undeclared port name": (
        "server", set_path(1, "spec", "ports", 0, "targetPort", value="web"),
        f"Service/{SERVER}: the port http targets 'web'", "declares as a containerPort"),
    "service targets an undeclared port number": (
        "server", set_path(1, "spec", "ports", 0, "targetPort", value=8080),
        f"Service/{SERVER}: the port http targets 8080", "declares as a containerPort"),
    "headless service on another port than the workers": (
        "train", set_path(0, "spec", "ports", 0, "port", value=2223),
        f"Service/{TRAIN}: the port tf targets 2223", "declares as a containerPort"),
    "deployment name with an underscore": (
        "server", set_path(2, "metadata", "name", value="my_project"),
        "Deployment/my_project: the name 'my_project' is not a DNS label", "rename it"),
    "service name starting with a digit": (
        "server", set_path(1, "metadata", "name", value="2024-analysis"),
        "Service/2024-analysis: the name '2024-analysis' is not a DNS-1035 label", "rename it"),
    "label value with a space": (
        "server", set_path(0, "metadata", "labels", "app.kubernetes.io/instance", value="my project"),
        f"PersistentVolumeClaim/{k8s.object_name(PROJECT, 'notebooks')}: the label", "invalid value"),
    "deployment selector off its pods": (
        "server", set_path(2, "spec", "selector", "matchLabels", "app.kubernetes.io/component", value="web"),
        f"Deployment/{SERVER}: spec.selector.matchLabels", "manages no pods"),
    "job selector without manualSelector": (
        "train", set_path(1, "spec", "selector", value={"matchLabels": k8s.labels(PROJECT, "train")}),
        f"Job/{TRAIN}: spec.selector is set without spec.manualSelector", "remove the selector"),
    "completions differ from parallelism": (
        "train", set_path(1, "spec", "parallelism", value=2),
        f"Job/{TRAIN}: completions (3) differs from parallelism (2)", "set both"),
    "subdomain names no headless service": (
        "train", set_path(1, *POD, "subdomain", value="workers"),
        f"Job/{TRAIN}: the pods' subdomain 'workers' is not the name of a headless Service", "set it"),
    "subdomain names a service with a cluster IP": (
        "train", set_path(0, "spec", "clusterIP", value="10.0.0.10"),
        f"Job/{TRAIN}: the pods' subdomain", "headless Service"),
    "TF_CONFIG before JOB_COMPLETION_INDEX": (
        "train", remove_index,
        f"Job/{TRAIN}: the container worker sets TF_CONFIG from $(JOB_COMPLETION_INDEX)", "define"),
    "mount of an undeclared volume": (
        "server", mount_undeclared,
        f"Deployment/{SERVER}: the container server mounts the volume 'cache'", "does not declare"),
    "non-root as user 0": (
        "server", set_path(2, *POD, "securityContext", "runAsUser", value=0),
        f"Deployment/{SERVER}: the pods must not run as root but runAsUser is 0", "another user"),
    "storage that is no quantity": (
        "server", set_path(0, "spec", "resources", "requests", "storage", value="1GB"),
        f"PersistentVolumeClaim/{k8s.object_name(PROJECT, 'notebooks')}: the storage request '1GB'",
        "not a Kubernetes quantity"),
    "job name too long for its host names": (
        "train", set_path(1, "metadata", "name", value="j" * 62),
        f"Job/{'j' * 62}: the last worker's host name", "shorten the Job's name"),
}


def test_the_unbroken_objects_pass_the_checks() -> None:
    assert k8s_checks.check(server()) == []
    assert k8s_checks.check(training()) == []
    assert k8s_checks.check(server() + training() + [k8s.token_secret(PROJECT, TOKEN)]) == []


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_broken_rule_is_reported(case: str) -> None:
    which, breaks, start, phrase = BROKEN[case]
    objects = copy.deepcopy(server() if which == "server" else training())
    breaks(objects)
    problems = k8s_checks.check(objects)
    matching = [problem for problem in problems if problem.startswith(start)]
    assert matching, problems
    assert phrase in matching[0]
    assert all(problem.count("; ") >= 1 for problem in problems), problems  # what is wrong; how to fix it


def test_validate_reports_the_checks_too() -> None:
    objects = copy.deepcopy(training())
    objects[1]["spec"]["parallelism"] = 2
    assert any("differs from parallelism" in problem for problem in k8s_checks.validate(objects))
