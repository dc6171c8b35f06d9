"""Tried as a new user would: a stack with 1,000 devices renders, boots locally and passes the smoke suite.

The stack file is the prod stack's settings plus 500 certificate and 500 password devices (bench/device_stack.py),
written to a temporary directory. The CLI runs in a subprocess from there, as in a terminal:
`python3 -m estate up --local --stack plant-trial --config Pulumi.plant-trial.yaml`, then
`python3 -m estate check --local` beside it, then a handful of sampled devices connect with paho using the
connection file. Every process is stopped at the end (the CLI stops its brokers and HAProxy on SIGTERM), and the
test checks that none is left. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from bench.device_stack import ZONES, cert_device, password_device, write_device_stack
from mqtt_estate.components.client_bundles import bundle_count, bundle_users
from mqtt_estate.estate.mqtt_client import connect
from tests.conftest import ROOT

STACK = "plant-trial"
CERT_DEVICES = PASSWORD_DEVICES = 500
UP_TIMEOUT_S = 240
TIMINGS: dict[str, float] = {}
"""Wall times of the trial's steps (printed at the end: run pytest with -s to see them)."""


class _Lines(threading.Thread):
    """Collects a process's stdout lines and signals when one contains `wanted`."""

    def __init__(self, stream, wanted: str):
        super().__init__(daemon=True)
        self.stream, self.wanted, self.lines, self.seen = stream, wanted, [], threading.Event()

    def run(self):
        for line in self.stream:
            self.lines.append(line)
            if self.wanted in line:
                self.seen.set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    for binary in ("mosquitto", "haproxy"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not installed (bash .ci/run installs it)")
    work = tmp_path_factory.mktemp("plant")
    stack_file = write_device_stack(work / f"Pulumi.{STACK}.yaml", CERT_DEVICES, PASSWORD_DEVICES)
    seed_dir = ROOT / ".estate" / STACK  # the CLI keeps the stack's seed beside the project, as for any stack
    made_seed = not seed_dir.exists()
    log = (work / "up.stderr").open("w")
    started = time.monotonic()
    up = subprocess.Popen([sys.executable, "-m", "estate", "up", "--local", "--stack", STACK,
                           "--config", stack_file.name], cwd=work, stdout=subprocess.PIPE, stderr=log, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    lines = _Lines(up.stdout, "estate is up")
    lines.start()
    connection = work / ".estate" / "local" / "connection.json"
    pids: list[int] = []
    try:
        while not lines.seen.wait(0.2):
            if up.poll() is not None or time.monotonic() - started > UP_TIMEOUT_S:
                pytest.fail(f"`estate up` did not come up (exit {up.poll()}):\n{''.join(lines.lines)[-3000:]}\n"
                            f"{(work / 'up.stderr').read_text()[-3000:]}")
        TIMINGS["render, policy, boot (estate up --local)"] = time.monotonic() - started
        conn = json.loads(connection.read_text())
        pids = [p["pid"] for p in conn["brokers"] + conn["frontends"]]
        yield {"work": work, "conn": conn, "connection": connection, "up_output": "".join(lines.lines),
               "stack_file": stack_file}
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)  # what Ctrl-C or `kill` does: the CLI stops every process it started
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        log.close()
        if made_seed:
            shutil.rmtree(seed_dir, ignore_errors=True)
        TIMINGS["whole trial"] = time.monotonic() - started
        print("\n1,000-device trial wall times: " + "; ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if _alive(pid)], "a broker or HAProxy outlived `estate up`"


def _listener(conn: dict, name: str) -> dict:
    return next(lst for lst in conn["listeners"] if lst["name"] == name)


def _sample(make, count: int, k: int, seed: int) -> list[str]:
    return [make(i) for i in sorted(random.Random(seed).sample(range(count), k))]


def test_it_renders_every_device(plant):
    out = plant["work"] / "out" / STACK
    objects = [yaml.safe_load(p.read_text()) for p in sorted((out / "k8s").glob("*.yaml"))]
    bundles = {o["metadata"]["name"]: bundle_users(o) for o in objects if bundle_users(o)}
    holders = [u for users in bundles.values() for u in users]
    assert len(holders) == len(set(holders)) == CERT_DEVICES + 3  # + ops-admin, edge-gw-01, edge-gw-02
    assert len(bundles) == bundle_count(CERT_DEVICES + 3) == 16
    assert len(objects) < 50  # one Secret per device would make 500 more
    passwd = next(p for p in (out / "files").rglob("passwd"))
    logins = {line.split(":", 1)[0] for line in passwd.read_text().splitlines()}
    assert {password_device(i) for i in range(PASSWORD_DEVICES)} <= logins
    assert not {cert_device(i) for i in range(CERT_DEVICES)} & logins  # certificate devices have no password
    conn = plant["conn"]
    assert len(conn["client_certificates"]) == CERT_DEVICES + 3
    assert f"rendered {len(objects)} Kubernetes objects" in plant["up_output"]


def test_the_smoke_suite_passes(plant):
    started = time.monotonic()
    check = subprocess.run([sys.executable, "-m", "estate", "check", "--local", "--connection",
                            str(plant["connection"])], cwd=plant["work"], capture_output=True, text=True,
                           timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT)})
    TIMINGS["smoke suite (estate check --local)"] = time.monotonic() - started
    assert check.returncode == 0, check.stdout + check.stderr
    assert " 0 failed" in check.stdout and "FAIL" not in check.stdout


def _observer(conn: dict):
    admin = connect(_listener(conn, "mqtts"), username="ops-admin",
                    password=json.loads(Path(conn["credentials_file"]).read_text())["ops-admin"],
                    ca_file=conn["ca_file"])
    assert admin.accepted, admin.error or admin.reason
    received, subscribed = [], threading.Event()
    admin.client.on_message = lambda _c, _u, msg: received.append((msg.topic, msg.payload))
    admin.client.on_subscribe = lambda *a: subscribed.set()
    admin.client.subscribe("factory/#", 1)
    assert subscribed.wait(5)
    return admin, received


def _publishes_only_its_own(device, name: str, index: int, observer_received: list) -> None:
    own = f"factory/{ZONES[index % len(ZONES)]}/{name}/data/temp"
    foreign = f"factory/{ZONES[index % len(ZONES)]}/someone-else/data/temp"
    token = uuid.uuid4().hex.encode()
    device.client.publish(foreign, token, qos=1).wait_for_publish(5)
    device.client.publish(own, token, qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while (own, token) not in observer_received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (own, token) in observer_received, f"{name}: its own telemetry did not arrive"
    assert (foreign, token) not in observer_received, f"{name}: wrote another device's topic"


@pytest.mark.parametrize("index", [int(c.split("-")[1]) for c in _sample(cert_device, CERT_DEVICES, 4, 1)])
def test_sampled_certificate_devices_connect_with_their_own_certificate(plant, index):
    conn, name = plant["conn"], cert_device(index)
    started = time.monotonic()
    admin, received = _observer(conn)
    files = conn["client_certificates"][name]
    device = connect(_listener(conn, "mqtts-devices"), ca_file=conn["ca_file"], cert=files["cert"], key=files["key"])
    assert device.accepted, device.error or device.reason
    _publishes_only_its_own(device, name, index, received)
    device.close()
    admin.close()
    TIMINGS[f"certificate device {name}"] = time.monotonic() - started


@pytest.mark.parametrize("index", [int(s.split("-")[1]) for s in _sample(password_device, PASSWORD_DEVICES, 4, 2)])
def test_sampled_password_devices_log_in(plant, index):
    conn, name = plant["conn"], password_device(index)
    started = time.monotonic()
    admin, received = _observer(conn)
    password = json.loads(Path(conn["credentials_file"]).read_text())[name]
    device = connect(_listener(conn, "mqtts"), username=name, password=password, ca_file=conn["ca_file"])
    assert device.accepted, device.error or device.reason
    _publishes_only_its_own(device, name, index, received)
    wrong = connect(_listener(conn, "mqtts"), username=name, password="wrong-" + password, ca_file=conn["ca_file"])
    assert not wrong.accepted
    device.close()
    admin.close()
    TIMINGS[f"password device {name}"] = time.monotonic() - started
