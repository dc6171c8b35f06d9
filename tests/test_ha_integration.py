"""The HA properties on loopback: three real mosquitto brokers bridged into a star behind two real HAProxy
replicas, driven with paho-mqtt clients through the frontend (tests/stacks/ha.yaml).

P1 one logical broker, P2 failover within 2 s, P3 nothing lost that can be kept, P4 scaling without edits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from mqtt_estate.estate.haproxy_runtime import runtime_command, stick_table
from mqtt_estate.estate.render import render
from tests.conftest import ROOT, TEST_STACKS
from tests.mqtt5_kit import boot, wait_for

QOS_LEVELS = (0, 1, 2)


@pytest.fixture(autouse=True)
def _need_binaries():
    for binary in ("mosquitto", "haproxy"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not installed (bash .ci/run installs it)")


@pytest.fixture(scope="module")
def ha(rendered, tmp_path_factory):
    local, conn = boot(rendered("ha"), tmp_path_factory.mktemp("ha"))
    try:
        yield local, conn
    finally:
        local.stop()


@pytest.fixture
def fresh_ha(rendered, tmp_path):
    """A tier of its own, for tests that kill brokers."""
    local, conn = boot(rendered("ha"), tmp_path)
    try:
        yield local, conn
    finally:
        local.stop()


class Client:
    """A paho client through the frontend's plain listener, recording what it receives."""

    def __init__(self, conn: dict, client_id: str, *, will: tuple[str, bytes] | None = None, clean: bool = True):
        self.conn = conn
        self.client_id = client_id
        self.received: list[tuple[str, bytes, bool]] = []
        self.connects = 0
        self.connected = threading.Event()
        self.connect_times: list[float] = []
        self.subscriptions: list[tuple[str, int]] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                             protocol=mqtt.MQTTv311)
        creds = json.loads(Path(conn["credentials_file"]).read_text())
        self.c.username_pw_set("admin", creds["admin"])
        self.c.reconnect_delay_set(0.1, 1)
        if will:
            self.c.will_set(will[0], will[1], qos=1)
        self.unreleased: dict[int, tuple[str, bytes]] = {}
        self.completed: set[int] = set()
        self.lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.on_disconnect = lambda *a: self.connected.clear()
        self.c.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload, m.retain))

    def _on_connect(self, _c, _u, flags, reason, _props):
        if reason == 0:
            self.connects += 1
            self.connect_times.append(time.monotonic())
            for topic, qos in self.subscriptions:  # a new broker has no session: subscribe again
                self.c.subscribe(topic, qos)
            if self.connects > 1 and not flags.session_present:
                # The client contract for QoS 2 across a failover: a broker without our session cannot
                # release what the dead one acknowledged (PUBREC) but never delivered; publish it again.
                with self.lock:
                    again = list(self.unreleased.values())
                for topic, payload in again:
                    self.publish(topic, payload, 2)
            self.connected.set()

    def _on_publish(self, _c, _u, mid, _reason, _props):
        # paho calls this holding its own message lock: take ours only briefly and never call paho under it
        with self.lock:
            if self.unreleased.pop(mid, None) is None:
                self.completed.add(mid)

    def publish(self, topic: str, payload: bytes, qos: int):
        info = self.c.publish(topic, payload, qos=qos)
        if qos == 2:
            with self.lock:
                if info.mid in self.completed:  # completed before we got here
                    self.completed.discard(info.mid)
                else:
                    self.unreleased[info.mid] = (topic, payload)
        return info

    def start(self, listener: str = "mqtt") -> "Client":
        lst = next(item for item in self.conn["listeners"] if item["name"] == listener)
        self.c.connect(lst["host"], lst["port"], keepalive=10)
        self.c.loop_start()
        assert self.connected.wait(5), f"{self.client_id} did not connect"
        return self

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.subscriptions.append((topic, qos))
        self.c.subscribe(topic, qos)
        assert done.wait(5)

    def broker(self) -> str:
        return stick_table(Path(self.conn["frontends"][0]["runtime_socket"]), "mqtt")[self.client_id]

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def client_on(conn: dict, broker: str, prefix: str, **kwargs) -> Client:
    """A connected client that the frontend put on `broker` (round robin: a few ids at most)."""
    for _ in range(12):
        client = Client(conn, f"{prefix}-{uuid.uuid4().hex[:8]}", **kwargs).start()
        if client.broker() == broker:
            return client
        client.stop()
    raise AssertionError(f"no client landed on {broker}")


# --- P1: one logical broker --------------------------------------------------------------------------

@pytest.mark.parametrize("qos", QOS_LEVELS)
def test_p1_publisher_and_subscriber_on_different_brokers(ha, qos):
    _, conn = ha
    sub = client_on(conn, "b2", "sub")
    pub = client_on(conn, "b1", "pub")
    topic = f"ha/p1/{qos}/{uuid.uuid4().hex[:6]}"
    sub.subscribe(topic, qos)
    time.sleep(0.3)  # the subscription reaches the other brokers through the bridges
    payloads = [f"m{i}".encode() for i in range(50)]
    for payload in payloads:
        pub.c.publish(topic, payload, qos=qos)
    arrived = wait_for(lambda: len(sub.received) >= len(payloads), 15)
    assert arrived, f"{len(sub.received)} of {len(payloads)} arrived; missing " + str(
        sorted(set(payloads) - {p for _, p, _ in sub.received})[:10])
    time.sleep(0.5)  # anything extra (a duplicate or a loop) would arrive now
    assert [p for _, p, _ in sub.received] == payloads  # all, once each, in order
    pub.stop()
    sub.stop()


def test_p1_retained_reaches_late_subscribers_on_every_broker(ha):
    _, conn = ha
    pub = client_on(conn, "b1", "retainer")
    topic = f"ha/retained/{uuid.uuid4().hex[:6]}"
    pub.c.publish(topic, b"last-value", qos=1, retain=True).wait_for_publish(5)
    pub.stop()
    time.sleep(0.3)
    for broker in ("b0", "b1", "b2"):
        late = client_on(conn, broker, f"late-{broker}")
        late.subscribe(topic, 1)
        assert wait_for(lambda: late.received), broker
        assert late.received == [(topic, b"last-value", True)]
        late.stop()


def test_p1_last_will_crosses_brokers(ha):
    _, conn = ha
    topic = f"ha/will/{uuid.uuid4().hex[:6]}"
    sub = client_on(conn, "b2", "will-sub")
    sub.subscribe(topic, 1)
    dying = client_on(conn, "b1", "dying", will=(topic, b"gone"))
    dying.c.loop_stop()
    dying.c.socket().close()  # no DISCONNECT: the broker must publish the will
    assert wait_for(lambda: sub.received, 5)
    assert sub.received == [(topic, b"gone", False)]
    sub.stop()


def test_p1_non_mqtt_traffic_is_rejected(ha):
    import socket
    _, conn = ha
    lst = next(item for item in conn["listeners"] if item["name"] == "mqtt")
    with socket.create_connection((lst["host"], lst["port"]), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(100) == b""  # closed without an answer


def test_p1_same_client_id_returns_to_same_broker(ha):
    _, conn = ha
    first = Client(conn, "sticky-device").start()
    broker = first.broker()
    first.stop()
    for _ in range(3):
        again = Client(conn, "sticky-device").start()
        assert again.broker() == broker
        again.stop()


def test_p1_a_client_keeps_its_broker_as_long_as_its_session(ha):
    """The stickiness entry of a connected client lasts the brokers' session expiry (7d in ha.yaml), not 30 min
    from connecting: HAProxy counts an entry down from its last match however long the client stays connected
    (components/haproxy_cfg.py, STICK_EXPIRY_MAX), so a reconnect after a long connection must still find it."""
    _, conn = ha
    client = client_on(conn, "b1", "long-lived")
    try:
        text = runtime_command(Path(conn["frontends"][0]["runtime_socket"]), "show table mqtt")
        entry = next(line for line in text.splitlines() if f"key={client.client_id} " in line)
        remaining_ms = int(re.search(r" exp=(\d+)", entry).group(1))
        assert 7 * 86400 * 1000 - 60_000 < remaining_ms <= 7 * 86400 * 1000, entry
    finally:
        client.stop()


# --- P2: failover ------------------------------------------------------------------------------------

@pytest.mark.parametrize("victim", ["b1", "b0"])
def test_p2_clients_reconnect_within_two_seconds(fresh_ha, victim):
    local, conn = fresh_ha
    clients = [client_on(conn, victim, f"p2-{i}") for i in range(3)]
    killed_at = time.monotonic()
    local.kill(f"mosquitto-{victim[1:]}")
    for client in clients:
        assert wait_for(lambda: client.connects >= 2, 5), "did not reconnect"
        took = client.connect_times[-1] - killed_at
        assert took < 2.0, f"reconnected after {took:.2f} s"
        assert client.broker() != victim


def test_p2_cross_broker_delivery_survives_loss_of_the_hub(fresh_ha):
    local, conn = fresh_ha
    local.kill("mosquitto-0")  # b0 is the hub of the bridge star; b2 re-homes to b1
    sub = client_on(conn, "b2", "after-hub-sub")
    pub = client_on(conn, "b1", "after-hub-pub")
    topic = f"ha/rehome/{uuid.uuid4().hex[:6]}"
    sub.subscribe(topic, 1)
    delivered = wait_for(lambda: (pub.c.publish(topic, b"x", qos=1), time.sleep(0.2), bool(sub.received))[2], 8)
    assert delivered, "b1 and b2 never joined after the hub died"


# --- P3: nothing lost that can be kept ----------------------------------------------------------------

@pytest.mark.parametrize("qos", [1, 2])
def test_p3_no_message_lost_when_the_publishers_broker_dies(fresh_ha, qos):
    local, conn = fresh_ha
    sub = client_on(conn, "b2", "p3-sub")
    topic = f"ha/p3/{uuid.uuid4().hex[:6]}"
    sub.subscribe(topic, qos)
    pub = client_on(conn, "b1", "p3-pub")
    time.sleep(0.3)
    sent = 0
    deadline = time.monotonic() + 3.0
    killed = False
    while time.monotonic() < deadline:
        pub.publish(topic, str(sent).encode(), qos)
        sent += 1
        if not killed and sent == 100:
            local.kill("mosquitto-1")
            killed = True
        time.sleep(0.005)
    assert wait_for(lambda: {int(p) for _, p, _ in sub.received} >= set(range(sent)), 10), (
        f"lost {sorted(set(range(sent)) - {int(p) for _, p, _ in sub.received})[:20]}")
    assert pub.connects >= 2


def test_p3_retained_survive_the_loss_of_any_one_broker(fresh_ha):
    local, conn = fresh_ha
    topics = {}
    for broker in ("b0", "b1", "b2"):
        pub = client_on(conn, broker, f"keep-{broker}")
        topic = f"ha/keep/{broker}/{uuid.uuid4().hex[:6]}"
        pub.c.publish(topic, broker.encode(), qos=1, retain=True).wait_for_publish(5)
        topics[topic] = broker.encode()
        pub.stop()
    time.sleep(0.5)
    local.kill("mosquitto-1")
    for survivor in ("b0", "b2"):
        late = client_on(conn, survivor, f"late-{survivor}")
        late.subscribe("ha/keep/#", 1)
        assert wait_for(lambda: len(late.received) >= 3)
        assert {t: p for t, p, _ in late.received} == topics
        late.stop()


# --- P4: scale ---------------------------------------------------------------------------------------

def test_p4_more_replicas_take_traffic_without_editing_haproxy_cfg(rendered, tmp_path, state_dir):
    base = rendered("ha")
    config = yaml.safe_load(TEST_STACKS["ha"].read_text())
    config["config"]["mqtt-estate:broker"]["ha"]["minReplicas"] = 4
    scaled_file = tmp_path / "Pulumi.ha4.yaml"
    scaled_file.write_text(yaml.safe_dump(config))
    scaled = render("ha", scaled_file, out=tmp_path / "out", state_dir=state_dir)
    cfg = "files/mosquitto-frontend/usr/local/etc/haproxy/haproxy.cfg"
    assert (scaled.out / cfg).read_text() == (base.out / cfg).read_text()
    local, conn = boot(scaled, tmp_path)
    try:
        assert len(local.brokers) == 4
        newcomer = client_on(conn, "b3", "scale")
        peer = client_on(conn, "b0", "scale-peer")
        topic = f"ha/p4/{uuid.uuid4().hex[:6]}"
        peer.subscribe(topic, 1)
        time.sleep(0.3)
        newcomer.c.publish(topic, b"from-b3", qos=1)
        assert wait_for(lambda: peer.received)
        assert peer.received == [(topic, b"from-b3", False)]
    finally:
        local.stop()


def test_rendered_haproxy_cfg_passes_haproxy_check(ha, rendered):
    local, _ = ha
    for proc in local.frontends:
        stats = Path(proc.env["STATS_AUTH_DIR"])  # the mounted stats Secret, read by start.sh
        env = {**os.environ, **proc.env, "STATS_USER": (stats / "username").read_text(),
               "STATS_PASSWORD": (stats / "password").read_text()}
        generated = proc.directory / "tmp" / "haproxy.cfg"  # what start.sh handed to HAProxy
        check = subprocess.run(["haproxy", "-c", "-f", str(generated), "-L", proc.pod], env=env,
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
    raw = (rendered("ha").out / "files/mosquitto-frontend/usr/local/etc/haproxy/haproxy.cfg").read_text()
    assert "mqtt_is_valid" in raw and "mqtt_field_value(connect,client_identifier)" in raw
    assert "on-marked-down shutdown-sessions" in raw and "peers replicas" in raw
