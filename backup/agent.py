"""The sidecar: every BACKUP_INTERVAL_SECONDS make mosquitto save, and upload the file it saved.

Why SIGUSR1 and not a copy of whatever is on disk: mosquitto saves on its own only every autosave_interval (and at
exit); SIGUSR1 makes it save now (src/signals.c:59-67 sets a flag the main loop acts on, src/loop.c:226-231), so a
backup is as fresh as its schedule says. The save is atomic: mosquitto writes mosquitto.db.new, fflush + fsync,
then rename()s it over mosquitto.db (src/persist_write.c:325, 348-358, 408-409, 420 at v2.0.11). So the agent
waits for a new inode at that path and reads it through one descriptor: a save that lands while it reads renames
a different inode over the name and cannot change the bytes it holds (measured: a reader holding the old
descriptor read the old file unchanged after the next save).

Waiting for the new file: the agent keeps the current file open while it waits. Inode numbers are reused (measured:
the third save got the first save's inode number back), but not while a descriptor holds the old inode, so "the
inode at the path differs from the one I hold" is exact; the contract's (st_ino, st_mtime_ns) is compared too.

Safety: the pid comes from BACKUP_PID_FILE, and nothing is signalled unless /proc/<pid>/comm is `mosquitto`
(a stale pid file could name any process after a restart). The check and the signal go through a pidfd
(pidfd_open, Linux >= 5.3), so the process checked is the process signalled even if the pid is reused between.

Metrics (Prometheus text on BACKUP_METRICS_LISTEN; the names are what the MonitoringStack's alert rules use):
see METRICS below. One stderr line per failure; on success nothing beyond the startup line.
"""

import datetime as dt
import hashlib
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional, TextIO

from . import dbfile
from .config import Config, parse_time
from .restore import read_record
from .store import Store, StoreError, Version, holds_data, metadata_for

PREFIX = "mqtt-estate-backup agent:"
LAST_SUCCESS = "mosquitto_backup_last_success_timestamp_seconds"
LAST_ATTEMPT = "mosquitto_backup_last_attempt_timestamp_seconds"
FAILURES = "mosquitto_backup_failures_total"
UPLOADS = "mosquitto_backup_uploads_total"
SIZE = "mosquitto_backup_size_bytes"
INTERVAL = "mosquitto_backup_interval_seconds"
RECOVERY = "mosquitto_database_recovery_timestamp_seconds"
METRICS = {
    LAST_SUCCESS: ("gauge", "When the broker's database was last saved and is in the bucket (Unix time); absent "
                            "until the first success"),
    LAST_ATTEMPT: ("gauge", "When the agent last tried a backup (Unix time)"),
    FAILURES: ("counter", "Backup attempts that failed"),
    UPLOADS: ("counter", "Backups uploaded (identical databases are not uploaded again)"),
    SIZE: ("gauge", "Size of the database last backed up (bytes)"),
    INTERVAL: ("gauge", "The backup schedule (seconds between attempts)"),
    RECOVERY: ("gauge", "When the init container last recovered the database (Unix time), by outcome: restored "
                        "(damaged or missing, restored from a backup), empty (started empty), requested"),
}
RECOVERY_OUTCOMES = ("restored", "empty", "requested")
VERSION_TOPIC = "$SYS/broker/version"


class BackupFailed(RuntimeError):
    """One line: what went wrong in this cycle."""


class Stopped(Exception):
    """SIGTERM arrived while a cycle was waiting."""


@dataclass
class CycleResult:
    """`outcome`: uploaded | unchanged (identical to the bucket's current version: only freshness renewed) |
    held-back (an empty database not uploaded over the data a recovery could not restore; see restore.py)."""

    outcome: str
    sha256: str
    size: int
    summary: dbfile.DbSummary
    saved_at: dt.datetime
    version_id: Optional[str] = None
    checksum: Optional[str] = None
    metadata: Optional[dict] = None


class Metrics:
    """The agent's numbers; thread-safe (the HTTP thread renders while the loop updates)."""

    def __init__(self, config: Config):
        self.config = config
        self._lock = threading.Lock()
        self.last_success: Optional[float] = None
        self.last_attempt: Optional[float] = None
        self.failures = 0
        self.uploads = 0
        self.size: Optional[int] = None

    def attempt(self, now: float) -> None:
        with self._lock:
            self.last_attempt = now

    def success(self, now: float, size: int, uploaded: bool) -> None:
        with self._lock:
            self.last_success = now
            self.size = size
            self.uploads += 1 if uploaded else 0

    def failure(self) -> None:
        with self._lock:
            self.failures += 1

    def render(self) -> str:
        with self._lock:
            values = {LAST_SUCCESS: self.last_success, LAST_ATTEMPT: self.last_attempt, FAILURES: self.failures,
                      UPLOADS: self.uploads, SIZE: self.size, INTERVAL: self.config.interval}
        lines: list[str] = []
        for name, value in values.items():
            kind, text = METRICS[name]
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if value is not None:
                lines.append(f"{name} {float(value)!r}")
        kind, text = METRICS[RECOVERY]
        lines += [f"# HELP {RECOVERY} {text}", f"# TYPE {RECOVERY} {kind}"]
        record = read_record(self.config)
        moment = parse_time(str(record.get("at", ""))) if record else None
        if record and moment and record.get("outcome") in RECOVERY_OUTCOMES:
            lines.append(f'{RECOVERY}{{outcome="{record["outcome"]}"}} {float(moment.timestamp())!r}')
        return "\n".join(lines) + "\n"


def serve_metrics(metrics: Metrics, listen: tuple[str, int]) -> ThreadingHTTPServer:
    """GET /metrics on a daemon thread; `server.server_address` has the port (listen port 0 picks a free one)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):  # no line per scrape
            pass

    server = ThreadingHTTPServer(listen, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def broker_version(broker: tuple[str, int], timeout: float = 2.0) -> str:
    """The broker's version from `$SYS/broker/version` ("2.0.11"), read over the pod's loopback health listener
    within `timeout` seconds; "unknown" when it does not answer in time."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415

    got: list[str] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"mqtt-estate-backup-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311, clean_session=True)

    def on_connect(cl, _userdata, _flags, reason, _props):
        if not reason.is_failure:
            cl.subscribe(VERSION_TOPIC, qos=0)
        else:
            done.set()

    def on_message(_cl, _userdata, message):
        got.append(message.payload.decode("ascii", "replace").strip().removeprefix("mosquitto version "))
        done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect_timeout = timeout  # the whole answer within ~timeout, even from an address that drops packets
    try:
        client.connect(broker[0], broker[1], keepalive=10)
    except OSError:
        return "unknown"
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got and got[0] else "unknown"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for `sig` yet: the SigCgt mask of /proc/<pid>/status, "signals being ...
    caught" in hexadecimal (man-pages 5.13 man5/proc.5:2714-2717); SIGUSR1 and SIGHUP default to Term
    (man7/signal.7:385, 413). mosquitto installs its handlers only after it has loaded its database (eclipse/mosquitto
    v2.0.11 src/mosquitto.c: db__open at 505, signal__setup at 550; measured on 2.0.11: pid file at 7 ms, SIGUSR1
    caught from 634 ms with a 296 MB database), and until then SIGUSR1's default action kills it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def signal_mosquitto(pid_file: Path, sig: int = signal.SIGUSR1) -> int:
    """Send `sig` to the pid in `pid_file` if and only if that process is mosquitto; return the pid."""
    try:
        text = pid_file.read_text().strip()
    except OSError as exc:
        raise BackupFailed(f"cannot read the pid file {pid_file}: {exc.strerror or exc}") from exc
    if not text.isdigit() or int(text) <= 0:
        raise BackupFailed(f"the pid file {pid_file} holds {text[:40]!r}, not a pid")
    pid = int(text)
    pidfd: Optional[int] = None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError as exc:
        raise BackupFailed(f"pid {pid} from {pid_file} is not running (a stale pid file)") from exc
    except (AttributeError, OSError):
        pidfd = None  # no pidfd (old kernel): check then kill, a window of microseconds
    try:
        comm = _comm(pid)
        if comm != "mosquitto":
            raise BackupFailed(f"pid {pid} from {pid_file} is {comm or 'not running'!r}, not mosquitto: not signalled")
        if not _catches(pid, sig):
            raise BackupFailed(f"mosquitto (pid {pid}) is still starting (it does not handle {signal.Signals(sig).name} "
                               "yet, and the signal would kill it): not signalled; the next cycle tries again")
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError as exc:
            raise BackupFailed(f"mosquitto (pid {pid}) exited before it could be signalled") from exc
        except PermissionError as exc:
            raise BackupFailed(f"not allowed to signal mosquitto (pid {pid}): the sidecar must run as the broker's "
                               f"user, in the pod's shared process namespace") from exc
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return pid


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_dev, st.st_ino, st.st_mtime_ns


def save_and_read(config: Config, stop: Optional[threading.Event] = None) -> bytes:
    """SIGUSR1 to mosquitto, wait (<= save_timeout) for the file it renames into place, return its bytes."""
    db = config.db_path
    stop = stop or threading.Event()
    try:
        held: Optional[int] = os.open(db, os.O_RDONLY)
    except FileNotFoundError:
        held = None
    except OSError as exc:
        raise BackupFailed(f"cannot open {db}: {exc.strerror or exc}") from exc
    try:
        before = _identity(os.fstat(held)) if held is not None else None
        pid = signal_mosquitto(config.pid_file)
        deadline = time.monotonic() + config.save_timeout
        while True:
            try:
                now = _identity(os.stat(db))
            except FileNotFoundError:
                now = None
            if now is not None and now != before:
                break
            if time.monotonic() >= deadline:
                partial = db.with_name(db.name + ".new")
                if partial.exists():  # mosquitto began the save and gave up: its log says why (ENOSPC, EIO)
                    raise BackupFailed(f"mosquitto (pid {pid}) did not finish saving {db} within "
                                       f"{config.save_timeout:g} s of SIGUSR1: {partial.name} was left at "
                                       f"{partial.stat().st_size} bytes (is the data volume full?)")
                raise BackupFailed(f"mosquitto (pid {pid}) did not write {db} within {config.save_timeout:g} s of "
                                   f"SIGUSR1 (is persistence on, and persistence_location {config.data_dir}?)")
            if stop.wait(0.02):
                raise Stopped()
    finally:
        if held is not None:
            os.close(held)
    try:
        with open(db, "rb") as handle:  # one descriptor: the inode it opened is the file it reads
            return handle.read()
    except OSError as exc:
        raise BackupFailed(f"cannot read {db}: {exc.strerror or exc}") from exc


class Agent:
    """The loop's state: the metrics, the broker version, whether a cycle is inside its S3 calls."""

    def __init__(self, config: Config, store: Optional[Store] = None, err: TextIO = sys.stderr,
                 stop: Optional[threading.Event] = None, version: Optional[Callable[[], str]] = None):
        self.config = config
        self.store = store or Store(config)
        self.err = err
        self.stop = stop or threading.Event()
        self.in_s3 = False
        """Inside the S3 calls of a cycle (a stop signal then exits instead of waiting for botocore's timeouts, so
        a pod stops within its grace period)."""
        self.now = threading.Event()
        """Set to cycle at once (SIGUSR1, or a stop): the loop waits on it rather than on `stop`."""
        self.metrics = Metrics(config)
        self._version_source = version or (lambda: broker_version(config.broker))
        self._version: Optional[str] = None
        self._held_back_said = False

    def broker_version(self) -> str:
        if self._version in (None, "unknown"):
            self._version = self._version_source()
        return self._version

    def say(self, text: str) -> None:
        print(f"{PREFIX} {text}", file=self.err, flush=True)

    def backup_once(self) -> CycleResult:
        """One cycle; raises BackupFailed (one line) or Stopped. Metrics are the caller's (`cycle`)."""
        data = save_and_read(self.config, self.stop)
        saved_at = dt.datetime.now(dt.timezone.utc)
        try:
            summary = dbfile.inspect(data)
        except dbfile.CorruptDatabase as exc:
            raise BackupFailed(f"the {self.config.db_path.name} mosquitto just wrote fails validation ({exc}): "
                               f"not uploaded") from exc
        sha = hashlib.sha256(data).hexdigest()
        result = CycleResult("unchanged", sha, len(data), summary, saved_at)
        self.in_s3 = True  # a stop now ends the process at once: an interrupted PutObject stores nothing
        try:
            # asked every cycle, even when the database is what we uploaded last: freshness means "this is in the
            # bucket now", and a version deleted since (a delete marker on top) must be uploaded again
            current = self.store.current()
            if current is not None and (current.metadata or {}).get("sha256") == sha:  # e.g. what the init restored
                result.version_id = current.version_id
                return result
            if summary.empty and current is not None:
                if holds_data(current.metadata or {}) is False:
                    return result            # empty then, empty now: nothing to lose, no new version
                if self._held_back(current):
                    result.outcome = "held-back"
                    return result
            metadata = metadata_for(self.config, data, summary, self.broker_version(), saved_at)
            uploaded = self.store.put(data, metadata)
        except StoreError as exc:
            raise BackupFailed(str(exc)) from exc
        finally:
            self.in_s3 = False
        result.outcome, result.version_id, result.checksum, result.metadata = (
            "uploaded", uploaded.version_id, uploaded.checksum, metadata)
        return result

    def _held_back(self, current: Version) -> bool:
        """An empty database is not uploaded over a newest version that holds data while the init's last record
        says it started empty without being able to read the bucket, after that version was saved (restore.py's
        docstring says why)."""
        record = read_record(self.config) or {}
        started = parse_time(str(record.get("at", "")))
        if record.get("outcome") != "empty" or record.get("store_reachable") is not False or started is None:
            return False
        if not holds_data(current.metadata or {}) or current.saved_at > started:
            return False
        if not self._held_back_said:
            self._held_back_said = True
            self.say(f"not uploading an empty database over {self.config.location} version {current.version_id} "
                     f"(saved {current.metadata.get('saved-at', '?')}, {current.metadata.get('contents', 'data')}): "
                     f"the broker started empty at {record.get('at')} because the bucket was unreachable; uploads "
                     f"resume when the broker holds data")
        return True

    def cycle(self) -> Optional[CycleResult]:
        """One cycle with its metrics and its stderr line on failure; None when it failed or was stopped."""
        self.metrics.attempt(time.time())
        try:
            result = self.backup_once()
        except Stopped:
            return None
        except BackupFailed as exc:
            self.metrics.failure()
            self.say(f"backup failed: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - the loop must survive anything one cycle meets
            self.metrics.failure()
            self.say(f"backup failed: {type(exc).__name__}: {' '.join(str(exc).split())}")
            return None
        self.metrics.success(time.time(), result.size, result.outcome == "uploaded")
        return result

    def _stop_signal(self, *_args) -> None:
        self.stop.set()
        self.now.set()
        if self.in_s3:  # the handler runs in the main thread, which is blocked in a socket read: leave it
            raise SystemExit(0)

    def run(self, first_delay: Optional[float] = None) -> int:
        """Cycle until `stop` is set (SIGTERM/SIGINT when run from the main thread). The first cycle comes after
        `first_delay` (default: the interval, at most 10 s: mosquitto starts beside us and writes its pid file)."""
        server = serve_metrics(self.metrics, self.config.metrics_listen)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._stop_signal)
            # SIGUSR1 at the agent's pid: a backup now, then the schedule (in a pod sharing its process namespace
            # pid 1 is the pause process, so operators run `agent --once` instead: README, "Backups")
            signal.signal(signal.SIGUSR1, lambda *_: self.now.set())
        host, port = server.server_address[:2]
        self.say(f"every {self.config.interval:g} s: save {self.config.db_path} (pid file {self.config.pid_file}) "
                 f"to {self.config.location}; metrics on http://{host}:{port}/metrics")
        delay = min(self.config.interval, 10.0) if first_delay is None else first_delay
        try:
            while True:
                due = time.monotonic() + delay
                while not (self.stop.is_set() or self.now.is_set()) and time.monotonic() < due:
                    self.now.wait(min(1.0, max(0.0, due - time.monotonic())))  # a `stop` set elsewhere is seen too
                if self.stop.is_set():
                    break
                self.now.clear()
                began = time.monotonic()
                self.cycle()
                delay = max(0.0, self.config.interval - (time.monotonic() - began))
        finally:
            server.shutdown()
            server.server_close()
        return 0


def backup_once(config: Config, agent: Optional[Agent] = None) -> Optional[CycleResult]:
    """One backup cycle, as the sidecar runs it (metrics and the failure line included): the result, or None when
    it failed (the line is on stderr and in agent.metrics). Pass the same `agent` to keep state between cycles."""
    return (agent or Agent(config)).cycle()


def run(config: Config, stop: Optional[threading.Event] = None) -> int:
    return Agent(config, stop=stop).run()
