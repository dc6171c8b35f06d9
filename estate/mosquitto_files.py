"""Rewriting a rendered mosquitto.conf for a local run: only addresses, ports and paths change."""

from __future__ import annotations

import re

from .mounts import rewrite_paths


def rewrite_conf(conf: str, ports: dict[int, int], paths: dict[str, str],
                 addresses: dict[tuple[str, int], int] | None = None, keep_names: bool = False) -> str:
    """Bind every listener to 127.0.0.1 on its new port, point bridge addresses at the local brokers and
    every mounted path at its local copy. With `keep_names`, bridge addresses keep their host names (they
    resolve to 127.0.0.1 in the broker's own hosts file), so bridges verify the certificate as in the pod."""
    out = []
    for line in conf.splitlines():
        match = re.match(r"^listener\s+(\d+)(\s+\S+)?\s*$", line)
        if match:
            line = f"listener {ports[int(match.group(1))]} 127.0.0.1"
        elif line.startswith("address "):
            targets = []
            for target in line.split()[1:]:
                host, _, port = target.rpartition(":")
                targets.append(f"{host if keep_names else '127.0.0.1'}:{(addresses or {})[(host, int(port))]}")
            line = "address " + " ".join(targets)
        else:
            line = rewrite_paths(line, paths)
        out.append(line)
    return "\n".join(out) + "\n"
