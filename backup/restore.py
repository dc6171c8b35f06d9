"""The initContainer: decide, before mosquitto starts, which mosquitto.db it will load.

Why an init container: mosquitto 2.0.11 exits 1 at start on a database cut inside a chunk or on garbage (measured:
tests/test_backup_tool.py, test_what_mosquitto_does_at_start_with; src/persist_read.c:543-547 -> src/database.c:173
-> src/mosquitto.c:505-508), and Kubernetes restarts it forever. Checking and replacing the file must happen while
nothing holds it.

Three paths, in this order (issue 15 contract):
1. A restore request (RESTORE_REQUEST with RESTORE_TARGET: `<id>@<target>` not yet in
   <data>/.mqtt-estate/restores, nor remembered in the bucket under <prefix>/<pod>/restores/<id>; a target changed
   under the same id is a new request): restore RESTORE_TARGET over whatever is there. The current file is kept as
   mosquitto.db.replaced-<UTC stamp>. If the target cannot be restored exactly as asked (no such version, checksum
   or structure mismatch, the bucket unreachable while the volume holds a database), the init exits 2 and the
   broker does not start: the operator asked for specific data, and starting with other data would hide that the
   request failed. The request is remembered in the bucket before the file is replaced and in the volume after,
   so a failed request is retried on every start until it succeeds or is withdrawn. It does not apply (requested()
   says when) to a pod that has no backup from then (a scale-up) or that had it applied before its volume was lost.
2. No mosquitto.db and RESTORE_ON_EMPTY=true (a lost volume, a pod rescheduled onto a new disk): restore the
   newest version that verifies, naming every version skipped on the way. No backup at all: start empty (the
   first start of a broker; one info line).
3. A mosquitto.db: validate it. Good: leave it alone and never contact S3 (a broker whose own database is good
   starts even when the bucket is unreachable). Damaged: move it aside to mosquitto.db.corrupt-<UTC stamp> and
   restore the newest good backup; none: start empty, loudly.

When the bucket is unreachable on the automatic paths (2 and 3), the init retries for RESTORE_WAIT_SECONDS (60 by
default: DNS, the network or a workload-identity token that is not there yet at pod start) and then starts the
broker EMPTY rather than failing. The choice, for a plant: the broker is the plant's local nervous system and
must run while the site's uplink is down (a power cut takes down the nodes and the router together, so "volume
lost" and "S3 unreachable" arrive together more often than not). Failing the init would keep every device
offline until the cloud is back; starting empty costs the retained values (devices republish them) and the
queued messages of offline devices, which stay in the bucket. What must not happen next is the agent uploading
that empty database as the newest version, burying the good one under "latest" (and, with noncurrent-version
expiry, eventually losing it). So the init records the event with `store_reachable: false`, and the agent
(agent.py) will not upload an empty database while the bucket's newest version predates that event and holds
data; as soon as the broker holds anything, backups resume and the older version stays restorable by version id
or time within the retention. The event is LOUD either way: an ERROR line on stderr and in /dev/termination-log,
and recovery.json, which the agent exports as mosquitto_database_recovery_timestamp_seconds{outcome="empty"}.

Files: everything written is mode 0600, written to a temporary file in the same directory, fsynced and renamed
into place (then the directory is fsynced), so a crash leaves either the old or the new file. No database is
ever deleted: replaced and damaged ones are renamed with a UTC stamp and stay in the volume until an operator
removes them.
"""

import datetime as dt
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TextIO

from . import dbfile
from .config import DB_NAME, Config, rfc3339
from .store import Store, StoreError, Unreachable, VerificationFailed, VersionNotFound

EXIT_STARTED = 0
"""The broker may start: database restored, started empty, or left untouched."""
EXIT_FAILED = 1
"""The data volume cannot be written (nothing the tool can fix)."""
EXIT_REQUEST_FAILED = 2
"""A requested restore could not be done; the broker does not start until it can (or the request is withdrawn)."""
RESTORES_FILE = "restores"
RECORD_FILE = "recovery.json"
TEMP_PREFIX = ".mosquitto.db.restore-"
PREFIX = "mqtt-estate-backup init:"


@dataclass
class Outcome:
    """What the init did. `action`: untouched | restored | requested | empty | fresh (no database, nothing to
    restore: a first start) ; `exit_code` as above; `message` the one line printed."""

    action: str
    exit_code: int
    message: str
    version: Optional[str] = None
    moved_to: Optional[Path] = None
    record: Optional[dict] = None
    skipped: list[str] = field(default_factory=list)


def utc_stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(directory: Path, data: bytes, prefix: str = TEMP_PREFIX) -> Path:
    """A new 0600 file in `directory` holding `data`, on disk (fsynced) before anyone renames it."""
    fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    os.close(fd)
    return Path(name)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file in the same directory, fsync, rename, fsync the directory."""
    temp = write_temp(path.parent, data, prefix=f".{path.name}.")
    os.replace(temp, path)
    fsync_dir(path.parent)


def aside_name(db: Path, why: str, now: dt.datetime) -> Path:
    """mosquitto.db.<why>-<UTC stamp>, never an existing name."""
    base = db.with_name(f"{db.name}.{why}-{utc_stamp(now)}")
    candidate, n = base, 0
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}.{n}")
    return candidate


class Init:
    """One run of the init container (see the module docstring). `store` and `sleep` are for tests."""

    def __init__(self, config: Config, store: Optional[Store] = None, err: TextIO = sys.stderr,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._store = store
        self.err = err
        self.now = now
        self.sleep = sleep
        self.db = config.db_path

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.config)
        return self._store

    # --- output --------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"{PREFIX} {text}", file=self.err, flush=True)

    def loud(self, text: str) -> None:
        """An ERROR line on stderr and in the termination log (shown by `kubectl describe pod`)."""
        line = f"{PREFIX} ERROR: {text}"
        print(line, file=self.err, flush=True)
        try:
            with open(self.config.termination_log, "w") as log:
                log.write(line + "\n")
        except OSError:
            pass

    # --- state in the volume -------------------------------------------------------------------------------
    def request_token(self) -> str:
        """What makes a request: its id and its target (`<id>@<target>`), so a target changed under the same id is
        a new request, not silently ignored."""
        target = self.config.restore_target
        shown = {"latest": "latest", "version": target.version, "time": rfc3339(target.time) if target.time else ""}
        return f"{self.config.restore_request}@{shown[target.kind]}"

    def applied_requests(self) -> set[str]:
        try:
            return set((self.config.state_dir / RESTORES_FILE).read_text().split())
        except FileNotFoundError:
            return set()

    def _state_dir(self) -> Path:
        self.config.state_dir.mkdir(mode=0o700, exist_ok=True)
        return self.config.state_dir

    def mark_applied(self, request: str) -> None:
        path = self._state_dir() / RESTORES_FILE
        lines = path.read_text() if path.exists() else ""
        write_atomic(path, (lines + request + "\n").encode())

    def write_record(self, outcome: str, reason: str, version: Optional[str] = None,
                     moved_to: Optional[Path] = None, **extra) -> dict:
        record = {"outcome": outcome, "at": rfc3339(self.now()), "reason": reason, "version": version,
                  "moved_to": str(moved_to) if moved_to else None, "location": self.config.location, **extra}
        write_atomic(self._state_dir() / RECORD_FILE, (json.dumps(record, indent=1) + "\n").encode())
        return record

    def clean_temp_files(self) -> None:
        """Partial downloads of an init that was killed: ours (TEMP_PREFIX), never a database mosquitto reads."""
        for stale in self.config.data_dir.glob(f"{TEMP_PREFIX}*"):
            stale.unlink(missing_ok=True)

    def move_aside(self, why: str) -> Path:
        target = aside_name(self.db, why, self.now())
        os.rename(self.db, target)
        fsync_dir(self.db.parent)
        return target

    def install(self, data: bytes, keep_as: Optional[Path] = None) -> None:
        """Put `data` in place as mosquitto.db. `keep_as`: first keep the current file under that name (a hard
        link, so there is no moment without a mosquitto.db; a rename where links are not allowed)."""
        temp = write_temp(self.config.data_dir, data)
        try:
            if keep_as is not None:
                try:
                    os.link(self.db, keep_as)
                except OSError:
                    os.rename(self.db, keep_as)
            os.replace(temp, self.db)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        fsync_dir(self.config.data_dir)

    # --- S3, with the wait for an unreachable bucket -------------------------------------------------------
    def _retrying(self, what: Callable):
        deadline = time.monotonic() + self.config.restore_wait
        delay = 1.0
        while True:
            try:
                return what()
            except Unreachable as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                self.say(f"{exc}; retrying for {left:.0f} s more")
                self.sleep(min(delay, left))
                delay = min(delay * 2, 15.0)

    # --- the three paths -----------------------------------------------------------------------------------
    def run(self) -> Outcome:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.clean_temp_files()
        request = self.config.restore_request
        if request and self.request_token() not in self.applied_requests():
            outcome = self.requested(request)
            if outcome is not None:
                return outcome
        return self.unrequested()

    def unrequested(self) -> Outcome:
        """Paths 2 and 3: what the volume holds decides."""
        if not self.db.exists():
            if not self.config.restore_on_empty:
                message = f"no {DB_NAME} in {self.config.data_dir}; RESTORE_ON_EMPTY is false: mosquitto starts empty"
                self.say(message)
                return Outcome("fresh", EXIT_STARTED, message)
            return self.automatic("the data volume holds no " + DB_NAME)
        try:
            summary = dbfile.inspect_file(self.db)
        except (dbfile.CorruptDatabase, OSError) as exc:
            moved = self.move_aside("corrupt")
            return self.automatic(f"{DB_NAME} was damaged ({' '.join(str(exc).split())}); kept as {moved.name}",
                                  moved_to=moved)
        message = f"{DB_NAME} is valid ({_describe(summary)}): left as it is"
        self.say(message)
        return Outcome("untouched", EXIT_STARTED, message)

    def requested(self, request: str) -> Optional[Outcome]:
        """Path 1, or None when the request does not apply to this pod's volume (paths 2 and 3 then decide):
        - it was applied to this pod before (remembered beside its backups; the volume is new or was lost since):
          a lost volume gets the newest backup, not the old target again;
        - this pod has no backup at all, or none saved at or before a time target (a pod added since, by a
          scale-up): it starts as it is instead of stopping the rollout for a backup that cannot exist;
        - the bucket cannot be read and the volume holds no database: whether the request is this volume's cannot
          be known, and the plant's broker must run while its uplink is down (the automatic paths wait, then
          start empty, loudly). With a database in the volume the request fails instead: the operator asked for
          other data than what is there."""
        target = self.config.restore_target
        location = self.config.location
        token = self.request_token()

        def fail(what: str) -> Outcome:
            message = (f"restore request {request!r} ({target}) failed: {what}; {DB_NAME} was not touched and "
                       f"mosquitto does not start until the request succeeds or RESTORE_REQUEST is withdrawn")
            self.loud(message)
            return Outcome("failed", EXIT_REQUEST_FAILED, message)

        def not_this_volume(why: str) -> None:
            self.mark_applied(token)
            self.say(f"restore request {request!r} ({target}): {why}")
            return None

        try:
            if self._retrying(lambda: self.store.request_applied(request)) == token:
                return not_this_volume(f"applied to this pod before ({self.store.request_key(request)}); this "
                                       "volume does not know it (new or lost since), so it is not applied again")
            versions = self._retrying(self.store.versions)
            if not versions:
                self._retrying(lambda: self.store.remember_request(request, {"token": token, "outcome": "no backup"}))
                return not_this_volume(f"{location} holds no backup of this pod (a pod added since the backups "
                                       "began): nothing to restore, and the request will not apply to it later")
            try:
                version = self._retrying(lambda: self.store.find(target))
            except VersionNotFound:
                if target.kind != "time" or versions[-1].last_modified <= target.time:
                    raise
                self._retrying(lambda: self.store.remember_request(request, {"token": token, "outcome": "too new"}))
                return not_this_volume(f"this pod's backups begin after that time (oldest "
                                       f"{rfc3339(versions[-1].last_modified)}: a pod added since): left as it is")
            fetched = self._retrying(lambda: self.store.fetch(version))
            # remembered before the file is replaced: a restore the bucket forgot would be applied again after a
            # later volume loss (if the install then fails, the volume is damaged and path 3 takes over)
            self._retrying(lambda: self.store.remember_request(request, {
                "token": token, "outcome": "restored", "version": fetched.version.version_id,
                "at": rfc3339(self.now())}))
        except Unreachable as exc:
            if not self.db.exists():
                self.loud(f"restore request {request!r} ({target}) cannot be checked ({exc}); the volume holds no "
                          f"{DB_NAME}, so the automatic paths decide (the request stays pending)")
                return None
            return fail(str(exc))
        except StoreError as exc:  # each names s3://<bucket>/<key>, the version when there is one, and the failure
            return fail(str(exc))
        keep = aside_name(self.db, "replaced", self.now()) if self.db.exists() else None
        self.install(fetched.data, keep_as=keep)
        self.mark_applied(token)
        vid = fetched.version.version_id
        record = self.write_record("requested", f"restore request {request} ({target})", vid, keep, request=request,
                                   saved_at=rfc3339(fetched.version.saved_at), store_reachable=True)
        message = (f"restored {location} version {vid} saved at {rfc3339(fetched.version.saved_at)} as requested "
                   f"({request}): {_describe(fetched.summary)}"
                   + (f"; the previous database is kept as {keep.name}" if keep else ""))
        self.say(message)
        return Outcome("requested", EXIT_STARTED, message, vid, keep, record)

    def automatic(self, reason: str, moved_to: Optional[Path] = None) -> Outcome:
        location = self.config.location
        skipped: list[str] = []
        try:
            versions = self._retrying(self.store.versions)
            for version in versions:
                try:
                    fetched = self._retrying(lambda v=version: self.store.fetch(v))
                except VerificationFailed as exc:
                    skipped.append(version.version_id)
                    self.say(f"skipping a backup that does not verify: {exc}")
                    continue
                self.install(fetched.data)
                vid = version.version_id
                saved = rfc3339(fetched.version.saved_at)
                record = self.write_record("restored", f"{reason}; restored version {vid} saved at {saved}", vid,
                                           moved_to, saved_at=saved, skipped=skipped, store_reachable=True)
                message = (f"{reason}: restored {location} version {vid} saved at {saved} "
                           f"({_describe(fetched.summary)}); what changed after that time is lost"
                           + (f"; {len(skipped)} newer version(s) skipped" if skipped else ""))
                self.say(("WARNING: " if moved_to else "") + message)
                return Outcome("restored", EXIT_STARTED, message, vid, moved_to, record, skipped)
        except (Unreachable, VersionNotFound) as exc:
            message = (f"{reason}; the backups cannot be read ({exc}): mosquitto starts EMPTY. The backups stay in "
                       f"the bucket; restore one with RESTORE_REQUEST/RESTORE_TARGET once it is reachable")
            record = self.write_record("empty", message, None, moved_to, store_reachable=False)
            self.loud(message)
            return Outcome("empty", EXIT_STARTED, message, None, moved_to, record, skipped)
        if not versions and moved_to is None:
            message = f"{reason} and {location} holds no backup of this pod: mosquitto starts empty (a first start)"
            self.say(message)
            return Outcome("fresh", EXIT_STARTED, message)
        what = f"none of the {len(versions)} backups in {location} verifies" if versions else \
            f"{location} holds no backup of this pod"
        message = f"{reason}; {what}: mosquitto starts EMPTY"
        record = self.write_record("empty", message, None, moved_to, skipped=skipped, store_reachable=True)
        self.loud(message)
        return Outcome("empty", EXIT_STARTED, message, None, moved_to, record, skipped)


def _describe(summary: dbfile.DbSummary) -> str:
    return (f"{summary.retained} retained, {summary.messages} stored messages, {summary.clients} sessions, "
            f"{summary.client_messages} queued or in flight, {summary.subscriptions} subscriptions")


def run(config: Config, store: Optional[Store] = None, err: TextIO = sys.stderr, **kwargs) -> Outcome:
    """One init run; the exit code is `Outcome.exit_code`. A volume that cannot be written ends in EXIT_FAILED
    with one line (never a traceback)."""
    init = Init(config, store, err, **kwargs)
    try:
        return init.run()
    except OSError as exc:
        message = f"the data volume {config.data_dir} cannot be used: {exc}"
        init.loud(message)
        return Outcome("failed", EXIT_FAILED, message)


def read_record(config: Config) -> Optional[dict]:
    """The init's last event (recovery.json), or None."""
    try:
        record = json.loads((config.state_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
