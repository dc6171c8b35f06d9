"""Reconnect-storm benchmark (issue 10): kill -9 one broker under 1,000 TLS clients and time their return.

Boots a prod-like stack on 127.0.0.1 (Pulumi.prod.yaml's settings: three bridged brokers behind two HAProxy
replicas, TLS listener `mqtts` for password clients, mTLS listener `mqtts-devices` for certificate clients,
factory-zone ACLs) with N devices, half password and half certificate, each connecting from a loopback address
of its own (127.10.x.y: HAProxy sticks TLS clients to a broker by source address). All devices run on one
asyncio event loop in this process, with a small MQTT 3.1.1 client written here (CONNECT, CONNACK, SUBSCRIBE,
PUBLISH QoS 0/1, PINGREQ) and a device-like reconnect backoff. Then, per kill:
  - the broker holding about a third of the devices (HAProxy's stick tables tell) is killed with SIGKILL;
  - each of its devices is timed from the kill to its next accepted CONNACK (p50, p99, max, how many within
    5 s, how many not within 30 s);
  - meanwhile a probe process (its own event loop, so the storm's handshakes in this one do not count as network
    latency) runs publishers on the other brokers, 20 x 20 msg/s QoS 1, each with a subscriber on the same
    broker: end-to-end latency before the kill and during the storm (kill until every device is back).
Targets (printed, never asserted): every device back within 5 s, p99 under 3 s; others' p99 added under 50 ms.

Run from the repository root:  python3 -m bench.storm_bench [--clients N] [--kills N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import re
import resource
import ssl
import struct
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mqtt_estate.components.mqtt_wire import connect_packet, publish_packet, subscribe_packet  # noqa: E402
from mqtt_estate.estate.haproxy_runtime import runtime_command, server_states, stick_table  # noqa: E402

BASE_STACK = ROOT / "Pulumi.prod.yaml"
ZONES = ["production", "quality", "maintenance"]
PASSWORD_LISTENER, CERT_LISTENER = "mqtts", "mqtts-devices"
MONITOR = "storm-monitor"

KEEPALIVE = 60
CONNECT_TIMEOUT = 10.0
"""TCP + TLS + CONNECT until CONNACK; a device that waits longer drops the attempt and backs off."""
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 4.0
BACKOFF_POLICY = (f"n-th retry after uniform(0, min({BACKOFF_CAP:g}, {BACKOFF_FIRST:g} x 2^(n-1))) s "
                  f"(0-0.5, 0-1, 0-2, 0-4, 0-4 ... s), reset by an accepted CONNACK; {CONNECT_TIMEOUT:g} s "
                  "connect timeout (TCP + TLS + CONNACK)")
RAMP = 32
"""Connection attempts in flight while the fleet first connects (the storm itself is not gated)."""
DEADLINE = 30.0
TARGET_ALL_S, TARGET_P99_S, TARGET_ADDED_MS = 5.0, 3.0, 50.0
BASELINE_S = 5.0
PAYLOAD = 100

# -- MQTT 3.1.1 wire format: packets from components/mqtt_wire.py, read back here ---------------------------------

PINGREQ, DISCONNECT = b"\xc0\x00", b"\xe0\x00"


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(first byte, body) of the next packet."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, (await reader.readexactly(length) if length else b"")


# -- the device -----------------------------------------------------------------------------------------------------

class Device:
    """One MQTT client on the shared event loop: connects, keeps alive, reconnects with backoff until stopped.

    Records every attempt (start, end, outcome), every accepted CONNACK and every lost connection (monotonic s)."""

    def __init__(self, name: str, kind: str, frontend: dict, listener: str, context: ssl.SSLContext, source: str,
                 password: str | None = None, subscriptions: list[str] = ()):
        """`frontend`: the HAProxy replica it dials (an entry of the connection file's `frontends`)."""
        self.name, self.kind, self.source, self.password = name, kind, source, password
        found = next(lst for lst in frontend["listeners"] if lst["name"] == listener)
        # dial 127.0.0.1, but verify (and send as SNI) the name the estate advertises for the frontend
        self.host, self.port, self.server_name = found["host"], found["port"], found["server_name"]
        self.frontend, self.listener, self.runtime_socket = frontend["pod"], listener, Path(frontend["runtime_socket"])
        self.context, self.subscriptions = context, list(subscriptions)
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.attempts: list[tuple[float, float, str]] = []
        self.connacks: list[float] = []
        self.drops: list[float] = []
        self.last_in = self.last_out = 0.0
        self.on_message = None
        self.pid = 0
        self.gate: asyncio.Semaphore | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """DISCONNECT and close (no reconnect)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.write(DISCONNECT)
            writer.close()
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def drop(self) -> None:
        """Cut the connection (the device reconnects as after any loss)."""
        self.connected.clear()
        if self.writer:
            self.writer.transport.abort()

    async def run(self) -> None:
        failures = 0
        while True:
            if failures:
                await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 1))))
            gate = self.gate or contextlib.nullcontext()
            async with gate:
                reader = await self._attempt()
            if reader is None:
                failures += 1
                continue
            failures = 1  # the first retry after a loss also waits 0-0.5 s
            await self._serve(reader)

    async def _attempt(self) -> asyncio.StreamReader | None:
        began = time.monotonic()
        writer = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.context, server_hostname=self.server_name,
                    local_addr=(self.source, 0))
                username = self.name if self.password is not None else None
                writer.write(connect_packet(self.name, username, self.password, KEEPALIVE))
                first, body = await read_packet(reader)
            if first >> 4 != 2 or len(body) < 2 or body[1] != 0:
                raise ConnectionError(f"CONNACK refused ({body.hex()})")
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.attempts.append((began, time.monotonic(), outcome_of(exc)))
            if writer is not None:
                writer.transport.abort()
            return None
        now = time.monotonic()
        self.attempts.append((began, now, "ok"))
        self.connacks.append(now)
        self.writer, self.last_in, self.last_out = writer, now, now
        if self.subscriptions:
            self.send(subscribe_packet(self._next_pid(), self.subscriptions, 1))
        self.connected.set()
        return reader

    async def _serve(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                first, body = await read_packet(reader)
                self.last_in = time.monotonic()
                if first >> 4 == 3:
                    qos = (first >> 1) & 3
                    size = struct.unpack_from("!H", body)[0]
                    topic = body[2:2 + size].decode()
                    offset = 2 + size + (2 if qos else 0)
                    if self.on_message:
                        self.on_message(topic, body[offset:])
                    if qos == 1:
                        self.send(b"\x40\x02" + body[2 + size:4 + size])
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connected.clear()
            self.drops.append(time.monotonic())
            writer, self.writer = self.writer, None
            if writer is not None:
                writer.transport.abort()

    def _next_pid(self) -> int:
        self.pid = self.pid % 65535 + 1
        return self.pid

    def send(self, data: bytes) -> bool:
        if self.writer is None or self.writer.transport.is_closing():
            return False
        self.writer.write(data)
        self.last_out = time.monotonic()
        return True

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        return self.send(publish_packet(topic, payload, qos, self._next_pid() if qos else 0))

    def keepalive(self, now: float) -> None:
        if self.writer is None:
            return
        if now - self.last_in > 1.5 * KEEPALIVE:
            self.drop()
        elif now - self.last_out >= KEEPALIVE / 2:
            self.send(PINGREQ)


def outcome_of(exc: BaseException) -> str:
    """How a failed attempt ended, in a word or three."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {CONNECT_TIMEOUT:g} s"
    if "CONNACK" in str(exc):
        return "CONNACK refused"
    if isinstance(exc, (asyncio.IncompleteReadError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError,
                        BrokenPipeError)):
        return "closed by the frontend"
    return f"{type(exc).__name__}: {exc}"[:80]


async def keepalive_ticker(devices: list[Device]) -> None:
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for device in devices:
            device.keepalive(now)


def source_address(block: int, i: int) -> str:
    """A loopback address of its own for each client: 127.<block>.x.y (y in 1..250)."""
    return f"127.{block}.{i // 250}.{i % 250 + 1}"


def client_context(conn: dict, user: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=conn["ca_file"])
    if user is not None:
        files = conn["client_certificates"][user]
        context.load_cert_chain(files["cert"], files["key"])
    return context


def cmd_topic(user: str, zone: str) -> str:
    return f"factory/{zone}/{user}/cmd/#"


# -- the stack ------------------------------------------------------------------------------------------------------

def device_names(clients: int) -> tuple[list[str], list[str]]:
    half = clients // 2
    return [f"pw-dev-{i:04d}" for i in range(clients - half)], [f"cert-dev-{i:04d}" for i in range(half)]


def probe_names(publishers: int) -> list[str]:
    return [f"probe-{i:02d}" for i in range(publishers)]


def zone_of(index: int) -> str:
    return ZONES[index % len(ZONES)]


def write_stack(path: Path, clients: int, publishers: int) -> Path:
    """Pulumi.prod.yaml's settings (as they are now) with the factory-zone ACLs, the devices, the latency probe's
    publishers (password devices) and its subscriber (a dashboard, reading every zone)."""
    document = yaml.safe_load(BASE_STACK.read_text())
    config = document["config"]
    config["mqtt-estate:namespace"] = {"name": "mqtt-storm"}
    broker = config["mqtt-estate:broker"]
    broker.setdefault("acl", {})["factory"] = {"zones": ZONES}
    listeners = {lst["name"]: lst for lst in broker["listeners"]}
    if PASSWORD_LISTENER not in listeners or not listeners.get(CERT_LISTENER, {}).get("requireCertificate"):
        raise SystemExit(f"{BASE_STACK.name} no longer has the {PASSWORD_LISTENER} / mTLS {CERT_LISTENER} listeners")
    # bridges verify pod names; without a mount namespace for /etc/hosts they dial 127.0.0.1 and need these SANs
    config.setdefault("mqtt-estate:pki", {})["loopbackSans"] = True
    password_devices, cert_devices = device_names(clients)
    users = list(config.get("mqtt-estate:users", []))
    for names, auth in ((password_devices, "password"), (cert_devices, "certificate"),
                        (probe_names(publishers), "password")):
        users += [{"name": n, "role": "device", "zone": zone_of(i), "auth": auth} for i, n in enumerate(names)]
    users += [{"name": MONITOR, "role": "dashboard", "auth": "password"}]
    config["mqtt-estate:users"] = users
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=120))
    return path


def passwd_iterations(out: Path) -> list[int]:
    """The PBKDF2 iteration counts of every `$7$` line of the rendered password files."""
    found = []
    for passwd in out.glob("files/**/passwd"):
        found += [int(m.group(1)) for m in re.finditer(r"^[^:\n]+:\$7\$(\d+)\$", passwd.read_text(), re.M)]
    return found


# -- helpers on the estate ------------------------------------------------------------------------------------------

def placements(conn: dict) -> dict[str, str]:
    """source address -> broker server id (b0, b1 ...), from every replica's TLS stick tables."""
    found: dict[str, str] = {}
    for frontend in conn["frontends"]:
        for table in (PASSWORD_LISTENER, CERT_LISTENER):
            found.update(stick_table(Path(frontend["runtime_socket"]), table))
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the latency probe (a child process: `--probe`) -----------------------------------------------------------------

async def probe_main(conn_path: Path, victim: str, publishers: int, rate: float) -> None:
    """Publishers on the brokers other than `victim`, each broker with a subscriber of its own; prints one JSON line
    when ready, publishes until stdin says stop (or closes), then prints the samples."""
    conn = json.loads(conn_path.read_text())
    creds = json.loads(Path(conn["credentials_file"]).read_text())
    survivors = [f"b{i}" for i in range(len(conn["brokers"])) if f"b{i}" != victim]
    context = client_context(conn)
    addresses = iter(range(60000))

    async def placed(user: str, wanted: set[str], subscriptions=()) -> tuple[Device, str]:
        for _ in range(200):
            i = next(addresses)
            device = Device(user, "password", conn["frontends"][i % len(conn["frontends"])], PASSWORD_LISTENER,
                            context, source_address(20, i), creds[user], subscriptions)
            device.start()
            await asyncio.wait_for(device.connected.wait(), 3 * CONNECT_TIMEOUT)
            broker = stick_table(device.runtime_socket, PASSWORD_LISTENER).get(device.source)
            if broker in wanted:
                return device, broker
            await device.stop()
        raise RuntimeError(f"no connection of {user} landed on {sorted(wanted)}")

    pubs: list[tuple[Device, str, str]] = []
    for i, user in enumerate(probe_names(publishers)):
        count = {b: sum(1 for _, _, pb in pubs if pb == b) for b in survivors}
        wanted = {b for b in survivors if count[b] == min(count.values())}
        device, broker = await placed(user, wanted)
        pubs.append((device, f"factory/{zone_of(i)}/{user}/data/latency", broker))
    received: dict[tuple[str, int], int] = {}

    def on_message(topic: str, payload: bytes) -> None:
        received[(topic, struct.unpack_from("!I", payload, 8)[0])] = time.monotonic_ns()

    subs = []
    for broker in survivors:
        topics = [topic for _, topic, pb in pubs if pb == broker]
        device, _ = await placed(MONITOR, {broker}, topics)
        device.on_message = on_message
        subs.append(device)
    await asyncio.sleep(0.5)  # SUBACKs
    sent: list[tuple[str, int, int]] = []

    async def publisher(device: Device, topic: str) -> None:
        await asyncio.sleep(random.uniform(0, 1 / rate))
        began, seq = time.monotonic(), 0
        padding = b"x" * (PAYLOAD - 12)
        while True:
            seq += 1
            await asyncio.sleep(max(0.0, began + seq / rate - time.monotonic()))
            now = time.monotonic_ns()
            if device.publish(topic, struct.pack("!QI", now, seq) + padding, 1):
                sent.append((topic, seq, now))

    everyone = [d for d, _, _ in pubs] + subs
    tasks = [asyncio.create_task(publisher(d, topic)) for d, topic, _ in pubs]
    tasks.append(asyncio.create_task(keepalive_ticker(everyone)))
    print(json.dumps({"ready": {d.name + "@" + d.source: b for d, _, b in pubs}}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    for task in tasks[:-1]:
        task.cancel()
    await asyncio.sleep(1.0)  # the last messages arrive
    samples = [[at, received.get((topic, seq), 0)] for topic, seq, at in sent]
    print(json.dumps({"samples": samples}), flush=True)
    for device in everyone:
        await device.stop()


class Probe:
    """The parent's handle on the probe process."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.placed: dict[str, str] = {}
        """publisher@source -> broker"""

    @classmethod
    async def start(cls, conn_path: Path, victim: str, publishers: int, rate: float) -> "Probe":
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.storm_bench", "--probe", str(conn_path), "--victim", victim,
            "--publishers", str(publishers), "--rate", str(rate), cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26)
        probe = cls(proc)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            if not line:
                raise RuntimeError(f"the latency probe exited with {await proc.wait()}")
        except BaseException:
            probe.kill()
            raise
        probe.placed = json.loads(line)["ready"]
        return probe

    async def finish(self) -> list[tuple[int, int]]:
        """Stop publishing; (sent, received) monotonic ns per message, received 0 when it never arrived."""
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        await asyncio.wait_for(self.proc.wait(), 30)
        return [tuple(s) for s in json.loads(line)["samples"]]

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


# -- the fleet and the storm ----------------------------------------------------------------------------------------

class Fleet:
    def __init__(self, conn: dict, clients: int):
        creds = json.loads(Path(conn["credentials_file"]).read_text())
        password_devices, cert_devices = device_names(clients)
        shared = client_context(conn)
        frontends = conn["frontends"]
        self.devices: list[Device] = []
        # half of each kind through each HAProxy replica, as a LoadBalancer would spread them
        for i, name in enumerate(password_devices):
            self.devices.append(Device(name, "password", frontends[i % len(frontends)], PASSWORD_LISTENER, shared,
                                       source_address(10, len(self.devices)), creds[name],
                                       [cmd_topic(name, zone_of(i))]))
        for i, name in enumerate(cert_devices):
            self.devices.append(Device(name, "certificate", frontends[i % len(frontends)], CERT_LISTENER,
                                       client_context(conn, name), source_address(10, len(self.devices)), None,
                                       [cmd_topic(name, zone_of(i))]))

    async def connect_all(self, timeout: float = 300.0, reconnect: bool = False) -> float:
        """Connect (or drop and reconnect) every device, RAMP attempts at a time; seconds until all are connected."""
        began = time.monotonic()
        gate = asyncio.Semaphore(RAMP)
        for device in self.devices:
            device.gate = gate
            if reconnect:
                device.drop()
            elif device.task is None:
                device.start()
        await asyncio.sleep(0.05)
        deadline = began + timeout
        while not all(d.connected.is_set() for d in self.devices):
            if time.monotonic() > deadline:
                missing = [d.name for d in self.devices if not d.connected.is_set()]
                raise RuntimeError(f"{len(missing)} devices did not connect within {timeout} s: {missing[:5]}")
            await asyncio.sleep(0.1)
        for device in self.devices:
            device.gate = None
        return time.monotonic() - began


async def loop_lag(samples: list[tuple[float, float]]) -> None:
    """How late this event loop wakes a 10 ms sleeper: (time, lag s)."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        now = time.monotonic()
        samples.append((now, now - before - 0.01))


async def watch_mark_down(conn: dict, victim: str, killed: float, found: dict[str, float]) -> None:
    """When each HAProxy replica's health check marks the victim down (s after the kill)."""
    pending = {f["pod"]: Path(f["runtime_socket"]) for f in conn["frontends"]}
    while pending:
        for pod, sock in list(pending.items()):
            with contextlib.suppress(OSError):
                if (await asyncio.to_thread(server_states, sock, "health")).get(victim, 2) != 2:
                    found[pod] = time.monotonic() - killed
                    del pending[pod]
        await asyncio.sleep(0.05)


def choose_victim(counts: dict[str, int], total: int, killed_before: list[str]) -> str:
    """The broker holding closest to a third of the devices, preferring one not killed yet."""
    fresh = [b for b in counts if b not in killed_before] or list(counts)
    return min(fresh, key=lambda b: (abs(counts[b] - total / len(counts)), b))


async def storm_round(local, conn: dict, conn_path: Path, fleet: Fleet, args, killed_before: list[str]) -> dict:
    """Pick the victim, start the probe, wait out the baseline, kill -9, wait until its devices are back."""
    where = await asyncio.to_thread(placements, conn)
    brokers = [f"b{i}" for i in range(len(conn["brokers"]))]
    counts = {b: sum(1 for d in fleet.devices if where.get(d.source) == b) for b in brokers}
    victim = choose_victim(counts, len(fleet.devices), killed_before)
    pod = conn["brokers"][int(victim[1:])]["pod"]
    affected = [d for d in fleet.devices if where.get(d.source) == victim]
    pids = {b: next(p.process.pid for p in local.brokers if p.pod == conn["brokers"][int(b[1:])]["pod"])
            for b in brokers if b != victim}
    lag: list[tuple[float, float]] = []
    mark_down: dict[str, float] = {}
    probe = await Probe.start(conn_path, victim, args.publishers, args.rate)
    lag_task = asyncio.create_task(loop_lag(lag))
    try:
        await asyncio.sleep(BASELINE_S + 1.0)
        cpu_before = {b: cpu_seconds(pid) for b, pid in pids.items()}
        killed = time.monotonic()
        local.kill(pod)
        watcher = asyncio.create_task(watch_mark_down(conn, victim, killed, mark_down))
        while time.monotonic() < killed + DEADLINE:
            if all(d.connacks and d.connacks[-1] > killed for d in affected):
                break
            await asyncio.sleep(0.02)
        ended = time.monotonic()
        cpu = {b: cpu_seconds(pid) - cpu_before[b] for b, pid in pids.items()}
        await asyncio.sleep(1.0)
        watcher.cancel()
        samples = await probe.finish()
    finally:
        probe.kill()
        lag_task.cancel()
    after = await asyncio.to_thread(placements, conn)
    others = [d for d in fleet.devices if where.get(d.source) != victim]
    return {"pod": pod, "victim": victim, "counts": counts, "affected": len(affected),
            "affected_kinds": {k: sum(1 for d in affected if d.kind == k) for k in ("password", "certificate")},
            "mark_down": mark_down, "cpu": cpu, "wall": ended - killed, "probe_publishers": len(probe.placed),
            "collateral": sum(1 for d in others if any(t >= killed for t in d.drops)),
            "landed": {b: sum(1 for d in affected if after.get(d.source) == b) for b in brokers if b != victim},
            **summarise(affected, killed, mark_down, samples, lag)}


def summarise(affected: list[Device], killed: float, mark_down: dict[str, float], samples: list, lag: list) -> dict:
    """Back times and where they went; the probe's latencies before the kill and during the storm (from the kill
    until the last device was back, at least 1 s; until the deadline if some never came back)."""
    back, phases, attempts, outcomes, late = [], {"notice": [], "wait": [], "connect": []}, [], {}, 0
    for d in affected:
        ok = next((t for t in d.connacks if t > killed), None)
        tries = [a for a in d.attempts if a[0] >= killed and ok is not None and a[1] <= ok]
        if not tries:
            continue
        back.append(ok - killed)
        drop = next((t for t in d.drops if t >= killed), killed)
        phases["notice"].append(drop - killed)  # the frontend closed the device's connection
        phases["wait"].append(tries[-1][0] - drop)  # backoff sleeps and failed attempts
        phases["connect"].append(ok - tries[-1][0])  # TCP + TLS + CONNECT/CONNACK of the attempt that worked
        attempts.append(len(tries))
        for began, _, outcome in tries[:-1]:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            late += began - killed > mark_down.get(d.frontend, DEADLINE)
    end = killed + (max(back) if back and len(back) == len(affected) else DEADLINE)
    end = max(end, killed + 1.0)
    base_from = (killed - BASELINE_S) * 1e9
    return {"back": back, "phases": phases, "attempts": attempts, "outcomes": outcomes, "late": late,
            "storm_window": end - killed,
            "base_ms": [(r - s) / 1e6 for s, r in samples if r and base_from <= s < killed * 1e9],
            "during_ms": [(r - s) / 1e6 for s, r in samples if r and killed * 1e9 <= s < end * 1e9],
            "lost": sum(1 for s, r in samples if not r and base_from <= s < end * 1e9),
            "lag_ms": [1000 * v for t, v in lag if killed <= t < end]}


async def restore(local, conn: dict, pod: str, fleet: Fleet) -> float:
    """Bring the killed broker back, wait until every replica routes to it, forget the stickiness and reconnect
    every device, so the next kill starts from an even spread again."""
    await asyncio.to_thread(local.restart, pod)
    for frontend in conn["frontends"]:
        sock = Path(frontend["runtime_socket"])
        for _ in range(300):
            states = await asyncio.to_thread(server_states, sock, "health")
            if all(states.get(f"b{i}") == 2 for i in range(len(conn["brokers"]))):
                break
            await asyncio.sleep(0.1)
    for frontend in conn["frontends"]:
        for table in (PASSWORD_LISTENER, CERT_LISTENER):
            await asyncio.to_thread(runtime_command, Path(frontend["runtime_socket"]), f"clear table {table}")
    return await fleet.connect_all(reconnect=True)


async def run(local, conn: dict, conn_path: Path, args) -> dict:
    fleet = Fleet(conn, args.clients)
    ticker = asyncio.create_task(keepalive_ticker(fleet.devices))
    try:
        connect_s = await fleet.connect_all()
        rounds = []
        for k in range(args.kills):
            rounds.append(await storm_round(local, conn, conn_path, fleet, args, [r["victim"] for r in rounds]))
            print(f"kill {k + 1}: {rounds[-1]['pod']}, {len(rounds[-1]['back'])}/{rounds[-1]['affected']} back, "
                  f"max {max(rounds[-1]['back'], default=float('nan')):.2f} s", file=sys.stderr, flush=True)
            if k + 1 < args.kills:
                await restore(local, conn, rounds[-1]["pod"], fleet)
        return {"connect_s": connect_s, "rounds": rounds}
    finally:
        ticker.cancel()
        await asyncio.gather(*(d.stop() for d in fleet.devices), return_exceptions=True)


# -- report ---------------------------------------------------------------------------------------------------------

def fmt(values: list[float], q: float, scale: float = 1.0, digits: int = 2) -> str:
    value = percentile(values, q)
    return "-" if value != value else f"{value * scale:.{digits}f}"


def report(args, result: dict, iterations: list[int], render_s: float, open_files: int) -> None:
    rounds = result["rounds"]
    print(f"Reconnect storm: {args.clients} devices ({args.clients - args.clients // 2} password on "
          f"`{PASSWORD_LISTENER}`, {args.clients // 2} certificate on `{CERT_LISTENER}`), each from its own "
          "127.10.x.y address, through 2 HAProxy replicas to 3 mosquitto brokers on 127.0.0.1, all on one asyncio "
          "event loop; kill -9 of the broker holding a third of them\n")
    print("| kill | broker killed | its devices (password / cert) | back within 5 s | back p50 / p99 / max s "
          "| not back after 30 s | targets |")
    print("|---|---|---|---|---|---|---|")
    for k, r in enumerate(rounds, 1):
        back, n = r["back"], r["affected"]
        within = sum(1 for b in back if b <= TARGET_ALL_S)
        ok = within == n and percentile(back, 0.99) < TARGET_P99_S
        kinds = r["affected_kinds"]
        print(f"| {k} | {r['pod']} | {n} ({kinds['password']} / {kinds['certificate']}) | {within}/{n} | "
              f"{fmt(back, 0.5)} / {fmt(back, 0.99)} / {fmt(back, 1.0)} | {n - len(back)} | "
              f"all <= {TARGET_ALL_S:g} s, p99 < {TARGET_P99_S:g} s: {'PASS' if ok else 'MISS'} |")
    print("\n| kill | others' publishes (QoS 1, end to end, same broker) | before p50 / p99 ms "
          "| during storm p50 / p99 ms | storm window s | p99 added ms | lost | target |")
    print("|---|---|---|---|---|---|---|---|")
    for k, r in enumerate(rounds, 1):
        added = percentile(r["during_ms"], 0.99) - percentile(r["base_ms"], 0.99)
        verdict = "PASS" if added < TARGET_ADDED_MS else "MISS"
        print(f"| {k} | {r['probe_publishers']} x {args.rate:g} msg/s ({len(r['base_ms'])} before, "
              f"{len(r['during_ms'])} during) | {fmt(r['base_ms'], 0.5)} / {fmt(r['base_ms'], 0.99)} | "
              f"{fmt(r['during_ms'], 0.5)} / {fmt(r['during_ms'], 0.99)} | {r['storm_window']:.2f} | "
              f"{added:+.2f} | {r['lost']} | < +{TARGET_ADDED_MS:g} ms: {verdict} |")
    lo, hi = (min(iterations), max(iterations)) if iterations else (0, 0)
    print(f"\n- Password hashes in the rendered passwd file: {len(iterations)} lines, PBKDF2-SHA512 iterations "
          f"min {lo} / max {hi} (mosquitto hashes on its one thread for every password CONNECT).")
    print(f"- Device reconnect backoff: {BACKOFF_POLICY}.")
    print(f"- Before: {BASELINE_S:g} s before the kill; storm window: from the kill until the last device was back "
          f"(at least 1 s; {DEADLINE:g} s if some never came back). The probe (publishers, and a subscriber on each "
          "of the other brokers) runs in a process of its own.")
    print(f"- Fleet: all {args.clients} devices first connected in {result['connect_s']:.1f} s ({RAMP} attempts "
          f"in flight); render {render_s:.1f} s; open-file limit of this process {open_files}.")
    for k, r in enumerate(rounds, 1):
        ph = r["phases"]
        marks = ", ".join(f"{pod} {s:.2f} s" for pod, s in sorted(r["mark_down"].items())) or "not seen"
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(r["outcomes"].items(), key=lambda x: -x[1])) or "none"
        cpu = ", ".join(f"{b} {c:.2f} s" for b, c in sorted(r["cpu"].items()))
        landed = ", ".join(f"{b} {n}" for b, n in sorted(r["landed"].items()))
        print(f"\nKill {k}, {r['pod']} (devices per broker before: "
              + ", ".join(f"{b} {n}" for b, n in sorted(r["counts"].items())) + "):")
        print(f"  - HAProxy's health checks marked it down after: {marks}")
        print(f"  - back time, p50 / p99: connection closed {fmt(ph['notice'], 0.5, 1000, 0)} / "
              f"{fmt(ph['notice'], 0.99, 1000, 0)} ms after the kill; then backoff and failed attempts "
              f"{fmt(ph['wait'], 0.5)} / {fmt(ph['wait'], 0.99)} s; then the attempt that worked (TCP + TLS + "
              f"CONNACK) {fmt(ph['connect'], 0.5, 1000, 0)} / {fmt(ph['connect'], 0.99, 1000, 0)} ms")
        print(f"  - attempts per device until back: p50 {fmt(r['attempts'], 0.5, 1, 0)}, max "
              f"{fmt(r['attempts'], 1.0, 1, 0)}; failed attempts: {outcomes}, {r['late']} of them begun after "
              "the device's HAProxy replica had marked the broker down")
        print(f"  - re-homed to: {landed}; CPU of those brokers in the {r['wall']:.2f} s until all were back: {cpu}")
        print(f"  - devices of the other brokers that lost their connection: {r['collateral']}; lag of this event "
              f"loop (where CONNACK times are taken) during the storm: p99 {fmt(r['lag_ms'], 0.99, 1, 1)} ms, "
              f"max {fmt(r['lag_ms'], 1.0, 1, 1)} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description="reconnect storm through the frontend (issue 10)")
    parser.add_argument("--clients", type=int, default=1000, help="devices, half password, half certificate")
    parser.add_argument("--kills", type=int, default=1, help="storms, each on a freshly rebalanced fleet")
    parser.add_argument("--publishers", type=int, default=20, help="latency probe publishers on the other brokers")
    parser.add_argument("--rate", type=float, default=20.0, help="msg/s per probe publisher")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--victim", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        asyncio.run(probe_main(args.probe, args.victim, args.publishers, args.rate))
        return

    from mqtt_estate.estate.local import LocalEstate
    from mqtt_estate.estate.render import render

    open_files = raise_open_files()
    with tempfile.TemporaryDirectory(prefix="storm-bench-") as tmp:
        tmp = Path(tmp)
        stack = write_stack(tmp / "Pulumi.storm.yaml", args.clients, args.publishers)
        began = time.monotonic()
        rendered = render("storm", stack, out=tmp / "out", state_dir=tmp / "state")
        render_s = time.monotonic() - began
        iterations = passwd_iterations(rendered.out)
        with LocalEstate(rendered, tmp / "local") as local:
            conn_path = local.write_connection_file()
            conn = json.loads(conn_path.read_text())
            # the devices run in this process: a collector pause would be measured as reconnect time
            gc.collect()
            gc.disable()
            result = asyncio.run(run(local, conn, conn_path, args))
    report(args, result, iterations, render_s, open_files)


if __name__ == "__main__":
    main()
