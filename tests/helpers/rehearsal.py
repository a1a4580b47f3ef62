"""Rehearse a Kubernetes pod template on the local engine, the way a kubelet would run it.

No cluster can run here, so the tests take the pod spec nbdock wrote and run it with Docker:
the same image, args (after the image's ENTRYPOINT), environment with `$(VAR)` expanded as
Kubernetes expands it, user and groups from the securityContext, Secret files with their mode,
a volume for each claim (seeded by the init containers first), /dev/shm from its emptyDir, the
container ports published on 127.0.0.1, and a network alias for a pod's `hostname.subdomain`.
`RehearsedKubectl` runs a whole training Job this way, for nbdock's own run loop.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

_REFERENCE = re.compile(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_]*)\))")
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def expand(value: str, defined: Mapping[str, str]) -> str:
    """`$(NAME)` replaced by a variable defined earlier, `$$` by `$`; anything else left as written."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        return defined[name] if name in defined else match.group(0)

    return _REFERENCE.sub(one, value)


def environment(container: Mapping[str, Any], field_values: Mapping[str, str]) -> dict[str, str]:
    """The container's env in order; a fieldRef takes its value from `field_values`."""
    result: dict[str, str] = {}
    for variable in container.get("env") or []:
        if "value" in variable:
            result[variable["name"]] = expand(variable["value"], result)
        else:
            result[variable["name"]] = field_values[variable["valueFrom"]["fieldRef"]["fieldPath"]]
    return result


def quantity(text: str) -> int:
    for suffix, unit in _UNITS.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * unit
    return int(text)


@dataclass
class Rehearsal:
    """Runs pods of a template; everything it starts carries the tracker's test label."""

    client: Any
    labels: Mapping[str, str]
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # Secret name -> data
    network: str | None = None

    def _archive(self, files: Mapping[str, tuple[bytes, int, int, int]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for path, (data, mode, uid, gid) in files.items():
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def run(self, pod: Mapping[str, Any], name: str, field_values: Mapping[str, str] | None = None,
            aliases: list[str] | None = None) -> Any:
        """Run the pod's init containers to the end, then start its first container; that container."""
        from docker.types import Mount

        security = pod.get("securityContext") or {}
        user = f"{security.get('runAsUser', 0)}:{security.get('runAsGroup', 0)}"
        groups = [str(security["fsGroup"])] if "fsGroup" in security else []
        groups += [str(g) for g in security.get("supplementalGroups") or []]
        volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
        claims: dict[str, str] = {}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                claim = f"{name}-{volume['persistentVolumeClaim']['claimName']}"
                self.client.volumes.create(claim, labels=dict(self.labels))
                claims[volume["name"]] = claim
                if "fsGroup" in security:  # the kubelet gives the claim's root to fsGroup, setgid
                    self.client.containers.run(
                        pod["containers"][0]["image"], ["sh", "-c", f"chgrp {security['fsGroup']} /v && chmod 2775 /v"],
                        entrypoint=[], user="0", remove=True, mounts=[Mount("/v", claim, type="volume")],
                        labels=dict(self.labels),
                    )

        def options(container: Mapping[str, Any], detach_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
            """The container's create() arguments, and the Secret files to put in place before start."""
            mounts: list[Any] = []
            files: dict[str, tuple[bytes, int, int, int]] = {}
            shm = None
            for mount in container.get("volumeMounts") or []:
                volume = volumes[mount["name"]]
                if mount["name"] in claims:
                    mounts.append(Mount(mount["mountPath"], claims[mount["name"]], type="volume"))
                elif "secret" in volume:
                    data = self.secrets[volume["secret"]["secretName"]]
                    for item in volume["secret"].get("items") or [{"key": k, "path": k} for k in data]:
                        files[f"{mount['mountPath']}/{item['path']}"] = (
                            data[item["key"]].encode(), volume["secret"].get("defaultMode", 0o644),
                            0, int(security.get("fsGroup", 0)),
                        )
                elif "emptyDir" in volume and mount["mountPath"] == "/dev/shm":
                    shm = quantity(volume["emptyDir"]["sizeLimit"])
            chosen: dict[str, Any] = {
                "image": container["image"], "name": detach_name, "user": user, "group_add": groups,
                "environment": environment(container, field_values or {}), "mounts": mounts,
                "labels": dict(self.labels), "detach": True,
                "ports": {f"{p['containerPort']}/tcp": ("127.0.0.1", None) for p in container.get("ports") or []},
                "shm_size": shm, "working_dir": container.get("workingDir"),
            }
            if "command" in container:
                chosen["entrypoint"] = container["command"]
            if "args" in container:
                chosen["command"] = [expand(arg, chosen["environment"]) for arg in container["args"]]
            if self.network:
                chosen["network"] = self.network
                if aliases:
                    from docker.types import EndpointConfig

                    chosen["networking_config"] = {self.network: EndpointConfig("1.41", aliases=aliases)}
            return {key: value for key, value in chosen.items() if value is not None}, files

        for index, init in enumerate(pod.get("initContainers") or []):
            spec, files = options(init, f"{name}-init-{index}")
            started = self.client.containers.create(**spec)
            if files:
                started.put_archive("/", self._archive(files))
            started.start()
            assert started.wait(timeout=120)["StatusCode"] == 0, started.logs().decode()
            started.remove()
        spec, files = options(pod["containers"][0], name)
        container = self.client.containers.create(**spec)
        if files:
            container.put_archive("/", self._archive(files))
        container.start()
        container.reload()
        return container


@dataclass
class RehearsedKubectl:
    """A kubectl whose cluster is the local engine: an applied Indexed Job's pods run as rehearsed
    containers (each with its completion index and `hostname.subdomain` alias), and pods, logs,
    suspend and delete answer from those containers. It satisfies nbdock's `KubectlLike`."""

    rehearsal: Rehearsal
    settings: Any
    applied: list[dict[str, Any]] = field(default_factory=list)
    pods_by_index: dict[int, Any] = field(default_factory=dict)
    # Like Docker Desktop's cluster, it runs on this engine and uses its images as they are.
    context: str = "docker-desktop"

    def check(self) -> None:
        return None

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        raise AssertionError(f"the rehearsal has no `kubectl {' '.join(args)}`")

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.applied += objects
        for job in (o for o in objects if o["kind"] == "Job"):
            pod = job["spec"]["template"]["spec"]
            name = job["metadata"]["name"]
            for index in range(job["spec"]["completions"]):
                self.pods_by_index[index] = self.rehearsal.run(
                    pod, f"{name}-{index}", {COMPLETION_INDEX_FIELD: str(index)},
                    aliases=[f"{name}-{index}.{pod['subdomain']}"],
                )

    def delete(self, selector: str, kinds: str) -> list[str]:
        deleted = []
        for pod in self.pods_by_index.values():
            pod.remove(force=True)
            deleted.append(f"pod/{pod.name}")
        self.pods_by_index.clear()
        return deleted

    def pods(self, selector: str) -> list[dict[str, Any]]:
        found = []
        for index, container in self.pods_by_index.items():
            container.reload()
            state = container.attrs["State"]
            phase = {"created": "Pending", "running": "Running"}.get(state["Status"], "")
            terminated: dict[str, Any] = {}
            if not phase:
                phase = "Succeeded" if state["ExitCode"] == 0 else "Failed"
                terminated = {"terminated": {"exitCode": state["ExitCode"]}}
            found.append({"metadata": {"name": container.name,
                                       "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
                          "spec": {"nodeName": self.context},
                          "status": {"phase": phase, "containerStatuses": [{"state": terminated}]}})
        return found

    def logs(self, target: str, follow: bool = False) -> Iterator[str]:
        name = target.removeprefix("pod/")
        container = next((c for c in self.pods_by_index.values() if c.name == name), None)
        if container is None:
            return
        if follow:
            for chunk in container.logs(stream=True, follow=True):
                yield chunk.decode("utf-8", errors="replace")
        else:
            yield container.logs().decode("utf-8", errors="replace")

    def suspend(self, job: str) -> None:
        """As Kubernetes does: the running pods are deleted, those that ended are kept."""
        for index, container in list(self.pods_by_index.items()):
            container.reload()
            if container.status == "running":
                container.remove(force=True)
                del self.pods_by_index[index]

    def port_forward(self, target: str, port: int, container_port: int) -> subprocess.Popen[bytes]:
        raise AssertionError("the rehearsal forwards no port")
