"""Settings: precedence (.env < NBDOCK_* < flags), defaults and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbdock.errors import NbdockError
from nbdock.settings import DEFAULT_BASE_IMAGE, KNOWN_KEYS, load_settings

REPO = Path(__file__).resolve().parent.parent


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
    assert settings.labels == {"io.nbdock.project": "my-notebooks"}


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    write_env(tmp_path, "HOST_PORT=9000\nHOST_IP=127.0.0.2\nPROJECT_NAME=from-file\n")
    environ = {"NBDOCK_HOST_PORT": "9100", "NBDOCK_PROJECT_NAME": "from-env", "HOST_IP": "10.0.0.1"}
    settings = load_settings(tmp_path, {"HOST_PORT": 9200, "HOST_IP": None}, environ=environ)
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
        ("EXECUTE=maybe", "not true or false"),
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


def test_an_invalid_flag_is_named_as_a_flag(tmp_path: Path) -> None:
    with pytest.raises(NbdockError, match="HOST_PORT in the --host-port flag"):
        load_settings(tmp_path, {"HOST_PORT": "x"}, environ={})


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


def test_the_env_example_values_are_valid(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text((REPO / ".env.example").read_text())
    settings = load_settings(tmp_path, environ={})
    assert settings.warnings == ()


def test_ca_cert_defaults_to_the_bundle_the_hosts_pip_trusts(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    assert load_settings(tmp_path, environ={"PIP_CERT": str(bundle)}).ca_cert == bundle
    write_env(tmp_path, "CA_CERT=other.pem\n")
    (tmp_path / "other.pem").write_text(bundle.read_text())
    assert load_settings(tmp_path, environ={"PIP_CERT": str(bundle)}).ca_cert == tmp_path / "other.pem"
    with pytest.raises(NbdockError, match="the PIP_CERT environment variable"):
        load_settings(tmp_path / "nowhere", environ={"PIP_CERT": str(tmp_path / "gone.pem")})
