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
    """key (client id or source address) -> server name, e.g. {'c0': 'b0'}. Source tables are `type ipv6`, which
    store an IPv4 client as its mapped address (::ffff:127.0.0.2); it is given back as the IPv4 address."""
    text = runtime_command(sock_path, f"show table {table}")
    return {_unmapped(m.group(1)): m.group(2) for m in re.finditer(r"key=(\S+) .*?server_key=(\S+)", text)}


def _unmapped(key: str) -> str:
    return key[len("::ffff:"):] if key.startswith("::ffff:") and "." in key else key


def server_states(sock_path: Path, backend: str) -> dict[str, int]:
    """server name -> operational state (0 down, 2 up) from `show servers state`."""
    states = {}
    for line in runtime_command(sock_path, f"show servers state {backend}").splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[0].isdigit():
            states[parts[3]] = int(parts[5])
    return states


PEERS_RESYNC_DONE = 0x3
"""PEERS_F_RESYNC_LOCAL | PEERS_F_RESYNC_REMOTE: the peers section learnt what an old local process and the
remote peers had to teach, or gave up waiting (HAProxy src/peers.c:60-61 and 78, tag v2.8.0; 2.6 likewise)."""


def peers_synced(sock_path: Path, section: str = "replicas") -> bool:
    """Whether a peers section has finished its start-up resync (`show peers` flags). Until then a full resync
    from a peer may still arrive and overwrite stick-table entries written locally in the meantime."""
    match = re.search(rf"id={re.escape(section)} .*?flags=(0x[0-9a-fA-F]+)", runtime_command(sock_path, "show peers"))
    return bool(match) and int(match.group(1), 16) & PEERS_RESYNC_DONE == PEERS_RESYNC_DONE
