"""Per-listener anonymous access (legacy sensors on an isolated network), proved on real things.

- the config mistakes a plant engineer would make are refused with one key-path line: every case in process in
  tests/test_config_mistakes.py (section 9), the common ones here through `python -m estate render` (exit 2, no
  traceback);
- under Pulumi mocks: the listener's own ACL file in the auth Secret, its NetworkPolicy rule of ipBlocks, HAProxy's
  `src` check, and the start script that copies every ACL file;
- real mosquitto booted from the rendered tests/stacks/anonymous.yaml: anonymous clients may use legacy/# on the
  `legacy` listener and nothing else, nowhere else; named users keep their own rights there; the attack (reading
  `#`, `$SYS/#` and other users' topics) yields nothing;
- real HAProxy: the rendered `src` check refuses sources outside the listener's ranges and admits the others;
- the policy pack flags the anonymous listener without source ranges and passes it with them.

Nothing here waits a fixed time for something not to happen: a message that must not arrive is followed by a
marker on an allowed topic from the same publisher, and mosquitto delivers one client's messages in order, so
the marker's arrival proves the other was never sent.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from mqtt_estate.components.broker import MosquittoBroker, pod_dns_names
from mqtt_estate.components.haproxy import HaProxyFrontend
from mqtt_estate.components.haproxy_cfg import FLOOD_TABLE, mqtt_connect_hex, render_haproxy_cfg
from mqtt_estate.components.pki import Pki
from mqtt_estate.components.reloader_sidecar import AUTH_FILES
from mqtt_estate.estate.cli import EXIT_CONFIG
from mqtt_estate.estate.local import LocalEstate, free_port
from mqtt_estate.estate.mqtt_client import V5, V311, connect
from mqtt_estate.estate.policy_run import mandatory, run_policies
from mqtt_estate.estate.render import evaluate, render
from mqtt_estate.estate.smoke import run_smoke
from tests.conftest import ROOT, _require
from tests.harness import by_name, run_components
from tests.test_config_errors import TRACEBACK, isolated, render_cli  # noqa: F401 (fixture)
from tests.test_config_mistakes import MISTAKES, _without_ranges

STACK = ROOT / "tests" / "stacks" / "anonymous.yaml"
ANONYMOUS_POLICIES = {"broker-no-anonymous", "broker-anonymous-listener-restricted"}
from mqtt_estate.policy.rules_broker import parse_acl  # noqa: E402


# --- config mistakes: tests/test_config_mistakes.py runs every case in process; here through the CLI --------

@pytest.mark.parametrize("case", ["anonymous-on-a-load-balancer", "anonymous-without-topics",
                                  "topics-without-anonymous", "anonymous-on-an-mtls-listener",
                                  "open-ipv4-source-range", "open-ipv6-source-range"])
def test_mistake_through_the_cli_exits_2_without_a_traceback(tmp_path, case):
    _, text, path, fragment = next(c for c in MISTAKES if c[0] == case)
    stack_file, out = render_cli(tmp_path, text)
    proc = subprocess.run([sys.executable, "-m", "estate", "render", "--stack", "bad", "--config", str(stack_file),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_CONFIG
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bad.yaml: mqtt-estate:{path}: ") and fragment in lines[0], lines
    assert TRACEBACK not in proc.stdout + proc.stderr and proc.stdout == "" and not out.exists()


def test_the_shipped_example_is_accepted_and_warns_only_without_ranges(tmp_path, state_dir):
    from mqtt_estate.estate.stackfile import read_stack_file

    assert read_stack_file(STACK).warnings == []
    open_file = tmp_path / "open.yaml"
    open_file.write_text(_without_ranges(STACK.read_text()))
    assert read_stack_file(open_file).warnings == [
        "open.yaml: mqtt-estate:broker.listeners[2].sourceRanges: is empty: every address that reaches port 1885 "
        "connects without a password, and the policy pack refuses that (broker-anonymous-listener-restricted); "
        "name the sensors' networks"]


# --- component shape under Pulumi mocks ----------------------------------------------------------------------

LISTENERS = [
    {"name": "mqtt", "port": 1883},
    {"name": "legacy", "port": 1885, "allow_anonymous": True,
     "anonymous_topics": [{"access": "readwrite", "topic": "legacy/#"}],
     "source_ranges": ["10.30.0.0/24", "fd00:30::/48"]},
    {"name": "mqtts-dev", "port": 8884, "tls": True, "require_certificate": True},
]
SETTINGS = {"listeners": LISTENERS, "allow_anonymous": False, "persistence": True, "autosave_interval": 60,
            "session_expiry": "7d", "max_connections": 100, "max_queued_messages": 1000,
            "max_inflight_messages": 20, "max_packet_size": 1048576, "max_keepalive": 300}
USERS = [{"name": "admin", "role": "admin"},
         {"name": "plc-7", "topics": [{"access": "write", "topic": "plant/plc-7/#"}]}]


def build_broker(listeners=LISTENERS, **overrides):
    def body():
        pki = Pki("b-pki", {"server_dns_names": pod_dns_names("b", "ns", 1), "client_names": []})
        MosquittoBroker("b", {
            "namespace": "ns", "replicas": 1, "settings": {**SETTINGS, "listeners": listeners},
            "password_iterations": 1000, "users": USERS,
            "acl_patterns": [{"access": "readwrite", "topic": "devices/%u/#"}],
            "ca_cert_pem": pki.ca_cert_pem, "server_cert_pem": pki.server_cert_pem,
            "server_key_pem": pki.server_key_pem, "client_certificates": pki.clients, **overrides})
    return run_components(body)


@pytest.fixture(scope="module")
def broker_registry():
    return build_broker()


def test_the_listener_gets_an_acl_file_of_its_own_in_the_auth_secret(broker_registry):
    data = by_name(broker_registry, "b-auth").inputs["stringData"]
    assert sorted(data) == ["acl", "legacy.acl", "passwd"]
    own, shared = parse_acl(data["legacy.acl"]), parse_acl(data["acl"])
    assert not own.errors and own.blocks[0].user is None  # the anonymous rules, before any `user` line
    assert [r.text for r in own.blocks[0].rules] == ["topic readwrite legacy/#"]
    assert [(b.user, [r.text for r in b.rules]) for b in own.blocks[1:]] == \
        [(b.user, [r.text for r in b.rules]) for b in shared.blocks]  # the same user blocks, nothing else
    assert [r.text for r in own.patterns] == [r.text for r in shared.patterns] == ["pattern readwrite devices/%u/#"]
    conf = by_name(broker_registry, "b-config").inputs["data"]["mosquitto.conf"]
    blocks = {block.split("\n", 1)[0]: block for block in conf.split("\n\n")}
    assert "allow_anonymous true\npassword_file /mosquitto/run/passwd\nacl_file /mosquitto/run/legacy.acl" \
        in blocks["# legacy"]
    assert "allow_anonymous false\npassword_file /mosquitto/run/passwd\nacl_file /mosquitto/run/acl" in blocks["# mqtt"]
    assert "allow_anonymous false\nuse_identity_as_username true\nacl_file /mosquitto/run/acl" in blocks["# mqtts-dev"]


def test_anonymous_rules_change_only_the_auth_secret():
    """Changing what anonymous clients may do updates the auth Secret (the listener's own ACL file, which the
    reloader applies with SIGHUP) and leaves the pod template as it was."""
    def parts(registry):
        return (by_name(registry, "b-auth").inputs["stringData"]["legacy.acl"],
                by_name(registry, "b-statefulset").inputs["spec"]["template"])

    narrower = [{**LISTENERS[1], "anonymous_topics": [{"access": "write", "topic": "legacy/#"}]}]
    (acl_before, pod_before), (acl_after, pod_after) = parts(build_broker()), parts(
        build_broker(LISTENERS[:1] + narrower + LISTENERS[2:]))
    assert acl_before != acl_after and pod_before == pod_after


def test_network_policy_gives_the_listener_a_rule_of_its_ranges(broker_registry):
    ingress = by_name(broker_registry, "b-netpol").inputs["spec"]["ingress"]
    assert ingress == [
        {"ports": [{"port": 1883, "protocol": "TCP"}, {"port": 8884, "protocol": "TCP"}]},
        {"from": [{"ipBlock": {"cidr": "10.30.0.0/24"}}, {"ipBlock": {"cidr": "fd00:30::/48"}}],
         "ports": [{"port": 1885, "protocol": "TCP"}]},
    ]


def test_network_policy_never_opens_every_port_when_every_listener_has_ranges():
    ranged = [{**lst, "source_ranges": ["10.40.0.0/24"]} for lst in LISTENERS]
    ingress = by_name(build_broker(ranged), "b-netpol").inputs["spec"]["ingress"]
    assert ingress and all(rule.get("from") and rule.get("ports") for rule in ingress)


def test_behind_a_frontend_the_broker_admits_the_frontend_pods_only():
    registry = build_broker(internal_clients=[{"app": "fe"}])
    ingress = by_name(registry, "b-netpol").inputs["spec"]["ingress"]
    assert ingress[0] == {"ports": [{"port": 1883, "protocol": "TCP"}, {"port": 1885, "protocol": "TCP"},
                                    {"port": 8884, "protocol": "TCP"}],
                          "from": [{"podSelector": {"matchLabels": {"app": "fe"}}}]}
    assert "ipBlock" not in json.dumps(ingress)


def build_frontend(ports):
    def body():
        pki = Pki("f-pki", {"server_dns_names": ["m-0.h.ns.svc.cluster.local"], "client_names": ["check"]})
        HaProxyFrontend("f", {
            "namespace": "ns", "replicas": 2, "ports": ports, "broker_servers": ["m-0.h.ns.svc.cluster.local"],
            "broker_selector": {"app": "m"}, "internal_port": 1884, "check_name": "m-0.h.ns.svc.cluster.local",
            "check_certificate": pki.clients["check"], "ca_cert_pem": pki.ca_cert_pem, "timeout_seconds": 90,
            "service_type": "ClusterIP"})
    return run_components(body)


def frontend_sections(cfg: str) -> dict[str, list[str]]:
    found, current = {}, None
    for line in cfg.splitlines():
        if line.startswith("frontend "):
            current = found.setdefault(line, [])
        elif line and not line[0].isspace():
            current = None
        elif current is not None and line.strip():
            current.append(line.strip())
    return found


def test_the_frontend_checks_the_source_before_reading_a_byte():
    registry = build_frontend([{"name": "legacy", "port": 1885, "source_ranges": ["10.30.0.0/24", "fd00:30::/48"]},
                               {"name": "mqtts", "port": 8883, "tls": True}])
    cfg = by_name(registry, "f-config").inputs["data"]["haproxy.cfg"]
    sections = frontend_sections(cfg)
    legacy = sections["frontend legacy"]
    assert legacy[:3] == ["bind :1885", "maxconn 20000",
                          "tcp-request connection reject unless { src 10.30.0.0/24 fd00:30::/48 }"]
    rules = [line for line in legacy if not line.startswith("#")]  # then the flood limits (test_flood_protection.py)
    assert rules.index("tcp-request inspect-delay 5s") > 2
    assert not any(line.startswith("tcp-request connection reject unless") for line in sections["frontend mqtts"])


def test_the_start_script_copies_every_acl_file_private(tmp_path):
    """The pod's own start script, with a stand-in for mosquitto: every `*.acl` of the auth Secret reaches the run
    directory as the broker user's own file, mode 0600, and a Secret without listener ACLs still starts."""
    script = ROOT / "components" / "mosquitto_start.sh"
    fake = tmp_path / "bin" / "mosquitto"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho started \"$@\"\n")
    fake.chmod(0o755)
    for listener_acls in ({}, {"legacy.acl": "topic legacy/#\n", "line-2.acl": "topic line-2/#\n"}):
        dirs = {name: tmp_path / str(len(listener_acls)) / name for name in ("config", "auth", "run")}
        for directory in dirs.values():
            directory.mkdir(parents=True)
        (dirs["config"] / "health.acl").write_text("topic read $SYS/broker/uptime\n")
        (dirs["config"] / "auth-files.sh").write_text(AUTH_FILES)  # the ConfigMap holds both scripts
        for name, text in {"passwd": "admin:$7$x\n", "acl": "user admin\ntopic #\n", **listener_acls}.items():
            (dirs["auth"] / name).write_text(text)
            (dirs["auth"] / name).chmod(0o444)
        env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "MOSQUITTO_CONFIG_DIR": str(dirs["config"]),
               "MOSQUITTO_AUTH_DIR": str(dirs["auth"]), "MOSQUITTO_RUN_DIR": str(dirs["run"])}
        proc = subprocess.run(["/bin/sh", str(script), "/conf"], env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and proc.stdout == "started -c /conf\n", proc.stderr
        copied = {p.name: stat.S_IMODE(p.stat().st_mode) for p in dirs["run"].iterdir()}
        # and the fingerprint of what mosquitto was given, for the reloader sidecar
        assert copied == {name: 0o600 for name in ["passwd", "acl", "health.acl", "applied-fingerprint",
                                                   *listener_acls]}
        for name, text in listener_acls.items():
            assert (dirs["run"] / name).read_text() == text


# --- real HAProxy: the rendered source check -----------------------------------------------------------------

def _frontend_counters(sock_path: Path) -> dict[str, dict[str, str]]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(sock_path))
        sock.sendall(b"show stat\n")
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
    return {row["pxname"]: row for row in rows if row.get("svname") == "FRONTEND"}


def _wait_for_stats(sock_path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30  # a guard against a hang, not a measurement
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            _frontend_counters(sock_path)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("HAProxy's stats socket never answered")


def _until_closed(port: int, payload: bytes) -> None:
    """Connect from 127.0.0.1, send `payload` and read until HAProxy closes (or resets) the connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)  # a guard against a hang, not a measurement
        try:
            sock.sendall(payload)
            while sock.recv(4096):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass


def test_real_haproxy_refuses_sources_outside_the_ranges_and_admits_the_others(tmp_path):
    """The frontend sections exactly as rendered, in a minimal HAProxy (2.6 here, as the estate requires) with
    backends that have no server. HAProxy counts connections refused by `tcp-request connection` rules as `dcon`
    (doc/configuration.txt 13233-13236, tag v2.8.0) and sessions as `stot`: the outsider is refused at once, the
    admitted client becomes a session whose MQTT CONNECT passes the content check and then finds no server."""
    _require("haproxy")
    cfg = render_haproxy_cfg({
        "ports": [{"name": "outside", "port": 1885, "source_ranges": ["10.30.0.0/24", "fd00:30::/48"]},
                  {"name": "inside", "port": 1886, "source_ranges": ["10.30.0.0/24", "127.0.0.0/8"]}],
        "servers": [], "check_port": 1884, "check_name": "m-0", "peers": [], "timeout_seconds": 90, "maxconn": 100,
        "server_maxconn": 50})
    sections = frontend_sections(cfg)
    ports = {"outside": free_port(), "inside": free_port()}
    sock_path = tmp_path / "haproxy.sock"
    lines = ["global", f"    stats socket {sock_path} mode 600 level admin", "defaults", "    mode tcp",
             "    timeout connect 2s", "    timeout client 30s", "    timeout server 30s"]
    for name in ports:
        body = [f"bind 127.0.0.1:{ports[name]}" if line.startswith("bind ") else line
                for line in sections[f"frontend {name}"]]
        lines += [f"frontend {name}", *[f"    {line}" for line in body], f"backend {name}"]
    lines += [f"backend {FLOOD_TABLE}", *cfg.split(f"\nbackend {FLOOD_TABLE}\n", 1)[1].splitlines()]  # their limits
    (tmp_path / "haproxy.cfg").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        _wait_for_stats(sock_path, proc)  # HAProxy serves its socket once every listener is bound; no probes
        for port in ports.values():
            _until_closed(port, bytes.fromhex(mqtt_connect_hex("test")))
        counters = _frontend_counters(sock_path)
        assert (counters["outside"]["dcon"], counters["outside"]["stot"]) == ("1", "0")
        assert (counters["inside"]["dcon"], counters["inside"]["stot"]) == ("0", "1")
    finally:
        proc.kill()
        proc.wait()


# --- real mosquitto from the rendered stack ------------------------------------------------------------------

@pytest.fixture(scope="module")
def anonymous_render(tmp_path_factory, state_dir):
    return render("anonymous", STACK, out=tmp_path_factory.mktemp("out-anonymous") / "anonymous", state_dir=state_dir)


@pytest.fixture(scope="module")
def local_anonymous(anonymous_render, tmp_path_factory):
    _require("mosquitto")
    with LocalEstate(anonymous_render, tmp_path_factory.mktemp("local-anonymous")) as local:
        yield json.loads(local.write_connection_file().read_text())


def listener(conn: dict, name: str) -> dict:
    return next(lst for lst in conn["listeners"] if lst["name"] == name)


def login(conn: dict, user: str, name: str = "mqtt", protocol=V311, password: str | None = None):
    secrets = json.loads(Path(conn["credentials_file"]).read_text())
    result = connect(listener(conn, name), username=user, password=password or secrets[user],
                     ca_file=conn["ca_file"], protocol=protocol)
    assert result.accepted, result.error or result.reason
    return result


def anonymous(conn: dict, name: str = "legacy", protocol=V311, client_id: str | None = None):
    result = connect(listener(conn, name), ca_file=conn["ca_file"], protocol=protocol, client_id=client_id)
    assert result.accepted, result.error or result.reason
    return result


class Inbox:
    """Everything a client receives, and a way to wait for one message."""

    def __init__(self, client, *filters: str):
        self.messages: list[tuple[str, bytes]] = []
        self._arrived = threading.Condition()
        client.on_message = self._on_message
        for topic_filter in filters:
            done = threading.Event()
            client.on_subscribe = lambda *_args, _done=done: _done.set()
            client.subscribe(topic_filter, 1)
            assert done.wait(10), topic_filter

    def _on_message(self, _client, _userdata, message):
        with self._arrived:
            self.messages.append((message.topic, message.payload))
            self._arrived.notify_all()

    def wait_for(self, topic: str) -> list[tuple[str, bytes]]:
        """Wait until a message on `topic` arrives; return everything received up to it."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: any(t == topic for t, _ in self.messages), 10), self.messages
            return list(self.messages)


def marker_topic() -> str:
    return f"legacy/marker/{uuid.uuid4().hex[:8]}"


def publish(client, topic: str, payload: bytes = b"x", retain: bool = False) -> None:
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)


def test_smoke_suite_says_anonymous_per_listener(local_anonymous):
    checks = run_smoke(local_anonymous)
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]
    anonymous_lines = {(c.listener, c.name) for c in checks if c.name.startswith("anonymous")}
    assert anonymous_lines == {("legacy", "anonymous accepted (the listener allows it)"),
                               ("mqtt", "anonymous refused"), ("mqtts", "anonymous refused")}


@pytest.mark.parametrize("protocol", [V311, V5])
def test_anonymous_clients_use_their_topics_on_their_listener(local_anonymous, protocol):
    sensor, reader = anonymous(local_anonymous, protocol=protocol), anonymous(local_anonymous, protocol=protocol)
    historian = login(local_anonymous, "historian")
    topic = f"legacy/line-1/{uuid.uuid4().hex[:8]}"
    inboxes = Inbox(reader.client, "legacy/#"), Inbox(historian.client, "legacy/#")
    publish(sensor.client, topic, b"21.5")
    for inbox in inboxes:
        assert inbox.wait_for(topic) == [(topic, b"21.5")]
    for client in (sensor, reader, historian):
        client.close()


def test_anonymous_publish_elsewhere_is_denied_v5_puback_135_and_never_delivered(local_anonymous):
    sensor = anonymous(local_anonymous, protocol=V5)
    admin = login(local_anonymous, "admin")
    inbox = Inbox(admin.client, "plant/#", "legacy/#")
    codes, acked = [], threading.Event()
    sensor.client.on_publish = lambda _c, _u, _mid, reason, _props: (codes.append(reason.value), acked.set())
    sensor.client.publish("plant/plc-7/cmd", b"open valve", qos=1)
    assert acked.wait(10) and codes == [135]  # Not authorized
    marker = marker_topic()
    publish(sensor.client, marker)
    assert inbox.wait_for(marker) == [(marker, b"x")]
    sensor.close()
    admin.close()


def test_anonymous_publish_elsewhere_is_dropped_for_mqtt_3(local_anonymous):
    sensor = anonymous(local_anonymous, protocol=V311)
    admin = login(local_anonymous, "admin")
    inbox = Inbox(admin.client, "#")
    publish(sensor.client, "plant/plc-7/cmd", b"open valve")  # MQTT 3.1.1 has no reason code: dropped silently
    marker = marker_topic()
    publish(sensor.client, marker)
    assert inbox.wait_for(marker) == [(marker, b"x")]
    sensor.close()
    admin.close()


@pytest.mark.parametrize("name", ["mqtt", "mqtts"])
@pytest.mark.parametrize("protocol, code", [(V311, 5), (V5, 135)])
def test_anonymous_is_refused_on_the_other_listeners(local_anonymous, name, protocol, code):
    result = connect(listener(local_anonymous, name), ca_file=local_anonymous["ca_file"], protocol=protocol)
    assert not result.accepted
    assert (result.v3_return_code if protocol == V311 else result.reason) == code


def test_named_user_keeps_its_own_rights_on_the_anonymous_listener(local_anonymous):
    plc = login(local_anonymous, "plc-7", name="legacy", protocol=V5)
    admin = login(local_anonymous, "admin")
    inbox = Inbox(admin.client, "plant/#", "legacy/#", "devices/#")
    codes, acked = [], threading.Event()
    plc.client.on_publish = lambda _c, _u, _mid, reason, _props: (codes.append(reason.value), acked.set())
    plc.client.publish("legacy/line-1/temp", b"spoof", qos=1)  # the anonymous rules are not the user's
    assert acked.wait(10) and codes == [135]
    publish(plc.client, "devices/plc-7/state", b"ok")  # pattern devices/%u/#
    publish(plc.client, "plant/plc-7/data", b"own")  # its own topics
    assert inbox.wait_for("plant/plc-7/data") == [("devices/plc-7/state", b"ok"), ("plant/plc-7/data", b"own")]
    plc.close()
    admin.close()


@pytest.mark.parametrize("protocol", [V311, V5])
def test_a_wrong_password_is_refused_not_taken_as_anonymous(local_anonymous, protocol):
    result = connect(listener(local_anonymous, "legacy"), username="plc-7", password="not-the-password",
                     protocol=protocol)
    assert not result.accepted and result.reason in (134, 135)


def test_attack_anonymous_client_reads_nothing_beyond_its_topics(local_anonymous):
    """An anonymous client subscribes to everything it can name, posing as plc-7 by client id. Subscriptions are
    granted (mosquitto's ACL check lets every SUBSCRIBE through, v2.0.20 src/security_default.c:383, and checks
    each message on delivery instead: src/subs.c:72 for live messages, src/retain.c:173 for retained ones), so
    nothing but legacy/ may arrive: not the retained or live messages of other users, not devices/plc-7/ (whose
    pattern needs a user name), not $SYS."""
    conn = local_anonymous
    admin, plc = login(conn, "admin"), login(conn, "plc-7")
    secret = f"plant/plc-7/recipe/{uuid.uuid4().hex[:6]}"
    publish(admin.client, secret, b"retained secret", retain=True)
    control = Inbox(admin.client, "plant/#")  # the retained message is there for whoever may read it
    assert (secret, b"retained secret") in control.wait_for(secret)
    health = connect({"name": "health", "host": "127.0.0.1", "port": conn["brokers"][0]["health_port"],
                      "transport": "tcp", "tls": False})
    assert health.accepted
    assert Inbox(health.client, "$SYS/broker/uptime").wait_for("$SYS/broker/uptime")  # retained $SYS exists
    health.close()

    attacker = anonymous(conn, protocol=V5, client_id="plc-7")
    inbox = Inbox(attacker.client, "#", "$SYS/#", "plant/#", "devices/#", "+/plc-7/#", "$SYS/broker/uptime")
    publish(plc.client, "plant/plc-7/data", b"live secret")
    publish(plc.client, "devices/plc-7/state", b"live secret")
    marker = marker_topic()
    publish(anonymous(conn).client, marker)
    received = inbox.wait_for(marker)
    assert received == [(marker, b"x")], received
    attacker.close()
    plc.close()
    publish(admin.client, secret, b"", retain=True)  # clear the retained message
    admin.close()


def test_the_run_directory_holds_the_listener_acl_private(local_anonymous):
    run = Path(local_anonymous["brokers"][0]["log"]).parent / "mosquitto" / "run"
    assert stat.S_IMODE((run / "legacy.acl").stat().st_mode) == 0o600
    assert (run / "legacy.acl").read_text().splitlines()[1:3] == [
        "# anonymous clients (no user name): only these rules", "topic legacy/#"]


def test_through_the_frontend_haproxy_admits_only_the_listeners_ranges(tmp_path, state_dir):
    """The same estate behind a real HAProxy frontend: `legacy` admits 127.0.0.0/8, so an anonymous sensor gets
    through it to the broker; `mqtts` admits only 10.30.0.0/24, so HAProxy closes the connection from 127.0.0.1
    before TLS starts (the smoke suite's check for a port whose ranges leave this machine out)."""
    _require("mosquitto")
    _require("haproxy")
    text = STACK.read_text().replace("[10.30.0.0/24]", "[127.0.0.0/8]").replace(
        "{name: mqtts, port: 8883, tls: true}", "{name: mqtts, port: 8883, tls: true, sourceRanges: [10.30.0.0/24]}")
    path = tmp_path / "anonymous.yaml"
    path.write_text(text + FRONTEND)
    rendered = render("anonymous", path, out=tmp_path / "out", state_dir=state_dir)
    with LocalEstate(rendered, tmp_path / "local") as local:
        conn = json.loads(local.write_connection_file().read_text())
        assert conn["frontends"] and listener(conn, "mqtts")["source_ranges"] == ["10.30.0.0/24"]
        checks = run_smoke(conn)
        sensor, reader = anonymous(conn), anonymous(conn)
        inbox = Inbox(reader.client, "legacy/#")
        publish(sensor.client, "legacy/line-1/temp", b"19.0")
        assert inbox.wait_for("legacy/line-1/temp") == [("legacy/line-1/temp", b"19.0")]
        sensor.close()
        reader.close()
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert [c.name for c in checks if c.listener == "mqtts"] == [
        "refused from 127.0.0.1, outside its source ranges (10.30.0.0/24)"]
    assert ("legacy", "anonymous accepted (the listener allows it)") in {(c.listener, c.name) for c in checks}


# --- the policy pack -----------------------------------------------------------------------------------------

def _anonymous_violations(tmp_path, state_dir, text: str) -> list:
    path = tmp_path / "anonymous.yaml"
    path.write_text(text)
    _, registry = evaluate("anonymous", path, state_dir)
    return mandatory(run_policies(registry, "anonymous"))


FRONTEND = "  mqtt-estate:frontend:\n    enabled: true\n"


@pytest.mark.parametrize("extra", ["", FRONTEND], ids=["network-policy", "frontend"])
def test_policy_passes_the_anonymous_listener_restricted_to_its_ranges(tmp_path, state_dir, extra):
    assert _anonymous_violations(tmp_path, state_dir, STACK.read_text() + extra) == []


@pytest.mark.parametrize("extra, why", [
    ("", "NetworkPolicy mosquitto admits every source on it"),
    (FRONTEND, "HAProxy frontend legacy forwards it from every source"),
], ids=["network-policy", "frontend"])
def test_policy_flags_the_anonymous_listener_without_ranges(tmp_path, state_dir, extra, why):
    found = _anonymous_violations(tmp_path, state_dir, _without_ranges(STACK.read_text()) + extra)
    assert [(v.policy, v.resource_name) for v in found] == [("broker-anonymous-listener-restricted",
                                                             "mosquitto-config")]
    assert found[0].message.startswith("mosquitto.conf: listener 1885 allows anonymous clients from every address: ")
    assert why in found[0].message


def test_policy_flags_ranges_that_admit_everyone_in_a_hand_written_network_policy(anonymous_render):
    import copy

    registry = copy.deepcopy(anonymous_render.registry)
    netpol = next(r for r in registry.resources if r.name == "mosquitto-netpol").inputs
    rule = next(rule for rule in netpol["spec"]["ingress"] if rule.get("from"))
    rule["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}})
    found = [v for v in run_policies(registry, "anonymous") if v.policy in ANONYMOUS_POLICIES]
    assert len(found) == 1 and "admits every address (10.30.0.0/24, 0.0.0.0/0)" in found[0].message


def test_policy_judges_every_acl_file_including_the_listener_one(anonymous_render):
    import copy

    registry = copy.deepcopy(anonymous_render.registry)
    auth = next(r for r in registry.resources if r.name == "mosquitto-auth").inputs["stringData"]
    auth["legacy.acl"] = auth["legacy.acl"].replace("topic legacy/#", "topic #")
    found = [v for v in run_policies(registry, "anonymous") if v.policy == "broker-acl-no-device-wildcards"]
    assert [v.message for v in found] == ["legacy.acl line 3: anonymous clients may read and write every topic "
                                          "('topic readwrite #')"]


def test_global_allow_anonymous_still_renders_and_is_refused_by_the_pack(tmp_path, state_dir):
    text = textwrap.dedent("""
        config:
          mqtt-estate:broker:
            listeners: [{name: mqtt, port: 1883}, {name: mqtts, port: 8883, tls: true}]
            auth: {allowAnonymous: true}
    """)
    found = {v.policy for v in _anonymous_violations(tmp_path, state_dir, text)}
    assert found == ANONYMOUS_POLICIES
