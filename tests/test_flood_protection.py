"""Flood protection at the frontend (frontend.floodProtection): per-source connection-rate and concurrent limits.

On real HAProxy and mosquitto processes (tests/stacks/flood.yaml: at most 6 new connections per minute and 3
open ones per source and replica, 127.0.0.4 exempt). Each source is a loopback address of its own (127.0.0.2,
127.0.1.x): the local estate exempts 127.0.0.1, which stands for the whole plant there (estate/local.py).
The clients speak just enough MQTT 3.1.1 on raw sockets to tell HAProxy's refusal (the connection closed before
anything is read) from a broker's CONNACK. Plus what the render holds, the config check's warning and the policies.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mqtt_estate.components.haproxy_cfg import FLOOD_TABLE, render_haproxy_cfg
from mqtt_estate.components.mqtt_wire import connect_packet
from mqtt_estate.estate.haproxy_runtime import runtime_command
from mqtt_estate.estate.local import LocalEstate
from mqtt_estate.estate.policy_run import mandatory, run_policies
from mqtt_estate.estate.render import evaluate, render
from mqtt_estate.estate.stackfile import read_stack_file
from tests.conftest import ROOT
from tests.harness import by_name
from tests.test_frontend import build_frontend, sections, wait_until

STACK = ROOT / "tests" / "stacks" / "flood.yaml"
RATE, CONCURRENT, EXEMPT = 6, 3, "127.0.0.4"
"""tests/stacks/flood.yaml's limits and exempt source."""
CONNACK_OK, PINGREQ, PINGRESP, DISCONNECT = b"\x20\x02\x00\x00", b"\xc0\x00", b"\xd0\x00", b"\xe0\x00"


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def open_mqtt(port: int, source: str):
    """An MQTT session from `source` through the frontend, or None when the connection was refused."""
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((source, 0))
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(connect_packet(f"{source}-{sock.getsockname()[1]}"))  # one id per session: no take-overs
        if _recv(sock, 4) == CONNACK_OK:
            return sock
    except (ConnectionResetError, BrokenPipeError):
        pass
    sock.close()
    return None


def connect_once(port: int, source: str) -> bool:
    """Connect, log in and leave cleanly: True when the broker answered, False when HAProxy refused."""
    sock = open_mqtt(port, source)
    if sock is None:
        return False
    sock.sendall(DISCONNECT)
    _recv(sock, 1)  # the broker closes after DISCONNECT
    sock.close()
    return True


def answers_ping(sock: socket.socket) -> bool:
    sock.sendall(PINGREQ)
    return _recv(sock, 2) == PINGRESP


class Frontends:
    """The booted estate's HAProxy replicas: the sensors port and the runtime socket of each."""

    def __init__(self, conn: dict):
        self.conn = conn

    def port(self, replica: int) -> int:
        return next(lst["port"] for lst in self.conn["frontends"][replica]["listeners"] if lst["name"] == "sensors")

    def counters(self, replica: int, source: str) -> dict[str, int]:
        """The flood table's entry for a source on one replica ({} when it has none)."""
        text = runtime_command(Path(self.conn["frontends"][replica]["runtime_socket"]), f"show table {FLOOD_TABLE}")
        line = next((line for line in text.splitlines() if f"key=::ffff:{source} " in line), "")
        return {name: int(value) for name, value in re.findall(r"(conn_cur|conn_rate)\(?\d*\)?=(\d+)", line)}


@pytest.fixture(scope="module")
def front(tmp_path_factory, state_dir):
    for binary in ("mosquitto", "haproxy"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not installed (bash .ci/run installs it)")
    rendered = render("flood", STACK, out=tmp_path_factory.mktemp("out-flood") / "flood", state_dir=state_dir)
    with LocalEstate(rendered, tmp_path_factory.mktemp("local-flood")) as local:
        yield Frontends(json.loads(local.write_connection_file().read_text()))


# --- on real processes ---------------------------------------------------------------------------------------

def test_a_source_over_the_rate_is_cut_while_another_connects(front):
    port = front.port(0)
    flooder, neighbour = [], []
    for i in range(RATE + 4):
        flooder.append(connect_once(port, "127.0.0.2"))
        if i % 3 == 2:  # a neighbour connects in between, before and after the flooder is cut
            neighbour.append(connect_once(port, "127.0.0.3"))
    assert flooder == [True] * RATE + [False] * 4  # the flooder stays cut while it keeps trying
    assert neighbour == [True] * 3
    assert front.counters(0, "127.0.0.2")["conn_rate"] == RATE + 4  # refused attempts count too


def test_limits_are_counted_per_replica(front):
    """No peers for the flood table: a source cut on one replica still reaches the other (README)."""
    port0, port1 = front.port(0), front.port(1)
    assert [connect_once(port0, "127.0.0.6") for _ in range(RATE + 1)][-1] is False
    assert connect_once(port1, "127.0.0.6")
    assert front.counters(1, "127.0.0.6")["conn_rate"] == 1


def test_a_source_over_the_concurrent_limit_keeps_what_it_has(front):
    port = front.port(0)
    held = [open_mqtt(port, "127.0.0.5") for _ in range(CONCURRENT)]
    try:
        assert all(held)
        assert open_mqtt(port, "127.0.0.5") is None  # one more is refused ...
        assert all(answers_ping(sock) for sock in held)  # ... and the open ones keep working
        held.pop().close()
        # once HAProxy has seen the close (read from its table: no connection attempt is spent on waiting)
        assert wait_until(lambda: front.counters(0, "127.0.0.5").get("conn_cur") == CONCURRENT - 1, 10)
        again = open_mqtt(port, "127.0.0.5")
        assert again is not None
        held.append(again)
        assert all(answers_ping(sock) for sock in held)
    finally:
        for sock in held:
            if sock:
                sock.close()


def test_an_exempt_source_is_not_limited(front):
    port = front.port(0)
    assert all(connect_once(port, EXEMPT) for _ in range(RATE + 4))
    held = [open_mqtt(port, EXEMPT) for _ in range(CONCURRENT + 2)]
    try:
        assert all(held) and all(answers_ping(sock) for sock in held)
    finally:
        for sock in held:
            if sock:
                sock.close()
    assert front.counters(0, EXEMPT) == {}  # never tracked


def test_a_plant_wide_reconnect_storm_passes(front):
    """200 devices, each with its own address, connect at once, drop, and reconnect twice: nobody is refused."""
    port = front.port(0)
    devices = [f"127.0.1.{i}" for i in range(1, 201)]
    refused = 0
    with ThreadPoolExecutor(max_workers=50) as pool:
        for _ in range(3):  # the first connection and two reconnects, every device at the same time
            sessions = list(pool.map(lambda source: open_mqtt(port, source), devices))
            refused += sum(sock is None for sock in sessions)
            for sock in sessions:
                if sock:
                    sock.close()
    assert refused == 0
    assert front.counters(0, devices[0])["conn_rate"] == 3


# --- the render ----------------------------------------------------------------------------------------------

def _frontend_cfg(rendered_stack) -> str:
    return next(o for o in rendered_stack.objects if o["kind"] == "ConfigMap"
                and "haproxy.cfg" in o.get("data", {}))["data"]["haproxy.cfg"]


def test_every_client_frontend_counts_sources_after_its_source_check(rendered):
    cfg = _frontend_cfg(rendered("ha"))
    parts = sections(cfg)
    clients = [name for name in parts if name.startswith("frontend ") and name != "frontend stats"]
    assert {"frontend mqtt", "frontend mqtts", "frontend mqtt-shared", "frontend mqtts-shared"} <= set(clients)
    for name in clients:
        rules = [line for line in parts[name] if line.startswith("tcp-request connection")]
        assert rules[-3:] == [f"tcp-request connection track-sc0 src table {FLOOD_TABLE}",
                              "tcp-request connection reject if { sc0_conn_rate gt 20 }",
                              "tcp-request connection reject if { sc0_conn_cur gt 100 }"], name
    table = parts[f"backend {FLOOD_TABLE}"]
    assert table == ["stick-table type ipv6 size 40000 expire 20s store conn_rate(10s),conn_cur"]  # no peers


def test_exemptions_follow_the_source_check_and_off_renders_nothing():
    settings = {"ports": [{"name": "legacy", "port": 1885, "source_ranges": ["10.30.0.0/24"]}],
                "servers": ["m-0.h"], "check_port": 1884, "check_name": "m-0.h", "peers": ["f-0.fh"],
                "timeout_seconds": 90, "maxconn": 500, "server_maxconn": 50,
                "flood": {"connection_rate": 9, "rate_period_ms": 1500, "concurrent_connections": 4,
                          "exempt_sources": ["10.30.0.1/32"]}}
    rules = [line for line in sections(render_haproxy_cfg(settings))["frontend legacy"]
             if line.startswith("tcp-request connection")]
    assert rules == ["tcp-request connection reject unless { src 10.30.0.0/24 }",
                     "tcp-request connection accept if { src 10.30.0.1/32 }",
                     f"tcp-request connection track-sc0 src table {FLOOD_TABLE}",
                     "tcp-request connection reject if { sc0_conn_rate gt 9 }",
                     "tcp-request connection reject if { sc0_conn_cur gt 4 }"]
    assert "stick-table type ipv6 size 1000 expire 3s store conn_rate(1500ms),conn_cur" in render_haproxy_cfg(settings)
    off = render_haproxy_cfg({**settings, "flood": {"enabled": False, "exempt_sources": ["10.30.0.1/32"]}})
    assert "track-sc0" not in off and FLOOD_TABLE not in off and "accept if" not in off


@pytest.mark.parametrize("service_type, policy", [("LoadBalancer", "Local"), ("ClusterIP", None)])
def test_the_service_keeps_client_addresses(service_type, policy):
    registry = build_frontend(service_type=service_type, load_balancer_source_ranges=[])
    assert by_name(registry, "f-service").inputs["spec"].get("externalTrafficPolicy") == policy


def test_switching_it_off_warns_and_the_pack_refuses_it(tmp_path, state_dir):
    text = (ROOT / "Pulumi.prod.yaml").read_text().replace(
        "  mqtt-estate:frontend:\n", "  mqtt-estate:frontend:\n    floodProtection: {enabled: false}\n", 1)
    stack_file = tmp_path / "off.yaml"
    stack_file.write_text(text)
    assert [w for w in read_stack_file(stack_file).warnings if "floodProtection" in w] == [
        "off.yaml: mqtt-estate:frontend.floodProtection.enabled: false: on a LoadBalancer frontend, any address "
        "outside the cluster may open connections as fast as it likes and keep the brokers hashing wrong "
        "passwords, and the policy pack refuses it (frontend-flood-protection); list NAT gateways in "
        "exemptSources instead"]
    _, registry = evaluate("off", stack_file, state_dir)
    found = mandatory(run_policies(registry, "off"))
    assert {v.policy for v in found} == {"frontend-flood-protection"}
    assert len(found) == 3  # mqtts, mqtts-devices, wss
    changed = copy.deepcopy(registry)
    service = next(r for r in changed.resources if r.name == "mosquitto-frontend-service")
    service.inputs["spec"]["externalTrafficPolicy"] = "Cluster"
    assert not [v for v in run_policies(changed, "off") if v.policy == "frontend-client-addresses-kept"]  # no limits


def test_the_shipped_and_test_stacks_pass_the_flood_policies(rendered, state_dir):
    wanted = {"frontend-flood-protection", "frontend-client-addresses-kept"}
    for stack, config in (("prod", None), ("ha", ROOT / "tests" / "stacks" / "ha.yaml"),
                          ("ha-standby", ROOT / "tests" / "stacks" / "ha-standby.yaml"), ("flood", STACK)):
        _, registry = evaluate(stack, config, state_dir)
        assert not [v for v in run_policies(registry, stack) if v.policy in wanted], stack
