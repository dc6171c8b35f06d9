"""The connection file: how `check` and `health` reach an estate, local or deployed.

`estate up --local` writes one (.estate/local/connection.json, LocalEstate.write_connection_file); for a deployed
estate `estate connection --port-forward` writes one for `kubectl port-forward` (estate/port_forward.py), or you
write it by hand. CONNECTION_SCHEMA is its JSON Schema (kept in schema/connection.schema.json); load_connection
checks a file against it and against the disk (the files it names exist) and returns it complete: relative paths
resolved against the file's own directory, defaults filled in, so the smoke suite and the health checks read every
key directly. A bad file is one line, `<file>: <key path>: <what is wrong> (<what is allowed>)`, raised as a
StackConfigError (the CLI's exit 2). Keys the schema does not name are ignored, so a file written by a newer
version still reads.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from ..stacks.errors import ConfigIssue, StackConfigError, key_path, safe_text

MAX_BYTES = 8 * 1024 * 1024
"""Largest connection (or credentials) file read: one for an estate of 10,000 certificate devices is about 2 MiB."""

SCHEMES = {"mqtt": (False, "tcp"), "mqtts": (True, "tcp"), "ws": (False, "websockets"), "wss": (True, "websockets")}
"""URL scheme -> (tls, transport)."""

_PATH = "a path; relative paths are resolved against this file's directory"

LISTENER_SCHEMA: dict = {
    "type": "object",
    "description": "a listener a client connects to",
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "the listener's name, as reports show it"},
        "url": {"type": "string", "pattern": "^(mqtt|mqtts|ws|wss)://[^/:]+:[0-9]+/?$",
                "description": "mqtt://, mqtts://, ws:// or wss://HOST:PORT; sets host, port, tls and transport "
                               "where they are not given"},
        "host": {"type": "string", "minLength": 1, "description": "the address dialled, e.g. 127.0.0.1 for "
                                                                  "kubectl port-forward"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "the TCP port dialled"},
        "server_name": {"type": "string", "minLength": 1,
                        "description": "the name the broker's certificate is verified against (SNI, host name "
                                       "check) while host is dialled: the Service's or pod's DNS name; default host"},
        "tls": {"type": "boolean", "description": "TLS verified against ca_file (default: from url, else false)"},
        "mtls": {"type": "boolean", "description": "clients must present a certificate (default false)"},
        "transport": {"enum": ["tcp", "websockets"], "description": "default: from url, else tcp"},
        "allow_anonymous": {"type": "boolean",
                            "description": "the listener accepts anonymous clients (default false)"},
        "source_ranges": {"type": "array", "items": {"type": "string"},
                          "description": "CIDRs the listener admits (empty: any); host must then be an IP address"},
        "pod_port": {"type": "integer", "minimum": 1, "maximum": 65535,
                     "description": "the port in the pod (informative)"},
    },
    "required": ["name"],
    "anyOf": [{"required": ["url"]}, {"required": ["host", "port"]}],
}

_POD_PROPERTIES: dict = {
    "pod": {"type": "string", "minLength": 1, "description": "the pod's name, as reports show it"},
    "listeners": {"type": "array", "items": LISTENER_SCHEMA,
                  "description": "this pod's own listeners (health dials them: reachable, TLS, admin login)"},
    "health_port": {"type": "integer", "minimum": 0, "maximum": 65535,
                    "description": "the pod's loopback health listener (1880 in the pod; kubectl port-forward "
                                   "reaches it): $SYS read without credentials; 0: none"},
    "health_host": {"type": "string", "minLength": 1, "description": "where health_port is dialled "
                                                                     "(default 127.0.0.1)"},
    "pid": {"type": ["integer", "null"], "description": "the local process (informative)"},
    "log": {"type": "string", "description": "the local process's log (informative)"},
}

POD_SCHEMA: dict = {"type": "object", "properties": _POD_PROPERTIES, "required": ["pod"]}

FRONTEND_SCHEMA: dict = {
    "type": "object",
    "properties": {
        **_POD_PROPERTIES,
        "runtime_socket": {"type": "string", "minLength": 1,
                           "description": "HAProxy's runtime API socket (a local estate); " + _PATH},
        "stats_url": {"type": "string", "pattern": "^https?://",
                      "description": "HAProxy's stats page, http://HOST:PORT/stats (a deployed estate: "
                                     "kubectl port-forward pod/<frontend pod> LOCAL:8404)"},
        "stats_username": {"type": "string", "minLength": 1, "description": "default stats"},
        "stats_password_file": {"type": "string", "minLength": 1,
                                "description": "a file holding the stats password (the frontend's <name>-stats "
                                               "Secret, key password); " + _PATH},
    },
    "required": ["pod"],
}

CONNECTION_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mqtt-estate connection file",
    "description": "How `estate check` and `estate health` reach an estate: written by `estate up --local` and "
                   "`estate connection --port-forward`, or by hand. Keys not named here are ignored.",
    "type": "object",
    "properties": {
        "stack": {"type": "string", "description": "the stack's name (informative)"},
        "ca_file": {"type": "string", "minLength": 1,
                    "description": "the estate CA certificate, PEM (pulumi stack output caCertPem); " + _PATH},
        "credentials_file": {"type": "string", "minLength": 1,
                             "description": "a JSON object of user name -> password (pulumi stack output "
                                            "credentials --show-secrets); " + _PATH},
        "users": {"type": "array", "description": "the estate's users (pulumi stack output users)",
                  "items": {"type": "object", "required": ["name", "role"],
                            "properties": {"name": {"type": "string", "minLength": 1},
                                           "role": {"type": "string", "minLength": 1},
                                           "auth": {"type": "string"}}}},
        "listeners": {"type": "array", "items": LISTENER_SCHEMA,
                      "description": "the listeners clients use (the frontend's, else a broker's): the smoke suite "
                                     "checks each"},
        "client_certificates": {
            "type": "object", "description": "user name -> its client certificate, for mTLS listeners",
            "additionalProperties": {"type": "object", "required": ["cert", "key"],
                                     "properties": {"cert": {"type": "string", "minLength": 1,
                                                             "description": "PEM certificate; " + _PATH},
                                                    "key": {"type": "string", "minLength": 1,
                                                            "description": "PEM key; " + _PATH}}}},
        "demo_client": {"type": ["object", "null"], "description": "informative"},
        "brokers": {"type": "array", "items": POD_SCHEMA, "description": "every broker pod, for health"},
        "bridges": {"type": "array", "items": POD_SCHEMA, "description": "every cloud-bridge pod, for health"},
        "frontends": {"type": "array", "items": FRONTEND_SCHEMA, "description": "every HAProxy pod, for health"},
        "exporters": {"type": "array", "description": "informative"},
        "backups": {"type": "array", "description": "the backup sidecars' metrics and S3 endpoint (informative)"},
        "cloud": {"type": "object", "description": "the local estate's cloud stand-ins (estate up --local only)"},
        "entry": {"type": ["string", "null"], "description": "the pod whose listeners are `listeners` (informative)"},
    },
    "required": ["ca_file", "credentials_file", "users", "listeners"],
}


def schema_text() -> str:
    """The schema as kept in schema/connection.schema.json: sorted keys, indent 2, a final newline."""
    return json.dumps(CONNECTION_SCHEMA, indent=2, sort_keys=True) + "\n"


class ConnectionFileError(StackConfigError):
    """A connection file that cannot be used: one line naming the file, the key path and what is allowed."""

    def __init__(self, source: str, path: Optional[list], message: str):
        shown = f"{key_path(path)}: {message}" if path else message
        super().__init__(source, [ConfigIssue(None, shown)])


_TYPE_WORDS = {"string": "a string", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "array": "a list", "object": "a mapping of keys", "null": "null"}


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return safe_text(text, 60)


def _describe(error) -> tuple[list, str]:
    """A jsonschema ValidationError as (key path, what is wrong and what is allowed)."""
    path, kind, value, schema = list(error.absolute_path), error.validator, error.instance, error.schema
    if kind == "required":
        missing = next(k for k in error.validator_value if not isinstance(value, dict) or k not in value)
        description = (schema.get("properties") or {}).get(missing, {}).get("description")
        return [*path, missing], "is required" + (f" ({description})" if description else "")
    if kind == "anyOf" and path and isinstance(value, dict):
        return path, "needs url, or host and port (a listener must say where it is)"
    if kind == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        allowed = " or ".join(_TYPE_WORDS.get(t, t) for t in wanted)
        return path, f"{_shown(value)} is not allowed (use {allowed})"
    if kind == "enum":
        return path, f"{_shown(value)} is not allowed (use {' or '.join(map(str, error.validator_value))})"
    if kind in ("minimum", "maximum"):
        bound = ">=" if kind == "minimum" else "<="
        return path, f"{_shown(value)} is out of range (must be {bound} {error.validator_value})"
    if kind == "minLength":
        return path, "must not be empty"
    if kind == "pattern":
        description = schema.get("description", f"must match {error.validator_value}")
        return path, f"{_shown(value)} is not allowed ({description})"
    return path, safe_text(error.message, 120)


def _validate(data: Any, source: str) -> None:
    from jsonschema import Draft202012Validator

    if not isinstance(data, dict):
        raise ConnectionFileError(source, None, f"must be a JSON object (a mapping of keys), not "
                                                f"{_TYPE_WORDS.get(_json_type(data), 'that')}")
    errors = list(Draft202012Validator(CONNECTION_SCHEMA).iter_errors(data))
    if errors:
        # the first problem in the file's own order of keys (one line: fix it, run again)
        first = min(errors, key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, str(p))
                                           for p in e.absolute_path])
        path, message = _describe(first)
        raise ConnectionFileError(source, path, message)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}.get(type(value), "")


def read_json(path: Path, source: str, key: Optional[list] = None) -> Any:
    """A JSON file's content; a missing, unreadable, oversized or non-JSON one is a ConnectionFileError on `source`
    (at `key`, when the file is one the connection file names)."""
    where = f"{path} " if key else ""
    try:
        if not path.is_file():
            what = "does not exist" if not path.exists() else "is not a file"
            hint = "" if key else " (a connection file: JSON, see `estate schema --connection`)"
            raise ConnectionFileError(source, key, f"{where}{what}{hint}")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConnectionFileError(source, key, f"{where}is {size} bytes (at most {MAX_BYTES // (1024 * 1024)} MiB)")
        text = path.read_bytes()[:MAX_BYTES + 1].decode("utf-8")
    except OSError as exc:
        raise ConnectionFileError(source, key, f"{where}cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConnectionFileError(source, key, f"{where}is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectionFileError(source, key, f"{where}is not JSON ({exc.msg}: line {exc.lineno} column "
                                               f"{exc.colno})") from None
    except RecursionError:
        raise ConnectionFileError(source, key, f"{where}is not JSON a program can read (nested too deeply)") from None


def _listener(lst: dict, loc: list, source: str) -> dict:
    """A listener complete: url, host, port, tls and transport agree; defaults filled in."""
    out = dict(lst)
    if "url" in lst:
        parts = urlsplit(lst["url"])
        tls, transport = SCHEMES[parts.scheme]
        try:
            port = parts.port
        except ValueError:
            port = None
        if not port:
            raise ConnectionFileError(source, [*loc, "url"], f"{_shown(lst['url'])} is not allowed (its port must be "
                                                             "1-65535)")
        for key, value in (("host", parts.hostname), ("port", port), ("tls", tls), ("transport", transport)):
            if key in lst and lst[key] != value:
                problem = f"{_shown(lst[key])} disagrees with url {_shown(lst['url'])}"
                raise ConnectionFileError(source, [*loc, key], problem + " (leave it out, or make them agree)")
            out[key] = value
    out.setdefault("tls", False)
    out.setdefault("transport", "tcp")
    out.setdefault("mtls", False)
    out.setdefault("allow_anonymous", False)
    out.setdefault("source_ranges", [])
    if out["mtls"] and not out["tls"]:
        raise ConnectionFileError(source, [*loc, "mtls"], "true needs tls: true (a client certificate travels in TLS)")
    scheme = {(False, "tcp"): "mqtt", (True, "tcp"): "mqtts", (False, "websockets"): "ws",
              (True, "websockets"): "wss"}[(out["tls"], out["transport"])]
    out.setdefault("url", f"{scheme}://{out['host']}:{out['port']}")
    for i, cidr in enumerate(out["source_ranges"]):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConnectionFileError(source, [*loc, "source_ranges", i],
                                      f"{_shown(cidr)} is not allowed (use a CIDR, e.g. 10.0.0.0/8)") from None
    if out["source_ranges"]:
        try:
            ipaddress.ip_address(out["host"])
        except ValueError:
            raise ConnectionFileError(source, [*loc, "host"], f"{_shown(out['host'])} is not allowed (with "
                                                              "source_ranges, an IP address: the source it stands "
                                                              "for)") from None
    return out


def _existing(value: str, base: Path, loc: list, source: str, what: str) -> str:
    """A path of the file, resolved against its directory; it must be a readable file."""
    path = (base / Path(value).expanduser()).resolve() if not Path(value).expanduser().is_absolute() \
        else Path(value).expanduser()
    if not path.is_file():
        raise ConnectionFileError(source, loc, f"{path} {'does not exist' if not path.exists() else 'is not a file'} "
                                               f"({what})")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConnectionFileError(source, loc, f"{path} cannot be read ({exc.strerror or exc})") from None
    return str(path)


def _resolved(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def load_connection(path: Path) -> dict:
    """The connection file at `path`, checked and complete (module docstring); ConnectionFileError otherwise."""
    source = str(path)
    data = read_json(path, source)
    _validate(data, source)
    base = path.resolve().parent
    conn = dict(data)
    conn["ca_file"] = _existing(data["ca_file"], base, ["ca_file"], source, "the estate CA certificate, PEM")
    try:
        pem = Path(conn["ca_file"]).read_bytes()[:MAX_BYTES]
    except OSError as exc:
        raise ConnectionFileError(source, ["ca_file"], f"{conn['ca_file']} cannot be read ({exc.strerror})") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ConnectionFileError(source, ["ca_file"], f"{conn['ca_file']} holds no PEM certificate (the estate CA: "
                                                       "pulumi stack output caCertPem)")
    conn["credentials_file"] = _existing(data["credentials_file"], base, ["credentials_file"], source,
                                         "a JSON object of user name -> password")
    credentials = read_json(Path(conn["credentials_file"]), source, ["credentials_file"])
    if not isinstance(credentials, dict) or not all(isinstance(v, str) for v in credentials.values()):
        raise ConnectionFileError(source, ["credentials_file"], f"{conn['credentials_file']} is not allowed (use a "
                                                                "JSON object of user name -> password)")
    conn["users"] = [{"auth": "password", **u} for u in data["users"]]
    conn["listeners"] = [_listener(lst, ["listeners", i], source) for i, lst in enumerate(data["listeners"])]
    certs = {}
    for user, pair in (data.get("client_certificates") or {}).items():
        certs[user] = {k: _existing(pair[k], base, ["client_certificates", user, k], source, f"PEM {k}")
                       for k in ("cert", "key")}
    conn["client_certificates"] = certs
    for group in ("brokers", "bridges", "frontends"):
        pods = []
        for i, pod in enumerate(data.get(group) or []):
            pod = dict(pod)
            pod["listeners"] = [_listener(lst, [group, i, "listeners", j], source)
                                for j, lst in enumerate(pod.get("listeners") or [])]
            pod.setdefault("health_host", "127.0.0.1")
            for key in ("runtime_socket", "log"):
                if key in pod:
                    pod[key] = _resolved(pod[key], base)
            if "stats_password_file" in pod:
                pod["stats_password_file"] = _existing(pod["stats_password_file"], base,
                                                       [group, i, "stats_password_file"], source, "the stats password")
            pods.append(pod)
        conn[group] = pods
    conn.setdefault("cloud", {})
    return conn
