"""Flood benchmark: legitimate clients during a wrong-password flood from one source, with and without the
frontend's per-source limits (frontend.floodProtection).

Boots tests/stacks/ha.yaml on 127.0.0.1 twice (three real mosquitto brokers bridged into a star, two real HAProxy
replicas): as written (flood protection on, the defaults) and with `floodProtection: {enabled: false}`. In each,
side by side in one run:
  - legitimate clients, each from an address of its own as devices have (127.0.0.1 is exempt in a local run):
    publishers sending QoS 1 at a steady rate to one subscriber (p50/p99 end-to-end latency), and devices that
    log in again every 2 s (refused or failed connects counted);
  - (i) with no flood, then (ii)/(iii) while 127.0.0.2 sends CONNECTs with a wrong password for a known
    password user, 50 per second for 10 s; every flood connection is classified: cut by HAProxy (its denied
    connection counter), answered by a broker (CONNACK), or left without an answer.
Before that, paho's own reconnect loop is counted against a server that closes every connection at once: the
most a legitimate client opens in a rate period, which the default rate must stay above.
Targets (reported, never asserted): no legitimate client refused, p99 added by the flood under 20 ms.

Run from the repository root:  python3 -m bench.flood_bench [--seconds N] [--flood-rate N]
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import secrets
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from mqtt_estate.components.haproxy_cfg import DEFAULT_CONNECTION_RATE, DEFAULT_RATE_PERIOD  # noqa: E402
from mqtt_estate.components.mqtt_wire import connect_packet  # noqa: E402
from mqtt_estate.estate.haproxy_runtime import runtime_command, stick_table  # noqa: E402
from mqtt_estate.estate.local import LocalEstate  # noqa: E402
from mqtt_estate.estate.render import render  # noqa: E402

STACK = ROOT / "tests" / "stacks" / "ha.yaml"
FLOODER = "127.0.0.2"
TARGET_USER = "app"
PAYLOAD = 100


def stack_variant(directory: Path, protected: bool, password: str | None) -> Path:
    """ha.yaml as written (flood protection on by default), or with it switched off; with `password`, the
    flood's target user has a supplied password (hashed with the configured count, not the generated one's)."""
    text = STACK.read_text()
    if password:
        text = text.rstrip("\n") + f"\n  mqtt-estate:password-{TARGET_USER}: {password}\n"
    if not protected:
        text = text.replace("  mqtt-estate:frontend:\n",
                            "  mqtt-estate:frontend:\n    floodProtection: {enabled: false}\n", 1)
    path = directory / f"ha-{'on' if protected else 'off'}.yaml"
    path.write_text(text)
    return path


def reconnect_loop_counts(seconds: float) -> dict[str, int]:
    """Connections paho opens in `seconds` when every one is closed at once, by reconnect back-off."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    counts: dict[str, int] = {}

    def serve():
        while True:
            try:
                conn, (address, _) = server.accept()
            except OSError:
                return
            counts[address] = counts.get(address, 0) + 1
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    loops = {"127.0.5.1": (0.1, 1), "127.0.5.2": None}  # the estate's tests' back-off, and paho's default (1-120 s)
    clients = []
    for address, delays in loops.items():
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loop-{address}")
        if delays:
            client.reconnect_delay_set(*delays)
        client.connect_async("127.0.0.1", server.getsockname()[1], 30, bind_address=address)
        client.loop_start()
        clients.append(client)
    time.sleep(seconds)
    for client in clients:
        client.loop_stop()
    server.close()
    return {"0.1-1 s": counts.get("127.0.5.1", 0), "1-120 s (paho default)": counts.get("127.0.5.2", 0)}


def paho_client(port: int, source: str, user: str, password: str, client_id: str) -> mqtt.Client:
    """A logged-in paho client from `source`; ConnectionError when its first attempt is refused or dropped (paho
    would retry by itself, which would hide a refusal)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(100)
    answered, outcome = threading.Event(), []
    client.on_connect = lambda _c, _u, _f, reason, _p: (outcome.append(reason == 0), answered.set())
    client.on_disconnect = lambda *_: (outcome.append(False), answered.set())
    client.connect("127.0.0.1", port, keepalive=30, bind_address=source)
    client.loop_start()
    if not answered.wait(10) or not outcome[0]:
        client.loop_stop()
        client.disconnect()
        raise ConnectionError(f"{client_id} from {source} was not admitted")
    client.on_disconnect = None
    return client


def on_first_broker(conn: dict, creds: dict, prefix: str) -> str:
    """A client id the frontend sends to broker b0 (probed from 127.0.0.1, exempt locally; HAProxy keeps a client
    id on its broker), so the measured messages never cross a bridge: only the flood's load differs between runs."""
    port = next(lst["port"] for lst in conn["frontends"][0]["listeners"] if lst["name"] == "mqtt")
    sock = Path(conn["frontends"][0]["runtime_socket"])
    for _ in range(30):
        client_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
        probe = paho_client(port, "127.0.0.1", "admin", creds["admin"], client_id)
        probe.disconnect()
        probe.loop_stop()
        if stick_table(sock, "mqtt").get(client_id) == "b0":
            return client_id
    raise RuntimeError("no client id landed on b0")


def flood_attempt(port: int, wait: float) -> str:
    """One wrong-password CONNECT from the flooder: 'connack', 'closed' (no byte before the close) or 'silent'."""
    sock = socket.socket()
    sock.settimeout(wait)
    try:
        sock.bind((FLOODER, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(connect_packet(f"flood-{uuid.uuid4().hex[:8]}", TARGET_USER, "not-the-password-at-all",
                                    keepalive=30))
        first = sock.recv(1)
        return "connack" if first[:1] == b"\x20" else "closed"
    except socket.timeout:
        return "silent"
    except OSError:
        return "closed"
    finally:
        sock.close()


def denied(conn: dict, frontend: str = "mqtt") -> int:
    """Connections HAProxy refused on `frontend` on every replica (stats field dcon)."""
    total = 0
    for replica in conn["frontends"]:
        text = runtime_command(Path(replica["runtime_socket"]), "show stat")
        header = text.splitlines()[0].lstrip("# ").split(",")
        for line in text.splitlines()[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == frontend and row.get("svname") == "FRONTEND":
                total += int(row.get("dcon") or 0)
    return total


def scenario(conn: dict, creds: dict, args, flood: bool, block: int) -> dict:
    """Legitimate traffic for args.seconds, with or without the flood; `block` picks fresh source addresses."""
    port = next(lst["port"] for lst in conn["frontends"][0]["listeners"] if lst["name"] == "mqtt")
    topic = f"bench/flood/{uuid.uuid4().hex[:6]}"
    latencies: list[float] = []
    failures = {"publishers": 0, "relogins": 0, "relogin_attempts": 0}
    subscribed = threading.Event()
    sub = paho_client(port, f"127.0.{block}.100", "admin", creds["admin"], on_first_broker(conn, creds, "sub"))
    sub.on_message = lambda _c, _u, m: latencies.append(time.perf_counter() - struct.unpack("d", m.payload[:8])[0])
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe(topic, 1)
    subscribed.wait(5)
    pubs = []
    for i in range(args.publishers):
        try:
            pubs.append(paho_client(port, f"127.0.{block}.{i + 1}", "admin", creds["admin"],
                                    on_first_broker(conn, creds, "pub")))
        except OSError:  # ConnectionError included
            failures["publishers"] += 1
    stop = time.perf_counter() + args.seconds
    padding = b"x" * (PAYLOAD - 8)
    published: list[int] = []

    def publish(client):
        began = time.perf_counter()
        i = 0
        while time.perf_counter() < stop:
            delay = began + i / args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            client.publish(topic, struct.pack("d", time.perf_counter()) + padding, qos=1)
            i += 1
        published.append(i)

    def relogin(n: int):
        """A device that logs in again every 2 s (as after a network blip), as user app."""
        source = f"127.0.{block}.{50 + n}"
        while time.perf_counter() < stop:
            began = time.perf_counter()
            failures["relogin_attempts"] += 1
            try:
                client = paho_client(port, source, TARGET_USER, creds[TARGET_USER], f"dev-{block}-{n}")
                client.disconnect()
                client.loop_stop()
            except OSError:  # ConnectionError included
                failures["relogins"] += 1
            time.sleep(max(0.0, 2.0 - (time.perf_counter() - began)))

    outcomes: list[str] = []
    denied_before = denied(conn)
    flooder = None
    if flood:
        def run_flood():
            with ThreadPoolExecutor(max_workers=400) as pool:
                began, futures = time.perf_counter(), []
                for i in range(int(args.flood_rate * args.seconds)):
                    delay = began + i / args.flood_rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(flood_attempt, port, args.flood_wait))
                outcomes.extend(f.result() for f in futures)
        flooder = threading.Thread(target=run_flood)
        flooder.start()
    threads = [threading.Thread(target=publish, args=(p,)) for p in pubs]
    threads += [threading.Thread(target=relogin, args=(n,)) for n in range(args.devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = sum(published)
    idle_since, seen = time.perf_counter(), -1
    while time.perf_counter() - idle_since < 2.0 and len(latencies) < sent:
        if len(latencies) != seen:
            seen, idle_since = len(latencies), time.perf_counter()
        time.sleep(0.05)
    if flooder:
        flooder.join()
    for client in pubs + [sub]:
        client.disconnect()
        client.loop_stop()
    ordered = sorted(latencies)
    cut = denied(conn) - denied_before
    return {"received": len(ordered), "sent": sent, "failures": failures,
            "p50": 1000 * ordered[len(ordered) // 2] if ordered else float("nan"),
            "p99": 1000 * ordered[max(int(len(ordered) * 0.99) - 1, 0)] if ordered else float("nan"),
            "flood": {"sent": len(outcomes), "cut": cut, "reached": len(outcomes) - cut,
                      "connack": outcomes.count("connack"), "silent": outcomes.count("silent")}}


def iterations(rendered, user: str) -> str:
    """The PBKDF2 iteration count of `user`'s line in the rendered password file."""
    for obj in rendered.objects:
        for text in (obj.get("stringData") or {}).values() if obj["kind"] == "Secret" else ():
            found = re.search(rf"^{re.escape(user)}:\$7\$(\d+)\$", text, re.M)
            if found:
                return found.group(1)
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run and of the flood")
    parser.add_argument("--flood-rate", type=float, default=50.0, help="wrong-password CONNECTs per second")
    parser.add_argument("--flood-wait", type=float, default=5.0, help="how long a flood connection waits for a reply")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0, help="QoS 1 messages per second per publisher")
    parser.add_argument("--devices", type=int, default=5, help="devices logging in again every 2 s")
    parser.add_argument("--generated", action="store_true",
                        help="flood the target user's generated password (default: a supplied one, dearer to hash)")
    args = parser.parse_args()
    password = None if args.generated else secrets.token_urlsafe(24)

    gc.disable()  # the clients run in this process; a collector pause would read as network latency
    loops = reconnect_loop_counts(args.seconds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for protected in (True, False):
            name = "on" if protected else "off"
            stack = stack_variant(Path(tmp), protected, password)
            rendered = render("ha", stack, out=Path(tmp) / f"out-{name}", state_dir=Path(tmp) / "state")
            hash_iterations = iterations(rendered, TARGET_USER)
            with LocalEstate(rendered, Path(tmp) / f"local-{name}") as local:
                conn = json.loads(local.write_connection_file().read_text())
                creds = json.loads(Path(conn["credentials_file"]).read_text())
                quiet = scenario(conn, creds, args, flood=False, block=10 if protected else 20)
                flooded = scenario(conn, creds, args, flood=True, block=11 if protected else 21)
            rows.append((protected, quiet, flooded))

    print(f"Flood benchmark: 3 brokers + 2 HAProxy on 127.0.0.1 (tests/stacks/ha.yaml); {args.publishers} publishers "
          f"x {args.rate:.0f} QoS 1 msg/s and {args.devices} devices logging in every 2 s, each from its own "
          f"address; flood: {FLOODER}, {args.flood_rate:.0f} wrong-password CONNECTs/s for {args.seconds:.0f} s as "
          f"'{TARGET_USER}' ({'generated' if args.generated else 'supplied'} password, hashed $7$ with "
          f"{hash_iterations} PBKDF2 iterations)\n")
    print("| run | flood protection | legit p50 / p99 ms | p99 added ms | legit refused or failed | messages "
          "received | flood connections: sent / cut by HAProxy / reached a broker (of which CONNACK, no answer "
          f"in {args.flood_wait:.0f} s) | targets |")
    print("|---|---|---|---|---|---|---|---|")
    for protected, quiet, flooded in rows:
        for label, run in (("(i) no flood", quiet), ("(ii) flood" if protected else "(iii) flood", flooded)):
            refused = run["failures"]["publishers"] + run["failures"]["relogins"]
            tried = args.publishers + 1 + run["failures"]["relogin_attempts"]
            f = run["flood"]
            if run is quiet:
                added, flood_cell, target = "-", "-", f"no refusal: {'PASS' if refused == 0 else 'MISS'}"
            else:
                delta = run["p99"] - quiet["p99"]
                added = f"{delta:+.2f}"
                flood_cell = f"{f['sent']} / {f['cut']} / {f['reached']} ({f['connack']}, {f['silent']})"
                target = f"no refusal, < +20 ms: {'PASS' if refused == 0 and delta < 20 else 'MISS'}"
            print(f"| {label} | {'on (defaults)' if protected else 'off'} | {run['p50']:.2f} / {run['p99']:.2f} | "
                  f"{added} | {refused} of {tried} | {run['received']}/{run['sent']} | {flood_cell} | {target} |")
    print(f"\nLegitimate reconnect loops (paho {paho.mqtt.__version__}), every "
          f"connection closed at once, connections in {args.seconds:.0f} s: "
          + ", ".join(f"back-off {k}: {v}" for k, v in loops.items())
          + f"; default limit: {DEFAULT_CONNECTION_RATE} per {DEFAULT_RATE_PERIOD} per source and replica.")


if __name__ == "__main__":
    main()
