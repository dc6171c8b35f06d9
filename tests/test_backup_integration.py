"""Backups that survive what a plant loses (issue 15), proven on 127.0.0.1 with the tests' backup stack: real
mosquitto 2.0.11 started by the rendered start script, the backup sidecar and the restore initContainer run as the
pod runs them (python -m mqtt_estate.backup, the pod's own environment), moto_server as S3 (estate/local_backup.py).

What is lost and what is not: the last value of every sensor (retained messages) and the QoS 1 messages queued
for an offline persistent session must come back after the broker's volume is gone or its database is damaged;
what mosquitto had not yet saved when the backup was taken is, by design, not in it (README, "Backups")."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from mqtt_estate.estate.local import LocalEstate

from .conftest import _require

STACK = "backup"
POD = "mosquitto-0"
SENSORS = {f"plant/line7/sensor-{i:02d}/temperature": f"{20 + i}.5".encode() for i in range(5)}
QUEUED = [f"alarm-{i}".encode() for i in range(7)]
HMI = "hmi-line7"
"""The persistent session (clean session false) whose queued alarms must survive."""


@pytest.fixture(scope="module")
def estate(rendered, tmp_path_factory):
    _require("mosquitto")
    with LocalEstate(rendered(STACK), tmp_path_factory.mktemp("local-backup")) as local:
        local.write_connection_file()
        yield local


def _admin(local: LocalEstate) -> tuple[dict, str]:
    conn = json.loads((local.workdir / "connection.json").read_text())
    passwords = json.loads(Path(conn["credentials_file"]).read_text())
    broker = next(p for p in local.brokers if p.pod == POD)
    plain = next(lst for lst in broker.listeners if lst["name"] == "mqtt")
    return plain, passwords["admin"]


def _client(local: LocalEstate, client_id: str, clean: bool = True, inbox: list | None = None) -> mqtt.Client:
    """A connected admin client; `inbox` collects (topic, payload, retain) from before the CONNACK (a persistent
    session's queue is delivered right after it)."""
    listener, password = _admin(local)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    if inbox is not None:
        client.on_message = lambda _c, _u, m: inbox.append((m.topic, m.payload, m.retain))
    client.username_pw_set("admin", password)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(listener["host"],
                   listener["port"], keepalive=30)
    client.loop_start()
    assert connected.wait(10), "no CONNACK"
    return client


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def _wait_for(inbox: list, wanted: int, timeout: float = 10.0) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while len(inbox) < wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # anything beyond `wanted` (a duplicate) would show
    return list(inbox)


def _plant_state(local: LocalEstate) -> None:
    """Retained sensor values, and alarms queued for the HMI's persistent session while it is offline."""
    hmi = _client(local, HMI, clean=False)
    subscribed = threading.Event()
    hmi.on_subscribe = lambda *_a: subscribed.set()
    hmi.subscribe("plant/line7/alarms", 1)
    assert subscribed.wait(10)
    _close(hmi)
    publisher = _client(local, f"pub-{uuid.uuid4().hex[:6]}")
    for topic, value in SENSORS.items():
        publisher.publish(topic, value, qos=1, retain=True).wait_for_publish(10)
    for alarm in QUEUED:
        publisher.publish("plant/line7/alarms", alarm, qos=1).wait_for_publish(10)
    _close(publisher)


def _metrics(local: LocalEstate) -> dict[str, float]:
    sidecar = next(p for p in local.backups if p.pod == POD)
    port = next(iter(sidecar.named_ports.values()))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _backup_now(local: LocalEstate, timeout: float = 20.0) -> dict[str, float]:
    """Ask the running sidecar for a backup (SIGUSR1 at its pid) and wait until it reports one more successful
    attempt."""
    before = _metrics(local).get("mosquitto_backup_last_success_timestamp_seconds", 0.0)
    sidecar = next(p for p in local.backups if p.pod == POD)
    os.kill(sidecar.process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _metrics(local)
        if now.get("mosquitto_backup_last_success_timestamp_seconds", 0.0) > before:
            return now
        time.sleep(0.2)
    raise AssertionError(f"no backup within {timeout} s: {(sidecar.directory / 'process.log').read_text()[-1500:]}")


def _data_dir(local: LocalEstate) -> Path:
    broker = next(p for p in local.brokers if p.pod == POD)
    return broker.directory / "mosquitto" / "data"


def _assert_plant_state_back(local: LocalEstate) -> None:
    retained: list = []
    reader = _client(local, f"reader-{uuid.uuid4().hex[:6]}", inbox=retained)
    reader.subscribe("plant/line7/+/temperature", 1)
    _wait_for(retained, len(SENSORS))
    _close(reader)
    assert {topic: payload for topic, payload, retain in retained if retain} == SENSORS
    queued: list = []
    hmi = _client(local, HMI, clean=False, inbox=queued)  # the same session: its queue is delivered on connect
    _wait_for(queued, len(QUEUED))
    _close(hmi)
    assert [payload for _t, payload, _r in queued] == QUEUED


def test_retained_and_queued_messages_survive_the_loss_of_the_volume(estate):
    _plant_state(estate)
    metrics = _backup_now(estate)
    assert metrics["mosquitto_backup_uploads_total"] >= 1
    kinds = sorted(p.kind for p in estate.processes if p.pod == POD)
    ports = dict(next(p for p in estate.brokers if p.pod == POD).named_ports)
    estate.delete_pod(POD, damage=lambda data: _wipe(data))
    assert not list(_data_dir(estate).glob("mosquitto.db.*")), "an empty volume has nothing to move aside"
    assert sorted(p.kind for p in estate.processes if p.pod == POD) == kinds  # every container back
    assert next(p for p in estate.brokers if p.pod == POD).named_ports == ports  # at the same local ports
    _assert_plant_state_back(estate)
    log = (estate.brokers[0].directory / "restore" / "process.log").read_text()
    assert "restored" in log.lower(), log


def _wipe(data: Path) -> None:
    for path in data.iterdir():
        if path.is_dir():
            import shutil
            shutil.rmtree(path)
        else:
            path.unlink()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_database_is_moved_aside_and_recovered_from_the_last_backup(estate, damage):
    _plant_state(estate)
    _backup_now(estate)

    def break_it(data: Path) -> None:
        db = data / "mosquitto.db"
        content = db.read_bytes()
        db.write_bytes(content[: len(content) // 2] if damage == "truncated" else os.urandom(len(content)))

    estate.delete_pod(POD, damage=break_it)
    kept = list(_data_dir(estate).glob("mosquitto.db.corrupt-*"))
    assert kept, "the damaged database must be kept beside the restored one"
    _assert_plant_state_back(estate)
    metrics = _metrics(estate)
    assert any(name.startswith("mosquitto_database_recovery_timestamp_seconds") and 'outcome="restored"' in name
               for name in metrics), metrics


def test_the_estates_locked_backups_cannot_be_deleted(estate):
    """The backup stack locks each version in GOVERNANCE mode for a day: the sidecar's uploads carry the lock, and
    deleting the version without s3:BypassGovernanceRetention is refused, as S3 refuses it (moto 5.2.1 enforces
    retention on DeleteObject with a VersionId)."""
    from botocore.exceptions import ClientError

    _backup_now(estate)
    env = estate.backups[0].env
    s3 = estate.control_plane.client("s3", env["BACKUP_REGION"])
    key = f"{env['BACKUP_PREFIX']}/{POD}/mosquitto.db"
    head = s3.head_object(Bucket=env["BACKUP_BUCKET"], Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=env["BACKUP_BUCKET"], Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.head_object(Bucket=env["BACKUP_BUCKET"], Key=key, VersionId=head["VersionId"])["ContentLength"] > 0


def test_the_smoke_suite_checks_every_backup_sidecar(estate, tmp_path):
    """`estate up --local --smoke` also asks each backup sidecar: serving, and no failed backup (a sidecar whose
    bucket refuses it fails the smoke run)."""
    import http.server

    from mqtt_estate.estate.smoke import backup_checks, run_smoke

    conn = json.loads(estate.write_connection_file().read_text())  # the pods the tests above recreated included
    checks = [c for c in run_smoke(conn) if c.listener == POD and "backup" in c.name]
    assert checks and all(c.ok for c in checks), checks

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"mosquitto_backup_failures_total 2.0\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Failing)
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    try:
        failing = backup_checks({"backups": [{"pod": "p-0", "bucket": "b", "log": "x",
                                              "url": f"http://127.0.0.1:{server.server_port}/metrics"}]})
        closed = backup_checks({"backups": [{"pod": "p-0", "url": "http://127.0.0.1:1/metrics"}]})
    finally:
        server.shutdown()
        server.server_close()
    assert [c.ok for c in failing + closed] == [False, False]
    assert "2.0 failed" in failing[0].detail
