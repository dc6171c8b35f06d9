"""HAProxy's runtime API (the stats socket) for a local estate: which broker a client id is stuck to."""

from __future__ import annotations

import re
import socket
from pathlib import Path


def runtime_command(sock_path: Path, command: str, timeout: float = 2.0) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


def stick_table(sock_path: Path, table: str) -> dict[str, str]:
    """key (client id or source address) -> server name, e.g. {'c0': 'b0'}."""
    text = runtime_command(sock_path, f"show table {table}")
    return {m.group(1): m.group(2) for m in re.finditer(r"key=(\S+) .*?server_key=(\S+)", text)}


def server_states(sock_path: Path, backend: str) -> dict[str, int]:
    """server name -> operational state (0 down, 2 up) from `show servers state`."""
    states = {}
    for line in runtime_command(sock_path, f"show servers state {backend}").splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[0].isdigit():
            states[parts[3]] = int(parts[5])
    return states
