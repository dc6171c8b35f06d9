"""Health-check noise: how many lines HAProxy's MQTT health checks add to each broker's log.

Boots the local prod estate (3 real mosquitto brokers, 2 real HAProxy replicas on 127.0.0.1, exactly the
rendered files), lets it settle, then reads what every broker's process.log gained over an idle window. With
`connection_messages true` each health check is three lines (new connection, client connected, client
disconnected). A check connection is recognised by its client id: the check sends an empty id, so the broker
names it `auto-...`; bridges and real clients have ids of their own.

mosquitto's stdout is a file here, so its log reaches process.log in 8 KiB blocks. The window is therefore cut
by the lines' own timestamps (whole seconds), not by the file's size: after the window the bench waits until
every broker's log holds a line stamped after it.

Prints a markdown table: lines per second per broker, and per broker per HAProxy replica beside the target.

Run from the repository root:  python3 -m bench.check_noise [--seconds 20] [--settle 4] [--stack prod]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mqtt_estate.estate.local import LocalEstate  # noqa: E402
from mqtt_estate.estate.render import render  # noqa: E402

TARGET_PER_REPLICA = 2.0
"""Health-check log lines per second per broker per HAProxy replica."""

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d): ")
NEW_CONNECTION = re.compile(r"New connection from (\S+) on port \d+\.$")
CONNECTED = re.compile(r"New client connected from (\S+) as (\S+) ")
GONE = re.compile(r"Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)")


@dataclass
class Noise:
    broker: str
    lines: int
    checks: int
    seconds: float
    complete: bool = True
    """False when the log was not flushed past the window's end in time (the count may be short)."""

    @property
    def per_second(self) -> float:
        return self.lines / self.seconds


def health_check_lines(window: list[str], context: list[str] | None = None) -> tuple[int, int]:
    """(lines of `window` that belong to health-check connections, checks that connected in it). A check is
    told by its `auto-` client id, found in `context` (the whole log, so a check straddling the window's start
    is known) or else in the window itself."""
    sockets, ids = set(), set()
    for line in context if context is not None else window:
        match = CONNECTED.search(line)
        if match and match.group(2).startswith("auto-"):
            sockets.add(match.group(1))
            ids.add(match.group(2))
    count, checks = 0, 0
    for line in window:
        new, connected, gone = NEW_CONNECTION.search(line), CONNECTED.search(line), GONE.search(line)
        if connected and connected.group(2) in ids:
            checks += 1
        if (new and new.group(1) in sockets) or (connected and connected.group(2) in ids) \
                or (gone and gone.group(1) in ids):
            count += 1
    return count, checks


def _stamped_lines(path: Path) -> list[tuple[float, str]]:
    """(epoch seconds, line) for every complete, timestamped line of a broker log (log_timestamp_format
    %Y-%m-%dT%H:%M:%S, local time)."""
    text = path.read_bytes().decode(errors="replace")
    found = []
    for line in text.splitlines(keepends=True):
        match = STAMP.match(line)
        if match and line.endswith("\n"):
            found.append((time.mktime(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")), line.rstrip("\n")))
    return found


def measure(local: LocalEstate, seconds: int, flush_timeout: float = 120.0) -> list[Noise]:
    logs = {proc.pod: proc.directory / "process.log" for proc in local.brokers}
    start = float(math.ceil(time.time()) + 1)
    end = start + seconds
    time.sleep(max(end - time.time(), 0))
    deadline = time.monotonic() + flush_timeout
    found = []
    for pod, path in logs.items():
        while True:
            lines = _stamped_lines(path)
            if (lines and lines[-1][0] >= end) or time.monotonic() > deadline:
                break
            time.sleep(1)
        window = [line for stamp, line in lines if start <= stamp < end]
        count, checks = health_check_lines(window, [line for _, line in lines])
        found.append(Noise(pod, count, checks, seconds, complete=bool(lines) and lines[-1][0] >= end))
    return found


def table(noise: list[Noise], replicas: int, target: float) -> str:
    rows = ["| broker | check lines in window | checks | lines/s | HAProxy replicas | lines/s per replica | target |",
            "|---|---|---|---|---|---|---|"]
    for item in noise:
        per_replica = item.per_second / max(replicas, 1)
        verdict = "PASS" if per_replica <= target else "MISS"
        short = "" if item.complete else " (log not flushed: may be short)"
        rows.append(f"| {item.broker} | {item.lines} in {item.seconds:g} s{short} | {item.checks} | "
                    f"{item.per_second:.2f} | {replicas} | {per_replica:.2f} | <= {target:g}: {verdict} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--seconds", type=int, default=20, help="idle window measured, whole seconds")
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
