"""A routine change made live on a running local estate, shared by tests/test_live_reload.py and
bench/reload_bench.py: the dev stack, then the same stack with one user added (sensor-03), one removed
(sensor-02) and the server certificate renewed (a new DNS name), applied the way the kubelet applies it (the
Secret volumes refreshed in place, estate/secret_volumes.py), with the reloader sidecar doing the rest."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mqtt_estate.estate.mqtt_client import connect

ROOT = Path(__file__).resolve().parent.parent
ADDED, REMOVED, STAYING = "sensor-03", "sensor-02", ("admin", "dashboard", "sensor-01")
RENEWED_NAME = "renewed.plant.example"


def changed_stack(text: str) -> str:
    """The dev stack with sensor-02 replaced by sensor-03 and a DNS name added to the server certificate."""
    removed = "    - name: sensor-02\n      role: device\n      zone: quality\n"
    assert removed in text
    return text.replace(removed, removed.replace(REMOVED, ADDED)) + \
        f"  mqtt-estate:pki:\n    extraDnsNames: [{RENEWED_NAME}]\n"


def listener(conn: dict, name: str) -> dict:
    return next(lst for lst in conn["listeners"] if lst["name"] == name)


@dataclass
class Watched:
    """A connected client that counts its connects and disconnects (paho reconnects on its own)."""
    user: str
    result: object
    connects: int = 1
    disconnects: list = field(default_factory=list)

    def close(self) -> None:
        self.result.close()


def watch(conn: dict, listener_name: str, user: str, password: str) -> Watched:
    result = connect(listener(conn, listener_name), username=user, password=password, ca_file=conn["ca_file"])
    assert result.accepted, (user, result.error or result.reason)
    watched = Watched(user, result)
    result.client.on_disconnect = lambda _c, _u, _f, reason, _p: watched.disconnects.append(str(reason))

    def on_connect(*_args):
        watched.connects += 1
    result.client.on_connect = on_connect
    return watched


def accepted(conn: dict, listener_name: str, user: str, password: str) -> bool:
    result = connect(listener(conn, listener_name), username=user, password=password, ca_file=conn["ca_file"],
                     timeout=2)
    result.close()
    return result.accepted


def served_names(conn: dict, listener_name: str) -> set[str]:
    """The DNS names of the certificate a new TLS connection is served now."""
    lst = listener(conn, listener_name)
    context = ssl.create_default_context(cafile=conn["ca_file"])
    with socket.create_connection((lst["host"], lst["port"]), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=lst["server_name"]) as tls:
        return {value for kind, value in tls.getpeercert()["subjectAltName"] if kind == "DNS"}


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Seconds until `predicate` held, or None after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def passwords(render) -> dict[str, str]:
    return dict(render.registry.stack_outputs["credentials"])


def credentials(conn: dict) -> dict[str, str]:
    return json.loads(Path(conn["credentials_file"]).read_text())


def quiet(seconds: float) -> None:
    threading.Event().wait(seconds)
