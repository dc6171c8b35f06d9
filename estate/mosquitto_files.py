"""Reading and rewriting a rendered mosquitto.conf for a local run: only addresses, ports and paths change."""

from __future__ import annotations

import re

from estate.mounts import rewrite_paths
from dataclasses import dataclass, field


@dataclass
class ListenerInfo:
    port: int
    bind: str | None
    name: str = ""
    protocol: str = "mqtt"
    tls: bool = False
    mtls: bool = False
    settings: dict = field(default_factory=dict)


def parse_listeners(conf: str) -> list[ListenerInfo]:
    """Listener blocks in order; a `# name` comment right before `listener` names it (as we render it)."""
    listeners: list[ListenerInfo] = []
    last_comment = ""
    for raw in conf.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            last_comment = line[1:].strip()
            continue
        if not line:
            continue
        key, _, value = line.partition(" ")
        if key == "listener":
            parts = value.split()
            listeners.append(ListenerInfo(int(parts[0]), parts[1] if len(parts) > 1 else None,
                                          last_comment.split(":")[0]))
        elif listeners:
            current = listeners[-1]
            current.settings[key] = value
            if key == "protocol":
                current.protocol = value
            elif key == "certfile":
                current.tls = True
            elif key == "require_certificate":
                current.mtls = value == "true"
        last_comment = ""
    return listeners


def rewrite_conf(conf: str, ports: dict[int, int], paths: dict[str, str],
                 addresses: dict[tuple[str, int], int] | None = None) -> str:
    """Bind every listener to 127.0.0.1 on its new port, point bridge addresses at the local brokers and
    every mounted path at its local copy."""
    out = []
    for line in conf.splitlines():
        match = re.match(r"^listener\s+(\d+)(\s+\S+)?\s*$", line)
        if match:
            line = f"listener {ports[int(match.group(1))]} 127.0.0.1"
        elif line.startswith("address "):
            targets = []
            for target in line.split()[1:]:
                host, _, port = target.rpartition(":")
                targets.append(f"127.0.0.1:{(addresses or {})[(host, int(port))]}")
            line = "address " + " ".join(targets)
        else:
            line = rewrite_paths(line, paths)
        out.append(line)
    return "\n".join(out) + "\n"
