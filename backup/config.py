"""The backup tool's settings, from the environment the component sets (and flags that override it).

Why one parser for every command: the sidecar, the initContainer and an operator's `list` must agree on the bucket,
the key and the data directory, and a typo must stop the container with one line naming the variable and what it
accepts (exit 2), not a traceback or a silently different key.
"""

import datetime as dt
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

DB_NAME = "mosquitto.db"
"""mosquitto's persistence_file default (the component does not change it)."""
STATE_DIR = ".mqtt-estate"
"""In the data volume: `restores` (applied request ids) and `recovery.json` (the init's last event)."""
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
"""A restore request id: stored one per line in <data>/.mqtt-estate/restores, so no spaces or newlines."""
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class ConfigError(ValueError):
    """One line: the variable, what it held, what is allowed."""


def _host_port(name: str, text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{name}={text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _bool(name: str, text: str) -> bool:
    if text.strip().lower() in TRUE:
        return True
    if text.strip().lower() in FALSE:
        return False
    raise ConfigError(f"{name}={text!r}: expected true or false")


def parse_time(text: str) -> Optional[dt.datetime]:
    """An RFC 3339 time with a zone (Z or +hh:mm), as UTC; None when `text` is not one."""
    try:
        # RFC 3339 allows a lower-case "t" and "z" (section 5.6, NOTE); Python 3.11's parser wants them upper-case
        value = dt.datetime.fromisoformat(text.strip().upper())
        if value.tzinfo is None or "T" not in text.upper():
            return None
        return value.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):  # year 1 with a positive offset, year 9999 with a negative one
        return None


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ordinal_of(pod: str) -> str:
    """The StatefulSet ordinal at the end of a pod name (`mqtt-broker-2` -> "2"), "" when there is none."""
    match = re.search(r"-(\d+)$", pod)
    return match.group(1) if match else ""


@dataclass(frozen=True)
class Target:
    """RESTORE_TARGET: `latest`, an S3 version id, or a time (the newest backup saved at or before it)."""

    kind: str                      # "latest" | "version" | "time"
    version: Optional[str] = None
    time: Optional[dt.datetime] = None

    @classmethod
    def parse(cls, text: str, name: str = "RESTORE_TARGET") -> "Target":
        text = text.strip()
        if text in ("", "latest"):
            return cls("latest")
        moment = parse_time(text)
        if moment is not None:
            return cls("time", time=moment)
        # S3 version ids are opaque URL-safe strings ("null" for an object written before versioning)
        looks_like_time = re.match(r"\d{4}-\d{2}-\d{2}", text) is not None  # a time without a zone, a typo
        if re.fullmatch(r"[A-Za-z0-9._+=/-]{1,1024}", text) and not looks_like_time:
            return cls("version", version=text)
        raise ConfigError(f"{name}={text!r}: expected latest, an S3 version id, or an RFC 3339 time such as "
                          f"2026-01-31T06:00:00Z")

    def __str__(self) -> str:
        return {"latest": "latest", "version": f"version {self.version}",
                "time": f"the newest saved at or before {rfc3339(self.time) if self.time else ''}"}[self.kind]


@dataclass(frozen=True)
class Config:
    bucket: str
    pod: str
    prefix: str = ""
    region: Optional[str] = None
    endpoint: Optional[str] = None
    path_style: bool = False
    data_dir: Path = Path("/mosquitto/data")
    pid_file: Path = Path("/mosquitto/run/mosquitto.pid")
    interval: float = 900.0
    metrics_listen: tuple[str, int] = ("0.0.0.0", 9235)
    broker: tuple[str, int] = ("127.0.0.1", 1880)
    lock_mode: Optional[str] = None
    lock_days: Optional[int] = None
    restore_on_empty: bool = True
    restore_request: Optional[str] = None
    restore_target: Target = field(default_factory=lambda: Target("latest"))
    save_timeout: float = 30.0
    """How long the agent waits for mosquitto to write the file after SIGUSR1 (the contract's 30 s)."""
    restore_wait: float = 60.0
    """How long the init keeps retrying an unreachable bucket before it gives up (see restore.py)."""
    termination_log: Path = Path("/dev/termination-log")

    @property
    def key(self) -> str:
        """`<prefix>/<pod>/mosquitto.db`: one object (with its versions) per broker pod."""
        return "/".join(part for part in (self.prefix, self.pod, DB_NAME) if part)

    @property
    def ordinal(self) -> str:
        return ordinal_of(self.pod)

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_NAME

    @property
    def state_dir(self) -> Path:
        return self.data_dir / STATE_DIR

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, **overrides) -> "Config":
        """Read the contract's variables (issue 15); raise ConfigError (one line) on the first bad one.
        `overrides` (already typed values, e.g. from command-line flags) win over the environment."""
        env = os.environ if env is None else env

        def get(name: str, default: Optional[str] = None) -> Optional[str]:
            value = env.get(name)
            return default if value is None or value.strip() == "" else value.strip()

        values: dict = {}
        bucket = get("BACKUP_BUCKET")
        if bucket is not None:
            # S3 bucket naming rules: 3-63 characters, lowercase letters, digits, dots and hyphens
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
                raise ConfigError(f"BACKUP_BUCKET={bucket!r}: expected an S3 bucket name (3-63 characters: "
                                  f"lowercase letters, digits, '.', '-')")
        values["bucket"] = bucket or ""
        values["prefix"] = (get("BACKUP_PREFIX", "") or "").strip("/")
        if re.search(r"[\x00-\x1f]", values["prefix"]):
            raise ConfigError("BACKUP_PREFIX: control characters are not allowed in an S3 key")
        values["region"] = get("BACKUP_REGION")
        endpoint = get("BACKUP_ENDPOINT")
        if endpoint is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint, re.IGNORECASE):
            raise ConfigError(f"BACKUP_ENDPOINT={endpoint!r}: expected an http:// or https:// URL")
        if endpoint is not None:  # a scheme is case-insensitive (RFC 3986 section 3.1): as the stack check reads it
            scheme, _, rest = endpoint.partition("://")
            endpoint = f"{scheme.lower()}://{rest}"
        values["endpoint"] = endpoint
        style = get("BACKUP_PATH_STYLE")
        # path-style addressing is what moto_server and MinIO answer without wildcard DNS
        values["path_style"] = _bool("BACKUP_PATH_STYLE", style) if style is not None else endpoint is not None
        pod = get("POD_NAME") or socket.gethostname()
        if "/" in pod or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", pod):
            raise ConfigError(f"POD_NAME={pod!r}: expected a Kubernetes pod name")
        values["pod"] = pod
        values["data_dir"] = Path(get("BACKUP_DATA_DIR", "/mosquitto/data"))
        values["pid_file"] = Path(get("BACKUP_PID_FILE", "/mosquitto/run/mosquitto.pid"))
        values["interval"] = _seconds(get, "BACKUP_INTERVAL_SECONDS", 900, 1, 86400)
        values["save_timeout"] = _seconds(get, "BACKUP_SAVE_TIMEOUT_SECONDS", 30, 1, 600)
        values["restore_wait"] = _seconds(get, "RESTORE_WAIT_SECONDS", 60, 0, 3600)
        values["metrics_listen"] = _host_port("BACKUP_METRICS_LISTEN", get("BACKUP_METRICS_LISTEN", "0.0.0.0:9235"))
        values["broker"] = _host_port("BACKUP_BROKER", get("BACKUP_BROKER", "127.0.0.1:1880"))
        mode, days = get("BACKUP_LOCK_MODE"), get("BACKUP_LOCK_DAYS")
        if mode is not None:
            if mode.upper() not in LOCK_MODES:
                raise ConfigError(f"BACKUP_LOCK_MODE={mode!r}: expected GOVERNANCE or COMPLIANCE (or unset)")
            if days is None:
                raise ConfigError("BACKUP_LOCK_DAYS: required with BACKUP_LOCK_MODE (whole days, 1-36500)")
            values["lock_mode"] = mode.upper()
        if days is not None:
            if not days.isdigit() or not 1 <= int(days) <= 36500:
                raise ConfigError(f"BACKUP_LOCK_DAYS={days!r}: expected whole days, 1-36500")
            if mode is None:
                raise ConfigError("BACKUP_LOCK_MODE: required with BACKUP_LOCK_DAYS (GOVERNANCE or COMPLIANCE)")
            values["lock_days"] = int(days)
        values["restore_on_empty"] = _bool("RESTORE_ON_EMPTY", get("RESTORE_ON_EMPTY", "true"))
        request = get("RESTORE_REQUEST")
        if request is not None and not REQUEST_ID.fullmatch(request):
            raise ConfigError(f"RESTORE_REQUEST={request!r}: expected an id of 1-128 letters, digits and . _ : @ + - "
                              f"(it is recorded once applied)")
        values["restore_request"] = request
        values["restore_target"] = Target.parse(get("RESTORE_TARGET", "latest"))
        values["termination_log"] = Path(get("BACKUP_TERMINATION_LOG", "/dev/termination-log"))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def require_bucket(self) -> None:
        if not self.bucket:
            raise ConfigError("BACKUP_BUCKET: not set (the S3 bucket holding the backups)")


def _seconds(get, name: str, default: float, low: float, high: float) -> float:
    text = get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also false for nan
        raise ConfigError(f"{name}={text!r}: expected seconds, {low:g}-{high:g}")
    return value
