"""HaProxyFrontend: one MQTT health check per broker (the other backends track it), peers re-resolved by the
start script with a reload that keeps the stick tables, the stats password read from a mounted Secret file, the
Service's await switch and the component's children. Checked on the rendered stacks, under Pulumi mocks, and
with real HAProxy processes on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mqtt_estate.components.haproxy import HaProxyFrontend
from mqtt_estate.components.kube import SKIP_AWAIT
from mqtt_estate.components.haproxy_cfg import (CHECK_TIMING, FLOOD_TABLE, HEALTH_BACKEND, SHARED_TABLE, render_haproxy_cfg,
                                   stick_expiry)
from mqtt_estate.components.haproxy_pod import HAPROXY_UID, STATS_DIR, STATS_FILE_MODE
from mqtt_estate.components.pki import Pki
from mqtt_estate.estate.haproxy_files import rewrite_haproxy_cfg
from mqtt_estate.estate.haproxy_runtime import peers_synced, runtime_command
from mqtt_estate.estate.local import free_port
from mqtt_estate.estate.manifests import pod_files, workloads
from tests.harness import by_name, run_components

FRONTEND_DIR = "files/mosquitto-frontend/usr/local/etc/haproxy"
START = Path(__file__).resolve().parent.parent / "components" / "haproxy_start.sh"
IMAGE_TOOLS = ("getent", "mv", "sleep", "uname")
"""External commands the start script may use: in the haproxy:2.8.16 image (debian:trixie-slim) they come from
libc-bin and coreutils. Everything else must be a builtin of dash."""


def sections(cfg: str) -> dict[str, list[str]]:
    """'backend mqtt' -> its indented lines (stripped)."""
    found, current = {}, None
    for line in cfg.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = line.strip()
            found[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            found[current].append(line.strip())
    return found


def frontend_objects(rendered_stack):
    objects = rendered_stack.objects
    workload = next(w for w in workloads(objects) if w["metadata"]["name"].endswith("-frontend"))
    secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-frontend-stats"))
    return workload, secret


# --- one health check per broker ---------------------------------------------------------------------

def assert_one_check_per_broker(cfg: str, brokers: int) -> None:
    parts = sections(cfg)
    backends = {name.split()[1]: lines for name, lines in parts.items() if name.startswith("backend ")}
    health = backends.pop(HEALTH_BACKEND)
    table = backends.pop(SHARED_TABLE, []) + backends.pop(FLOOD_TABLE, [])  # stick tables only, never a server
    assert not any(line.startswith(("server ", "default-server")) for line in table)
    health_defaults = next(line for line in health if line.startswith("default-server"))
    assert " check " in f" {health_defaults} " and CHECK_TIMING in health_defaults
    checked = [line.split()[1] for line in health if line.startswith("server ")]
    assert checked == [f"b{i}" for i in range(brokers)]  # every broker once, nothing else
    assert "tcp-check connect ssl" in health and "option tcp-check" in health
    assert backends, "no client backends"
    for name, lines in backends.items():
        defaults = [line for line in lines if line.startswith("default-server")]
        assert defaults and all(" check" not in f" {line} " for line in defaults), name
        servers = [line.split() for line in lines if line.startswith("server ")]
        assert [s[1] for s in servers] == checked, name
        for parts_ in servers:
            assert parts_[-2:] == ["track", f"{HEALTH_BACKEND}/{parts_[1]}"], (name, parts_)
            assert "check" not in parts_, (name, parts_)
        assert not any(line.startswith("tcp-check") or line.startswith("option tcp-check") for line in lines), name
    # `observe` needs a check on the same server (configuration.txt 2.8, "observe"); it would be inert here
    assert "observe " not in cfg


@pytest.mark.parametrize("stack, brokers", [("prod", 5), ("ha", 4)])
def test_exactly_one_checking_server_per_broker(rendered, stack, brokers):
    assert_one_check_per_broker((rendered(stack).out / FRONTEND_DIR / "haproxy.cfg").read_text(), brokers)


@pytest.mark.parametrize("topology", ["active-active", "active-standby"])
def test_both_topologies_track_the_health_backend(topology):
    cfg = render_haproxy_cfg({
        "ports": [{"name": "mqtt", "port": 1883}, {"name": "mqtts", "port": 8883, "tls": True}],
        "servers": ["m-0.h.ns.svc.cluster.local", "m-1.h.ns.svc.cluster.local"], "check_port": 1884,
        "check_name": "m-0.h.ns.svc.cluster.local", "topology": topology, "peers": ["f-0.fh.ns.svc.cluster.local"],
        "timeout_seconds": 90, "maxconn": 100, "server_maxconn": 50})
    assert_one_check_per_broker(cfg, 2)
    assert "server b1 m-1.h.ns.svc.cluster.local:1884\n" in cfg  # the check goes to the internal listener


@pytest.mark.parametrize("stack", ["prod", "ha"])
def test_rendered_cfg_passes_haproxy_check(rendered, stack, tmp_path):
    """The rendered haproxy.cfg, with pod paths, ports and peer addresses moved onto this machine as the local
    estate does, is accepted by `haproxy -c` (with the stats credentials in the environment, as start.sh sets)."""
    workload, secret = frontend_objects(rendered(stack))
    files = pod_files(rendered(stack).objects, workload)
    mounts = {}
    for path, (content, _) in files.items():
        local = tmp_path / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(content)
    for mount in workload["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]:
        mounts[mount["mountPath"]] = str(tmp_path / mount["mountPath"].lstrip("/"))
        Path(mounts[mount["mountPath"]]).mkdir(parents=True, exist_ok=True)
    cfg = next(content for path, (content, _) in files.items() if path.endswith("/haproxy.cfg"))
    binds = {int(port): free_port() for port in re.findall(r"^\s+bind :(\d+)", cfg, re.M)}
    peers = {host: free_port() for host in re.findall(r"^\s+peer \S+ ([^\s:]+):", cfg, re.M)}
    local_cfg = tmp_path / "local-haproxy.cfg"
    local_cfg.write_text(rewrite_haproxy_cfg(cfg, binds, {}, peers, mounts, free_port()))
    env = {**os.environ, "STATS_USER": secret["stringData"]["username"],
           "STATS_PASSWORD": secret["stringData"]["password"]}
    check = subprocess.run(["haproxy", "-c", "-f", str(local_cfg), "-L", f"{workload['metadata']['name']}-0"],
                           env=env, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_running_haproxy_checks_each_broker_once(local_prod):
    """At run time only the health backend's servers run checks; every other server follows one of them."""
    for frontend in local_prod["frontends"]:
        state = runtime_command(Path(frontend["runtime_socket"]), "show servers state")
        checked = set()
        for line in state.splitlines():
            parts = line.split()
            if len(parts) > 13 and parts[0].isdigit():
                backend, server, check_state = parts[1], parts[3], int(parts[13])
                if check_state:  # srv_check_state: 0 when the server runs no check
                    checked.add((backend, server))
        assert checked == {(HEALTH_BACKEND, f"b{i}") for i in range(5)}, checked


# --- stats credentials: a mounted file, never the pod spec's environment ---------------------------------

def test_stats_password_is_mounted_not_in_the_environment(rendered):
    workload, secret = frontend_objects(rendered("prod"))
    password = secret["stringData"]["password"]
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert password not in json.dumps(workload)
    for item in container["env"]:
        assert "secretKeyRef" not in (item.get("valueFrom") or {}), item
        assert "PASSWORD" not in item["name"] and "STATS_USER" != item["name"], item
    assert {"name": "STATS_AUTH_DIR", "value": STATS_DIR} in container["env"]
    volume = next(v for v in pod["volumes"] if (v.get("secret") or {}).get("secretName") == secret["metadata"]["name"])
    assert volume["secret"]["defaultMode"] == STATS_FILE_MODE == 0o440
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount == {"name": volume["name"], "mountPath": STATS_DIR, "readOnly": True}
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == HAPROXY_UID


def _stats_url(frontend: dict) -> str:
    generated = (Path(frontend["runtime_socket"]).parent / "haproxy.cfg").read_text()
    port = re.search(r"^frontend stats\n(?:\s+.*\n)*?\s+bind 127\.0\.0\.1:(\d+)", generated, re.M).group(1)
    return f"http://127.0.0.1:{port}/stats"


def _get(url: str, user: str | None, password: str | None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_local_haproxy_reads_stats_password_from_the_mounted_file(local_prod, rendered):
    _, secret = frontend_objects(rendered("prod"))
    user, password = secret["stringData"]["username"], secret["stringData"]["password"]
    for frontend in local_prod["frontends"]:
        pod_dir = Path(frontend["runtime_socket"]).parent.parent
        assert (pod_dir / STATS_DIR.lstrip("/") / "password").read_text() == password
        url = _stats_url(frontend)
        assert _get(url, user, password) == 200
        assert _get(url, user, password + "x") == 401
        assert _get(url, None, None) == 401


# --- the Service's await switch and the component's children (Pulumi mocks) ------------------------------

def build_frontend(**overrides):
    def body():
        pki = Pki("f-pki", {"server_dns_names": ["m-0.h.ns.svc.cluster.local"], "client_names": ["check"]})
        HaProxyFrontend("f", {
            "namespace": "ns", "replicas": 2, "ports": [{"name": "mqtts", "port": 8883, "tls": True}],
            "broker_servers": ["m-0.h.ns.svc.cluster.local", "m-1.h.ns.svc.cluster.local"],
            "broker_selector": {"app": "m"}, "internal_port": 1884, "check_name": "m-0.h.ns.svc.cluster.local",
            "check_certificate": pki.clients["check"], "ca_cert_pem": pki.ca_cert_pem, "timeout_seconds": 90,
            "service_type": "LoadBalancer", "load_balancer_source_ranges": ["10.0.0.0/8"], **overrides})
    return run_components(body)


@pytest.mark.parametrize("skip, annotated", [(None, False), (False, False), (True, True)])
def test_skip_await_annotates_the_frontend_service(skip, annotated):
    registry = build_frontend(**({} if skip is None else {"skip_await": skip}))
    service = by_name(registry, "f-service").inputs
    annotations = service["metadata"].get("annotations") or {}
    assert (annotations.get(SKIP_AWAIT) == "true") is annotated
    assert SKIP_AWAIT not in (by_name(registry, "f-headless").inputs["metadata"].get("annotations") or {})


def test_every_child_is_parented_to_the_component():
    registry = build_frontend()
    component = by_name(registry, "f")
    assert component.type == "mqtt-estate:index:HaProxyFrontend" and not component.custom
    children = [r for r in registry.resources if r.name.startswith("f-") and not r.name.startswith("f-pki")]
    assert {r.name for r in children} >= {"f-config", "f-stats", "f-stats-password", "f-check-tls", "f-headless",
                                          "f-service", "f-statefulset", "f-pdb", "f-netpol"}
    for res in children:
        assert res.parent == component.urn, res.name


# --- the start script: peers re-resolved, reload keeps the stick table, signals -------------------------

FAKE_GETENT = """#!/bin/sh
# getent hosts <name>, answered from the file $FAKE_HOSTS (what a cluster's DNS would say)
while read -r addr names; do
  for name in $names; do
    if [ "$name" = "$1" ]; then echo "$addr $names"; exit 0; fi
  done
done < "$FAKE_HOSTS"
exit 2
"""


class Backend:
    """A TCP server that answers every connection with one byte and keeps it open."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"x")
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


class StartScript:
    """haproxy_start.sh running a small HAProxy (two peers, one backend) with PATH holding only the image's tools."""

    def __init__(self, tmp: Path, peers: dict[str, str], backend_port: int):
        self.tmp = tmp
        self.run_dir = tmp / "run"
        self.run_dir.mkdir()
        self.hosts = tmp / "hosts"
        self.set_hosts(peers)
        self.peer_ports = {"me": free_port(), "other": free_port()}
        self.front_port, self.stats_port = free_port(), free_port()
        (tmp / "stats").mkdir()
        (tmp / "stats" / "username").write_text("stats\n")
        (tmp / "stats" / "password").write_text("s3cret")  # no final newline: read as it is
        resolver = tmp / "fake-getent"
        resolver.write_text(FAKE_GETENT)
        resolver.chmod(0o755)
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        for tool in ("haproxy", *IMAGE_TOOLS):
            (bin_dir / tool).symlink_to(shutil.which(tool))
        (tmp / "haproxy.cfg").write_text(f"""global
    log stdout format raw local0 notice
    stats socket {self.run_dir}/haproxy.sock mode 600 level admin
defaults
    log global
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
peers replicas
    peer me me.peers.test:{self.peer_ports['me']}
    peer other other.peers.test:{self.peer_ports['other']}
frontend stats
    mode http
    bind 127.0.0.1:{self.stats_port}
    stats enable
    stats uri /stats
    stats auth "$STATS_USER":"$STATS_PASSWORD"
frontend front
    bind 127.0.0.1:{self.front_port}
    default_backend back
backend back
    stick-table type ip size 1k expire 30m peers replicas
    stick on src
    server s1 127.0.0.1:{backend_port}
""")
        env = {"PATH": str(bin_dir), "HAPROXY_CFG": str(tmp / "haproxy.cfg"), "HAPROXY_RUN_DIR": str(self.run_dir),
               "PEER_NAME": "me", "PEER_WAIT_SECONDS": "0", "PEER_RECHECK_SECONDS": "1",
               "PEER_RESOLVER": str(resolver), "FAKE_HOSTS": str(self.hosts), "STATS_AUTH_DIR": str(tmp / "stats")}
        self.log = tmp / "start.log"
        with open(self.log, "w") as handle:
            self.process = subprocess.Popen(["/bin/sh", str(START)], env=env, stdout=handle, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.sock = self.run_dir / "haproxy.sock"
        assert wait_until(lambda: self.sock.exists() and self._answers(), 10), self.log.read_text()

    def set_hosts(self, peers: dict[str, str]) -> None:
        text = "".join(f"{addr} {name}.peers.test\n" for name, addr in peers.items())
        (self.tmp / "hosts.new").write_text(text)
        (self.tmp / "hosts.new").replace(self.hosts)

    def _answers(self) -> bool:
        try:
            runtime_command(self.sock, "show info")
            return True
        except OSError:
            return False

    def peers(self) -> dict[str, str]:
        """peer name -> address HAProxy uses now (`show peers`)."""
        text = runtime_command(self.sock, "show peers")
        return dict(re.findall(r"id=(\w+)\((?:local|remote),\w+\) addr=(\S+)", text))

    def haproxy_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-s", str(self.process.pid), "-x", "haproxy"], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return predicate()


@pytest.fixture
def backend():
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def script(tmp_path, backend):
    started = StartScript(tmp_path, {"me": "127.0.0.1"}, backend.port)
    yield started
    started.stop()


def test_start_script_adds_moves_and_drops_peers_as_they_resolve(script, backend):
    me = f"127.0.0.1:{script.peer_ports['me']}"
    assert script.peers() == {"me": me}  # `other` does not resolve: left out, HAProxy started anyway
    stats = f"http://127.0.0.1:{script.stats_port}/stats"
    assert _get(stats, "stats", "s3cret") == 200 and _get(stats, "stats", "s3cre") == 401  # from the files
    generated = script.run_dir / "haproxy.cfg"
    assert "    # unresolved: peer other other.peers.test:" in generated.read_text()

    # A client sticks to the server; the entry must survive every reload: the old worker teaches the new one,
    # once its own start-up resync is over (up to 5 s; start.sh re-checks every 10 s, this test every 1 s).
    def settled() -> bool:
        return wait_until(lambda: peers_synced(script.sock), 15)

    with socket.create_connection(("127.0.0.1", script.front_port), timeout=5) as client:
        client.recv(1)
        assert wait_until(lambda: "key=127.0.0.1 " in runtime_command(script.sock, "show table back"), 5)

        assert settled()
        script.set_hosts({"me": "127.0.0.1", "other": "127.0.0.1"})
        other = f"127.0.0.1:{script.peer_ports['other']}"
        assert wait_until(lambda: script.peers() == {"me": me, "other": other}, 10), script.log.read_text()
        assert f"    peer other 127.0.0.1:{script.peer_ports['other']}\n" in generated.read_text()
        assert "key=127.0.0.1 " in runtime_command(script.sock, "show table back")

        assert settled()
        script.set_hosts({"me": "127.0.0.1", "other": "127.0.0.2"})  # the other replica moved
        moved = f"127.0.0.2:{script.peer_ports['other']}"
        assert wait_until(lambda: script.peers() == {"me": me, "other": moved}, 10), script.log.read_text()
        table = runtime_command(script.sock, "show table back")
        assert "key=127.0.0.1 " in table and "server_id=1" in table, table

        assert settled()
        script.set_hosts({"me": "127.0.0.1"})  # and is gone again
        assert wait_until(lambda: script.peers() == {"me": me}, 10), script.log.read_text()
        assert "key=127.0.0.1 " in runtime_command(script.sock, "show table back")

    log = script.log.read_text()
    assert log.count("[start.sh] peers changed") == 3, log
    assert log.count("Reloading HAProxy") == 3, log  # the master's own log line for each SIGUSR2
    assert script.process.poll() is None and len(script.haproxy_pids()) >= 2  # master and a worker


def test_start_script_keeps_the_running_config_when_a_new_one_does_not_check(script):
    cfg = script.tmp / "haproxy.cfg"
    cfg.write_text(cfg.read_text().replace("stick on src", "stick on no_such_fetch"))
    script.set_hosts({"me": "127.0.0.1", "other": "127.0.0.1"})
    assert wait_until(lambda: "does not check" in script.log.read_text(), 10), script.log.read_text()
    assert "Reloading HAProxy" not in script.log.read_text()
    assert list(script.peers()) == ["me"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_start_script_passes_stop_signals_to_haproxy(script, sig):
    assert script.haproxy_pids()
    script.process.send_signal(sig)
    assert script.process.wait(timeout=10) == 0, script.log.read_text()
    assert wait_until(lambda: not script.haproxy_pids(), 5), "HAProxy outlived its start script"


def test_start_script_exits_when_haproxy_dies(script):
    master = min(script.haproxy_pids())
    os.kill(master, signal.SIGKILL)
    assert script.process.wait(timeout=10) != 0  # noticed at the next peer check (1 s here)


def test_start_script_refuses_to_start_without_the_stats_secret(tmp_path):
    result = subprocess.run(["/bin/sh", str(START)], env={"PATH": os.environ["PATH"],
                            "STATS_AUTH_DIR": str(tmp_path / "absent")}, capture_output=True, text=True, timeout=10)
    assert result.returncode != 0 and "username" in result.stderr


def test_start_script_uses_only_posix_sh():
    checkbashisms = shutil.which("checkbashisms")
    result = subprocess.run(["dash", "-n", str(START)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if checkbashisms:
        assert subprocess.run([checkbashisms, str(START)], capture_output=True).returncode == 0


@pytest.mark.parametrize("seconds, expected", [(7 * 86400, "7d"), (7200, "7200s"), (365 * 86400, "24d"), (0, "1s")])
def test_stickiness_lasts_the_session_expiry_within_haproxys_limit(seconds, expected):
    assert stick_expiry(seconds) == expected


@pytest.mark.parametrize("topology", ["active-active", "active-standby"])
def test_one_broker_tables_never_expire(topology):
    """The one-entry tables (active-standby, shared subscriptions) have no expire: a quiet week must not send the
    next client to another broker than the ones still connected."""
    cfg = render_haproxy_cfg({
        "ports": [{"name": "mqtt", "port": 1883}, {"name": "mqtt-shared", "port": 1885, "broker_port": 1883,
                                                    "shared": True}],
        "servers": ["m-0.h.ns.svc.cluster.local"], "check_port": 1884, "check_name": "m-0.h.ns.svc.cluster.local",
        "topology": topology, "peers": ["f-0.fh.ns.svc.cluster.local"], "timeout_seconds": 90, "maxconn": 100,
        "server_maxconn": 50, "stick_expiry_seconds": 3600})
    tables = [line.strip() for line in cfg.splitlines() if line.strip().startswith("stick-table")]
    one_entry = [t for t in tables if " size 1 " in t]
    assert one_entry and all(" expire " not in t for t in one_entry)
    sticky = [t for t in tables if t not in one_entry and "conn_rate" not in t]  # not the flood counters
    assert all("expire 3600s" in t for t in sticky)
