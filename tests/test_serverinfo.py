"""What the server's runtime file says, and the URL and problems nbdock reads from it (no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbdock import jupyter, serverinfo
from nbdock.engine import Image
from nbdock.errors import NbdockError
from nbdock.project import Project
from nbdock.server.local import LocalServer
from nbdock.serverinfo import ServerInfo, parse, problem
from nbdock.settings import load_settings
from tests.fake_engine import FakeEngine

ENV = Path("/p/.env")


def runtime(**fields: object) -> dict[str, bytes]:
    info = {"base_url": "/", "port": 8888, "secure": False, "sock": "", "token": "abc", "password": False,
            **fields}
    return {"nbdock-jupyter-runtime/jpserver-7.json": json.dumps(info).encode(),
            "nbdock-jupyter-runtime/kernel-1.json": b"{}"}


@pytest.mark.parametrize(("base_url", "url"), [
    ("/", "http://127.0.0.1:9000/lab?token=t%2Bx"),
    ("/lab-team/", "http://127.0.0.1:9000/lab-team/lab?token=t%2Bx"),
    ("team", "http://127.0.0.1:9000/team/lab?token=t%2Bx"),
    ("/a/b/", "http://127.0.0.1:9000/a/b/lab?token=t%2Bx"),
])
def test_the_url_follows_base_url(base_url: str, url: str) -> None:
    info = parse(runtime(base_url=base_url))
    assert info is not None and info.base_url == url.split(":9000")[1].removesuffix("lab?token=t%2Bx")
    assert info.lab_url("127.0.0.1", 9000, "t+x") == url


def test_a_server_with_a_certificate_is_https() -> None:
    info = parse(runtime(secure=True))
    assert info is not None and info.lab_url("::1", 9000, "t") == "https://[::1]:9000/lab?token=t"


def test_no_runtime_file_yet_is_none() -> None:
    assert parse({}) is None
    assert parse({"nbdock-jupyter-runtime/jpserver-1.json": b"not json"}) is None


@pytest.mark.parametrize(("info", "phrase"), [
    (ServerInfo(port=0, sock="/tmp/j.sock"), "the Unix socket /tmp/j.sock (ServerApp.sock)"),
    (ServerInfo(port=9999), "listens on port 9999 in the container, not on CONTAINER_PORT 8888"),
    (ServerInfo(port=8888, token=False), "turns token authentication off (a password alone, or nothing"),
    (ServerInfo(port=8888, token=False, password=True), "turns token authentication off (a password only"),
])
def test_what_nbdocks_url_cannot_use_is_named(info: ServerInfo, phrase: str) -> None:
    found = problem(info, 8888, ENV)
    assert found is not None and phrase in found


def test_what_works_is_no_problem() -> None:
    assert problem(ServerInfo(port=8888, base_url="/x/", password=True, secure=True), 8888, ENV) is None


class ConfiguredEngine(FakeEngine):
    def read_folder(self, container: str, path: str) -> dict[str, bytes]:
        return runtime(base_url="/lab-team/") if path == serverinfo.RUNTIME_DIR else {}


def server_on(tmp_path: Path, engine: FakeEngine) -> LocalServer:
    (tmp_path / "notebooks").mkdir(parents=True)
    (tmp_path / ".env").write_text("PROJECT_NAME=demo\nRUN_AS=1234:1234\nHOST_PORT=8899\n")
    settings = load_settings(tmp_path, environ={})
    engine.images[settings.image_name] = Image("sha256:img", dict(settings.labels))
    return LocalServer(Project(settings, engine))


def test_up_and_url_print_the_configured_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def answers(url: str, timeout: float = 2.0) -> bool:
        asked.append(url)
        return url.endswith("/lab-team")

    monkeypatch.setattr(jupyter, "answers", answers)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    local = server_on(tmp_path / "demo", ConfiguredEngine())
    server = local.run()
    assert server.url.startswith("http://127.0.0.1:8899/lab-team/lab?token=")
    assert asked[-1] == "http://127.0.0.1:8899/lab-team"
    assert local.server().url == server.url
    assert [row.url for row in local.rows()] == [server.url]


class PasswordOnlyEngine(FakeEngine):
    def read_folder(self, container: str, path: str) -> dict[str, bytes]:
        return runtime(token="", password=True)


def test_a_password_only_server_is_refused_at_once_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jupyter, "answers", lambda url, timeout=2.0: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    engine = PasswordOnlyEngine()
    local = server_on(tmp_path / "demo", engine)
    with pytest.raises(NbdockError, match="a password only"):
        local.run()
    assert engine.running == {}


class CountingEngine(ConfiguredEngine):
    """Counts what is copied out of the containers: runtime folders and token files."""

    def __init__(self) -> None:
        super().__init__()
        self.copied: list[str] = []

    def read_folder(self, container: str, path: str) -> dict[str, bytes]:
        self.copied.append(path)
        return super().read_folder(container, path)

    def read_file(self, container: str, path: str) -> bytes | None:
        self.copied.append(path)
        return super().read_file(container, path)


def test_what_a_start_said_is_copied_out_once_and_asked_again_after_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jupyter, "answers", lambda url, timeout=2.0: url.endswith("/lab-team"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    engine = CountingEngine()
    local = server_on(tmp_path / "demo", engine)
    first = local.run()
    copied = len(engine.copied)
    assert copied == 2  # the runtime folder and the token file, once each
    assert local.run().url == local.server().url == first.url
    assert len(engine.copied) == copied
    (container,) = engine.running.values()
    engine.stop(container.id)
    engine.start(container.id)  # a new start writes a new runtime file; the token stays the container's
    assert local.run().url == first.url
    assert engine.copied[copied:] == [serverinfo.RUNTIME_DIR]


def test_a_server_never_started_remembers_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    engine = CountingEngine()
    assert serverinfo.read(engine, "c1", "") == serverinfo.read(engine, "c1", "") is not None
    assert engine.copied == [serverinfo.RUNTIME_DIR] * 2
