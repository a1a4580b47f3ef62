"""Make a port on the host's loopback answer on the same loopback port inside other network namespaces.

Run as `python forwarder.py PORT NETNS_FILE...`: for each namespace file (such as /run/netns/NAME) it
listens on 127.0.0.1:PORT inside that namespace and copies every connection, both ways, to
127.0.0.1:PORT in the namespace it was started in. It prints `ready` once every listener is bound,
and runs until it is terminated. The test cluster uses it so that one registry reference such as
`127.0.0.1:5000/name:tag` works for the host engine's push and for every node engine's pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000


def enter(namespace_fd: int) -> None:
    """Move the calling thread into the network namespace open at `namespace_fd`; raises OSError."""
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(namespace_fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(namespace_fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def listen_in(namespace: str, port: int, home_fd: int) -> socket.socket:
    """A socket listening on 127.0.0.1:`port` inside `namespace`; the thread is back home afterwards."""
    target = os.open(namespace, os.O_RDONLY)
    try:
        enter(target)
        try:
            listener = socket.create_server(("127.0.0.1", port), backlog=64)
        finally:
            enter(home_fd)
    finally:
        os.close(target)
    listener.setblocking(False)
    return listener


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def serve(listeners: list[socket.socket], port: int) -> None:
    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    servers = [await asyncio.start_server(forward, sock=listener) for listener in listeners]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main(arguments: list[str]) -> None:
    port, namespaces = int(arguments[0]), arguments[1:]
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    listeners = [listen_in(namespace, port, home) for namespace in namespaces]
    asyncio.run(serve(listeners, port))


if __name__ == "__main__":
    main(sys.argv[1:])
