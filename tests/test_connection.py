"""Where the engine is and why it does not answer: docker contexts as the docker CLI writes them,
and engines that fail in each way a user meets, stood in for by sockets on loopback."""

from __future__ import annotations

import http.server
import importlib.util
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbdock.engine.connection import Connected
from nbdock.engine.contexts import engine_address, named_engine
from nbdock.errors import NbdockError


def docker_cli(config: Path, *arguments: str) -> None:
    subprocess.run(["docker", *arguments], env={"DOCKER_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
                   check=True, capture_output=True)


def certificates(folder: Path) -> dict[str, Path]:
    """A self-signed certificate and its key, standing in for a CA and a client certificate."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=test"],
                   check=True, capture_output=True)
    return {"ca": cert, "cert": cert, "key": key}


def test_a_context_the_cli_made_in_a_fresh_config_is_found_with_its_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "docker"  # no config.json in it, as on a machine that never logged in
    files = certificates(tmp_path)
    tls = ",".join(f"{name}={path}" for name, path in files.items())
    docker_cli(config, "context", "create", "manager", "--docker", f"host=tcp://manager.example:2376,{tls}")
    docker_cli(config, "context", "create", "plain", "--docker", "host=ssh://me@box.example")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)  # docker-py's ContextAPI would look in ./contexts here
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    host, found = named_engine("manager", "SWARM_HOST")
    assert host == "tcp://manager.example:2376"
    assert found.verify and Path(found.ca_cert).read_text() == files["ca"].read_text()
    assert Path(found.cert[1]).read_text() == files["key"].read_text()
    assert named_engine("plain", "SWARM_HOST") == ("ssh://me@box.example", None)
    with pytest.raises(NbdockError, match=r"SWARM_HOST=nowhere is neither .* docker context in .*contexts"):
        named_engine("nowhere", "SWARM_HOST")
    monkeypatch.setenv("DOCKER_CONTEXT", "plain")  # the CLI's way to pick the current context
    assert engine_address() == "ssh://me@box.example"
    monkeypatch.setenv("DOCKER_HOST", "unix:///elsewhere.sock")
    assert engine_address() == "unix:///elsewhere.sock"
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "no-certificates"))  # TLS asked, no files there
    with pytest.raises(NbdockError, match=r"no-certificates lacks ca\.pem, cert\.pem or key\.pem"):
        engine_address()


class Answer(http.server.BaseHTTPRequestHandler):
    """A server that answers every request with `status` and `body`, as set on the class."""

    status = 404
    body = b"<!DOCTYPE HTML>\n<html>\n<p>File not found</p>\n</html>\n"

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[type[Answer]]:
    """A running `Answer` server: set `status` and `body` on what it yields; `.port` is its port."""
    handler = type("Handler", (Answer,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.port = server.server_address[1]  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler
    server.shutdown()
    server.server_close()


def message(address: str, explicit: bool = True) -> str:
    with pytest.raises(NbdockError) as raised:
        assert Connected(address if explicit else "").client is None
    text = str(raised.value)
    assert "\n" not in text
    return text


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_each_cause_gets_its_own_fix_in_one_line(answering: type[Answer], monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    port = answering.port  # type: ignore[attr-defined]
    said = message(f"tcp://127.0.0.1:{port}")  # something that is not a Docker engine
    assert "(404 Client Error" in said and "<html>" not in said and "not a Docker engine" in said

    answering.status, answering.body = 400, b"Client sent an HTTP request to an HTTPS server.\n"
    said = message(f"tcp://127.0.0.1:{port}")
    assert "asks for TLS" in said and "docker context create NAME" in said and "SWARM_HOST=NAME" in said
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    assert "DOCKER_CONTEXT=NAME" in message("", explicit=False)

    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{closed_port()}")
    said = message("", explicit=False)
    assert "(Connection refused)" in said and "sudo dockerd" in said
    remote = f"tcp://127.0.0.2:{closed_port()}"  # loopback, but not a name of this machine: as another one
    monkeypatch.setenv("DOCKER_HOST", remote)
    said = message("", explicit=False)
    assert "sudo dockerd" not in said and f"docker -H {remote} version" in said

    said = message(f"ssh://me@127.0.0.1:{closed_port()}")
    if importlib.util.find_spec("paramiko"):
        assert "(Unable to connect to port" in said and "[Errno" not in said and "SWARM_HOST names it" in said
    else:
        assert "pip install 'nbdock[ssh]'" in said

    said = message(f"unix://{tmp_path}/nothing.sock")
    assert "(No such file or directory)" in said and "SWARM_HOST names it" in said


def test_an_ssh_engine_that_hangs_up_is_one_line_without_paramikos_traceback() -> None:
    pytest.importorskip("paramiko", reason="the ssh extra is not installed")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def hang_up() -> None:
            for _ in range(4):
                connection, _ = listener.accept()
                connection.close()

        threading.Thread(target=hang_up, daemon=True).start()
        script = ("from nbdock.engine.connection import Connected\n"
                  "from nbdock.errors import NbdockError\n"
                  "try:\n"
                  f"    Connected('ssh://nobody@127.0.0.1:{port}').client\n"
                  "except NbdockError as error:\n"
                  "    print(error)\n")
        ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "cannot reach the swarm manager at ssh://nobody@127.0.0.1" in ran.stdout, ran
    assert ran.stderr == "", ran.stderr
