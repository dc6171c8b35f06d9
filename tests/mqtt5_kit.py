"""MQTT 5 clients for the cross-broker tests, and the two places they run: the local HA estate through its
frontend (each client pinned to a chosen broker by its client id) and a single plain mosquitto beside it.

A scenario is written once against `Target.client(where, ...)`; on the plain broker `where` is ignored, so the
same scenario gives the single-broker answer and the estate's answer, and the tests compare the two.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqtt_estate.estate.haproxy_runtime import peers_synced, runtime_command, stick_table
from mqtt_estate.estate.local import LocalEstate, free_port, wait_for_port

PROPERTY_NAMES = ("PayloadFormatIndicator", "MessageExpiryInterval", "ContentType", "ResponseTopic",
                  "CorrelationData", "UserProperty", "SubscriptionIdentifier", "TopicAlias")


def publish_properties(**values) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for key, value in values.items():
        setattr(props, key, value)
    return props


def properties_of(props: Optional[Properties]) -> dict:
    """The application-visible properties of a received message, as plain values."""
    found = {}
    for name in PROPERTY_NAMES:
        if props is not None and hasattr(props, name):
            value = getattr(props, name)
            found[name] = [tuple(pair) for pair in value] if name == "UserProperty" else value
    return found


class V5Client:
    """A paho MQTT 5 client that records what it receives (topic, payload, qos, retain, properties)."""

    def __init__(self, host: str, port: int, client_id: str, credentials: Optional[tuple[str, str]] = None, *,
                 clean_start: bool = True, session_expiry: int = 0,
                 will: Optional[tuple[str, bytes, Properties]] = None, reconnect: bool = False,
                 tls: Optional[tuple[Path, Path, Path]] = None, connect_properties: Optional[dict] = None):
        """`tls`: (CA, certificate, key) for an mTLS listener, whose server must have 127.0.0.1 among its names;
        `connect_properties`: more CONNECT properties by paho name (e.g. TopicAliasMaximum)."""
        self.connect_properties = dict(connect_properties or {})
        self.host, self.port, self.client_id = host, port, client_id
        self.clean_start, self.session_expiry = clean_start, session_expiry
        self.received: list[dict] = []
        self.connected = threading.Event()
        self.connacks: list[tuple[int, bool]] = []
        self.subscriptions: list[tuple[str, SubscribeOptions, Optional[Properties]]] = []
        self.resubscribe = reconnect
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if credentials:
            self.c.username_pw_set(*credentials)
        if tls:
            self.c.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
        if will:
            self.c.will_set(will[0], will[1], qos=1, properties=will[2])
        self.c.reconnect_delay_set(0.1, 1)
        self.c.on_connect = self._on_connect
        self.connack_properties: dict = {}
        self.c.on_disconnect = lambda *_: self.connected.clear()
        self.c.on_message = lambda _c, _u, m: self.received.append({
            "topic": m.topic, "payload": m.payload, "qos": m.qos, "retain": bool(m.retain),
            "properties": properties_of(getattr(m, "properties", None)), "at": time.monotonic()})

    def _on_connect(self, _c, _u, flags, reason, props):
        self.connacks.append((reason.value, bool(flags.session_present)))
        self.connack_properties = props.json() if props is not None else {}
        if reason.value == 0:
            if self.resubscribe and len(self.connacks) > 1 and not flags.session_present:
                for topic, options, props in self.subscriptions:
                    self.c.subscribe(topic, options=options, properties=props)
            self.connected.set()

    def _connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        if self.session_expiry:
            props.SessionExpiryInterval = self.session_expiry
        for key, value in self.connect_properties.items():
            setattr(props, key, value)
        self.c.connect(self.host, self.port, keepalive=10, clean_start=self.clean_start, properties=props)
        self.c.loop_start()

    def start(self) -> "V5Client":
        self._connect()
        assert self.connected.wait(5), f"{self.client_id} did not connect: {self.connacks}"
        return self

    def refused(self) -> int:
        """Connect expecting a refusal: the CONNACK reason code (0 if it was accepted)."""
        self._connect()
        wait_for(lambda: self.connacks, 5)
        self.c.loop_stop()
        self.c.disconnect()
        assert self.connacks, f"{self.client_id}: no CONNACK"
        return self.connacks[-1][0]

    @property
    def session_present(self) -> bool:
        return self.connacks[-1][1]

    def subscribe(self, topic: str, qos: int = 1, *, no_local: bool = False, retain_as_published: bool = False,
                  subscription_id: Optional[int] = None) -> list[int]:
        done = threading.Event()
        codes: list[int] = []
        self.c.on_subscribe = lambda _c, _u, _mid, reasons, _p: (codes.extend(r.value for r in reasons), done.set())
        options = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=retain_as_published)
        props = None
        if subscription_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = subscription_id
        self.subscriptions.append((topic, options, props))
        self.c.subscribe(topic, options=options, properties=props)
        assert done.wait(5), f"no SUBACK for {topic}"
        return codes

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                properties: Optional[Properties] = None) -> None:
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos:
            info.wait_for_publish(5)

    def payloads(self, topic: Optional[str] = None) -> list[bytes]:
        return [m["payload"] for m in self.received if topic is None or m["topic"] == topic]

    def stop(self) -> None:
        """A clean DISCONNECT (no will)."""
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self) -> None:
        """The network goes away without a DISCONNECT: the broker publishes the will."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def boot(rendered_estate, tmp_path):
    local = LocalEstate(rendered_estate, tmp_path / "local")
    local.__enter__()
    conn = json.loads(local.write_connection_file().read_text())
    try:
        wait_for_peer_sync(conn)
    except BaseException:
        local.stop()
        raise
    return local, conn


def wait_for_peer_sync(conn: dict, timeout: float = 15.0) -> None:
    """Until every HAProxy replica has finished its start-up resync (about 5 s when all replicas start together:
    each waits for the others to teach it, then gives up). Before that a full resync from the other replica can
    still arrive and put back stick-table entries that were redispatched in the meantime."""
    sockets = [Path(f["runtime_socket"]) for f in conn["frontends"]]
    deadline = time.monotonic() + timeout
    while not all(peers_synced(sock) for sock in sockets):
        assert time.monotonic() < deadline, "HAProxy peers did not finish their start-up resync"
        time.sleep(0.1)


class Target:
    """Where a scenario runs; `client(where)` gives a started client on broker `where` (b0, b1, ...)."""

    name = ""
    address: tuple[str, int] = ("127.0.0.1", 0)
    """Where a client connects when the broker does not matter (the estate: its ordinary MQTT port)."""
    credentials: Optional[tuple[str, str]] = None
    bridge_delay = 0.0
    """How long a new subscription takes to be known where publishers are (the bridges), before publishing."""

    def client(self, where: str, prefix: str, **kwargs) -> V5Client:
        raise NotImplementedError

    def shared_client(self, prefix: str, **kwargs) -> V5Client:
        """A client for `$share/...` subscriptions (the estate's shared-subscription port)."""
        raise NotImplementedError

    @staticmethod
    def new_id(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"


class PlainMosquitto(Target):
    """One mosquitto with its defaults, anonymous on 127.0.0.1: the reference answer."""

    name = "single"

    def __init__(self, port: int):
        self.address = ("127.0.0.1", port)

    def client(self, where: str, prefix: str, client_id: Optional[str] = None, **kwargs) -> V5Client:
        return V5Client(*self.address, client_id or self.new_id(prefix), **kwargs).start()

    def shared_client(self, prefix: str, client_id: Optional[str] = None, replica: int = 0, **kwargs) -> V5Client:
        return self.client("", prefix, client_id, **kwargs)


@contextmanager
def plain_mosquitto(directory: Path) -> Iterator[PlainMosquitto]:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n")
    conf.chmod(0o644)
    directory.chmod(0o755)
    log = directory / "process.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield PlainMosquitto(port)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Estate(Target):
    """The local HA estate through its frontend; clients are pinned to brokers by their client ids."""

    name = "estate"
    bridge_delay = 0.3

    def __init__(self, local, conn: dict, listener: str = "mqtt", shared_listener: str = "mqtt-shared",
                 standby: bool = False):
        self.local, self.conn = local, conn
        creds = json.loads(Path(conn["credentials_file"]).read_text())
        self.credentials = ("admin", creds["admin"])
        frontend = conn["frontends"][0]
        self.socket = Path(frontend["runtime_socket"])
        self.listener = self.address = self._address(frontend, listener)
        self.shared = [self._address(replica, shared_listener) for replica in conn["frontends"]]
        self.standby = standby
        """active-standby topology: every client on the one serving broker."""

    @staticmethod
    def _address(frontend: dict, name: str) -> tuple[str, int]:
        lst = next(item for item in frontend["listeners"] if item["name"] == name)
        return lst["host"], lst["port"]

    def broker_of(self, client_id: str) -> Optional[str]:
        return stick_table(self.socket, "mqtt").get(client_id)

    def shared_broker(self) -> Optional[str]:
        """The broker every shared-subscription consumer is sent to (the one entry of the shared table)."""
        return stick_table(self.socket, "shared-subs").get("1")

    def client(self, where: str, prefix: str, client_id: Optional[str] = None, **kwargs) -> V5Client:
        """A started client on broker `where`. Without `client_id`, ids are tried with a short clean connection
        until the frontend sticks one to `where` (round robin: a few at most); the id keeps that broker.
        In the active-standby topology every client goes to the one serving broker, and `where` is ignored."""
        if self.standby:
            return V5Client(*self.listener, client_id or self.new_id(prefix), self.credentials, **kwargs).start()
        for _ in range(24):
            if client_id is None:
                probe = V5Client(*self.listener, self.new_id(prefix), self.credentials).start()
                probe.stop()
                if self.broker_of(probe.client_id) != where:
                    continue
            client = V5Client(*self.listener, client_id or probe.client_id, self.credentials, **kwargs).start()
            landed = self.broker_of(client.client_id)
            assert landed == where, f"{client.client_id} is on {landed}, not {where}"
            return client
        raise AssertionError(f"no client landed on {where}")

    def shared_client(self, prefix: str, client_id: Optional[str] = None, replica: int = 0, **kwargs) -> V5Client:
        """A client through HAProxy replica `replica`'s shared-subscription port."""
        return V5Client(*self.shared[replica], client_id or self.new_id(prefix), self.credentials, **kwargs).start()

    def broker_of_connection(self, client: V5Client) -> str:
        return self.server_of_socket(client.c.socket())

    def server_of_socket(self, sock) -> str:
        """The broker (HAProxy server name) a live connection goes to, from the replicas' session lists."""
        local_port = sock.getsockname()[1]
        for replica in self.conn["frontends"]:
            text = runtime_command(Path(replica["runtime_socket"]), "show sess all")
            for block in text.split("\n0x"):
                if re.search(rf"source=127\.0\.0\.1:{local_port}\b", block):
                    server = re.search(r"server=(\S+)", block)
                    if server:
                        return server.group(1)
        raise AssertionError(f"no HAProxy session for local port {local_port}")


@contextmanager
def booted_estate(rendered_stack, directory: Path, standby: bool = False) -> Iterator[Estate]:
    """A local estate of `rendered_stack` (peers synced), stopped on exit."""
    local, conn = boot(rendered_stack, directory)
    try:
        yield Estate(local, conn, standby=standby)
    finally:
        local.stop()
