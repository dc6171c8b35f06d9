"""Run component code under Pulumi mocks (real TLS/random values) and look at what was registered; run
`python -m estate up --local` in the background."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from mqtt_estate.estate.engine import Registry, run_function
from mqtt_estate.estate.seed import Seed

TEST_SEED = Seed(b"\x01" * 32, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def run_components(body: Callable[[], None], stack: str = "test", config: dict | None = None) -> Registry:
    return run_function(body, stack, config or {}, [], TEST_SEED)


def by_name(registry: Registry, name: str):
    return next(r for r in registry.resources if r.name == name)


def alive(pid: int) -> bool:
    """Whether a broker or frontend the engine started still runs."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return (b"mosquitto" in cmdline or b"haproxy" in cmdline) and "State:\tZ" not in status


@contextlib.contextmanager
def running_up(command: list[str], cwd: Path, env: dict, connection: Path, stderr: Optional[Path] = None,
               preexec_fn: Optional[Callable[[], None]] = None) -> Iterator[tuple[subprocess.Popen, queue.Queue, list]]:
    """Start `up --local` (`command`) in the background and wait until it says the estate is up; yield the process,
    the rest of its output (a queue of lines, None at the end) and the pids of the brokers and frontends it started
    (from `connection`, the connection file it writes). On the way out the process and every pid are stopped,
    whatever happened. `stderr`: a file for its standard error (default: mixed into the output)."""
    errors = open(stderr, "w") if stderr else None
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=errors or subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)], daemon=True).start()
    pids: list[int] = []
    try:
        seen = []
        while True:  # a hang guard, not a timing assertion
            line = lines.get(timeout=240)
            if line is None:
                pytest.fail(f"up exited early ({proc.wait()}): {''.join(seen)}{stderr.read_text() if stderr else ''}")
            seen.append(line)
            if line.startswith("estate is up"):
                break
        started = json.loads(connection.read_text())
        pids += [p["pid"] for p in started["brokers"] + started["frontends"] + started.get("bridges", [])]
        pids += [c["pid"] for c in (started.get("cloud") or {}).values() if c.get("pid")]
        yield proc, lines, pids
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)  # each runs in its own session, as its group's leader
        if errors:
            errors.close()
