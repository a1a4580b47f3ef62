"""How a Workload becomes the Docker SDK's arguments (no engine needed): the SDK's own argument
translation must accept them, for containers and for Swarm services."""

from __future__ import annotations

import io
import sys
import tarfile
from types import SimpleNamespace
from typing import Any, cast

import pytest
from docker.models.containers import _create_container_args
from docker.models.services import _get_create_service_kwargs

from nbdock.engine import Engine, LineBuffer, _secrets_archive, container_options, service_options
from nbdock.engine.connection import Connected
from nbdock.errors import BuildFailed, NbdockError
from nbdock.workload import Mount, PublishedPort, Resources, Workload

WORKLOAD = Workload(
    name="nbdock-demo", image="sha256:abc", command=("jupyter", "lab"), user="1234:1234", groups=("1000", "4321"),
    environment={"A": "1"}, secrets={"jupyter_token": "secret"},
    mounts=(Mount("/home/me/exp:baseline, v2/notebooks", "/home/nbdock/notebooks"),
            Mount("volume-name", "/data", read_only=True, kind="volume")),
    labels={"io.nbdock.project": "demo"}, ports=(PublishedPort(8888, None, "127.0.0.1"),),
    network="net", health_check=False,
    resources=Resources(cpus=1.5, memory=2**30, shm_size=2**30, gpus="2"),
)


def test_the_sdk_accepts_the_container_arguments() -> None:
    options = container_options(WORKLOAD)
    created = _create_container_args({**options, "version": "1.41"})
    host = created["host_config"]
    assert created["user"] == "1234:1234" and created["command"] == ["jupyter", "lab"]
    assert host["Mounts"][0]["Source"] == "/home/me/exp:baseline, v2/notebooks"  # no src:dst:mode string
    assert host["Mounts"][1]["ReadOnly"] is True and host["GroupAdd"] == ["1000", "4321"]
    assert host["PortBindings"] == {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["ShmSize"] == 2**30
    assert created["healthcheck"] == {"test": ["NONE"]}
    assert "secret" not in str(created)


def test_the_sdk_accepts_the_service_arguments() -> None:
    options = service_options(WORKLOAD, {"jupyter_token": ("id1", "nbdock-demo-token-1")}, restart=False,
                              constraints=["node.id==abc"])
    created = _get_create_service_kwargs("create", dict(options))
    task = created["task_template"]
    assert task["ContainerSpec"]["Args"] == ["jupyter", "lab"] and task["ContainerSpec"]["Command"] is None
    assert task["Placement"]["Constraints"] == ["node.id==abc"]
    assert task["RestartPolicy"]["Condition"] == "none" and task["ContainerSpec"]["StopGracePeriod"] == 10**9
    secret = task["ContainerSpec"]["Secrets"][0]
    assert (secret["SecretName"], secret["File"]["Name"], secret["File"]["UID"], secret["File"]["Mode"]) == (
        "nbdock-demo-token-1", "jupyter_token", "1234", 0o400)
    assert created["endpoint_spec"]["Mode"] == "dnsrr"
    assert created["endpoint_spec"]["Ports"][0]["PublishMode"] == "host"
    assert task["Networks"][0]["Target"] == "net"
    assert {"Target": "/dev/shm", "Type": "tmpfs"}.items() <= task["ContainerSpec"]["Mounts"][-1].items()
    assert "secret" not in str({k: v for k, v in created.items()}).replace("Secret", "")


def test_secrets_are_files_only_their_user_reads() -> None:
    with tarfile.open(fileobj=io.BytesIO(_secrets_archive(WORKLOAD))) as archive:
        member = archive.getmember("run/secrets/jupyter_token")
        assert (member.uid, member.gid, member.mode) == (1234, 1234, 0o400)
        extracted = archive.extractfile(member)
        assert extracted is not None and extracted.read() == b"secret"


def test_build_output_is_shown_in_whole_lines_however_the_engine_splits_it() -> None:
    lines = LineBuffer()
    pieces = ["Step 1/2 : FROM base", "\n", " ---> Using cache\n ---> 1234", "abcd\n", "Step 2/2 : RUN pip\r\n",
              "half a li", "ne\n\n", "no newline at the end"]
    shown = [line for piece in pieces for line in lines.feed(piece)] + lines.flush()
    assert shown == ["Step 1/2 : FROM base", " ---> Using cache", " ---> 1234abcd", "Step 2/2 : RUN pip",
                     "half a line", "", "no newline at the end"]
    assert lines.flush() == []


def test_build_lines_reach_the_user_without_the_builders_colour_codes() -> None:
    chunks = [{"stream": "Step 1/2 : RUN uv pip install papermill\n"},
              {"stream": "\x1b[91mResolved 60 packages in 332ms\n\x1b[0m"},
              {"stream": "Step 2/2 : RUN false\n"}, {"stream": "\x1b[91mno such file\n\x1b[0m"},
              {"error": "\x1b[91mThe command returned a non-zero code: 1\x1b[0m"}]
    engine = Engine()
    engine._client = cast(Any, SimpleNamespace(api=SimpleNamespace(build=lambda **_: iter(chunks))))
    shown: list[str] = []
    with pytest.raises(BuildFailed) as failed:
        engine.build(io.BytesIO(), "demo:latest", show=shown.append)
    assert "Resolved 60 packages in 332ms" in shown
    assert not [line for line in shown if "\x1b" in line]
    assert (failed.value.step, failed.value.tail) == ("RUN false", ["no such file"])
    assert "\x1b" not in failed.value.error


def test_an_ssh_engine_without_the_ssh_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paramiko", None)  # as when it is not installed
    with pytest.raises(NbdockError, match=r"ssh://root@manager\.example .*pip install 'nbdock\[ssh\]'"):
        assert Connected("ssh://root@manager.example").client is None
