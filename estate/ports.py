"""Free ports for the local estate's processes on 127.0.0.1.

By default the kernel picks one (a bind to port 0, from its ephemeral range). `MQTT_ESTATE_LOCAL_PORTS=<low>-<high>`
confines the picks to a range of one's own: several local estates started side by side (parallel test workers,
two developers on one machine) then never hand out the same port between one's check and its listener's bind,
and a range below the ephemeral one is never taken by an outgoing connection's local port either (seen as
mosquitto's "Unable to create websockets listener" when two test workers ran at once).
"""

from __future__ import annotations

import collections
import os
import random
import socket

RANGE_VARIABLE = "MQTT_ESTATE_LOCAL_PORTS"
_RECENT = collections.deque(maxlen=1024)
"""Ports this process handed out lately, to every caller: a port is free only until its listener binds it, and
between the two another caller (the estate's moto_server, its Prometheus) must not be given it too."""


def port_range() -> tuple[int, int] | None:
    text = os.environ.get(RANGE_VARIABLE, "").strip()
    if not text:
        return None
    low, _, high = text.partition("-")
    try:
        span = int(low), int(high)
    except ValueError:
        span = (0, -1)
    if not 1024 <= span[0] <= span[1] <= 65535:
        raise ValueError(f"{RANGE_VARIABLE}={text!r}: expected <low>-<high>, 1024 <= low <= high <= 65535")
    return span


def free_port(taken: set[int] | None = None) -> int:
    """A port free on every address now, not handed out lately in this process, nor in `taken` (a run's own).

    Asked of the wildcard address, not of 127.0.0.1: clients that bind other loopback addresses (127.0.x.y, as
    devices with addresses of their own) leave their ports in use or in TIME_WAIT there, and a port free only on
    127.0.0.1 could still not be bound by mosquitto's websockets listener (seen as "Unable to create websockets
    listener" after the flood tests)."""
    span = port_range()
    for _ in range(10_000):
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", random.randint(*span) if span else 0))
            except OSError:
                continue  # taken in the range: another
            port = sock.getsockname()[1]
        if port not in _RECENT and (taken is None or port not in taken):
            _RECENT.append(port)
            if taken is not None:
                taken.add(port)
            return port
    raise RuntimeError(f"no free port in {RANGE_VARIABLE}={os.environ.get(RANGE_VARIABLE)}")
