"""Backup benchmark: what a backup and a restore of mosquitto.db cost (backup/, issue 15), measured in one run.

For brokers holding 1,000 / 10,000 / 100,000 retained messages of 100 bytes, plus one persistent session (`dev-1`,
QoS 1 on plant/cmd/#) with 1,000 queued QoS 1 messages, each a real mosquitto 2.0.11 on 127.0.0.1 with persistence
in a temporary directory, and moto_server as S3 (one versioned bucket, estate.aws_provider.ControlPlane):
  - the size of the mosquitto.db mosquitto writes;
  - the save: SIGUSR1 to the new file renamed into place, and the longest QoS 0 round trip (publish to a topic the
    client subscribes to, back to back on its own thread) of a connected client meanwhile: mosquitto writes the
    file on its only thread, so that round trip is how long every client waited;
  - one backup cycle, `agent.backup_once` as the sidecar runs it (save + validate + sha256 + upload), with its
    parts: the save, the validator (dbfile.inspect) and the upload (put_object, its md5 and sha256 included) timed
    inside the cycle, sha256 timed on the same bytes. The cycle's save is longer than the save above when nothing
    else wakes the broker: an idle mosquitto acts on SIGUSR1 only when its loop next wakes (about 60 ms here),
    and the agent looks for the new file every 20 ms; the save above runs while a client keeps the loop busy, so
    it is the write itself;
  - a restore into an empty volume (`restore.run`, RESTORE_ON_EMPTY): list + download + verify + write; and the
    whole init process (interpreter start and imports included), what a lost volume adds to a pod's start;
  - mosquitto's start on the restored database: process start to the first CONNACK;
  - memory: the agent's and the init's resident set (VmRSS before, VmHWM during: /proc/self/clear_refs resets the
    high-water mark after the imports and the first S3 call) beside the database size and the broker's own.
The agent cycle and the restore each run in a process of their own (`python3 -m bench.backup_bench --child ...`),
as the sidecar and the init container do, so their memory is theirs alone. The sidecar's first S3 call and its
broker-version lookup are made before the cycle is timed (a running sidecar has made them); the init's client is
made before restore.run is timed, and the init process figure includes everything.

The messages are written with the repository's MQTT encoder (components/mqtt_wire.py) on one socket, QoS 0, then
1,000 QoS 1 publishes whose PUBACKs mark the end: mosquitto handles one connection's packets in order, so the last
PUBACK means every retained message is stored. Waits are hang guards, never assertions about time.

Run from the repository root:  python3 -m bench.backup_bench [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mqtt_estate.components import mqtt_wire  # noqa: E402
from mqtt_estate.estate.local import free_port  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
SIZES = (1_000, 10_000, 100_000)
PAYLOAD_BYTES = 100
QUEUED = 1_000
"""QoS 1 messages queued for the offline persistent session (the product's max_queued_messages default is 1000;
mosquitto keeps 20 of them as in flight, max_inflight_messages, and the rest queued: all 1,000 are in the file)."""
HANG_GUARD = 120.0
BUCKET = "bench-backups"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}

TARGET_CYCLE_S = 10.0
"""Product target: one backup cycle of a broker holding 100k retained messages in under 10 s."""
TARGET_RESTORE_S = 10.0
"""Product target: a restore in under 10 s."""
TARGET_VALIDATOR_S = 1.0
"""Product target: the validator in under 1 s for 100k retained messages."""
TARGET_MEMORY_RATIO = 3.0
"""Product target: the agent's memory under 3x the database size (the sidecar's memory limit is the broker's:
components/backup_sidecar.py MEMORY_REQUEST, components/broker.py RESOURCES)."""


# --- MQTT on a socket ---------------------------------------------------------------------------------------
def dial(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return bytes(data)


def connect(port: int, client_id: str, clean: bool = True) -> socket.socket:
    sock = dial(port)
    packet = mqtt_wire.connect_packet(client_id)
    if not clean:  # the flags byte follows the protocol name and level: 2 + 4 + 1 bytes after the fixed header
        packet = bytearray(packet)
        packet[9] &= ~0x02
        packet = bytes(packet)
    sock.sendall(packet)
    connack = recv_exact(sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"CONNACK {connack.hex()}")
    return sock


def subscribe(sock: socket.socket, topic: str, qos: int) -> None:
    sock.sendall(mqtt_wire.subscribe_packet(1, [topic], qos))
    suback = recv_exact(sock, 5)
    if suback[0] != 0x90 or suback[4] > 2:
        raise ConnectionError(f"SUBACK {suback.hex()}")


DISCONNECT = b"\xe0\x00"


def populate(port: int, retained: int) -> float:
    """`retained` retained messages of PAYLOAD_BYTES on plant/sensor/<i>, and QUEUED QoS 1 messages queued for the
    offline persistent session dev-1; return the seconds it took (until the last PUBACK)."""
    began = time.perf_counter()
    device = connect(port, "dev-1", clean=False)
    subscribe(device, "plant/cmd/#", 1)
    device.sendall(DISCONNECT)
    device.close()
    publisher = connect(port, "bench-publisher")
    buffer = bytearray()
    for i in range(retained):
        payload = (f"value-{i:06d}-" * 8).encode()[:PAYLOAD_BYTES]
        buffer += mqtt_wire.packet(0x31, mqtt_wire.string(f"plant/sensor/{i:06d}") + payload)  # QoS 0, retain
        if len(buffer) >= 1 << 20:
            publisher.sendall(buffer)
            buffer.clear()
    for mid in range(1, QUEUED + 1):
        buffer += mqtt_wire.publish_packet("plant/cmd/valve", (f"command-{mid:04d}-" * 8).encode()[:PAYLOAD_BYTES],
                                           1, mid)
    publisher.sendall(buffer)
    acks = recv_exact(publisher, 4 * QUEUED)
    if any(acks[i] != 0x40 for i in range(0, len(acks), 4)):
        raise ConnectionError("expected only PUBACKs")
    publisher.sendall(DISCONNECT)
    publisher.close()
    return time.perf_counter() - began


class RoundTrips:
    """A connected client publishing QoS 0 to a topic it subscribes to, back to back on a thread of its own: each
    round trip is a publish through the broker's loop and back."""

    def __init__(self, port: int):
        self.sock = connect(port, "bench-rtt")
        subscribe(self.sock, "bench/rtt", 0)
        self.packet = mqtt_wire.publish_packet("bench/rtt", b"12345678", 0)
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.done.is_set():
            sent = time.perf_counter()
            self.sock.sendall(self.packet)
            recv_exact(self.sock, len(self.packet))  # mosquitto forwards the same bytes (QoS 0, no retain)
            self.samples.append((sent, time.perf_counter() - sent))

    def __enter__(self) -> "RoundTrips":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(HANG_GUARD)
        self.sock.close()


# --- a real broker ------------------------------------------------------------------------------------------
class Broker:
    """mosquitto 2.0.11 with persistence in `data` (saves only when told: autosave_interval 0), its pid file, log
    and config in `run`, one anonymous listener on 127.0.0.1."""

    def __init__(self, data: Path, run: Path):
        self.data, self.run = data, run
        data.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.pid_file = run / "mosquitto.pid"
        self.log = run / "mosquitto.log"
        self.process: Optional[subprocess.Popen] = None
        lines = ["persistence true", f"persistence_location {data}/", "autosave_interval 0",
                 f"pid_file {self.pid_file}", f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 f"max_queued_messages {QUEUED}", "sys_interval 1", "log_dest stderr", "log_type error",
                 "log_type warning"]
        if os.geteuid() == 0:
            lines.append("user root")  # no drop to `mosquitto`, which could not write the temporary directory
        self.conf = run / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def db(self) -> Path:
        return self.data / "mosquitto.db"

    def start(self) -> float:
        """Start mosquitto; return the seconds from the process start to the first CONNACK."""
        with open(self.log, "ab") as log:
            began = time.perf_counter()
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.process.returncode}: {self.log.read_text()[-500:]}")
            try:
                connect(self.port, "bench-first").close()
            except OSError:
                time.sleep(0.002)
                continue
            took = time.perf_counter() - began
            while not self.pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            return took
        raise RuntimeError("mosquitto did not answer CONNECT")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # mosquitto saves once more at exit
            try:
                self.process.wait(HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the broker, KiB."""
        return status_kib(self.process.pid)


def status_kib(pid: object = "self") -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def reset_high_water_mark() -> int:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5); return the RSS in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_kib()[0]


def _identity(path: Path) -> Optional[tuple[int, int, int]]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def timed_save(broker: Broker) -> dict:
    """SIGUSR1 and the wait for the new mosquitto.db (a held descriptor keeps the old inode number from being
    reused, as the agent does), with a client's QoS 0 round trips before, during and after."""
    held = os.open(broker.db, os.O_RDONLY) if broker.db.exists() else None
    try:
        before = _identity(broker.db)
        with RoundTrips(broker.port) as trips:
            time.sleep(0.3)
            began = time.perf_counter()
            os.kill(broker.process.pid, signal.SIGUSR1)
            deadline = time.monotonic() + HANG_GUARD
            while _identity(broker.db) == before:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not save")
                time.sleep(0.0005)
            ended = time.perf_counter()
            time.sleep(0.1)
    finally:
        if held is not None:
            os.close(held)
    quiet = [rtt for sent, rtt in trips.samples if sent < began - 0.05]
    during = [rtt for sent, rtt in trips.samples if began - 0.05 <= sent <= ended]
    return {"save_ms": 1000 * (ended - began), "rtt_during_ms": 1000 * max(during or [0.0]),
            "rtt_median_ms": 1000 * statistics.median(quiet or [0.0]), "trips": len(during)}


# --- the sidecar and the init, each a process of its own ----------------------------------------------------
def child_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_", "RESTORE_"))}
    env.update(AWS_ENV)
    env.update(values)
    return env


def run_child(kind: str, env: dict[str, str]) -> dict:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.backup_bench", "--child", kind], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD)
    wall = time.perf_counter() - began
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the {kind} process failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_ms"] = 1000 * wall
    result["stderr"] = done.stderr.strip()
    return result


def _timed(into: dict, name: str, function: Callable, keep: Optional[list] = None) -> Callable:
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            value = function(*args, **kwargs)
        finally:
            into[name] = into.get(name, 0.0) + 1000 * (time.perf_counter() - began)
        if keep is not None:
            keep.append(value)
        return value
    return wrapper


def child_agent() -> dict:
    """One `agent.backup_once` cycle of a warmed-up sidecar (env: the BACKUP_* contract)."""
    from mqtt_estate.backup import agent, dbfile  # noqa: PLC0415
    from mqtt_estate.backup.config import Config  # noqa: PLC0415

    config = Config.from_env()
    worker = agent.Agent(config)
    worker.store.current()   # boto3 imported, the client made and its first call done: a running sidecar's state
    version = worker.broker_version()
    parts: dict[str, float] = {}
    saved: list[bytes] = []
    agent.save_and_read = _timed(parts, "save", agent.save_and_read, saved)
    dbfile.inspect = _timed(parts, "validate", dbfile.inspect)
    worker.store.current = _timed(parts, "head", worker.store.current)
    worker.store.put = _timed(parts, "upload", worker.store.put)
    rss_before = reset_high_water_mark()
    began = time.perf_counter()
    result = agent.backup_once(config, worker)
    cycle_ms = 1000 * (time.perf_counter() - began)
    peak = status_kib()[1]
    if result is None or not saved:
        raise SystemExit("the backup cycle failed (its line is above)")
    began = time.perf_counter()
    hashlib.sha256(saved[0]).hexdigest()
    sha_ms = 1000 * (time.perf_counter() - began)
    return {"cycle_ms": cycle_ms, "sha256_ms": sha_ms, **{f"{k}_ms": v for k, v in parts.items()},
            "outcome": result.outcome, "sha256": result.sha256, "size": result.size, "version": result.version_id,
            "broker_version": version, "rss_before_kib": rss_before, "peak_kib": peak}


def child_restore() -> dict:
    """restore.run into an empty data directory (env: the contract, RESTORE_ON_EMPTY=true)."""
    from mqtt_estate.backup import restore, store  # noqa: PLC0415
    from mqtt_estate.backup.config import Config  # noqa: PLC0415

    config = Config.from_env()
    began = time.perf_counter()
    bucket = store.Store(config)
    bucket.client  # noqa: B018 - boto3 imported and the client made, outside the timed restore
    client_ms = 1000 * (time.perf_counter() - began)
    rss_before = reset_high_water_mark()
    began = time.perf_counter()
    outcome = restore.run(config, bucket)
    restore_ms = 1000 * (time.perf_counter() - began)
    peak = status_kib()[1]
    return {"restore_ms": restore_ms, "client_ms": client_ms, "action": outcome.action, "version": outcome.version,
            "exit_code": outcome.exit_code, "rss_before_kib": rss_before, "peak_kib": peak}


# --- one size -----------------------------------------------------------------------------------------------
def sys_retained_count(port: int) -> Optional[int]:
    """`$SYS/broker/retained messages/count` as the restarted broker reports it (None if it does not in time)."""
    sock = connect(port, "bench-sys")
    try:
        topic = "$SYS/broker/retained messages/count"
        sock.sendall(mqtt_wire.subscribe_packet(1, [topic], 0))
        recv_exact(sock, 5)
        sock.settimeout(5)
        while True:
            first = recv_exact(sock, 1)[0]
            length, shift = 0, 0
            while True:
                byte = recv_exact(sock, 1)[0]
                length += (byte & 127) << shift
                shift += 7
                if not byte & 128:
                    break
            body = recv_exact(sock, length)
            if first >> 4 == 3:
                topic_len = int.from_bytes(body[:2], "big")
                if body[2:2 + topic_len].decode() == topic:
                    return int(body[2 + topic_len:])
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


def measure(retained: int, tmp: Path, endpoint: str) -> dict:
    from mqtt_estate.backup import dbfile  # noqa: PLC0415

    home = tmp / f"r{retained}"
    pod = f"mqtt-broker-{retained}"
    contract = {"BACKUP_BUCKET": BUCKET, "BACKUP_ENDPOINT": endpoint, "BACKUP_REGION": "us-east-1",
                "POD_NAME": pod, "BACKUP_PREFIX": "bench", "BACKUP_METRICS_LISTEN": "127.0.0.1:0",
                "RESTORE_WAIT_SECONDS": "0", "BACKUP_TERMINATION_LOG": str(home / "termination-log")}
    row: dict = {"retained": retained}
    broker = Broker(home / "data", home / "run")
    try:
        broker.start()
        row["populate_s"] = populate(broker.port, retained)
        row.update(timed_save(broker))
        summary = dbfile.inspect_file(broker.db)
        row.update(db_bytes=summary.size, in_file_retained=summary.retained, in_file_queued=summary.client_messages)
        row["broker_rss_kib"], row["broker_hwm_kib"] = broker.memory_kib()
        row["agent"] = run_child("agent", child_env(**contract, BACKUP_DATA_DIR=str(broker.data),
                                                    BACKUP_PID_FILE=str(broker.pid_file),
                                                    BACKUP_BROKER=f"127.0.0.1:{broker.port}"))
    finally:
        broker.stop()
    volume = home / "restored"
    volume.mkdir()
    row["restore"] = run_child("restore", child_env(**contract, BACKUP_DATA_DIR=str(volume),
                                                    RESTORE_ON_EMPTY="true"))
    row["restored_same"] = (hashlib.sha256((volume / "mosquitto.db").read_bytes()).hexdigest()
                            == row["agent"]["sha256"]) if (volume / "mosquitto.db").exists() else False
    restarted = Broker(volume, home / "run-restored")
    try:
        row["start_ms"] = 1000 * restarted.start()
        row["retained_after"] = sys_retained_count(restarted.port)
    finally:
        restarted.stop()
    return row


# --- the report ---------------------------------------------------------------------------------------------
def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(rows: list[dict]) -> None:
    print(f"Backups of mosquitto.db: mosquitto 2.0.11 and moto_server (S3, versioned bucket) on 127.0.0.1; each "
          f"broker also holds a persistent session with {QUEUED:,} queued QoS 1 messages; payloads "
          f"{PAYLOAD_BYTES} bytes\n")
    print("| retained | mosquitto.db | in the file: retained / queued | save (SIGUSR1 to new file) | longest QoS 0 "
          "round trip during the save (typical) | backup cycle | of which: save / validate / sha256 / upload "
          "| restore.run (list + download + verify + write) | init process, start to exit | mosquitto start to "
          "first CONNACK | retained after the restart ($SYS count, with mosquitto's own $SYS topics) |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        a, r = row["agent"], row["restore"]
        print(f"| {row['retained']:,} | {_size(row['db_bytes'])} | {row['in_file_retained']:,} / "
              f"{row['in_file_queued']:,} | {row['save_ms']:.0f} ms | {row['rtt_during_ms']:.0f} ms "
              f"({row['rtt_median_ms']:.2f} ms) | {a['cycle_ms']:.0f} ms | {a.get('save_ms', 0):.0f} / "
              f"{a.get('validate_ms', 0):.0f} / {a['sha256_ms']:.0f} / {a.get('upload_ms', 0):.0f} ms | "
              f"{r['restore_ms']:.0f} ms | {r['process_ms']:.0f} ms | {row['start_ms']:.0f} ms | "
              f"{row['retained_after'] if row['retained_after'] is not None else '?'} |")
    print()
    print("| retained | mosquitto.db | agent RSS before the cycle | agent peak during the cycle | cycle's growth "
          "| growth / db | peak / db | init peak (restore.run) | broker RSS (peak) |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        a, r = row["agent"], row["restore"]
        db_kib = row["db_bytes"] / 1024
        growth = a["peak_kib"] - a["rss_before_kib"]
        print(f"| {row['retained']:,} | {_size(row['db_bytes'])} | {_mib(a['rss_before_kib'])} | "
              f"{_mib(a['peak_kib'])} | {_mib(growth)} | {growth / db_kib:.1f}x | {a['peak_kib'] / db_kib:.1f}x | "
              f"{_mib(r['peak_kib'])} | {_mib(row['broker_rss_kib'])} ({_mib(row['broker_hwm_kib'])}) |")
    print()
    big = max(rows, key=lambda row: row["retained"])
    n = f"{big['retained']:,} retained"
    cycle_s = big["agent"]["cycle_ms"] / 1000
    restore_s = big["restore"]["restore_ms"] / 1000
    init_s = big["restore"]["process_ms"] / 1000
    validate_s = big["agent"].get("validate_ms", 0) / 1000
    growth = big["agent"]["peak_kib"] - big["agent"]["rss_before_kib"]
    ratio = growth / (big["db_bytes"] / 1024)
    peak_ratio = big["agent"]["peak_kib"] / (big["db_bytes"] / 1024)
    print("| product target | measured | target | |")
    print("|---|--:|--:|---|")
    print(f"| backup cycle, {n} | {cycle_s:.2f} s | < {TARGET_CYCLE_S:g} s | {_verdict(cycle_s < TARGET_CYCLE_S)} |")
    print(f"| restore, {n} (restore.run) | {restore_s:.2f} s | < {TARGET_RESTORE_S:g} s | "
          f"{_verdict(restore_s < TARGET_RESTORE_S)} |")
    print(f"| restore, {n} (the init process, interpreter start included) | {init_s:.2f} s | "
          f"< {TARGET_RESTORE_S:g} s | {_verdict(init_s < TARGET_RESTORE_S)} |")
    print(f"| validator, {n} | {1000 * validate_s:.0f} ms | < {1000 * TARGET_VALIDATOR_S:.0f} ms | "
          f"{_verdict(validate_s < TARGET_VALIDATOR_S)} |")
    print(f"| agent memory, {n}: the cycle's growth / db size | {ratio:.1f}x | < {TARGET_MEMORY_RATIO:g}x | "
          f"{_verdict(ratio < TARGET_MEMORY_RATIO)} |")
    print(f"| agent memory, {n}: the whole process's peak / db size | {peak_ratio:.1f}x | "
          f"< {TARGET_MEMORY_RATIO:g}x | {_verdict(peak_ratio < TARGET_MEMORY_RATIO)} |")
    print()
    from mqtt_estate.components.backup_sidecar import MEMORY_REQUEST  # noqa: PLC0415
    from mqtt_estate.components.broker import RESOURCES  # noqa: PLC0415

    before = big["agent"]["rss_before_kib"]
    above = (f"; at the cycle's {ratio:.1f}x, the whole process stays under {TARGET_MEMORY_RATIO:g}x only for a "
             f"database above ~{before / 1024 / (TARGET_MEMORY_RATIO - ratio):.0f} MiB"
             if ratio < TARGET_MEMORY_RATIO else "")
    print(f"Memory: the sidecar's and the init's limit is the broker's (components/backup_sidecar.py; the broker's "
          f"default limit {RESOURCES['memory'][1]}), their request {MEMORY_REQUEST}. The agent holds "
          f"{_mib(before)} before a cycle (Python, boto3, paho): a fixed cost that dominates small databases{above}. "
          f"At {n} the agent's peak is {big['agent']['peak_kib'] / big['broker_hwm_kib']:.1f}x the broker's own "
          f"peak RSS.")
    problems = [f"{row['retained']:,}: " + ", ".join(
        what for what, bad in (
            ("the file does not hold every retained message", row["in_file_retained"] != row["retained"]),
            (f"the file does not hold {QUEUED} queued messages", row["in_file_queued"] != QUEUED),
            (f"the cycle did not upload ({row['agent']['outcome']})", row["agent"]["outcome"] != "uploaded"),
            (f"the init did not restore ({row['restore']['action']})", row["restore"]["action"] != "restored"),
            ("the restored file differs from the uploaded one", not row["restored_same"])) if bad)
        for row in rows]
    problems = [p for p in problems if not p.endswith(": ")]
    print("Checks: " + ("; ".join(problems) if problems else
                        "every file held its retained and queued messages, every cycle uploaded, every restore "
                        "wrote the uploaded bytes (sha256)."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES),
                        help="retained message counts, comma-separated (default 1000,10000,100000)")
    parser.add_argument("--child", choices=("agent", "restore"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_agent() if args.child == "agent" else child_restore()))
        return
    if not Path(MOSQUITTO).exists():
        raise SystemExit(f"needs mosquitto 2.0 at {MOSQUITTO}")
    from mqtt_estate.estate.aws_provider import ControlPlane  # noqa: PLC0415

    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    rows = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="backup-bench-") as tmp, ControlPlane() as plane:
        s3 = plane.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for retained in sizes:
            rows.append(measure(retained, Path(tmp), plane.url))
            print(f"... {retained:,} retained measured ({time.monotonic() - began:.0f} s)", file=sys.stderr,
                  flush=True)
    report(rows)


if __name__ == "__main__":
    main()
