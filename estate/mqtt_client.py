"""Small synchronous helpers over paho-mqtt for smoke checks and tests: connect, round trip, refusals."""

from __future__ import annotations

import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from typing import Optional

import paho.mqtt.client as mqtt

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
V5_TO_V3_CONNACK = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


@dataclass
class ConnectResult:
    accepted: bool
    reason: int | None
    """CONNACK reason code (MQTT 5 numbering: 0 ok, 134 bad user name or password, 135 not authorized)."""
    error: str = ""
    client: Optional[mqtt.Client] = None
    protocol: int = V311

    @property
    def v3_return_code(self) -> int | None:
        """The MQTT 3.1.1 CONNACK return code (paho reports it in MQTT 5 numbering)."""
        return None if self.reason is None else V5_TO_V3_CONNACK.get(self.reason)

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


class AddressedClient(mqtt.Client):
    """A paho client that dials a fixed address but speaks to the host name it was given.

    Locally every pod listens on 127.0.0.1, while clients must verify the name the estate advertises (a Service
    or LoadBalancer name): SNI, certificate hostname check and the WebSocket Host header all use the name passed
    to connect(), as for a client in the cluster; only the TCP connection goes to `address`. (paho-mqtt 2.2
    opens its socket in Client._create_socket_connection, client.py; the version is pinned in requirements.)
    """

    def __init__(self, *args, address: str, **kwargs):
        super().__init__(*args, **kwargs)
        self._dial_address = address

    def _create_socket_connection(self):
        return socket.create_connection((self._dial_address, self._port), timeout=self._connect_timeout)


def connect_host(listener: dict) -> str:
    """The name a client uses for a listener: its advertised server name where there is one."""
    return listener.get("server_name") or listener["host"]


def make_client(listener: dict, *, protocol=V311, ca_file: str | None = None, cert: str | None = None,
                key: str | None = None, client_id: str | None = None, tls_version=None) -> mqtt.Client:
    kind = AddressedClient if listener.get("server_name") else mqtt.Client
    extra = {"address": listener["host"]} if listener.get("server_name") else {}
    client = kind(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"smoke-{uuid.uuid4().hex[:10]}",
                  protocol=protocol, transport=listener.get("transport", "tcp"), **extra)
    if listener.get("tls"):
        context = ssl.create_default_context(cafile=ca_file)
        if tls_version is not None:
            context.minimum_version = context.maximum_version = tls_version
        if cert:
            context.load_cert_chain(cert, key)
        client.tls_set_context(context)
    return client


def connect(listener: dict, *, username: str | None = None, password: str | None = None, protocol=V311,
            ca_file: str | None = None, cert: str | None = None, key: str | None = None,
            timeout: float = 5.0, tls_version=None, client_id: str | None = None) -> ConnectResult:
    """Connect and wait for the CONNACK; a refused or broken connection is a result, not an exception."""
    client = make_client(listener, protocol=protocol, ca_file=ca_file, cert=cert, key=key,
                         tls_version=tls_version, client_id=client_id)
    if username is not None:
        client.username_pw_set(username, password)
    done = threading.Event()
    outcome: dict = {}

    def on_connect(_c, _u, _flags, reason, _props):
        outcome["reason"] = reason.value if hasattr(reason, "value") else int(reason)
        done.set()

    def on_disconnect(_c, _u, _flags, reason, _props):
        outcome.setdefault("reason", None)
        outcome.setdefault("error", f"disconnected before CONNACK ({reason})")
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(connect_host(listener), listener["port"], keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        return ConnectResult(False, None, f"{type(exc).__name__}: {exc}")
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        return ConnectResult(False, None, "no CONNACK within timeout")
    reason = outcome.get("reason")
    if reason == 0:
        return ConnectResult(True, 0, client=client, protocol=protocol)
    client.disconnect()
    client.loop_stop()
    return ConnectResult(False, reason, outcome.get("error", ""), protocol=protocol)


def round_trip(publisher: mqtt.Client, subscriber: mqtt.Client, topic: str, qos: int = 1,
               timeout: float = 5.0, payload: bytes | None = None) -> bool:
    """Subscribe, publish one message, report whether it arrived."""
    payload = payload or uuid.uuid4().hex.encode()
    got = threading.Event()
    subscribed = threading.Event()

    def on_message(_c, _u, message):
        if message.topic == topic and message.payload == payload:
            got.set()

    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *a: subscribed.set()
    subscriber.subscribe(topic, qos)
    if not subscribed.wait(timeout):
        return False
    publisher.publish(topic, payload, qos=qos)
    return got.wait(timeout)
