"""Shared-subscription ports (frontend.sharedSubscriptions): what the config check refuses, what the frontend
renders, and that the port is no way around the broker's authentication.

The delivery itself (each message once per group, failover, non-preemption) is proven on real brokers in
tests/test_mqtt5_estate.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.mqtt5_kit import V5Client, booted_estate
from tests.test_config_errors import isolated  # noqa: F401 (fixture)
from tests.test_config_mistakes import assert_one_key_path_line

CLUSTER = """
config:
  mqtt-estate:broker:
    preset: ha-cluster
    listeners:
      - {name: mqtt, port: 1883}
      - {name: mqtts, port: 8883, tls: true}
      - {name: ws, port: 9001, protocol: websockets}
  mqtt-estate:frontend:
    sharedSubscriptions:
"""


def _shared(*entries: str) -> str:
    return CLUSTER + "".join(f"      - {entry}\n" for entry in entries)


MISTAKES = [
    # a plant engineer's slips
    ("listener-that-does-not-exist", _shared("{name: mqtts-shared, port: 8885, listener: mqtts-tls}"),
     "frontend.sharedSubscriptions[0].listener", "use one of: mqtt, mqtts"),
    ("plain-websockets-listener", _shared("{name: ws-shared, port: 9002, listener: ws}"),
     "frontend.sharedSubscriptions[0].listener", "plain websockets stay inside the cluster"),
    ("same-port-as-a-listener", _shared("{name: mqtt-shared, port: 8883, listener: mqtt}"),
     "frontend.sharedSubscriptions[0].port", "broker.listeners[1]"),
    ("same-name-as-a-listener", _shared("{name: mqtts, port: 8885, listener: mqtts}"),
     "frontend.sharedSubscriptions[0].name", "broker.listeners[1]"),
    ("two-ports-for-one-listener", _shared("{name: a-shared, port: 8885, listener: mqtts}",
                                           "{name: b-shared, port: 8886, listener: mqtts}"),
     "frontend.sharedSubscriptions[1].listener", "one per listener"),
    ("two-entries-one-port", _shared("{name: a-shared, port: 8885, listener: mqtts}",
                                     "{name: b-shared, port: 8885, listener: mqtt}"),
     "frontend.sharedSubscriptions[1].port", "frontend.sharedSubscriptions[0]"),
    ("the-internal-port", _shared("{name: a-shared, port: 1884, listener: mqtts}"),
     "frontend.sharedSubscriptions[0].port", "internalPort"),
    ("the-stats-port", _shared("{name: a-shared, port: 8404, listener: mqtts}"),
     "frontend.sharedSubscriptions[0].port", "stats"),
    ("privileged-port", _shared("{name: a-shared, port: 885, listener: mqtts}"),
     "frontend.sharedSubscriptions[0].port", "privileged"),
    ("the-stick-table-name", _shared("{name: shared-subs, port: 8885, listener: mqtts}"),
     "frontend.sharedSubscriptions[0].name", "stick table"),
    ("not-a-port-name", _shared("{name: MQTTS_SHARED, port: 8885, listener: mqtts}"),
     "frontend.sharedSubscriptions[0].name", ""),
    ("without-a-frontend", """
config:
  mqtt-estate:broker:
    listeners: [{name: mqtt, port: 1883}]
  mqtt-estate:frontend:
    sharedSubscriptions: [{name: mqtt-shared, port: 1885, listener: mqtt}]
""", "frontend.sharedSubscriptions", "no effect without the frontend"),
]


@pytest.mark.parametrize("text, path, fragment", [c[1:] for c in MISTAKES], ids=[c[0] for c in MISTAKES])
def test_mistake_is_one_key_path_line(tmp_path, capsys, text, path, fragment):
    assert_one_key_path_line(tmp_path, capsys, text, path, fragment)


# --- what the frontend renders -----------------------------------------------------------------------

def _frontend_objects(rendered_stack) -> dict:
    return {(o["kind"], o["metadata"]["name"]): o for o in rendered_stack.objects
            if o["metadata"]["name"].startswith("mosquitto-frontend")}


def test_shared_ports_are_exposed_and_forward_to_their_listener(rendered):
    objects = _frontend_objects(rendered("ha"))
    service = objects[("Service", "mosquitto-frontend")]
    assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} >= {("mqtt-shared", 1885),
                                                                         ("mqtts-shared", 8885)}
    netpol = objects[("NetworkPolicy", "mosquitto-frontend")]
    ingress_ports = {p["port"] for p in netpol["spec"]["ingress"][0]["ports"]}
    assert {1885, 8885} <= ingress_ports
    egress_ports = {p["port"] for p in netpol["spec"]["egress"][0]["ports"]}
    assert {1885, 8885}.isdisjoint(egress_ports) and {1883, 8883, 1884} <= egress_ports
    cfg = next(o for (kind, _), o in objects.items() if kind == "ConfigMap")["data"]["haproxy.cfg"]
    backend = cfg.split("backend mqtts-shared\n", 1)[1].split("\n\n", 1)[0]
    assert "stick on int(1) table shared-subs" in backend and "balance first" in backend
    assert all(line.split()[2].endswith(":8883") for line in backend.splitlines() if line.strip().startswith("server "))
    # the TLS shared port passes TLS through like its listener; the plain one inspects MQTT like its listener
    assert "req.ssl_hello_type 1" in cfg.split("frontend mqtts-shared\n", 1)[1].split("\n\n", 1)[0]
    assert "mqtt_is_valid" in cfg.split("frontend mqtt-shared\n", 1)[1].split("\n\n", 1)[0]


# --- the attack: the shared port is no way around authentication ------------------------------------------

@pytest.fixture(scope="module")
def estate(rendered, tmp_path_factory):
    with booted_estate(rendered("ha"), tmp_path_factory.mktemp("shared-auth")) as booted:
        yield booted


@pytest.mark.parametrize("credentials", [None, ("admin", "not-the-password"), ("ghost", "whatever-it-is")],
                         ids=["anonymous", "wrong-password", "unknown-user"])
def test_shared_port_refuses_whom_the_listener_refuses(estate, credentials):
    host, port = estate.shared[0]
    assert V5Client(host, port, V5Client.__name__ + "-attacker", credentials).refused() in (0x86, 0x87)


def test_shared_port_keeps_the_acl(estate):
    """A user limited to ha/# subscribes `$share/x/#` on the shared port: it gets nothing outside ha/#."""
    creds = json.loads(Path(estate.conn["credentials_file"]).read_text())
    host, port = estate.shared[0]
    app = V5Client(host, port, "acl-probe", ("app", creds["app"])).start()
    app.subscribe("$share/x/#", 1)
    admin = estate.client("b1", "acl-admin")
    admin.publish("plant/secret/recipe", b"do-not-leak", 1)
    admin.publish("ha/acl/ok", b"fine", 1)
    time.sleep(1)
    app.stop(), admin.stop()
    assert app.payloads() == [b"fine"]


def test_a_311_client_shares_through_the_same_port(estate):
    """MQTT 3.1.1 clients use the same rule (mosquitto accepts $share from 3.1.1 clients)."""
    creds = json.loads(Path(estate.conn["credentials_file"]).read_text())
    host, port = estate.shared[1]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="v311-member", protocol=mqtt.MQTTv311)
    client.username_pw_set("admin", creds["admin"])
    client.connect(host, port, 10)
    client.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.is_connected()
        assert estate.server_of_socket(client.socket()) == estate.shared_broker()
    finally:
        client.disconnect()
        client.loop_stop()
