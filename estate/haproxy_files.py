"""Rewriting a rendered haproxy.cfg for a local run: only addresses, ports and mounted paths change."""

from __future__ import annotations

import re

from .mounts import rewrite_paths


def frontend_ports(cfg: str) -> dict[str, tuple[int, bool, int]]:
    """frontend name -> (bind port, tls passthrough, broker port its backend forwards to), stats excluded."""
    binds: dict[str, list] = {}
    backends: dict[str, str] = {}
    broker_ports: dict[str, int] = {}
    kind = current = None
    for line in cfg.splitlines():
        section = re.match(r"^(frontend|backend) (\S+)", line)
        if section:
            kind, current = section.groups()
            continue
        if kind == "frontend" and current != "stats":
            bind = re.match(r"^\s+bind :(\d+)", line)
            if bind:
                binds[current] = [int(bind.group(1)), False]
            if "req.ssl_hello_type" in line:
                binds[current][1] = True
            default = re.match(r"^\s+default_backend (\S+)", line)
            if default:
                backends[current] = default.group(1)
        server = re.match(r"^\s+server \S+ [^\s:]+:(\d+)", line)
        if kind == "backend" and server:
            broker_ports.setdefault(current, int(server.group(1)))
    return {name: (port, tls, broker_ports.get(backends.get(name, ""), port)) for name, (port, tls) in binds.items()}


def rewrite_haproxy_cfg(cfg: str, binds: dict[int, int], servers: dict[tuple[str, int], int],
                        peers: dict[str, int], paths: dict[str, str], unused_port: int,
                        fd_limit: int | None = None) -> str:
    """binds: pod port -> local port; servers: (host, port) -> local port; peers: host -> local port.

    Servers of pods that do not run get an unused port and stay down, as unscheduled pods do. A separate
    health-check port (`port N` on a backend's default-server) differs per broker on one machine, so it moves
    onto each server line of that backend with that broker's local port. Like container resources, the global
    maxconn is fitted to this machine's file-descriptor limit (HAProxy needs about two per connection) when
    that is lower.
    """
    out, check_port, section = [], None, ""
    for line in cfg.splitlines():
        if line and not line[0].isspace():
            section, check_port = line.split()[0], None
        limit = re.match(r"^(\s+maxconn )(\d+)$", line)
        if section == "global" and limit and fd_limit and int(limit.group(2)) * 2 + 256 > fd_limit:
            line = f"{limit.group(1)}{(fd_limit - 256) // 2}"
        bind = re.match(r"^(\s+bind ):(\d+)(.*)$", line)
        server = re.match(r"^(\s+server \S+ )([^\s:]+):(\d+)(.*)$", line)
        peer = re.match(r"^(\s+peer \S+ )([^\s:]+):(\d+)(.*)$", line)
        if bind:
            line = f"{bind.group(1)}127.0.0.1:{binds[int(bind.group(2))]}{bind.group(3)}"
        elif line.strip().startswith("default-server") and " port " in line:
            check_port = int(re.search(r" port (\d+)", line).group(1))
            line = re.sub(r" port \d+", "", line)
        elif server:
            host, port = server.group(2), int(server.group(3))
            extra = ""
            if check_port is not None:
                extra = f" port {servers.get((host, check_port), unused_port)}"
            line = f"{server.group(1)}127.0.0.1:{servers.get((host, port), unused_port)}{server.group(4)}{extra}"
        elif peer:
            line = f"{peer.group(1)}127.0.0.1:{peers[peer.group(2)]}{peer.group(4)}"
        out.append(rewrite_paths(line, paths))
    return "\n".join(out) + "\n"
