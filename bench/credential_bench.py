"""Credential benchmark: both sides of a PBKDF2 iteration count, measured in one run.

The broker side, on a real mosquitto on 127.0.0.1 whose password file holds one user per iteration count:
  - the time of one right-password CONNECT (sequential, median);
  - a burst of wrong-password CONNECTs sent at once: how long the broker's thread is held per CONNECT, and the
    PINGREQ round trip of an already connected client during the burst (what everyone else waits).
The attacker side: PBKDF2-HMAC-SHA512 iterations per second on one core here (hashlib, the same OpenSSL routine
mosquitto calls) and on the reference GPU of components/credentials.py, and what that means for the credential
model: a generated password at GENERATED_ITERATIONS, a supplied one at the floor, and a weak one at the old
210000 default.

Run from the repository root:  python3 -m bench.credential_bench [--burst N] [--connects N]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mqtt_estate.components import credentials as model  # noqa: E402
from mqtt_estate.components import mqtt_wire  # noqa: E402
from mqtt_estate.components.passwords import deterministic_salt, hash_password  # noqa: E402
from mqtt_estate.estate.local import free_port  # noqa: E402

COUNTS = (model.GENERATED_ITERATIONS, 1_000, model.SUPPLIED_ITERATIONS, model.MAXIMUM_ITERATIONS, 210_000)
PASSWORD = "bench-password-0123456789"
OLD_DEFAULT = 210_000
WEAK_GUESSES = 10 ** 11
"""zxcvbn's estimate for "Summer2024!Factory", a password the old 12-character rule accepted."""


def connect_packet(client_id: str, user: str, password: str) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, user name and password."""
    return mqtt_wire.connect_packet(client_id, user, password)


def connack_code(sock: socket.socket) -> int:
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))
        if not chunk:
            raise ConnectionError("closed before CONNACK")
        data += chunk
    return data[3]


def dial(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def one_connect(port: int, user: str, password: str) -> tuple[float, int]:
    began = time.perf_counter()
    with dial(port) as sock:
        sock.sendall(connect_packet(f"b{time.perf_counter_ns()}", user, password))
        code = connack_code(sock)
    return time.perf_counter() - began, code


class Pinger:
    """A connected client pinging the broker back to back on a thread of its own while the block runs: its longest
    round trip is how long every other client waited."""

    def __init__(self, probe: socket.socket):
        self.probe, self.pings, self.done = probe, [], threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        while not self.done.is_set():
            sent = time.perf_counter()
            self.probe.sendall(b"\xc0\x00")  # PINGREQ
            self.probe.recv(2)
            self.pings.append(time.perf_counter() - sent)

    def __enter__(self) -> "Pinger":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()

    @property
    def longest_ms(self) -> float:
        return 1000 * max(self.pings)


def wrong_burst(port: int, user: str, burst: int, probe: socket.socket) -> tuple[float, float]:
    """Send `burst` wrong-password CONNECTs at once while a connected client pings the broker back to back;
    return (seconds until the last CONNACK, the longest ping round trip in ms: how long everyone else waited)."""
    socks = [dial(port) for _ in range(burst)]
    try:
        with Pinger(probe) as pinger:
            began = time.perf_counter()
            for i, sock in enumerate(socks):
                sock.sendall(connect_packet(f"w{i}", user, "wrong-" + PASSWORD))
            for sock in socks:
                if connack_code(sock) == 0:
                    raise RuntimeError("a wrong password was accepted")
            held = time.perf_counter() - began
        return held, pinger.longest_ms
    finally:
        for sock in socks:
            sock.close()


def password_broker(directory: Path) -> tuple[int, subprocess.Popen]:
    """A real mosquitto on a free loopback port whose logins are directory/passwd (stop it when done)."""
    port = free_port()
    (directory / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {directory / 'passwd'}\n"
        "max_connections -1\nlog_type error\n")
    return port, subprocess.Popen(["mosquitto", "-c", str(directory / "mosquitto.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def broker_side(counts, burst: int, connects: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)  # run as root, mosquitto drops to its own user, which must read these files
        lines = [f"it{n}:{hash_password(PASSWORD, deterministic_salt('bench', f'it{n}'), n)}" for n in counts]
        (directory / "passwd").write_text("\n".join(lines) + "\n")
        port, proc = password_broker(directory)
        try:
            for _ in range(100):
                try:
                    one_connect(port, f"it{counts[0]}", PASSWORD)
                    break
                except OSError:
                    time.sleep(0.05)
            probe = dial(port)
            probe.sendall(connect_packet("probe", f"it{counts[0]}", PASSWORD))
            connack_code(probe)
            rows = []
            for n in counts:
                times = []
                for _ in range(connects):
                    seconds, code = one_connect(port, f"it{n}", PASSWORD)
                    assert code == 0, code
                    times.append(seconds)
                held, ping = wrong_burst(port, f"it{n}", burst, probe)
                rows.append({"iterations": n, "connect_ms": 1000 * statistics.median(times),
                             "held_ms": 1000 * held / burst, "ping_ms": ping})
            probe.close()
            return rows
        finally:
            proc.kill()
            proc.wait()


def cpu_rate() -> float:
    """PBKDF2-HMAC-SHA512 iterations per second on one core (best of 3)."""
    best = math.inf
    for _ in range(3):
        began = time.perf_counter()
        hashlib.pbkdf2_hmac("sha512", PASSWORD.encode(), b"s" * 12, 100_000, 64)
        best = min(best, time.perf_counter() - began)
    return 100_000 / best


def _years(value: float) -> str:
    if value >= 1e6:
        return f"10^{math.log10(value):.0f} years"
    return f"{value:.0f} years" if value >= 1 else f"{value * 365.25:.0f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=50, help="wrong-password CONNECTs sent at once (default 50)")
    parser.add_argument("--connects", type=int, default=20, help="right-password CONNECTs per count (default 20)")
    args = parser.parse_args()
    rows = broker_side(COUNTS, args.burst, args.connects)
    rate = cpu_rate()
    print(f"### Broker side (mosquitto, one user per count; burst of {args.burst} wrong-password CONNECTs)\n")
    print("| iterations | right CONNECT ms | broker ms per wrong CONNECT | wrong CONNECTs/s that fill the thread "
          "| longest PINGREQ round trip of a connected client during the burst, ms | guesses/s, one core here | guesses/s, one RTX 4090 |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        n = row["iterations"]
        print(f"| {n} | {row['connect_ms']:.2f} | {row['held_ms']:.2f} | {1000 / row['held_ms']:.0f} | "
              f"{row['ping_ms']:.0f} | {rate / n:,.0f} | {model.REFERENCE_GPU_RATE / n:,.0f} |")
    print(f"\nPBKDF2-HMAC-SHA512 here: {rate:,.0f} iterations/s on one core; reference GPU "
          f"{model.REFERENCE_GPU_RATE:.3g}/s (components/credentials.py REFERENCE_GPU_RATE).\n")
    floor = model.minimum_guesses(model.SUPPLIED_ITERATIONS)
    cases = [
        (f"generated, {model.GENERATED_BITS} bits", 2.0 ** model.GENERATED_BITS, model.GENERATED_ITERATIONS),
        ("supplied, at the floor", floor, model.SUPPLIED_ITERATIONS),
        ("supplied, weak (10^11 guesses), old default", WEAK_GUESSES, OLD_DEFAULT),
        ("supplied, weak (10^11 guesses), refused now", WEAK_GUESSES, model.SUPPLIED_ITERATIONS),
    ]
    by_count = {row["iterations"]: row for row in rows}
    print("### The model: what a leaked password file and a wrong-password flood each cost\n")
    print("| password | guesses | iterations | one GPU, time to try half | broker ms per wrong CONNECT |")
    print("|---|--:|--:|--:|--:|")
    for label, guesses, n in cases:
        held = by_count[n]["held_ms"] if n in by_count else float("nan")
        print(f"| {label} | 10^{math.log10(guesses):.0f} | {n} | {_years(model.gpu_years(guesses / 2, n))} | "
              f"{held:.2f} |")
    target = model.SUPPLIED_ITERATIONS
    held = by_count[target]["held_ms"]
    print(f"\nTargets: supplied count costs <= 10 ms per CONNECT here: {held:.2f} ms "
          f"{'PASS' if held <= 10 else 'MISS'}; generated count <= 1 ms: "
          f"{by_count[model.GENERATED_ITERATIONS]['held_ms']:.2f} ms "
          f"{'PASS' if by_count[model.GENERATED_ITERATIONS]['held_ms'] <= 1 else 'MISS'}")


if __name__ == "__main__":
    main()
