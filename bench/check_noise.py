"""Health-check noise: how many lines HAProxy's MQTT health checks add to each broker's log.

Boots the local prod estate (3 real mosquitto brokers, 2 real HAProxy replicas on 127.0.0.1, exactly the
rendered files), lets it settle, then reads what every broker's process.log gained over an idle window. With
`connection_messages true` each health check is three lines (new connection, client connected, client
disconnected). A check connection is recognised by its client id: the check sends an empty id, so the broker
names it `auto-...`; bridges and real clients have ids of their own.

Prints a markdown table: lines per second per broker, and per broker per HAProxy replica beside the target.

Run from the repository root:  python3 -m bench.check_noise [--seconds 20] [--settle 4] [--stack prod]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from estate.local import LocalEstate  # noqa: E402
from estate.render import render  # noqa: E402

TARGET_PER_REPLICA = 2.0
"""Health-check log lines per second per broker per HAProxy replica."""

NEW_CONNECTION = re.compile(r"New connection from (\S+) on port \d+\.$")
CONNECTED = re.compile(r"New client connected from (\S+) as (\S+) ")
GONE = re.compile(r"Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)")


@dataclass
class Noise:
    broker: str
    lines: int
    checks: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.lines / self.seconds


def health_check_lines(text: str) -> tuple[int, int]:
    """(log lines that belong to health-check connections, number of such connections) in a log excerpt."""
    lines = text.splitlines()
    sockets, ids = set(), set()
    for line in lines:
        match = CONNECTED.search(line)
        if match and match.group(2).startswith("auto-"):
            sockets.add(match.group(1))
            ids.add(match.group(2))
    count = 0
    for line in lines:
        new = NEW_CONNECTION.search(line)
        connected = CONNECTED.search(line)
        gone = GONE.search(line)
        if (new and new.group(1) in sockets) or (connected and connected.group(2) in ids) or (gone and gone.group(1) in ids):
            count += 1
    return count, len(ids)


def measure(local: LocalEstate, seconds: float) -> list[Noise]:
    logs = {proc.pod: proc.directory / "process.log" for proc in local.brokers}
    start = {pod: path.stat().st_size for pod, path in logs.items()}
    began = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - began
    found = []
    for pod, path in logs.items():
        with open(path, "rb") as handle:
            handle.seek(start[pod])
            excerpt = handle.read().decode(errors="replace")
        # a check straddling the window's edges is counted by what falls inside it
        lines, checks = health_check_lines(excerpt)
        found.append(Noise(pod, lines, checks, elapsed))
    return found


def table(noise: list[Noise], replicas: int, target: float) -> str:
    rows = ["| broker | check lines in window | checks | lines/s | HAProxy replicas | lines/s per replica | target |",
            "|---|---|---|---|---|---|---|"]
    for item in noise:
        per_replica = item.per_second / max(replicas, 1)
        verdict = "PASS" if per_replica <= target else "MISS"
        rows.append(f"| {item.broker} | {item.lines} in {item.seconds:.1f} s | {item.checks} | {item.per_second:.2f} | "
                    f"{replicas} | {per_replica:.2f} | <= {target:g}: {verdict} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--seconds", type=float, default=20.0, help="idle window measured")
    parser.add_argument("--settle", type=float, default=4.0, help="wait after boot before measuring")
    parser.add_argument("--target", type=float, default=TARGET_PER_REPLICA)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render(args.stack, None, out=Path(tmp) / "out", state_dir=Path(tmp) / "state")
        with LocalEstate(rendered, Path(tmp) / "local") as local:
            time.sleep(args.settle)
            noise = measure(local, args.seconds)
            replicas = len(local.frontends)
    print(f"Health-check noise, local {args.stack} estate ({len(noise)} brokers, {replicas} HAProxy replicas), "
          f"idle {args.seconds:g} s after {args.settle:g} s settling\n")
    print(table(noise, replicas, args.target))
    misses = [n for n in noise if n.per_second / max(replicas, 1) > args.target]
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
