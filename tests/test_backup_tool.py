"""The backup tool (backup/, issue 15) against a real mosquitto 2.0.11 and moto_server as S3, all on 127.0.0.1.

Databases are made by mosquitto itself: retained messages, and a persistent session (clean_session False) with
QoS 1 messages queued while it is offline, saved with SIGUSR1. Every process is stopped in a `finally`. Waits are
hang guards with generous deadlines, never assertions about how long something took.
"""

import base64
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

import pytest


ROOT = Path(__file__).resolve().parent.parent
CLI_MODULE = "mqtt_estate.backup"

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from mqtt_estate.backup import agent, dbfile, restore, store  # noqa: E402
from mqtt_estate.backup.__main__ import main as cli_main  # noqa: E402
from mqtt_estate.backup.config import Config  # noqa: E402
from mqtt_estate.estate.aws_provider import ControlPlane  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
HANG_GUARD = 20.0
"""Seconds after which a wait gives up (a hung broker), never a measure of speed."""
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto 2.0 at /usr/sbin/mosquitto")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# --- a real broker ------------------------------------------------------------------------------------------
class Broker:
    """mosquitto with persistence in `data`, a pid file, one anonymous listener on 127.0.0.1."""

    def __init__(self, data: Path):
        self.data = data
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None
        data.mkdir(parents=True, exist_ok=True)
        lines = ["persistence true", f"persistence_location {data}/", "autosave_interval 0",
                 f"pid_file {data}/mosquitto.pid", f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "log_dest stderr", "log_type error", "log_type warning"]
        if os.geteuid() == 0:
            lines.append("user root")  # no drop to `mosquitto`, which could not write the test's directory
        self.conf = data / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = data / "mosquitto.log"

    def start(self) -> "Broker":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mosquitto exited {self.process.returncode}: {self.log.read_text()[-500:]}")
            if (self.data / "mosquitto.pid").exists():
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
            time.sleep(0.02)
        raise AssertionError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        (self.data / "mosquitto.pid").unlink(missing_ok=True)

    def client(self, client_id: str, clean: bool = True) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                             protocol=mqtt.MQTTv311)
        connected = threading.Event()
        client.on_connect = lambda *_: connected.set()
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        assert connected.wait(HANG_GUARD)
        return client

    def populate(self, retained: int = 3, queued: int = 4) -> None:
        """Retained values, and a persistent session `dev-1` (QoS 1 on plant/cmd/#) with `queued` messages waiting."""
        device = self.client("dev-1", clean=False)
        subscribed = threading.Event()
        device.on_subscribe = lambda *_: subscribed.set()
        device.subscribe("plant/cmd/#", qos=1)
        assert subscribed.wait(HANG_GUARD)
        device.disconnect()
        device.loop_stop()
        publisher = self.client("publisher")
        for i in range(retained):
            publisher.publish(f"plant/sensor/{i}", f"value-{i}", qos=1, retain=True).wait_for_publish(HANG_GUARD)
        for i in range(queued):  # PUBACKed: stored and queued for dev-1 before the broker answered
            publisher.publish("plant/cmd/valve", f"command-{i}", qos=1).wait_for_publish(HANG_GUARD)
        publisher.disconnect()
        publisher.loop_stop()

    def populate_v5(self) -> None:
        """MQTT 5: a session (expiry 1 h) subscribed with subscription identifier 42, a retained value and a queued
        command, both with user, content-type and correlation properties (property blocks in the file)."""
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = 3600
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-5", protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        device.on_subscribe = lambda *_: subscribed.set()
        device.on_connect = lambda cl, *_: cl.subscribe("plant/cmd/#", qos=1, properties=subscription)
        subscription = Properties(PacketTypes.SUBSCRIBE)
        subscription.SubscriptionIdentifier = 42
        device.connect("127.0.0.1", self.port, clean_start=False, properties=connect)
        device.loop_start()
        assert subscribed.wait(HANG_GUARD)
        device.disconnect()
        device.loop_stop()
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-5", protocol=mqtt.MQTTv5)
        publisher.connect("127.0.0.1", self.port)
        publisher.loop_start()
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = [("unit", "degC"), ("line", "7")]
        properties.ContentType = "text/plain"
        properties.CorrelationData = b"\x01\x02"
        properties.PayloadFormatIndicator = 1
        publisher.publish("plant/sensor/t", "21.5", qos=1, retain=True,
                          properties=properties).wait_for_publish(HANG_GUARD)
        publisher.publish("plant/cmd/valve", "open", qos=1, properties=properties).wait_for_publish(HANG_GUARD)
        publisher.disconnect()
        publisher.loop_stop()

    def retained(self) -> set[str]:
        """The retained topics a new subscriber gets (ends at a marker message published after subscribing)."""
        got: set[str] = set()
        done = threading.Event()
        reader = self.client("reader")

        def on_message(_c, _u, message):
            if message.topic == "zz/marker":
                done.set()
            elif message.retain:
                got.add(message.topic)
        reader.on_message = on_message
        subscribed = threading.Event()
        reader.on_subscribe = lambda *_: subscribed.set()
        reader.subscribe([("plant/#", 1), ("zz/marker", 1)])
        assert subscribed.wait(HANG_GUARD)
        reader.publish("zz/marker", "x", qos=1)
        assert done.wait(HANG_GUARD)
        reader.disconnect()
        reader.loop_stop()
        return got

    def queued_for_device(self, expected: int) -> list[str]:
        """What the persistent session dev-1 receives when it comes back."""
        got: list[str] = []
        done = threading.Event()
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-1", clean_session=False,
                             protocol=mqtt.MQTTv311)

        def on_message(_c, _u, message):
            got.append(message.payload.decode())
            if len(got) >= expected:
                done.set()
        device.on_message = on_message
        device.connect("127.0.0.1", self.port)
        device.loop_start()
        try:
            done.wait(HANG_GUARD if expected else 0.5)
        finally:
            device.disconnect()
            device.loop_stop()
        return got


@contextlib.contextmanager
def running(data: Path) -> Iterator[Broker]:
    broker = Broker(data)
    try:
        yield broker.start()
    finally:
        broker.stop()


def save(broker: Broker) -> bytes:
    """SIGUSR1 and the file mosquitto renames into place: the agent's own function."""
    config = Config.from_env({"BACKUP_DATA_DIR": str(broker.data),
                              "BACKUP_PID_FILE": str(broker.data / "mosquitto.pid"),
                              "POD_NAME": "test-0"})
    return agent.save_and_read(config)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory) -> dict[str, bytes]:
    """Databases mosquitto 2.0.11 wrote: empty (a fresh broker), full (3 retained, dev-1 with 4 queued), more
    (full + one more retained value), shutdown (written at exit)."""
    made: dict[str, bytes] = {}
    with running(tmp_path_factory.mktemp("made")) as broker:
        made["empty"] = save(broker)
        broker.populate()
        made["full"] = save(broker)
        broker.client("late").publish("plant/sensor/9", "late", qos=1, retain=True).wait_for_publish(HANG_GUARD)
        made["more"] = save(broker)
        broker.stop()
        made["shutdown"] = (broker.data / "mosquitto.db").read_bytes()
    with running(tmp_path_factory.mktemp("made-v5")) as broker:
        broker.populate_v5()
        made["v5"] = save(broker)
    return made


def boundaries(data: bytes) -> list[int]:
    """Offsets where chunks begin (and the end of the file)."""
    found, pos = [], dbfile.HEADER_SIZE
    while pos < len(data):
        found.append(pos)
        pos += 8 + struct.unpack_from(">II", data, pos)[1]
    return found + [len(data)]


# --- S3 ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_server():
    with ControlPlane() as plane:
        yield plane


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)


_buckets = iter(range(10 ** 6))


@pytest.fixture
def bucket(s3_server) -> str:
    """A new versioned bucket."""
    name = f"backups-{next(_buckets)}"
    s3 = s3_server.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def make_config(tmp_path: Path, bucket: str, endpoint: str, **env: str) -> Config:
    values = {"BACKUP_BUCKET": bucket, "BACKUP_ENDPOINT": endpoint, "BACKUP_REGION": "us-east-1",
              "POD_NAME": "mqtt-broker-0", "BACKUP_PREFIX": "plant-a", "BACKUP_DATA_DIR": str(tmp_path / "data"),
              "BACKUP_PID_FILE": str(tmp_path / "data" / "mosquitto.pid"), "BACKUP_METRICS_LISTEN": "127.0.0.1:0",
              "BACKUP_BROKER": "127.0.0.1:1", "RESTORE_WAIT_SECONDS": "0",
              "BACKUP_TERMINATION_LOG": str(tmp_path / "termination-log"), **env}
    return Config.from_env(values)


def upload(config: Config, data: bytes, saved_at: dt.datetime) -> str:
    summary = dbfile.inspect(data)
    return store.Store(config).put(data, store.metadata_for(config, data, summary, "2.0.11", saved_at)).version_id


def init(config: Config, offline: bool = False) -> tuple[restore.Outcome, str]:
    """One init run; `offline`: the endpoint is a closed port, fail at the first try (no botocore backoff)."""
    err = io.StringIO()
    outcome = restore.run(config, store.Store(config, attempts=1) if offline else None, err=err, sleep=lambda _s: None)
    return outcome, err.getvalue()


T0 = dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.timezone.utc)


# === the validator =========================================================================================
def test_validator_accepts_what_mosquitto_wrote(dbs):
    full = dbfile.inspect(dbs["full"])
    assert (full.format_version, full.retained, full.clients, full.subscriptions,
            full.client_messages) == (6, 3, 1, 1, 4)
    assert full.messages == 7 and full.dangling == 0 and full.client_ids == {"dev-1"} and not full.shutdown
    assert dbfile.inspect(dbs["more"]).retained == 4
    assert dbfile.inspect(dbs["shutdown"]).shutdown and dbfile.inspect(dbs["shutdown"]).retained == 4
    empty = dbfile.inspect(dbs["empty"])
    assert empty.empty and empty.size == store.EMPTY_DB_SIZE == len(dbs["empty"])
    edges = boundaries(dbs["full"])  # a message store gone from the middle: mosquitto skips what referred to it
    assert dbfile.inspect(dbs["full"][:edges[1]] + dbs["full"][edges[2]:]).dangling == 1
    v5 = dbfile.inspect(dbs["v5"])  # property blocks on the stored messages and on the queued one
    assert (v5.retained, v5.messages, v5.clients, v5.client_messages, v5.client_ids) == (1, 2, 1, 1, {"dev-5"})


def property_id_offset(data: bytes) -> int:
    """Where the queued message's first property id is (after its 16-byte fixed part, its client id and the
    property block's length byte)."""
    for edge in boundaries(data)[:-1]:
        kind, length = struct.unpack_from(">II", data, edge)
        if kind == dbfile.CLIENT_MSG:
            id_len = struct.unpack_from(">H", data, edge + 8 + 10)[0]
            assert length > 16 + id_len
            return edge + 8 + 16 + id_len + 1
    raise AssertionError("no client_msg chunk")


@pytest.mark.parametrize("shift, value, message", [(0, 18, "property 18 is not allowed on a PUBLISH"),
                                                  (-1, 3, "property block says 3 bytes, the chunk leaves 2")])
def test_validator_reads_property_blocks_as_mosquitto_does(dbs, shift, value, message):
    """mosquitto 2.0.11 exits 1 on a property a PUBLISH may not carry (measured with id 18)."""
    data = bytearray(dbs["v5"])
    at = property_id_offset(bytes(data))
    assert (data[at - 1], data[at]) == (2, 11)  # 2 bytes: the subscription identifier mosquitto queued it with
    data[at + shift] = value
    with pytest.raises(dbfile.CorruptDatabase, match=message):
        dbfile.inspect(bytes(data))


def test_validator_rejects_every_cut_inside_a_chunk(dbs):
    data = dbs["full"]
    edges = set(boundaries(data))
    for n in range(len(data)):
        if n in edges and n > dbfile.HEADER_SIZE:
            continue
        with pytest.raises(dbfile.CorruptDatabase, match=r"^at byte \d+: |^empty file") as caught:
            dbfile.inspect(data[:n])
        assert "\n" not in str(caught.value)


def test_a_cut_between_chunks_is_a_smaller_valid_database(dbs):
    """The format has no trailer and its crc is always 0: a file cut exactly between chunks is a well-formed smaller
    database, and mosquitto 2.0.11 starts on it (test_what_mosquitto_does_at_start_with). The validator
    says what such a file holds; the backups' own SHA-256 is what tells a cut copy from the original."""
    data = dbs["full"]
    full = sum(dbfile.inspect(data).chunks.values())
    for edge in boundaries(data)[1:-1]:
        summary = dbfile.inspect(data[:edge])
        assert summary.size == edge and sum(summary.chunks.values()) < full


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"", "empty file"),
    (lambda d: bytes(random.Random(15).getrandbits(8) for _ in range(len(d))), "magic header is missing"),
    (lambda d: b"\x00\xb5\x00mosquitto dc" + d[15:], "magic header is missing"),
    (lambda d: d[:19] + struct.pack(">I", 7) + d[23:], "format version 7"),
    (lambda d: d[:23], "no chunks after the file header"),
    (lambda d: d[:23] + bytes(random.Random(16).getrandbits(8) for _ in range(len(d) - 23)), "at byte 23"),
    (lambda d: d[:47] + struct.pack(">I", 9) + d[51:], "unknown chunk type 9"),
    (lambda d: d[:40] + b"\x04" + d[41:], "dbid size 4"),  # cfg body at 31: last_db_id 8, shutdown 1
    (lambda d: d + d[boundaries(d)[1]:boundaries(d)[2]], "msg_store chunk after a later section"),
    (lambda d: d[:23] + d[boundaries(d)[1]:], "first chunk is msg_store, mosquitto writes cfg first"),
])
def test_validator_rejects_damage(dbs, damage, message):
    with pytest.raises(dbfile.CorruptDatabase, match=message):
        dbfile.inspect(damage(dbs["full"]))


def test_huge_declared_length_is_refused_without_allocating_it(dbs):
    data = bytearray(dbs["full"])
    data[51:55] = struct.pack(">I", 0xFFFFFFF0)  # the first message store claims 4 GiB
    tracemalloc.start()
    try:
        with pytest.raises(dbfile.CorruptDatabase, match="declares 4294967280 bytes but only"):
            dbfile.inspect(bytes(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("damage, starts", [
    (lambda d: d[:len(d) - 100], False),                  # cut inside a chunk
    (lambda d: bytes(random.Random(15).getrandbits(8) for _ in range(len(d))), False),  # garbage
    (lambda d: b"", True),                                # empty: a warning, and an empty broker
    (lambda d: d[:boundaries(d)[-5]], True),              # cut between chunks: starts with less, silently
])
def test_what_mosquitto_does_at_start_with(tmp_path, dbs, damage, starts):
    """The facts the init container is built on: a damaged file either stops mosquitto (exit 1, a crash loop in a
    pod) or is loaded as if nothing were wrong; and the validator refuses both kinds but the chunk-boundary cut."""
    data = damage(dbs["full"])
    broker = Broker(tmp_path)
    (tmp_path / "mosquitto.db").write_bytes(data)
    try:
        if starts:
            broker.start()
        else:
            with pytest.raises(AssertionError, match="mosquitto exited 1"):
                broker.start()
    finally:
        broker.stop()
    refused = False
    try:
        dbfile.inspect(data)
    except dbfile.CorruptDatabase:
        refused = True
    assert refused == (len(data) != boundaries(dbs["full"])[-5])


def test_mosquitto_saves_a_new_0600_file_and_an_open_reader_keeps_the_old_one(tmp_path):
    with running(tmp_path) as broker:
        first = save(broker)
        held = os.open(tmp_path / "mosquitto.db", os.O_RDONLY)
        try:
            broker.populate(retained=1, queued=0)
            second = save(broker)
            assert os.fstat(held).st_ino != os.stat(tmp_path / "mosquitto.db").st_ino
            assert os.read(held, 1 << 16) == first != second
        finally:
            os.close(held)
        assert (tmp_path / "mosquitto.db").stat().st_mode & 0o777 == 0o600
        assert not (tmp_path / "mosquitto.db.new").exists()


# === the agent ==============================================================================================
def test_agent_uploads_with_checksum_and_metadata_then_not_again(tmp_path, s3_server, bucket):
    config = make_config(tmp_path, bucket, s3_server.url)
    with running(config.data_dir) as broker:
        broker.populate()
        config = make_config(tmp_path, bucket, s3_server.url, BACKUP_BROKER=f"127.0.0.1:{broker.port}")
        err = io.StringIO()
        worker = agent.Agent(config, err=err)
        first = worker.cycle()
        assert first is not None and first.outcome == "uploaded" and first.checksum == "SHA256", err.getvalue()
        second = worker.cycle()
        restarted = agent.backup_once(config)  # a new agent (a restarted sidecar) asks the bucket
    assert second.outcome == "unchanged" and restarted.outcome == "unchanged"
    assert second.sha256 == first.sha256
    s3 = s3_server.client("s3")
    versions = s3.list_object_versions(Bucket=bucket, Prefix=config.key)["Versions"]
    assert [v["VersionId"] for v in versions] == [first.version_id]
    head = s3.head_object(Bucket=bucket, Key="plant-a/mqtt-broker-0/mosquitto.db", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(first.sha256)).decode()
    meta = head["Metadata"]
    assert meta["sha256"] == first.sha256 and meta["size"] == str(first.size) and meta["db-format"] == "6"
    assert (meta["pod"], meta["ordinal"], meta["broker-version"]) == ("mqtt-broker-0", "0", "2.0.11")
    assert meta["saved-at"].endswith("Z")
    assert meta["contents"] == "retained=3 messages=7 clients=1 subscriptions=1 queued=4"
    text = worker.metrics.render()
    assert "mosquitto_backup_uploads_total 1.0" in text and "mosquitto_backup_failures_total 0.0" in text
    assert f"mosquitto_backup_size_bytes {float(first.size)!r}" in text
    assert "\nmosquitto_backup_last_success_timestamp_seconds " in text
    assert err.getvalue() == ""


def test_a_backup_deleted_from_the_bucket_is_uploaded_again(tmp_path, s3_server, bucket):
    """Freshness means "in the bucket now": after a delete marker hides the current version (allowed even under
    Object Lock), an unchanged database is uploaded again instead of being called unchanged (found by review)."""
    config = make_config(tmp_path, bucket, s3_server.url)
    with running(config.data_dir) as broker:
        broker.populate()
        config = make_config(tmp_path, bucket, s3_server.url, BACKUP_BROKER=f"127.0.0.1:{broker.port}")
        worker = agent.Agent(config, err=io.StringIO())
        first = worker.cycle()
        s3_server.client("s3").delete_object(Bucket=bucket, Key=config.key)  # a delete marker on top
        again = worker.cycle()
    assert (first.outcome, again.outcome) == ("uploaded", "uploaded") and again.sha256 == first.sha256
    assert store.Store(config).current().version_id == again.version_id != first.version_id


def test_agent_never_signals_a_process_that_is_not_mosquitto(tmp_path, s3_server, bucket):
    config = make_config(tmp_path, bucket, s3_server.url)
    config.data_dir.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)  # SIGUSR1 would kill it
    try:
        deadline = time.monotonic() + HANG_GUARD
        while Path(f"/proc/{sleeper.pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)  # the child may not have exec'd yet
        config.pid_file.write_text(f"{sleeper.pid}\n")
        err = io.StringIO()
        worker = agent.Agent(config, err=err)
        assert worker.cycle() is None
        config.pid_file.write_text("999999999\n")  # a stale pid file
        assert worker.cycle() is None
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    lines = err.getvalue().splitlines()
    assert len(lines) == 2
    assert f"pid {sleeper.pid} from {config.pid_file} is 'sleep', not mosquitto: not signalled" in lines[0]
    assert "not running" in lines[1]
    text = worker.metrics.render()
    assert "mosquitto_backup_failures_total 2.0" in text
    assert "\nmosquitto_backup_last_success_timestamp_seconds" not in text


def test_agent_process_serves_metrics_and_stops_on_sigterm(tmp_path, s3_server, bucket):
    data = tmp_path / "data"
    metrics_port = free_port()
    with running(data) as broker:
        broker.populate(retained=1, queued=0)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **AWS_ENV,
               "BACKUP_BUCKET": bucket, "BACKUP_ENDPOINT": s3_server.url, "BACKUP_REGION": "us-east-1",
               "POD_NAME": "mqtt-broker-1", "BACKUP_DATA_DIR": str(data),
               "BACKUP_PID_FILE": str(data / "mosquitto.pid"),
               "BACKUP_INTERVAL_SECONDS": "1", "BACKUP_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
               "BACKUP_BROKER": f"127.0.0.1:{broker.port}", "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen([sys.executable, "-m", CLI_MODULE, "agent"], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            text, deadline = "", time.monotonic() + HANG_GUARD
            while "mosquitto_backup_uploads_total 1.0" not in text and time.monotonic() < deadline:
                time.sleep(0.1)
                with contextlib.suppress(OSError):
                    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
            process.send_signal(signal.SIGTERM)
            code = process.wait(HANG_GUARD)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        _, stderr = process.communicate()
    assert "mosquitto_backup_uploads_total 1.0" in text
    assert "mosquitto_backup_interval_seconds 1.0" in text
    assert code == 0
    assert stderr.count("\n") == 1 and "metrics on http://127.0.0.1" in stderr  # the startup line, nothing else


def test_a_starting_mosquitto_is_not_signalled(tmp_path, s3_server, bucket):
    """A process named mosquitto that does not handle SIGUSR1 yet (mosquitto installs its handlers only after it has
    loaded its database; until then SIGUSR1's default action kills it) is left alone (found by review)."""
    config = make_config(tmp_path, bucket, s3_server.url)
    config.data_dir.mkdir(parents=True)
    stand_in = tmp_path / "mosquitto"
    stand_in.write_bytes(Path("/bin/sleep").read_bytes())
    stand_in.chmod(0o755)
    starting = subprocess.Popen([str(stand_in), "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while Path(f"/proc/{starting.pid}/comm").read_text().strip() != "mosquitto" and time.monotonic() < deadline:
            time.sleep(0.01)
        config.pid_file.write_text(f"{starting.pid}\n")
        err = io.StringIO()
        assert agent.Agent(config, err=err).cycle() is None
        assert starting.poll() is None, "the signal killed it"
    finally:
        starting.kill()
        starting.wait()
    assert "is still starting" in err.getvalue() and "not signalled" in err.getvalue()


def test_a_save_mosquitto_gave_up_on_says_so(tmp_path, s3_server, bucket):
    """mosquitto left mosquitto.db.new behind (a full volume): the failure line says that, not "is persistence
    on?" (found by review). The stand-in is this test's own process (named python, so: signalled only via a
    pid file naming a mosquitto); here the save step is reached through save_and_read with a fake signal."""
    config = make_config(tmp_path, bucket, s3_server.url, BACKUP_SAVE_TIMEOUT_SECONDS="1")
    config.data_dir.mkdir(parents=True)
    config.db_path.write_bytes(b"old")
    (config.data_dir / "mosquitto.db.new").write_bytes(b"x" * 4096)
    original = agent.signal_mosquitto
    agent.signal_mosquitto = lambda pid_file, sig=signal.SIGUSR1: 4242
    try:
        with pytest.raises(agent.BackupFailed) as failed:
            agent.save_and_read(config)
    finally:
        agent.signal_mosquitto = original
    assert "mosquitto.db.new was left at 4096 bytes (is the data volume full?)" in str(failed.value)


def test_the_agent_stops_at_once_when_s3_hangs(tmp_path):
    """SIGTERM while an upload waits on an endpoint that accepts and never answers: the agent exits within a few
    seconds, not after botocore's timeouts and retries (a pod has 30 s before SIGKILL; found by review)."""
    data = tmp_path / "data"
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    metrics_port = free_port()
    with running(data) as broker:
        broker.populate(retained=1, queued=0)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **AWS_ENV,
               "BACKUP_BUCKET": "silent-bucket", "BACKUP_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}",
               "BACKUP_REGION": "us-east-1", "POD_NAME": "mqtt-broker-1", "BACKUP_DATA_DIR": str(data),
               "BACKUP_PID_FILE": str(data / "mosquitto.pid"), "BACKUP_INTERVAL_SECONDS": "60",
               "BACKUP_METRICS_LISTEN": f"127.0.0.1:{metrics_port}", "BACKUP_BROKER": f"127.0.0.1:{broker.port}",
               "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen([sys.executable, "-m", CLI_MODULE, "agent"], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + HANG_GUARD
            while time.monotonic() < deadline:  # up: its metrics answer
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read()
                    break
                time.sleep(0.1)
            process.send_signal(signal.SIGUSR1)  # a backup now: save, then the S3 call that never returns
            time.sleep(2.0)
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            # well inside a pod's 30 s grace period; without the fix botocore holds it 20 s per read, 3 attempts
            code = process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            silent.close()
    assert code == 0


# === the init container ======================================================================================
def test_requested_restores_latest_a_version_and_a_time_each_once(tmp_path, s3_server, bucket, dbs):
    config = make_config(tmp_path, bucket, s3_server.url)
    v_full = upload(config, dbs["full"], T0)
    v_more = upload(config, dbs["more"], T0 + dt.timedelta(hours=1))
    v_empty = upload(config, dbs["empty"], T0 + dt.timedelta(hours=2))
    config.data_dir.mkdir(parents=True)
    config.db_path.write_bytes(dbs["shutdown"])

    requested = make_config(tmp_path, bucket, s3_server.url, RESTORE_REQUEST="r-1")
    outcome, err = init(requested)
    assert (outcome.action, outcome.exit_code, outcome.version) == ("requested", 0, v_empty), err
    assert config.db_path.read_bytes() == dbs["empty"]
    assert outcome.moved_to.read_bytes() == dbs["shutdown"]
    assert outcome.moved_to.name.startswith("mosquitto.db.replaced-")
    assert config.db_path.stat().st_mode & 0o777 == 0o600

    outcome, err = init(make_config(tmp_path, bucket, s3_server.url, RESTORE_REQUEST="r-2", RESTORE_TARGET=v_full))
    assert (outcome.action, outcome.version) == ("requested", v_full) and config.db_path.read_bytes() == dbs["full"]

    between = make_config(tmp_path, bucket, s3_server.url, RESTORE_REQUEST="r-3", RESTORE_TARGET="2026-03-01T07:30:00Z")
    outcome, err = init(between)
    assert (outcome.action, outcome.version) == ("requested", v_more) and config.db_path.read_bytes() == dbs["more"]
    record = json.loads((config.state_dir / "recovery.json").read_text())
    assert (record["outcome"], record["version"], record["request"]) == ("requested", v_more, "r-3")
    assert (config.state_dir / "restores").read_text().split() == [
        "r-1@latest", f"r-2@{v_full}", "r-3@2026-03-01T07:30:00Z"]  # id and target: a new target is a new request
    assert (config.state_dir / "recovery.json").stat().st_mode & 0o777 == 0o600
    kept = sorted(p.name for p in config.data_dir.glob("mosquitto.db.replaced-*"))
    assert len(kept) == 3  # nothing deleted

    again, err = init(between)  # the same request id on the next start: applied already
    assert again.action == "untouched" and config.db_path.read_bytes() == dbs["more"], err
    assert len(list(config.data_dir.glob("mosquitto.db.*"))) == 3


def test_a_request_left_in_the_config_spares_new_pods_and_lost_volumes(tmp_path, s3_server, bucket, dbs):
    """The request id stays in the config after it was applied (the README says so). A pod added later (a scale-up:
    no backup of its own) must start, not wait for a backup that cannot exist; a pod whose volume is lost after the
    request must get its newest backup, not the old target again. The volume cannot know either, so the request
    is remembered beside the pod's backups (<prefix>/<pod>/restores/<id>). Found by review."""
    request = {"RESTORE_REQUEST": "rollback-1", "RESTORE_TARGET": "2026-03-01T06:10:00Z"}
    first = make_config(tmp_path / "first", bucket, s3_server.url, **request)
    v_old = upload(first, dbs["full"], T0)
    outcome, err = init(first)
    assert (outcome.action, outcome.version) == ("requested", v_old), err
    marker = s3_server.client("s3").get_object(Bucket=bucket, Key="plant-a/mqtt-broker-0/restores/rollback-1")
    assert json.loads(marker["Body"].read())["version"] == v_old

    v_new = upload(first, dbs["more"], T0 + dt.timedelta(days=2))  # the broker went on; two days later...
    lost = make_config(tmp_path / "lost", bucket, s3_server.url, **request)  # ...its volume is gone
    outcome, err = init(lost)
    assert (outcome.action, outcome.version) == ("restored", v_new), err
    assert lost.db_path.read_bytes() == dbs["more"] and "applied to this pod before" in err

    added = make_config(tmp_path / "added", bucket, s3_server.url, POD_NAME="mqtt-broker-3", **request)
    outcome, err = init(added)
    assert (outcome.action, outcome.exit_code) == ("fresh", 0), err
    assert "holds no backup of this pod" in err and not added.db_path.exists()
    added_later = upload(added, dbs["full"], T0 + dt.timedelta(days=3))
    added.db_path.unlink(missing_ok=True)
    outcome, err = init(make_config(tmp_path / "added-again", bucket, s3_server.url, POD_NAME="mqtt-broker-3",
                                    **request))
    assert (outcome.action, outcome.version) == ("restored", added_later), err  # never the request's target


def test_a_request_never_blocks_a_pod_it_cannot_apply_to(tmp_path, s3_server, bucket, dbs):
    """Second review: a pod added since the target time starts as it is; an empty volume whose bucket is away starts
    (the request stays pending) while a volume holding a database fails the request; a target changed under the
    same id is a new request; a request the bucket cannot remember is not applied (it would be applied again after
    a later volume loss)."""
    late_pod = make_config(tmp_path / "late", bucket, s3_server.url, POD_NAME="mqtt-broker-4",
                           RESTORE_REQUEST="r-9", RESTORE_TARGET="2026-03-01T06:30:00Z")
    upload(late_pod, dbs["full"], T0 + dt.timedelta(days=1))  # its backups begin after the target time
    outcome, err = init(late_pod)
    assert (outcome.action, outcome.exit_code) == ("restored", 0), err  # its empty volume: the newest backup
    assert "backups begin after that time" in err

    away = dict(RESTORE_REQUEST="r-10", RESTORE_TARGET="latest")
    empty, err = init(make_config(tmp_path / "away-empty", bucket, closed_port_url(), **away), offline=True)
    assert (empty.action, empty.exit_code) == ("empty", 0) and "stays pending" in err, err
    holding = make_config(tmp_path / "away-db", bucket, closed_port_url(), **away)
    holding.data_dir.mkdir(parents=True)
    holding.db_path.write_bytes(dbs["shutdown"])
    failed, err = init(holding, offline=True)
    assert failed.exit_code == 2 and holding.db_path.read_bytes() == dbs["shutdown"], err

    pod = make_config(tmp_path / "pod", bucket, s3_server.url)
    v_one = upload(pod, dbs["full"], T0)
    v_two = upload(pod, dbs["more"], T0 + dt.timedelta(hours=1))
    first, err = init(make_config(tmp_path / "pod", bucket, s3_server.url, RESTORE_REQUEST="fix",
                                  RESTORE_TARGET=v_one))
    assert first.version == v_one, err
    changed, err = init(make_config(tmp_path / "pod", bucket, s3_server.url, RESTORE_REQUEST="fix",
                                    RESTORE_TARGET="latest"))
    assert (changed.action, changed.version) == ("requested", v_two), err  # the same id, another target

    class Forgetful(store.Store):
        def remember_request(self, request, record):
            raise store.Unreachable("s3://…/restores/x: put_object failed: AccessDenied")

    config = make_config(tmp_path / "pod", bucket, s3_server.url, RESTORE_REQUEST="x", RESTORE_TARGET=v_one)
    err_out = io.StringIO()
    refused = restore.run(config, Forgetful(config), err=err_out, sleep=lambda _s: None)
    assert refused.exit_code == 2 and "AccessDenied" in err_out.getvalue()
    assert config.db_path.read_bytes() == dbs["more"]  # not replaced


def tamper(config: Config, s3_server, data: bytes, like: str) -> str:
    """Replace the object's content with `data` under the metadata of version `like` (a new, newest version)."""
    s3 = s3_server.client("s3")
    old = s3.head_object(Bucket=config.bucket, Key=config.key, VersionId=like)["Metadata"]
    return s3.put_object(Bucket=config.bucket, Key=config.key, Body=data, Metadata=old)["VersionId"]


def test_checksum_mismatch_stops_a_requested_restore(tmp_path, s3_server, bucket, dbs):
    config = make_config(tmp_path, bucket, s3_server.url, RESTORE_REQUEST="swap-7")
    good = upload(config, dbs["full"], T0)
    bad = tamper(config, s3_server, dbs["more"], like=good)
    config.data_dir.mkdir(parents=True)
    config.db_path.write_bytes(dbs["shutdown"])
    outcome, err = init(config)
    assert outcome.exit_code == restore.EXIT_REQUEST_FAILED == 2
    line = err.strip()
    assert "\n" not in line and "ERROR" in line
    assert f"s3://{bucket}/plant-a/mqtt-broker-0/mosquitto.db version {bad}: sha256 mismatch" in line
    assert f"expected {hashlib.sha256(dbs['full']).hexdigest()}, got {hashlib.sha256(dbs['more']).hexdigest()}" in line
    assert (tmp_path / "termination-log").read_text().strip() == line
    assert config.db_path.read_bytes() == dbs["shutdown"] and not list(config.data_dir.glob("mosquitto.db.*"))
    assert not (config.state_dir / "restores").exists()

    missing, err = init(make_config(tmp_path, bucket, s3_server.url, RESTORE_REQUEST="x", RESTORE_TARGET="no-such-v"))
    assert missing.exit_code == 2 and "version no-such-v: no such version" in err and bucket in err
    unreachable, err = init(make_config(tmp_path, bucket, closed_port_url(), RESTORE_REQUEST="x"), offline=True)
    assert unreachable.exit_code == 2 and f"s3://{bucket}/plant-a/mqtt-broker-0/" in err and "ERROR" in err
    assert config.db_path.read_bytes() == dbs["shutdown"]


def test_empty_volume_skips_a_bad_version_to_the_older_good_one(tmp_path, s3_server, bucket, dbs):
    config = make_config(tmp_path, bucket, s3_server.url)
    good = upload(config, dbs["full"], T0)
    bad = tamper(config, s3_server, dbs["more"], like=good)
    outcome, err = init(config)
    assert (outcome.action, outcome.exit_code, outcome.version, outcome.skipped) == ("restored", 0, good, [bad])
    assert f"version {bad}: sha256 mismatch" in err and "restored" in err
    assert config.db_path.read_bytes() == dbs["full"]
    assert json.loads((config.state_dir / "recovery.json").read_text())["outcome"] == "restored"


def test_corrupt_database_is_kept_and_replaced_and_the_broker_starts(tmp_path, s3_server, bucket, dbs):
    config = make_config(tmp_path, bucket, s3_server.url)
    upload(config, dbs["full"], T0)
    config.data_dir.mkdir(parents=True)
    damaged = dbs["more"][:600]  # cut inside a chunk: mosquitto 2.0.11 exits 1 on it
    config.db_path.write_bytes(damaged)
    outcome, err = init(config)
    assert outcome.action == "restored" and outcome.moved_to.read_bytes() == damaged
    assert outcome.moved_to.name.startswith("mosquitto.db.corrupt-") and "WARNING" in err
    record = json.loads((config.state_dir / "recovery.json").read_text())
    assert record["outcome"] == "restored" and record["moved_to"] == str(outcome.moved_to)
    with running(config.data_dir) as broker:
        assert broker.retained() == {"plant/sensor/0", "plant/sensor/1", "plant/sensor/2"}
        assert broker.queued_for_device(4) == [f"command-{i}" for i in range(4)]


def test_no_good_backup_starts_empty_loudly(tmp_path, s3_server, bucket, dbs):
    config = make_config(tmp_path, bucket, s3_server.url)
    config.data_dir.mkdir(parents=True)
    assert init(config)[0].action == "fresh" and not config.state_dir.joinpath("recovery.json").exists()
    config.db_path.write_bytes(b"\x00" * 64)
    outcome, err = init(config)
    assert (outcome.action, outcome.exit_code) == ("empty", 0)
    assert not config.db_path.exists() and outcome.moved_to.read_bytes() == b"\x00" * 64
    assert "ERROR" in err and "starts EMPTY" in err
    assert "starts EMPTY" in (tmp_path / "termination-log").read_text()
    record = json.loads((config.state_dir / "recovery.json").read_text())
    assert record["outcome"] == "empty" and record["moved_to"] == str(outcome.moved_to)
    text = agent.Metrics(config).render()
    assert 'mosquitto_database_recovery_timestamp_seconds{outcome="empty"} ' in text


def test_unreachable_bucket_a_good_db_starts_and_an_empty_start_is_not_uploaded_over_the_backup(
        tmp_path, s3_server, bucket, dbs):
    offline = make_config(tmp_path, bucket, closed_port_url())
    offline.data_dir.mkdir(parents=True)
    offline.db_path.write_bytes(dbs["full"])
    outcome, _ = init(offline, offline=True)
    assert outcome.action == "untouched" and offline.db_path.read_bytes() == dbs["full"]

    online = make_config(tmp_path, bucket, s3_server.url)
    before = upload(online, dbs["full"], T0)
    offline.db_path.unlink()
    outcome, err = init(offline, offline=True)  # a lost volume while the site's uplink is down
    assert (outcome.action, outcome.exit_code) == ("empty", 0) and "ERROR" in err
    assert outcome.record["store_reachable"] is False
    with running(online.data_dir) as broker:
        worker = agent.Agent(make_config(tmp_path, bucket, s3_server.url, BACKUP_BROKER=f"127.0.0.1:{broker.port}"),
                             err=io.StringIO())
        held = worker.cycle()
        assert held.outcome == "held-back" and held.summary.empty
        assert "not uploading an empty database" in worker.err.getvalue()
        broker.populate(retained=1, queued=0)
        resumed = worker.cycle()
    assert resumed.outcome == "uploaded"
    versions = store.Store(online).versions()
    assert [v.version_id for v in versions][1:] == [before]


def test_an_empty_database_is_not_uploaded_twice(tmp_path, s3_server, bucket):
    config = make_config(tmp_path, bucket, s3_server.url)
    with running(config.data_dir) as broker:
        worker = agent.Agent(config, err=io.StringIO(), version=lambda: "2.0.11")
        assert worker.cycle().outcome == "uploaded"
        broker.client("passer-by").publish("plant/x", "not kept", qos=1).wait_for_publish(HANG_GUARD)
        again = worker.cycle()  # the bytes differ (the cfg chunk's last_db_id moved), the content is still nothing
    assert again.outcome == "unchanged" and again.summary.empty
    assert len(store.Store(config).versions()) == 1


def test_a_compliance_locked_backup_cannot_be_deleted(tmp_path, s3_server, dbs):
    s3 = s3_server.client("s3")
    s3.create_bucket(Bucket="locked-backups", ObjectLockEnabledForBucket=True)
    config = make_config(tmp_path, "locked-backups", s3_server.url, BACKUP_LOCK_MODE="COMPLIANCE", BACKUP_LOCK_DAYS="1")
    version = upload(config, dbs["full"], T0)
    head = s3.head_object(Bucket="locked-backups", Key=config.key, VersionId=version)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    for bypass in (False, True):
        with pytest.raises(Exception, match="AccessDenied"):
            s3.delete_object(Bucket="locked-backups", Key=config.key, VersionId=version,
                             BypassGovernanceRetention=bypass)
    assert store.Store(config).fetch(store.Store(config).versions()[0]).data == dbs["full"]


# === the command line ========================================================================================
@pytest.mark.parametrize("env, variable", [
    ({"BACKUP_LOCK_MODE": "FOREVER", "BACKUP_LOCK_DAYS": "3"}, "BACKUP_LOCK_MODE='FOREVER': expected GOVERNANCE"),
    ({"BACKUP_LOCK_MODE": "COMPLIANCE"}, "BACKUP_LOCK_DAYS: required"),
    ({"BACKUP_INTERVAL_SECONDS": "15m"}, "BACKUP_INTERVAL_SECONDS='15m': expected seconds"),
    ({"RESTORE_TARGET": "2026-03-01 06:00"}, "RESTORE_TARGET='2026-03-01 06:00': expected latest"),
    ({"RESTORE_ON_EMPTY": "maybe"}, "RESTORE_ON_EMPTY='maybe': expected true or false"),
    ({"BACKUP_BUCKET": "My_Bucket"}, "BACKUP_BUCKET='My_Bucket': expected an S3 bucket name"),
    ({"BACKUP_BUCKET": ""}, "BACKUP_BUCKET: not set"),
    ({"RESTORE_REQUEST": "two words"}, "RESTORE_REQUEST='two words': expected an id"),
    ({"BACKUP_ENDPOINT": "minio:9000"}, "BACKUP_ENDPOINT='minio:9000': expected an http"),
])
def test_a_bad_variable_is_one_line_and_exit_2(tmp_path, capsys, env, variable):
    base = {"BACKUP_BUCKET": "backups", "POD_NAME": "mqtt-broker-0", "BACKUP_DATA_DIR": str(tmp_path)}
    assert cli_main(["init"], {**base, **env}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and variable in err and "Traceback" not in err


def test_list_shows_versions_and_which_verify(tmp_path, s3_server, bucket, dbs, capsys):
    config = make_config(tmp_path, bucket, s3_server.url)
    good = upload(config, dbs["full"], T0)
    bad = tamper(config, s3_server, dbs["more"], like=good)
    env = {"BACKUP_BUCKET": bucket, "BACKUP_ENDPOINT": s3_server.url, "BACKUP_REGION": "us-east-1",
           "POD_NAME": "mqtt-broker-0", "BACKUP_PREFIX": "plant-a"}
    assert cli_main(["list", "--json"], env) == 0
    listed = json.loads(capsys.readouterr().out)["versions"]
    assert [(v["version"], v["status"].split(":")[0]) for v in listed] == [(bad, "FAILS VERIFICATION"),
                                                                          (good, "verified")]
    assert listed[1]["contents"] == {"retained": 3, "messages": 7, "clients": 1, "subscriptions": 1, "queued": 4}


def test_access_denied_names_the_permissions():
    """S3 answers a missing key with 403 when the role lacks s3:ListBucket (API reference, HeadObject,
    "Permissions"): the failure line says which permissions the credentials need (found by review)."""
    from botocore.exceptions import ClientError

    denied = ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")
    assert "s3:ListBucket" in store._one_line(denied) and "\n" not in store._one_line(denied)
    missing = ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
    assert store._one_line(missing) == "NoSuchKey: gone"


def test_a_lock_on_a_bucket_made_without_object_lock_fails_with_the_reason(tmp_path, s3_server, bucket):
    """A plant brings its own bucket and asks for locked backups (`retention.lock`), but the bucket was created
    without Object Lock: every upload fails, and the line says why and what to do,
    instead of blaming the checksum header the first attempt carried."""
    config = make_config(tmp_path, bucket, s3_server.url)
    with running(config.data_dir) as broker:
        broker.populate(retained=1, queued=0)
        config = make_config(tmp_path, bucket, s3_server.url, BACKUP_BROKER=f"127.0.0.1:{broker.port}",
                             BACKUP_LOCK_MODE="GOVERNANCE", BACKUP_LOCK_DAYS="1")
        err = io.StringIO()
        worker = agent.Agent(config, err=err)
        assert worker.cycle() is None
    line = err.getvalue().strip()
    assert "\n" not in line and "refuses locked uploads" in line and "create it with Object Lock enabled" in line
    assert "mosquitto_backup_failures_total 1.0" in worker.metrics.render()
