"""HA benchmark: throughput and p99 latency through HAProxy against direct to one broker, and failover times.

Boots tests/stacks/ha.yaml on 127.0.0.1 (three real mosquitto brokers bridged into a star, two real HAProxy
replicas), then measures side by side in one run:
  - messages/s and p99 end-to-end latency, QoS 0 and 1, 100-byte payloads, several publishers, with every
    client on broker b0 either directly or through the frontend (so the only difference is HAProxy);
  - failover: a client on broker bX (reconnect delay 0.1-1 s), kill -9 bX, time until it is connected again
    (through the frontend to another broker); repeated over several kills, the killed broker restarted between;
  - what a subscriber whose broker dies loses (its session stays on the dead broker).
Targets (reported, never asserted): frontend throughput >= 0.9x direct, p99 added <= 1 ms,
failover p50 < 0.5 s and max < 2 s.

Run from the repository root:  python -m bench.ha_bench [--messages N] [--publishers N] [--kills N]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from mqtt_estate.estate.haproxy_runtime import stick_table  # noqa: E402
from mqtt_estate.estate.local import LocalEstate  # noqa: E402
from mqtt_estate.estate.render import render  # noqa: E402

STACK = ROOT / "tests" / "stacks" / "ha.yaml"
PAYLOAD = 100


def make_client(port: int, creds: dict, client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set("admin", creds["admin"])
    client.max_inflight_messages_set(100)
    client.reconnect_delay_set(0.1, 1)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not connected.wait(5):
        raise RuntimeError(f"{client_id} did not connect to {port}")
    return client


def frontend_client_on(conn: dict, creds: dict, broker: str, prefix: str) -> mqtt.Client:
    port = next(lst["port"] for lst in conn["listeners"] if lst["name"] == "mqtt")
    sock = Path(conn["frontends"][0]["runtime_socket"])
    for _ in range(20):
        client_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        client = make_client(port, creds, client_id)
        if stick_table(sock, "mqtt").get(client_id) == broker:
            client._bench_id = client_id
            return client
        client.disconnect()
        client.loop_stop()
    raise RuntimeError(f"no client landed on {broker}")


def load_run(make, qos: int, publishers: int, messages: int, rate: float | None) -> dict:
    """`publishers` clients send `messages` each (at `rate` msg/s each, or as fast as they can when None);
    one subscriber timestamps every arrival. Throughput is counted from the first send to the last arrival."""
    topic = f"bench/{uuid.uuid4().hex[:8]}"
    total = publishers * messages
    latencies: list[float] = []
    last = [0.0]
    sub = make("sub")
    subscribed = threading.Event()

    def on_message(_c, _u, msg):
        now = time.perf_counter()
        latencies.append(now - struct.unpack("d", msg.payload[:8])[0])
        last[0] = now

    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe(topic, qos)
    subscribed.wait(5)
    pubs = [make(f"pub{i}") for i in range(publishers)]
    padding = b"x" * (PAYLOAD - 8)

    def send(client):
        began = time.perf_counter()
        for i in range(messages):
            if rate:
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            client.publish(topic, struct.pack("d", time.perf_counter()) + padding, qos=qos)

    start = time.perf_counter()
    threads = [threading.Thread(target=send, args=(p,)) for p in pubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    idle_since = time.perf_counter()
    seen = -1
    while time.perf_counter() - idle_since < 1.0 and len(latencies) < total:
        if len(latencies) != seen:
            seen, idle_since = len(latencies), time.perf_counter()
        time.sleep(0.05)
    for client in pubs + [sub]:
        client.disconnect()
        client.loop_stop()
    ordered = sorted(latencies)
    elapsed = (last[0] or time.perf_counter()) - start
    return {"received": len(ordered), "sent": total, "rate": len(ordered) / elapsed,
            "p50_ms": 1000 * ordered[len(ordered) // 2] if ordered else float("nan"),
            "p99_ms": 1000 * ordered[max(int(len(ordered) * 0.99) - 1, 0)] if ordered else float("nan")}


def median_run(runs: list[dict]) -> dict:
    return {"received": sum(r["received"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs)}


def failover_round(local: LocalEstate, conn: dict, creds: dict, victim: int) -> float:
    client = frontend_client_on(conn, creds, f"b{victim}", "fo")
    reconnected = threading.Event()
    client.on_connect = lambda *a: reconnected.set()
    killed = time.monotonic()
    local.kill(f"mosquitto-{victim}")
    reconnected.wait(10)
    took = time.monotonic() - killed
    client.disconnect()
    client.loop_stop()
    local.restart(f"mosquitto-{victim}")
    time.sleep(3.0)  # HAProxy marks the broker up again (rise 2 x inter 1 s)
    return took


def subscriber_loss(local: LocalEstate, conn: dict, creds: dict) -> dict:
    """A subscriber whose broker dies misses what is published until it has subscribed again elsewhere."""
    topic = f"bench/loss/{uuid.uuid4().hex[:6]}"
    got: set[int] = set()
    sub = frontend_client_on(conn, creds, "b2", "lossy-sub")
    sub.on_message = lambda _c, _u, m: got.add(int(m.payload))
    sub.on_connect = lambda c, *a: c.subscribe(topic, 1)
    sub.subscribe(topic, 1)
    pub = frontend_client_on(conn, creds, "b1", "steady-pub")
    time.sleep(0.3)
    sent = 0
    for i in range(600):
        pub.publish(topic, str(i).encode(), qos=1)
        sent += 1
        if i == 200:
            local.kill("mosquitto-2")
        time.sleep(0.005)
    time.sleep(2)
    lost = sorted(set(range(sent)) - got)
    for client in (pub, sub):
        client.disconnect()
        client.loop_stop()
    local.restart("mosquitto-2")
    return {"sent": sent, "lost": len(lost), "window_ms": 5 * len(lost)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000, help="per publisher")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--paced", type=int, default=300, help="messages per publisher in the latency run")
    parser.add_argument("--rate", type=float, default=50.0, help="msg/s per publisher in the latency run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating direct/frontend rounds (median rate and median p99)")
    args = parser.parse_args()

    # The clients run in this process; a collector pause would be measured as network latency on either path.
    gc.disable()
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render("ha", STACK, out=Path(tmp) / "out", state_dir=Path(tmp) / "state")
        with LocalEstate(rendered, Path(tmp) / "local") as local:
            conn = json.loads(local.write_connection_file().read_text())
            creds = json.loads(Path(conn["credentials_file"]).read_text())
            direct_port = next(lst["port"] for lst in conn["brokers"][0]["listeners"] if lst["name"] == "mqtt")
            direct_client = lambda cid: make_client(direct_port, creds, f"d-{cid}-{uuid.uuid4().hex[:6]}")  # noqa: E731
            front_client = lambda cid: frontend_client_on(conn, creds, "b0", f"f-{cid}")  # noqa: E731
            rows = []
            for qos in (0, 1):
                # throughput: as fast as the clients go; latency: a steady load well below saturation
                bursts = [(load_run(direct_client, qos, args.publishers, args.messages, None),
                           load_run(front_client, qos, args.publishers, args.messages, None))
                          for _ in range(args.rounds)]
                direct = {"rate": statistics.median(b[0]["rate"] for b in bursts)}
                front = {"rate": statistics.median(b[1]["rate"] for b in bursts)}
                # latency rounds alternate direct/frontend so drift on the machine hits both; median p99 of the rounds
                rounds = [(load_run(direct_client, qos, args.publishers, args.paced, args.rate),
                           load_run(front_client, qos, args.publishers, args.paced, args.rate))
                          for _ in range(args.rounds)]
                direct_lat = median_run([r[0] for r in rounds])
                front_lat = median_run([r[1] for r in rounds])
                rows.append((qos, direct, front, direct_lat, front_lat))
            kills = [failover_round(local, conn, creds, victim) for victim in
                     [(1 + i % 2) for i in range(args.kills)]]
            loss = subscriber_loss(local, conn, creds)

    print(f"HA benchmark: {args.publishers} publishers x {args.messages} messages of {PAYLOAD} bytes, "
          f"3 brokers + 2 HAProxy on 127.0.0.1\n")
    print("| QoS | direct msg/s | frontend msg/s | ratio | direct p50/p99 ms | frontend p50/p99 ms | p99 added ms | targets |")
    print("|---|---|---|---|---|---|---|---|")
    for qos, direct, front, direct_lat, front_lat in rows:
        ratio = front["rate"] / direct["rate"]
        added = front_lat["p99_ms"] - direct_lat["p99_ms"]
        verdict = "PASS" if ratio >= 0.9 and added <= 1.0 else "MISS"
        print(f"| {qos} | {direct['rate']:.0f} | {front['rate']:.0f} | {ratio:.2f}x | "
              f"{direct_lat['p50_ms']:.2f} / {direct_lat['p99_ms']:.2f} | {front_lat['p50_ms']:.2f} / "
              f"{front_lat['p99_ms']:.2f} | {added:+.2f} | >= 0.9x, <= +1 ms: {verdict} |")
    print(f"\n(median of {args.rounds} alternating direct/frontend rounds; throughput: {args.publishers} x "
          f"{args.messages} unpaced; latency: {args.publishers} x {args.paced} at {args.rate:.0f} msg/s each; "
          "latency-run messages received, direct/frontend: " + ", ".join(
              f"QoS{q} {dl['received']}/{fl['received']}" for q, d, f, dl, fl in rows) + ")")
    kills.sort()
    p50 = statistics.median(kills)
    print(f"\n| failover (kill -9, reconnect 0.1-1 s) | kills | p50 s | max s | targets |")
    print("|---|---|---|---|---|")
    verdict = "PASS" if p50 < 0.5 and kills[-1] < 2.0 else "MISS"
    print(f"| client of the killed broker, through the frontend | {len(kills)} | {p50:.3f} | {kills[-1]:.3f} | "
          f"p50 < 0.5 s, max < 2 s: {verdict} |")
    print(f"\nsubscriber whose broker was killed (QoS 1, one message every 5 ms): lost {loss['lost']} of "
          f"{loss['sent']} (~{loss['window_ms']} ms of traffic while it reconnected and subscribed again)")


if __name__ == "__main__":
    main()
