"""The Jupyter server in the image: its command line, its token, its URL and its readiness."""

from __future__ import annotations

import json
import secrets
import urllib.request
from urllib.parse import quote

from nbdock import cache, contract

POLL_INTERVAL = 0.05
TOKEN_SECRET = "jupyter_token"
# Jupyter Server reads its token from this file and never logs it.
TOKEN_FILE_VARIABLE = "JUPYTER_TOKEN_FILE"


def console_script(module: str, function: str) -> list[str]:
    """The command that runs a Jupyter tool's console script (`jupyter lab`, `papermill`) in the
    image's Python, its arguments after it, without the rfc3987-syntax module: jsonschema, which
    Jupyter Server and nbformat import, builds some 35 Lark parsers on import when that module is
    installed (jupyter-events pulls it in), over a second of every start in these images, for
    IRI formats no Jupyter schema uses (jupyter_server#1559, jsonschema#1428)."""
    return ["python3", "-c", f'import sys; sys.modules["rfc3987_syntax"] = None; from {module} import {function}; '
            f"{function}()"]


def server_command(port: int, allow_root: bool = False) -> list[str]:
    """The command that starts the server (`jupyter lab ...`); the image's CMD and `nbdock run`
    both use it."""
    command = [
        *console_script("jupyterlab.labapp", "main"),
        "--no-browser",
        "--ip=0.0.0.0",
        f"--port={port}",
        f"--ServerApp.root_dir={contract.NOTEBOOKS}",
    ]
    if allow_root:
        command.append("--allow-root")
    return command


def new_token() -> str:
    return secrets.token_hex(24)


def kept_token(fixed: str, key: str) -> str:
    """`fixed` (JUPYTER_TOKEN) when set; else a generated token kept (0600) in nbdock's cache
    under `key`, so that a server on another engine keeps it and its URL can be printed again."""
    if fixed:
        return fixed
    token = cache.read("tokens", key)
    if not token:
        token = new_token()
        cache.write("tokens", key, token, private=True)
    return token


def format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def base_url(host: str, port: int) -> str:
    return f"http://{format_host(host)}:{port}"


def lab_url(host: str, port: int, token: str) -> str:
    """The URL that opens JupyterLab and logs in: the token is percent-encoded."""
    return f"{base_url(host, port)}/lab?token={quote(token, safe='')}"


def token_environment() -> dict[str, str]:
    """The environment that points Jupyter at its token file (the token itself is a secret)."""
    return {TOKEN_FILE_VARIABLE: contract.secret_path(TOKEN_SECRET)}


def answers(url: str, timeout: float = 2.0) -> bool:
    """True when a Jupyter server answers `GET /api` at `url` with its version."""
    try:
        with urllib.request.urlopen(f"{url}/api", timeout=timeout) as response:
            return response.status == 200 and "version" in json.load(response)
    except (OSError, ValueError):
        return False
