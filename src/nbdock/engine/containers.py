"""Containers on the engine, and the networks and volumes they use: a `Workload` in, a
`Container` record back."""

from __future__ import annotations

import collections
import contextlib
import io
import tarfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from nbdock import contract
from nbdock.console import LineBuffer
from nbdock.engine.connection import Connected, _classified, _label_filter
from nbdock.engine.records import Container
from nbdock.errors import EngineAPIError, NbdockError, NotFound
from nbdock.workload import Workload


def _secrets_archive(workload: Workload) -> bytes:
    """The workload's secrets as a tar of files under SECRETS_DIR, owned by its user, mode 0400."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo(contract.SECRETS_DIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(folder)
        for name, value in sorted(workload.secrets.items()):
            data = value.encode()
            info = tarfile.TarInfo(contract.secret_path(name).lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(data), 0o400, workload.uid, workload.gid
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _device_requests(gpus: str) -> list[Any]:
    from docker.types import DeviceRequest

    if not gpus:
        return []
    count = -1 if gpus == "all" else int(gpus)
    return [DeviceRequest(count=count, capabilities=[["gpu"]])]


def restart_policy(policy: str) -> dict[str, Any]:
    """The Docker API's RestartPolicy for `policy` as RESTART spells it (`on-failure:3`)."""
    name, _, retries = policy.partition(":")
    return {"Name": name, "MaximumRetryCount": int(retries or 0)}


def container_options(workload: Workload) -> dict[str, Any]:
    """The Docker SDK's `containers.create` keyword arguments for `workload`.

    Bind mounts are structured mounts, so any path a user can create works (a `:` or `,` in a
    folder name breaks docker's short `src:dst:mode` syntax).
    """
    from docker.types import Mount

    resources = workload.resources
    options: dict[str, Any] = {
        "image": workload.image,
        "name": workload.name,
        "detach": True,
        "init": workload.init,
        "user": workload.user,
        "group_add": list(workload.groups),
        "environment": dict(workload.environment),
        "labels": dict(workload.labels),
        "mounts": [
            Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only)
            for m in workload.mounts
        ],
        "security_opt": ["no-new-privileges"],
    }
    if workload.command is not None:
        options["command"] = list(workload.command)
    if workload.ports:
        options["ports"] = {
            f"{port.container_port}/tcp": (port.host_ip, port.host_port) for port in workload.ports
        }
    if workload.network:
        options["network"] = workload.network
    if not workload.health_check:
        options["healthcheck"] = {"test": ["NONE"]}
    if workload.restart != "no":
        options["restart_policy"] = restart_policy(workload.restart)
    if resources.shm_size:
        options["shm_size"] = resources.shm_size
    if resources.memory:
        options["mem_limit"] = resources.memory
    if resources.cpus:
        options["nano_cpus"] = int(resources.cpus * 1e9)
    if resources.gpus:
        options["device_requests"] = _device_requests(resources.gpus)
    return options


def _container_record(attrs: Mapping[str, Any]) -> Container:
    state = attrs.get("State") or {}
    started = str(state.get("StartedAt") or "")
    settings = attrs.get("NetworkSettings") or {}
    ports = {}
    for key, bindings in (settings.get("Ports") or {}).items():
        if bindings:
            ports[int(key.split("/")[0])] = int(bindings[0]["HostPort"])
    address = next(
        (str(n["IPAddress"]) for n in (settings.get("Networks") or {}).values() if n.get("IPAddress")), None
    )
    return Container(
        name=str(attrs.get("Name", "")).lstrip("/"),
        id=str(attrs["Id"]),
        state=str(state.get("Status", "")),
        health=str((state.get("Health") or {}).get("Status", "-")),
        image_id=str(attrs.get("Image", "")),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        ports=ports,
        address=address,
        exit_code=int(state["ExitCode"]) if state.get("Status") == "exited" else None,
        oom_killed=bool(state.get("OOMKilled")),
        started_at="" if started.startswith("0001-") else started,  # Go's zero time: never started
    )


class Containers(Connected):
    """The containers, networks and volumes part of `Engine`."""

    def containers(self, labels: Mapping[str, str]) -> list[Container]:
        """Every container, running or not, that carries all of `labels` (and only those)."""
        with _classified("listing containers"):
            found = self.client.api.containers(all=True, filters=_label_filter(labels))
        records = (self.container(c["Id"]) for c in found)
        return [record for record in records if record is not None]  # None: removed since listed

    def container(self, name: str) -> Container | None:
        """The container `name` (or id), or None."""
        try:
            with _classified(f"looking up the container {name}"):
                return _container_record(self.client.api.inspect_container(name))
        except NotFound:
            return None

    def create(self, workload: Workload) -> Container:
        """Create (not start) a container for `workload`, with its secrets in place as files."""
        with _classified(f"creating the container {workload.name}"):
            created = self.client.containers.create(**container_options(workload))
        try:
            if workload.secrets:
                with _classified(f"giving {workload.name} its secrets"):
                    self.client.api.put_archive(created.id, "/", _secrets_archive(workload))
        except NbdockError:
            self.remove(created.id)
            raise
        return _container_record(created.attrs)

    def run(self, workload: Workload) -> Container:
        """Create and start a container for `workload`; if it cannot start, it is removed again.

        Raises PortTaken when a published port is in use, NameConflict when the name is taken.
        """
        created = self.create(workload)
        try:
            self.start(created.id)
        except NbdockError:
            self.remove(created.id)
            raise
        return self.container(created.id) or created

    def start(self, container: str) -> None:
        with _classified(f"starting the container {container}"):
            self.client.api.start(container)

    def stop(self, container: str) -> None:
        with _classified(f"stopping the container {container}"):
            self.client.api.stop(container)

    def kill(self, container: str) -> None:
        """Stop a container at once (SIGKILL); one that is gone or no longer running is no error."""
        with contextlib.suppress(NotFound, EngineAPIError), _classified(f"stopping the container {container}"):
            self.client.api.kill(container)

    def remove(self, container: str) -> None:
        """Remove a container, running or not; one that is already gone is no error."""
        with contextlib.suppress(NotFound), _classified(f"removing the container {container}"):
            self.client.api.remove_container(container, force=True)

    def wait(self, container: str, timeout: float | None) -> int | None:
        """The container's exit code, or None when it ran past `timeout` seconds (then it is killed)."""
        import requests.exceptions

        with _classified(f"waiting for {container}"):
            try:
                return int(self.client.api.wait(container, timeout=timeout)["StatusCode"])
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as error:
                if not (isinstance(error, requests.exceptions.ReadTimeout) or "timed out" in str(error)):
                    raise
        self.kill(container)
        return None

    def exec_run(self, container: str, command: Sequence[str], timeout: float | None,
                 tail: int = 40) -> tuple[int | None, list[str]]:
        """Run `command` in the running `container`, through its image's entrypoint as the
        container's own command was: (its exit code, or None when it ran past `timeout` seconds;
        the last `tail` lines of its output, stdout and stderr together).

        Past the timeout the whole container is killed: the engine has no way to stop one exec.
        """
        with _classified(f"running a command in {container}"):
            entrypoint = (self.client.api.inspect_container(container)["Config"] or {}).get("Entrypoint") or []
            exec_id = self.client.api.exec_create(container, [*entrypoint, *command])["Id"]
            stream = self.client.api.exec_start(exec_id, stream=True)
        lines: collections.deque[str] = collections.deque(maxlen=tail)
        pieces = LineBuffer()

        def read() -> None:
            # Ends when the command does, or when the container is killed under it.
            with contextlib.suppress(NbdockError), _classified(f"reading the output of {container}"):
                for chunk in stream:
                    lines.extend(pieces.feed(chunk.decode("utf-8", errors="replace")))
            lines.extend(pieces.flush())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.kill(container)
            reader.join(30)
            return None, list(lines)
        with _classified(f"running a command in {container}"):
            code = self.client.api.exec_inspect(exec_id).get("ExitCode")
        return (int(code) if code is not None else None), list(lines)

    def logs(self, container: str, tail: int | None = None) -> list[str]:
        """The container's log lines (stdout and stderr), the last `tail` of them if given."""
        with _classified(f"reading the log of {container}"):
            data: bytes = self.client.api.logs(container, tail=tail if tail is not None else "all")
        return data.decode("utf-8", errors="replace").splitlines()

    def follow_logs(self, container: str) -> Iterator[str]:
        """The container's log as it is written, until the container stops."""
        with _classified(f"reading the log of {container}"):
            for chunk in self.client.api.logs(container, stream=True, follow=True,
                                              tail="all"):
                yield chunk.decode("utf-8", errors="replace")

    def read_file(self, container: str, path: str) -> bytes | None:
        """The contents of the file `path` in a container, or None when there is none."""
        try:
            with _classified(f"reading {path} in {container}"):
                stream, _ = self.client.api.get_archive(container, path)
                data = b"".join(stream)
        except (NotFound, EngineAPIError):
            return None
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = archive.next()
            extracted = archive.extractfile(member) if member is not None else None
            return extracted.read() if extracted is not None else None

    def read_folder(self, container: str, path: str) -> dict[str, bytes]:
        """The regular files under the folder `path` in a container, by their path in the
        archive (`folder/name`); empty when there is no such folder."""
        try:
            with _classified(f"reading {path} in {container}"):
                stream, _ = self.client.api.get_archive(container, path)
                data = b"".join(stream)
        except (NotFound, EngineAPIError):
            return {}
        files = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    files[member.name] = extracted.read()
        return files

    def probe(self, image: str, command: list[str], user: str = "0:0") -> tuple[int, str]:
        """Run `command` in a throwaway container of `image`: (exit code, output)."""
        with _classified(f"checking the image {image}"):
            container = self.client.containers.create(
                image, command=command, entrypoint=[], user=user, detach=True,
                healthcheck={"test": ["NONE"]}, network_disabled=True,
            )
        try:
            self.start(container.id)
            code = self.wait(container.id, 120)
            output = "\n".join(self.logs(container.id))
        finally:
            self.remove(container.id)
        return (code if code is not None else -1), output

    def create_network(
        self, name: str, labels: Mapping[str, str], driver: str = "bridge",
        internal: bool = False, attachable: bool = False,
    ) -> None:
        with _classified(f"creating the network {name}"):
            self.client.api.create_network(
                name, driver=driver, internal=internal, attachable=attachable, labels=dict(labels),
                check_duplicate=True,
            )

    def remove_network(self, name: str) -> None:
        """Remove the network `name`; one that is already gone is no error."""
        with contextlib.suppress(NotFound), _classified(f"removing the network {name}"):
            self.client.api.remove_network(name)

    def volumes(self, labels: Mapping[str, str]) -> list[str]:
        with _classified("listing volumes"):
            found = self.client.api.volumes(filters=_label_filter(labels)).get("Volumes") or []
            return sorted(v["Name"] for v in found)

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with _classified(f"creating the volume {name}"):
            self.client.api.create_volume(name, labels=dict(labels))

    def remove_volume(self, name: str) -> None:
        """Remove the volume `name`; one that is already gone is no error."""
        with contextlib.suppress(NotFound), _classified(f"removing the volume {name}"):
            self.client.api.remove_volume(name)
