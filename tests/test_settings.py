"""Settings: precedence (.env < NBDOCK_* < flags), defaults and validation."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from nbdock.errors import NbdockError
from nbdock.settings import DEFAULT_BASE_IMAGE, KNOWN_KEYS, SETTINGS, Flag, Settings, default_for, load_settings
from tests.helpers.projects import REPO


def write_env(folder: Path, text: str) -> None:
    (folder / ".env").write_text(text, encoding="utf-8")


def test_defaults_come_from_the_folder_name(tmp_path: Path) -> None:
    project = tmp_path / "My Notebooks"
    project.mkdir()
    settings = load_settings(project, environ={})
    assert settings.project_name == "my-notebooks"
    assert settings.image_name == "nbdock-my-notebooks:latest"
    assert settings.container_name == "nbdock-my-notebooks"
    assert settings.base_image == DEFAULT_BASE_IMAGE
    assert (settings.host_ip, settings.host_port, settings.container_port) == ("127.0.0.1", 8888, 8888)
    assert settings.jupyter_token == ""
    assert settings.ca_cert is None
    assert settings.labels == {"io.nbdock.project": "my-notebooks",
                               "io.nbdock.checkout": settings.checkout_id}
    assert settings.execute_image_name == "nbdock-my-notebooks:execute"


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    write_env(tmp_path, "HOST_PORT=9000\nHOST_IP=127.0.0.2\nPROJECT_NAME=from-file\n")
    environ = {"NBDOCK_HOST_PORT": "9100", "NBDOCK_PROJECT_NAME": "from-env", "HOST_IP": "10.0.0.1"}
    flags = {"HOST_PORT": Flag("--port", 9200), "HOST_IP": Flag("--host-ip", None)}
    settings = load_settings(tmp_path, flags, environ=environ)
    assert settings.host_port == 9200
    assert settings.project_name == "from-env"
    # HOST_IP without the prefix is someone else's variable: the file's value stands.
    assert settings.host_ip == "127.0.0.2"


def test_reading_env_does_not_touch_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTER_TOKEN", raising=False)
    write_env(tmp_path, "JUPYTER_TOKEN=secret\n")
    assert load_settings(tmp_path).jupyter_token == "secret"
    import os

    assert "JUPYTER_TOKEN" not in os.environ


def test_an_empty_value_means_the_default(tmp_path: Path) -> None:
    write_env(tmp_path, "HOST_PORT=\nBASE_IMAGE=\n")
    settings = load_settings(tmp_path, environ={})
    assert settings.host_port == 8888 and settings.base_image == DEFAULT_BASE_IMAGE


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("HOST_PORT=eighty", "not a whole number"),
        ("HOST_PORT=70000", "outside 0..65535"),
        ("CONTAINER_PORT=0", "outside 1..65535"),
        ("HOST_IP=localhost:80", "not an IP address"),
        ("IMAGE_NAME=Bad Name", "not a valid image name"),
        ("PROJECT_NAME=-x", "not a valid project name"),
        ("READY_TIMEOUT=-1", "more than 0 seconds"),
        ("RUN_AS=root", "not uid:gid"),
        ("TRAIN_BACKEND=slurm", "not one of local, swarm, k8s"),
        ("SHM_SIZE=lots", "not a size"),
        ("GPUS=some", "neither `all` nor a count"),
        ("CPUS=-1", "more than 0 CPUs"),
        ("JUPYTER_TOKEN='two words'", "may not contain spaces"),
        ("NOTEBOOKS_DIR=/elsewhere", "not a folder inside the project"),
        ("MOUNTS=../data", "not a folder inside the project"),
        ("MOUNTS=models:rw, ./models", "it names models twice"),
        ("MEMORY=1k", "below the 6m Docker needs"),
        ("BASE_MIRROR=deb.debian.org", "not a URL"),
        ("REGISTRY=http://registry:5000", "not a valid registry"),
        ("K8S_NAMESPACE=Team_A", "not a valid Kubernetes namespace"),
        ("TRAIN_WORKERS=0", "outside 1..64"),
        ("SWARM_HOST=ftp://manager", "not a Docker host URL"),
        ("SWARM_HOST=ssh://", "names no host"),
        ("SWARM_HOST=tcp://:2376", "names no host"),
        ("SWARM_HOST=unix://", "names no socket"),
        ("SWARM_VOLUME_OPTIONS=type=nfs device", "'device' is not key=value"),
        ("TRAIN_WORKERS_PER_NODE=0", "outside 1..64"),
    ],
)
def test_an_invalid_value_names_the_key_the_file_and_the_reason(
    tmp_path: Path, line: str, reason: str
) -> None:
    write_env(tmp_path, line + "\n")
    with pytest.raises(NbdockError) as raised:
        load_settings(tmp_path, environ={})
    message = str(raised.value)
    assert message.startswith(line.split("=")[0] + " in " + str(tmp_path / ".env"))
    assert reason in message
    assert "\n" not in message


def test_volume_driver_options_are_space_separated_so_a_value_may_hold_commas(tmp_path: Path) -> None:
    write_env(tmp_path, "SWARM_VOLUME_OPTIONS=type=nfs o=addr=10.0.0.5,rw device=:/exports/nb\n")
    assert load_settings(tmp_path, environ={}).swarm_volume_options == (
        ("type", "nfs"), ("o", "addr=10.0.0.5,rw"), ("device", ":/exports/nb"))


def test_an_invalid_flag_is_named_as_the_user_typed_it(tmp_path: Path) -> None:
    with pytest.raises(NbdockError, match="HOST_PORT in the --port flag is invalid"):
        load_settings(tmp_path, {"HOST_PORT": Flag("--port", "x")}, environ={})


def test_an_unknown_key_warns_with_the_nearest_known_key(tmp_path: Path) -> None:
    write_env(tmp_path, "HOST_PROT=9000\n")
    settings = load_settings(tmp_path, environ={"NBDOCK_JUPYTER_TOKN": "x"})
    assert settings.host_port == 8888
    assert any("HOST_PROT" in w and "did you mean HOST_PORT?" in w for w in settings.warnings)
    assert any("NBDOCK_JUPYTER_TOKN" in w and "JUPYTER_TOKEN" in w for w in settings.warnings)


def test_ca_cert_must_be_a_pem_file(tmp_path: Path) -> None:
    write_env(tmp_path, "CA_CERT=missing.pem\n")
    with pytest.raises(NbdockError, match="is not a file"):
        load_settings(tmp_path, environ={})
    (tmp_path / "empty.pem").write_text("nothing here")
    write_env(tmp_path, "CA_CERT=empty.pem\n")
    with pytest.raises(NbdockError, match="holds no PEM certificate"):
        load_settings(tmp_path, environ={})
    (tmp_path / "ok.pem").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    write_env(tmp_path, "CA_CERT=ok.pem\n")
    assert load_settings(tmp_path, environ={}).ca_cert == tmp_path / "ok.pem"


def test_env_example_documents_every_setting() -> None:
    text = (REPO / ".env.example").read_text()
    documented = {line.split("=")[0] for line in text.splitlines() if line and line[0] != "#"}
    assert documented == set(KNOWN_KEYS)


def test_the_readme_settings_table_is_the_declared_settings() -> None:
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) == 3 and re.fullmatch(r"`[A-Z0-9_]+`", cells[0]):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    assert rows == {setting.key: (setting.shown_default, setting.meaning) for setting in SETTINGS}


def test_each_setting_is_a_field_of_settings() -> None:
    attributes = {f.name for f in dataclasses.fields(Settings)} - {"project_dir", "warnings"}
    assert attributes == {setting.attribute for setting in SETTINGS}


def test_the_env_example_values_are_the_real_defaults(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text((REPO / ".env.example").read_text())
    settings = load_settings(tmp_path, environ={})
    assert settings.warnings == ()
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert value == (default_for(key) or ""), f"{key}: .env.example says {value!r}"
    defaults = load_settings(tmp_path, environ={})
    (tmp_path / ".env").unlink()
    assert load_settings(tmp_path, environ={}) == defaults


def test_ca_cert_defaults_to_the_bundle_the_hosts_pip_trusts(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    assert load_settings(tmp_path, environ={"PIP_CERT": str(bundle)}).ca_cert == bundle
    write_env(tmp_path, "CA_CERT=other.pem\n")
    (tmp_path / "other.pem").write_text(bundle.read_text())
    assert load_settings(tmp_path, environ={"PIP_CERT": str(bundle)}).ca_cert == tmp_path / "other.pem"
    with pytest.raises(NbdockError, match="the PIP_CERT environment variable"):
        load_settings(tmp_path / "nowhere", environ={"PIP_CERT": str(tmp_path / "gone.pem")})


def test_variables_in_env_expand_as_python_dotenv_documents(tmp_path: Path) -> None:
    write_env(tmp_path, "PROJECT_NAME=team\nIMAGE_NAME=${PROJECT_NAME}-lab:v1\n"
                        "JUPYTER_TOKEN=${SECRET_TOKEN}\nCONTAINER_NAME=${UNSET_NAME:-fallback}\n")
    settings = load_settings(tmp_path, environ={"SECRET_TOKEN": "from-the-shell"})
    assert settings.image_name == "team-lab:v1"
    assert settings.jupyter_token == "from-the-shell"
    assert settings.container_name == "fallback"
    assert settings.warnings == ()


def test_single_quotes_keep_a_value_literal(tmp_path: Path) -> None:
    write_env(tmp_path, "JUPYTER_TOKEN='${NOT_EXPANDED}'\n")
    assert load_settings(tmp_path, environ={"NOT_EXPANDED": "x"}).jupyter_token == "${NOT_EXPANDED}"


def test_a_reference_to_an_unset_variable_is_a_warning_with_the_line(tmp_path: Path) -> None:
    write_env(tmp_path, "HOST_IP=127.0.0.1\nJUPYTER_TOKEN=${NOT_SET_ANYWHERE}\n")
    settings = load_settings(tmp_path, environ={})
    assert settings.jupyter_token == ""
    assert settings.warnings == (f"{tmp_path / '.env'}:2: JUPYTER_TOKEN refers to ${{NOT_SET_ANYWHERE}}, "
                                 "which is not set",)


def test_a_line_python_dotenv_cannot_parse_is_a_warning_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_env(tmp_path, "HOST_PORT=9000\nthis is not a setting\nHOST_IP=127.0.0.2\n")
    settings = load_settings(tmp_path, environ={})
    assert (settings.host_port, settings.host_ip) == (9000, "127.0.0.2")
    assert settings.warnings == (f"{tmp_path / '.env'}:2: cannot read `this is not a setting`; write it as "
                                 "KEY=value",)
    assert capsys.readouterr().err == ""


def test_a_byte_order_mark_does_not_lose_the_first_setting(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes("HOST_PORT=9001\r\nHOST_IP=127.0.0.3\r\n".encode("utf-8-sig"))
    settings = load_settings(tmp_path, environ={})
    assert (settings.host_port, settings.host_ip) == (9001, "127.0.0.3")
    assert settings.warnings == ()


def test_a_retired_setting_says_what_to_do(tmp_path: Path) -> None:
    write_env(tmp_path, "EXECUTE=true\n")
    (warning,) = load_settings(tmp_path, environ={}).warnings
    assert "EXECUTE" in warning and "no longer read" in warning


def test_notebooks_dir_may_not_leave_the_project_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "notebooks").symlink_to(outside)
    with pytest.raises(NbdockError, match="outside the project folder"):
        load_settings(project, environ={})


def test_sizes_and_mounts_are_parsed(tmp_path: Path) -> None:
    write_env(tmp_path, "SHM_SIZE=2g\nMEMORY=512m\nCPUS=1.5\nGPUS=all\nMOUNTS=data, models:rw\n")
    settings = load_settings(tmp_path, environ={})
    resources = (settings.shm_size, settings.memory, settings.cpus, settings.gpus)
    assert resources == (2 * 2**30, 512 * 2**20, 1.5, "all")
    assert settings.mounts == (("data", False), ("models", True))
    assert load_settings(tmp_path / "nowhere", environ={}).shm_size == 2**30


@pytest.mark.parametrize(("text", "policy"), [
    ("", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ("no", None),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
])
def test_restart_becomes_the_servers_restart_policy(tmp_path: Path, text: str, policy: object) -> None:
    from nbdock.engine import container_options
    from nbdock.project import Project
    from nbdock.server.local import LocalServer

    (tmp_path / "notebooks").mkdir()
    (tmp_path / ".env").write_text(f"RESTART={text}\nRUN_AS=1234:1234\n")
    project = Project(load_settings(tmp_path, environ={}))
    options = container_options(LocalServer(project).server_workload("sha256:img", "t"))
    assert options.get("restart_policy") == policy
    assert "restart_policy" not in container_options(project.workload("run", "sha256:img", "execute"))


@pytest.mark.parametrize("text", ["sometimes", "on-failure:0", "unless-stopped:2", "on-failure:x"])
def test_a_restart_policy_docker_does_not_know_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / ".env").write_text(f"RESTART={text}\n")
    with pytest.raises(NbdockError, match=r"RESTART in .* is invalid: .* restart policy: no, unless-stopped"):
        load_settings(tmp_path, environ={})
