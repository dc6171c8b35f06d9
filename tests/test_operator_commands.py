"""The operator commands against a real local estate, booted once for the module (tests/stacks/ha.yaml: three
bridged brokers behind two HAProxy replicas, on 127.0.0.1 with free ports): `estate health` on the healthy estate
and after one broker is killed, `estate check --connection FILE` on a relocated copy with relative paths and on
broken files, and the file `estate connection --port-forward` writes, used through stand-in port forwards that
deliver connections to the local pods as kubectl's would (estate/port_forward.py)."""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mqtt_estate.estate.cli import main
from mqtt_estate.estate.connection import MAX_BYTES, load_connection, schema_text
from mqtt_estate.estate.haproxy_runtime import server_states
from mqtt_estate.estate.health import run_health
from mqtt_estate.estate.local import LocalEstate
from mqtt_estate.estate.output import write_file
from mqtt_estate.estate.port_forward import plan
from tests.conftest import ROOT, TEST_STACKS

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
BROKERS = ["mosquitto-0", "mosquitto-1", "mosquitto-2"]
FRONTENDS = ["mosquitto-frontend-0", "mosquitto-frontend-1"]


def estate_cli(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "estate", *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def ha(rendered, tmp_path_factory):
    for binary in ("mosquitto", "haproxy"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not installed (bash .ci/run installs it)")
    local = LocalEstate(rendered("ha"), tmp_path_factory.mktemp("operator") / "local")
    try:
        local.start()
        yield local, local.write_connection_file()
    finally:
        local.stop()


def _lines(text: str) -> dict[str, str]:
    """component name -> its health line."""
    return {line.split()[2]: line for line in text.splitlines() if line.split()[:1] in (["OK"], ["WARN"], ["FAIL"])}


def test_schema_file_is_current():
    assert (ROOT / "schema" / "connection.schema.json").read_text() == schema_text(), \
        "schema/connection.schema.json is stale: python3 -m estate schema --connection > schema/connection.schema.json"


def test_health_of_a_healthy_estate_is_all_ok(ha):
    _, path = ha
    run = estate_cli("health", "--connection", str(path))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = _lines(run.stdout)
    assert set(lines) == {*BROKERS, *FRONTENDS, "mosquitto-1/estate-star", "mosquitto-2/estate-star"}, run.stdout
    assert all(line.startswith("OK ") for line in lines.values()), run.stdout
    for broker in BROKERS:
        assert "admin login ok" in lines[broker] and "TLS ok" in lines[broker] and "uptime" in lines[broker]
    for frontend in FRONTENDS:
        assert "b0 b1 b2 UP in 5 backends" in lines[frontend] and "b3 spare" in lines[frontend]
    assert run.stdout.splitlines()[-1] == "health: 7 ok, 0 warnings, 0 failed"
    assert run.stderr == ""


def test_check_with_a_relocated_connection_file_and_relative_paths(ha, tmp_path):
    _, path = ha
    conn = json.loads(path.read_text())
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "pki").mkdir(parents=True)
    shutil.copy(conn["ca_file"], elsewhere / "pki" / "ca.crt")
    shutil.copy(conn["credentials_file"], elsewhere / "secret.json")
    conn.update(ca_file="pki/ca.crt", credentials_file="secret.json", client_certificates={}, demo_client=None)
    (elsewhere / "connection.json").write_text(json.dumps(conn))
    cwd = tmp_path / "somewhere-else"
    cwd.mkdir()
    run = estate_cli("check", "--connection", str(Path("..") / "elsewhere" / "connection.json"), cwd=cwd)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1].endswith(" failed") and " 0 failed" in run.stdout.splitlines()[-1]
    loaded = load_connection(elsewhere / "connection.json")
    assert loaded["ca_file"] == str(elsewhere / "pki" / "ca.crt")


def _broken(conn: dict, case: str, directory: Path) -> Path:
    path = directory / f"{case}.json"
    conn = json.loads(json.dumps(conn))
    if case == "missing-key":
        del conn["credentials_file"]
    elif case == "wrong-type":
        conn["listeners"][1]["port"] = "8883"
    elif case == "no-such-ca-file":
        conn["ca_file"] = "nowhere/ca.crt"
    elif case == "no-listener-address":
        del conn["listeners"][0]["url"], conn["listeners"][0]["host"]
    if case == "bad-json":
        path.write_text(json.dumps(conn)[:-40])
    elif case == "huge":
        path.write_text(json.dumps(conn) + " " * MAX_BYTES)
    else:
        path.write_text(json.dumps(conn))
    return path


BROKEN = {
    "missing-key": "missing-key.json: credentials_file: is required (",
    "wrong-type": 'wrong-type.json: listeners[1].port: "8883" is not allowed (use a whole number)',
    "no-such-ca-file": "no-such-ca-file.json: ca_file: ",
    "no-listener-address": "no-listener-address.json: listeners[0]: needs url, or host and port",
    "bad-json": "bad-json.json: is not JSON (",
    "huge": "huge.json: is ",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_connection_file_is_one_line_and_exit_2(ha, tmp_path, capsys, monkeypatch, case):
    _, path = ha
    monkeypatch.chdir(tmp_path)
    broken = _broken(json.loads(path.read_text()), case, tmp_path)
    for command in ("check", "health"):
        assert main([command, "--connection", broken.name]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1, err
        assert err.startswith(BROKEN[case]), err
        assert "Traceback" not in err
    if case == "no-such-ca-file":
        assert f"{tmp_path / 'nowhere' / 'ca.crt'} does not exist" in err  # resolved against the file's directory


def test_a_broken_connection_file_in_a_real_process(ha, tmp_path):
    _, path = ha
    broken = _broken(json.loads(path.read_text()), "bad-json", tmp_path)
    run = estate_cli("check", "--connection", str(broken))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith(f"{broken}: is not JSON (") and len(run.stderr.splitlines()) == 1, run.stderr


def test_health_does_not_hang_on_a_silent_endpoint(ha, tmp_path):
    """A port that accepts and never answers (a wedged pod behind a port forward): every step times out."""
    _, path = ha
    conn = json.loads(path.read_text())
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        listeners = [{"name": "mqtt", "host": "127.0.0.1", "port": port},
                     {"name": "mqtts", "url": f"mqtts://127.0.0.1:{port}"}]
        conn.update(listeners=listeners, brokers=[{"pod": "wedged-0", "listeners": listeners, "health_port": port}],
                    frontends=[{"pod": "wedged-frontend-0", "runtime_socket": str(tmp_path / "no.sock")}],
                    bridges=[])
        (tmp_path / "wedged.json").write_text(json.dumps(conn))
        loaded = load_connection(tmp_path / "wedged.json")
        shown: list[str] = []
        started = time.monotonic()
        ok = run_health(loaded, json.loads(Path(loaded["credentials_file"]).read_text()), timeout=0.3,
                        write=shown.append)
        took = time.monotonic() - started
    assert not ok and took < 5, (took, shown)
    assert shown[0].startswith("FAIL broker   wedged-0 ") and "timed out" in shown[0], shown
    assert shown[1].startswith("FAIL frontend wedged-frontend-0 ") and "no.sock not readable" in shown[1], shown


def test_health_says_when_no_user_may_read_sys(ha, tmp_path):
    """Without the health listener only the admin is left, whose `#` never matches $SYS: a warning says so."""
    _, path = ha
    conn = json.loads(path.read_text())
    conn.update(brokers=[{**conn["brokers"][1], "health_port": 0}], frontends=[])
    (tmp_path / "no-health-port.json").write_text(json.dumps(conn))
    loaded = load_connection(tmp_path / "no-health-port.json")
    shown: list[str] = []
    assert run_health(loaded, json.loads(Path(loaded["credentials_file"]).read_text()), timeout=0.5,
                      write=shown.append)  # a warning, not a failure
    assert shown[0].startswith("WARN broker   mosquitto-1 ") and "admin login ok" in shown[0], shown
    assert "$SYS not read: no user of the connection file may read it" in shown[0], shown
    assert shown[-1] == "health: 0 ok, 1 warnings, 0 failed"


class Forwards:
    """Stand-ins for `kubectl port-forward`: each local port relays to the local pod's port for the remote port the
    command names (a Service goes to its first pod, as kubectl picks one)."""

    def __init__(self, local: LocalEstate, conn: dict):
        self.local, self.conn = local, conn
        self.servers: list[socket.socket] = []

    def target(self, target: str, remote: int) -> int:
        kind, name = target.split("/")
        pod = f"{name}-0" if kind == "svc" else name
        entry = next(p for group in ("brokers", "frontends") for p in self.conn[group] if p["pod"] == pod)
        if remote == 1880:
            return entry["health_port"]
        if remote == 8404:
            return next(p for p in self.local.frontends if p.pod == pod).named_ports["stats"]
        return next(lst["port"] for lst in entry["listeners"] if lst["pod_port"] == remote)

    def start(self, commands: list[str]) -> None:
        for command in commands:
            words = shlex.split(command.rstrip(" &"))
            target = next(w for w in words if w.startswith(("svc/", "pod/")))
            for pair in words[words.index(target) + 1:]:
                local, remote = map(int, pair.split(":"))
                server = socket.create_server(("127.0.0.1", local))
                self.servers.append(server)
                threading.Thread(target=self._serve, args=(server, self.target(target, remote)), daemon=True).start()

    def _serve(self, server: socket.socket, port: int) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        for server in self.servers:
            server.close()


def _free_range(count: int) -> int:
    """A first port with `count` free ports from it, below the usual ephemeral range."""
    for _ in range(50):
        first = random.randrange(20000, 32000 - count)
        try:
            for port in range(first, first + count):
                with socket.create_server(("127.0.0.1", port)):
                    pass
            return first
        except OSError:
            continue
    raise RuntimeError("no free port range")


def test_port_forward_connection_file_checks_the_estate_through_forwards(ha, rendered, tmp_path):
    local, path = ha
    made = plan(rendered("ha").registry, rendered("ha").objects, "ha", first_port=_free_range(40))
    assert made.commands[0].startswith("kubectl -n mqtt-ha port-forward svc/mosquitto-frontend ")
    assert any(c.startswith("kubectl -n mqtt-ha port-forward pod/mosquitto-0 ") and ":1880 " in c + " "
               for c in made.commands)
    assert any("pod/mosquitto-frontend-1 " in c and ":8404" in c for c in made.commands)
    out = tmp_path / "pf"
    for name, (content, secret) in made.files.items():
        write_file(out / name, content, secret)
    write_file(out / "connection.json", json.dumps(made.connection, indent=2))
    conn = load_connection(out / "connection.json")
    assert conn["ca_file"] == str(out / "ca.crt") and conn["frontends"][0]["stats_password_file"].startswith(str(out))
    forwards = Forwards(local, json.loads(path.read_text()))
    try:
        forwards.start(made.commands)
        run = estate_cli("health", "--connection", str(out / "connection.json"))
        assert run.returncode == 0, run.stdout + run.stderr
        lines = _lines(run.stdout)
        assert set(lines) >= {*BROKERS, *FRONTENDS, "mosquitto-1/estate-star"}, run.stdout
        assert all("uptime" in lines[b] for b in BROKERS)  # $SYS read on the health port, through the forward
        assert all("b0 b1 b2 UP" in lines[f] for f in FRONTENDS)  # the stats page, with the stats password
        check = estate_cli("check", "--connection", str(out / "connection.json"))
        assert check.returncode == 0, check.stdout + check.stderr  # the Service's listeners, verified by its name
    finally:
        forwards.stop()


def test_connection_command_writes_a_valid_file(tmp_path, capsys):
    assert main(["connection", "--port-forward", "--stack", "ha", "--config", str(TEST_STACKS["ha"]),
                 "--out", str(tmp_path / "pf"), "--first-port", "21000"]) == 0
    out = capsys.readouterr().out
    forwards = [line.strip() for line in out.splitlines() if line.startswith("  kubectl ")]
    assert forwards[:2] == ["kubectl -n mqtt-ha port-forward svc/mosquitto-frontend 21000:1883 21001:8883 21002:1885 "
                            "21003:8885 &",
                            "kubectl -n mqtt-ha port-forward pod/mosquitto-0 21004:1880 21005:1883 21006:8883 "
                            "21007:1884 &"]
    assert f"python -m estate health --connection {tmp_path / 'pf' / 'connection.json'}" in out
    conn = load_connection(tmp_path / "pf" / "connection.json")
    assert json.loads((tmp_path / "pf" / "connection.json").read_text())["ca_file"] == "ca.crt"
    assert [lst["name"] for lst in conn["listeners"]] == ["mqtt", "mqtts", "mqtt-shared", "mqtts-shared"]
    assert conn["listeners"][1]["server_name"] == "mosquitto-frontend.mqtt-ha.svc.cluster.local"
    assert (tmp_path / "pf" / "credentials.json").stat().st_mode & 0o777 == 0o600


def test_health_names_a_killed_broker_and_the_frontends_down_server(ha):
    """Last: it kills a broker of the module's estate."""
    local, path = ha
    conn = json.loads(path.read_text())
    os.kill(conn["brokers"][0]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    sockets = [Path(f["runtime_socket"]) for f in conn["frontends"]]
    while not all(server_states(sock, "health").get("b0") == 0 for sock in sockets):
        assert time.monotonic() < deadline, "HAProxy did not mark b0 down"
        time.sleep(0.1)
    started = time.monotonic()
    run = estate_cli("health", "--connection", str(path))
    assert run.returncode == 1, run.stdout + run.stderr
    lines = _lines(run.stdout)
    assert lines["mosquitto-0"].startswith("FAIL broker   mosquitto-0 ") and "not reachable" in lines["mosquitto-0"]
    for frontend in FRONTENDS:
        assert lines[frontend].startswith("FAIL frontend")
        assert "b0 (mosquitto-0) DOWN in health, mqtt, mqtts, mqtt-shared, mqtts-shared" in lines[frontend]
    assert lines["mosquitto-1"].startswith("OK ") and lines["mosquitto-2"].startswith("OK ")
    bridge = lines["mosquitto-1/estate-star"]  # its only upstream was mosquitto-0
    assert bridge.startswith("FAIL bridge") and "disconnected" in bridge
    assert run.stdout.splitlines()[-1].endswith(" failed") and time.monotonic() - started < 15
