"""Connections a broker pod can really hold.

mosquitto 2.0 never raises its own open-file limit, and a container under containerd 2.x starts with a soft
RLIMIT_NOFILE of 1024 below a much higher hard one (sources in components/mosquitto_start.sh). The start script
raises the soft limit to the hard one before it execs mosquitto. Here a real mosquitto, given those limits the way
a runtime hands them (soft 1024, hard 4096), holds 1,100 MQTT connections when started through the rendered start
script, and cannot when started directly with `mosquitto -c`.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from mqtt_estate.components.reloader_sidecar import AUTH_FILES, AUTH_FILES_SCRIPT
from mqtt_estate.estate.local import LocalEstate
from mqtt_estate.estate.render import render

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "tests" / "stacks" / "open-files.yaml"
SCRIPT = ROOT / "components" / "mosquitto_start.sh"
RUNTIME_LIMITS = (1024, 4096)
"""(soft, hard) RLIMIT_NOFILE of each broker, as containerd 2.x hands it (systemd's 1024 soft, a higher hard)."""
CLIENTS = 1100
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"


def _connect_packet(client_id: str, username: str, password: str, keepalive: int = 120) -> bytes:
    """MQTT 3.1.1 CONNECT with a clean session, user name and password."""
    def string(value: str) -> bytes:
        return struct.pack(">H", len(value.encode())) + value.encode()
    body = string("MQTT") + bytes([4, 0xC2]) + struct.pack(">H", keepalive) + string(client_id) \
        + string(username) + string(password)
    assert len(body) < 128  # the remaining length fits one byte
    return bytes([0x10, len(body)]) + body


def open_connections(port: int, username: str, password: str, count: int, in_flight: int = 64,
                     timeout: float = 60.0) -> list[socket.socket]:
    """Open `count` MQTT connections from one selector loop, at most `in_flight` handshakes at a time (mosquitto
    listens with a backlog of 100); return the sockets whose CONNECT got CONNACK 0, close the others."""
    selector = selectors.DefaultSelector()
    accepted: list[socket.socket] = []
    started = 0
    deadline = time.monotonic() + timeout

    def start(index: int) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE, {"id": f"fd-{index:04d}", "got": b""})

    def finish(sock: socket.socket, ok: bool) -> None:
        selector.unregister(sock)
        if ok:
            accepted.append(sock)
        else:
            sock.close()

    try:
        while (started < count or selector.get_map()) and time.monotonic() < deadline:
            while started < count and len(selector.get_map()) < in_flight:
                start(started)
                started += 1
            for key, events in selector.select(timeout=1.0):
                sock, state = key.fileobj, key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                            finish(sock, False)
                            continue
                        packet = _connect_packet(state["id"], username, password)
                        assert sock.send(packet) == len(packet)
                        selector.modify(sock, selectors.EVENT_READ, state)
                        continue
                    chunk = sock.recv(4 - len(state["got"]))
                except OSError:
                    finish(sock, False)
                    continue
                state["got"] += chunk
                if not chunk or len(state["got"]) == 4:
                    finish(sock, state["got"] == CONNACK_ACCEPTED)
    finally:
        for key in list(selector.get_map().values()):  # still waiting at the deadline: not held
            selector.unregister(key.fileobj)
            key.fileobj.close()
        selector.close()
    return accepted


def answering(sockets: list[socket.socket], timeout: float = 30.0) -> int:
    """How many of the connections answer a PINGREQ with a PINGRESP: open and served, not merely accepted."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        try:
            sock.sendall(PINGREQ)
        except OSError:
            continue
        selector.register(sock, selectors.EVENT_READ, bytearray())
    answered = 0
    deadline = time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            try:
                chunk = key.fileobj.recv(2 - len(key.data))
            except OSError:
                chunk = b""
            key.data.extend(chunk)
            if not chunk or len(key.data) == 2:
                answered += bytes(key.data) == PINGRESP
                selector.unregister(key.fileobj)
    selector.close()
    return answered


def soft_open_files(pid: int) -> tuple[str, int]:
    """The process's name and the soft open-file limit it runs with."""
    name = Path(f"/proc/{pid}/comm").read_text().strip()
    line = next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if line.startswith("Max open files"))
    return name, int(line.split()[3])


@pytest.fixture(scope="module")
def estate(tmp_path_factory, state_dir):
    """The open-files stack booted locally, each broker under RUNTIME_LIMITS; this process's own soft limit is
    raised for the clients' sockets and put back afterwards."""
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed (bash .ci/run installs it)")
    ours = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(RUNTIME_LIMITS[1], CLIENTS + 256)
    if ours[1] != resource.RLIM_INFINITY and ours[1] < wanted and os.geteuid() != 0:
        pytest.skip(f"needs a hard open-file limit of {wanted} (this process has {ours[1]})")
    rendered = render("open-files", STACK, out=tmp_path_factory.mktemp("out-open-files") / "open-files",
                      state_dir=state_dir)
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (wanted, ours[1] if ours[1] == resource.RLIM_INFINITY else max(wanted, ours[1])))
    try:
        with LocalEstate(rendered, tmp_path_factory.mktemp("local-open-files"),
                         broker_open_files=RUNTIME_LIMITS) as local:
            conn = json.loads(local.write_connection_file().read_text())
            password = json.loads(Path(conn["credentials_file"]).read_text())["fleet"]
            port = next(lst["port"] for lst in conn["listeners"] if lst["name"] == "mqtt")
            yield local, port, password
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, ours)


def hold(port: int, password: str) -> tuple[int, int]:
    """(connections accepted, of those still answering), with every socket closed again."""
    sockets = open_connections(port, "fleet", password, CLIENTS)
    try:
        return len(sockets), answering(sockets)
    finally:
        for sock in sockets:
            sock.close()


def test_the_start_script_lets_one_broker_hold_more_than_1024_connections(estate):
    local, port, password = estate
    broker = local.brokers[0]
    assert soft_open_files(broker.process.pid) == ("mosquitto", RUNTIME_LIMITS[1])
    assert hold(port, password) == (CLIENTS, CLIENTS)
    # max_connections 10000 (+8 on the health listener) is more than even the raised limit: said once at start
    log = (broker.directory / "process.log").read_text().splitlines()
    assert [line for line in log if line.startswith("[start.sh]")] == [
        f"[start.sh] the listeners admit 10008 connections (max_connections) but the open-file limit is "
        f"{RUNTIME_LIMITS[1]}: mosquitto refuses connections beyond about {RUNTIME_LIMITS[1]}"]


def test_without_it_the_runtime_soft_limit_caps_the_broker(estate):
    """The control: the same broker, files and limits, started as `mosquitto -c` without the start script (the
    last test of the module: it replaces the broker process)."""
    local, port, password = estate
    broker = local.brokers[0]
    local.kill(broker.pod)
    broker.command = [shutil.which("mosquitto"), "-c", broker.command[-1]]
    local.restart(broker.pod)
    assert soft_open_files(broker.process.pid) == ("mosquitto", RUNTIME_LIMITS[0])
    accepted, answered = hold(port, password)
    assert 900 < accepted < CLIENTS and answered == accepted, (accepted, answered)
    # out of descriptors: accept() fails with EMFILE (src/net.c:132-148, the image's build); a build with libwrap
    # (Debian's) still accepts into the last free slot, but tcpd cannot open hosts.allow there and denies
    log = (broker.directory / "process.log").read_text()
    assert "system socket count has been exceeded" in log or "denied access by tcpd" in log


@pytest.mark.parametrize("shell", ["/bin/sh", "busybox ash"])
def test_the_start_script_raises_the_soft_limit_quietly(tmp_path, shell):
    """The script alone, with a stand-in for mosquitto that reports its limits: raised to the hard limit without a
    word when max_connections fits; one line on stderr when it does not, and mosquitto starts either way. Runs
    under dash (this machine's /bin/sh) and busybox ash (the image's /bin/sh) when busybox is installed."""
    if shutil.which(shell.split()[0]) is None:
        pytest.skip(f"{shell.split()[0]} is not installed")
    fake = tmp_path / "bin" / "mosquitto"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$(ulimit -S -n) $(ulimit -H -n) $*"\n')
    fake.chmod(0o755)
    dirs = {name: tmp_path / name for name in ("config", "auth", "run")}
    for directory in dirs.values():
        directory.mkdir()
    for name in ("config/health.acl", "auth/passwd", "auth/acl"):
        (tmp_path / name).write_text("\n")
    (dirs["config"] / AUTH_FILES_SCRIPT).write_text(AUTH_FILES)  # the start script sources it from the ConfigMap
    conf = tmp_path / "mosquitto.conf"
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "MOSQUITTO_CONFIG_DIR": str(dirs["config"]),
           "MOSQUITTO_AUTH_DIR": str(dirs["auth"]), "MOSQUITTO_RUN_DIR": str(dirs["run"])}

    def start(limits: tuple[int, int], max_connections: int) -> subprocess.CompletedProcess:
        conf.write_text(f"listener 1880 127.0.0.1\nmax_connections 8\nlistener 1883\nmax_connections {max_connections}\n")
        return subprocess.run([*shell.split(), str(SCRIPT), str(conf)], env=env, capture_output=True, text=True,
                              timeout=30, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits))

    raised = start((1024, 4096), 4000)
    assert (raised.returncode, raised.stdout, raised.stderr) == (0, f"4096 4096 -c {conf}\n", "")
    capped = start((1024, 1024), 10000)
    assert (capped.returncode, capped.stdout) == (0, f"1024 1024 -c {conf}\n")
    assert capped.stderr == ("[start.sh] the listeners admit 10008 connections (max_connections) but the open-file "
                             "limit is 1024: mosquitto refuses connections beyond about 1024\n")
