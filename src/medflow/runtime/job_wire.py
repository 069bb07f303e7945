"""What the job server and its clients say to each other over a Unix socket (stdlib only).

The client sends one request: an 8-byte length, then JSON (argv, cwd, env), with its stdin,
stdout and stderr attached as file descriptors (SCM_RIGHTS). The server answers with JSON
lines: ``{"pid": N}`` once the job runs, then ``{"exit": code}`` or ``{"signal": n}``; or
``{"fallback": why}`` when the client should run the job itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from typing import Any

ENV_VAR = "MEDFLOW_JOB_SERVER"
"""``<hostname>:<socket path>`` of the job server for this workflow run; unset: none."""

_LENGTH = struct.Struct("!Q")
_STD_FDS = (0, 1, 2)


def address(hostname: str, path: str) -> str:
    return f"{hostname}:{path}"


def socket_path(value: str | None, hostname: str) -> str | None:
    """The socket path in ``value`` if it names a server on this host; else None.

    A SLURM job inherits the login node's environment; its server's socket is not there.
    """
    if not value or ":" not in value:
        return None
    host, _, path = value.partition(":")
    return path if host == hostname and path else None


def send_request(sock: socket.socket, request: dict[str, Any]) -> None:
    payload = json.dumps(request).encode()
    data = _LENGTH.pack(len(payload)) + payload
    sent = socket.send_fds(sock, [data], list(_STD_FDS))
    sock.sendall(data[sent:])


def receive_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request and the client's three standard file descriptors (now this process's)."""
    data, fds, _, _ = socket.recv_fds(sock, 65536, len(_STD_FDS))
    if len(fds) != len(_STD_FDS) or len(data) < _LENGTH.size:
        for fd in fds:
            _close(fd)
        raise ConnectionError("malformed job request")
    (length,) = _LENGTH.unpack_from(data)
    body = bytearray(data[_LENGTH.size :])
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            for fd in fds:
                _close(fd)
            raise ConnectionError("job request cut short")
        body += chunk
    return json.loads(body), fds


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
