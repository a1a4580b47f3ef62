"""Where the engine is and what URL a browser opens (no engine needed)."""

from __future__ import annotations

import pytest

from nbdock import engine, jupyter


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("unix:///var/run/docker.sock", None),
        ("npipe:////./pipe/docker_engine", None),
        ("tcp://127.0.0.1:2375", None),
        ("tcp://build-box.example:2376", "build-box.example"),
        ("ssh://me@10.1.2.3", "10.1.2.3"),
    ],
)
def test_a_remote_engine_is_recognised_by_its_address(address: str, host: str | None) -> None:
    assert engine.remote_host(address) == host


def test_the_engine_address_follows_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://build-box.example:2376")
    assert engine.engine_address() == "tcp://build-box.example:2376"


def test_urls_bracket_ipv6_hosts() -> None:
    assert jupyter.lab_url("127.0.0.1", 8888, "abc") == "http://127.0.0.1:8888/lab?token=abc"
    assert jupyter.base_url("::1", 9000) == "http://[::1]:9000"


@pytest.mark.parametrize("token", ["lab#2024+team", "a&b=c", "100%", "x?y/z", "schön"])
def test_every_token_is_percent_encoded_in_the_url(token: str) -> None:
    from urllib.parse import parse_qs, urlparse

    url = jupyter.lab_url("127.0.0.1", 8888, token)
    assert parse_qs(urlparse(url).query) == {"token": [token]}


def test_tokens_are_long_and_fresh() -> None:
    first, second = jupyter.new_token(), jupyter.new_token()
    assert first != second and len(first) == 48 and int(first, 16) >= 0


def test_the_server_command_only_allows_root_when_asked() -> None:
    assert "--allow-root" not in jupyter.server_command(8888)
    command = jupyter.server_command(9999, allow_root=True)
    assert "--port=9999" in command and command[-1] == "--allow-root"
