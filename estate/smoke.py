"""The smoke suite: what the seed chart's test script promised, done for real with paho-mqtt.

For every listener: a valid user gets in, a message makes the round trip, a wrong password and an
anonymous client are refused (an anonymous client is accepted where the listener's own mosquitto.conf block
says `allow_anonymous true`, refused everywhere else), TLS verifies against the estate's CA, and
mTLS listeners refuse clients without a certificate. A frontend port whose source ranges leave out this
machine's address must refuse the connection outright, and is checked for that alone. A run that makes no check
at all (no listener it can reach) fails: nothing checked proves nothing.

Cloud bridges (the connection file's `cloud` section, one local stand-in per bridge, estate/cloud_standins.py):
for every mapping, a message published in the estate on the mapping's local topic arrives on the stand-in under
the remote prefix (out), and one published on the stand-in's test tap under the remote prefix arrives in the
estate under the local prefix (in).

Backup sidecars (the connection file's `backups`): each serves its metrics and has counted no failed backup (its
first backup comes a few seconds after the start: a failure to reach the bucket or to make mosquitto save shows
within the run; the integration tests prove the backups themselves).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from .cloud_standins import concrete
from .mqtt_client import connect, round_trip


@dataclass
class Check:
    listener: str
    name: str
    ok: bool
    detail: str = ""


def _login(listener: dict, conn: dict, credentials: dict) -> dict | None:
    """Credentials for a user allowed to pub/sub anywhere (an admin), by the listener's kind of login."""
    admins = [u["name"] for u in conn["users"] if u["role"] == "admin"]
    if listener["mtls"]:
        certs = conn["client_certificates"]
        user = next((a for a in admins if a in certs), None)
        return {"cert": certs[user]["cert"], "key": certs[user]["key"], "user": user} if user else None
    user = next((a for a in admins if a in credentials), None)
    return {"username": user, "password": credentials[user], "user": user} if user else None


def _outside_sources(listener: dict) -> bool:
    """Whether the address clients dial from here is outside the networks the listener admits (HAProxy closes such
    a connection before reading a byte of it; a broker's NetworkPolicy is not enforced locally)."""
    ranges = listener.get("source_ranges") or []
    here = ipaddress.ip_address(listener["host"])
    return bool(ranges) and not any(here in ipaddress.ip_network(r, strict=False) for r in ranges)


def run_smoke(conn: dict) -> list[Check]:
    credentials = json.loads(Path(conn["credentials_file"]).read_text())
    ca = conn["ca_file"]
    checks: list[Check] = []
    for lst in conn["listeners"]:
        name = lst["name"]
        login = _login(lst, conn, credentials)
        if login is None:
            checks.append(Check(name, "valid user accepted", False, "no admin user with a matching login"))
            continue
        user = login.pop("user")
        if _outside_sources(lst):
            refused = connect(lst, ca_file=ca, **login)
            checks.append(Check(name, f"refused from {lst['host']}, outside its source ranges "
                                      f"({' '.join(lst['source_ranges'])})",
                                not refused.accepted and refused.reason is None and "timeout" not in refused.error,
                                refused.error or f"reason {refused.reason}"))
            refused.close()
            continue
        pub = connect(lst, ca_file=ca, **login)
        checks.append(Check(name, f"valid user {user!r} accepted", pub.accepted, pub.error or f"reason {pub.reason}"))
        if lst["tls"]:
            checks.append(Check(name, "TLS handshake verified against the estate CA", pub.accepted, pub.error))
        if pub.accepted:
            sub = connect(lst, ca_file=ca, **login)
            ok = sub.accepted and round_trip(pub.client, sub.client, f"smoke/{name}/{uuid.uuid4().hex[:8]}")
            checks.append(Check(name, "publish/subscribe round trip (QoS 1)", ok))
            sub.close()
            pub.close()
        if lst["mtls"]:
            bare = connect(lst, ca_file=ca, username=user)
            checks.append(Check(name, "refused without a client certificate", not bare.accepted,
                                bare.error or f"reason {bare.reason}"))
            continue
        wrong = connect(lst, ca_file=ca, username=login["username"], password="wrong-" + uuid.uuid4().hex)
        checks.append(Check(name, "wrong password refused", not wrong.accepted, f"reason {wrong.reason}"))
        wrong.close()
        anon = connect(lst, ca_file=ca)
        if lst["allow_anonymous"]:
            checks.append(Check(name, "anonymous accepted (the listener allows it)", anon.accepted,
                                f"reason {anon.reason}"))
        else:
            checks.append(Check(name, "anonymous refused", not anon.accepted, f"reason {anon.reason}"))
        anon.close()
    checks += cloud_checks(conn, credentials)
    checks += backup_checks(conn)
    return checks


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def backup_checks(conn: dict) -> list[Check]:
    """Every backup sidecar answers and has counted no failure."""
    checks = []
    for sidecar in conn.get("backups") or []:
        try:
            with urllib.request.urlopen(sidecar["url"], timeout=5) as response:
                text = response.read().decode()
        except OSError as exc:
            checks.append(Check(sidecar["pod"], "backup sidecar serves its metrics", False, str(exc)))
            continue
        failures = _metric(text, "mosquitto_backup_failures_total")
        checks.append(Check(sidecar["pod"], f"backup sidecar to s3://{sidecar.get('bucket')}: no failed backup",
                            failures == 0, f"{failures} failed; see {sidecar.get('log')}"))
    return checks


BRIDGE_WAIT = 30.0
"""How long a bridged message may take (a hang guard: a bridge that just started may still be subscribing)."""


def _cross_trip(publisher, subscriber, pub_topic: str, sub_topic: str, qos: int = 1,
                timeout: float = BRIDGE_WAIT) -> bool:
    """Publish on `pub_topic` (once a second, until it arrives) and report whether it arrived on `sub_topic`."""
    payload = uuid.uuid4().hex.encode()
    got, subscribed = threading.Event(), threading.Event()
    subscriber.on_message = lambda _c, _u, m: got.set() if m.topic == sub_topic and m.payload == payload else None
    subscriber.on_subscribe = lambda *a: subscribed.set()
    subscriber.subscribe(sub_topic, qos)
    if not subscribed.wait(5):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(pub_topic, payload, qos=qos)
        if got.wait(1.0):
            return True
    return False


def cloud_checks(conn: dict, credentials: dict) -> list[Check]:
    """Out and in through every cloud bridge, between an estate listener and the bridge's cloud stand-in."""
    clouds = conn.get("cloud") or {}
    if not clouds:
        return []
    listeners = [lst for lst in conn["listeners"] if not _outside_sources(lst) and lst["transport"] == "tcp"]
    listeners.sort(key=lambda lst: lst["tls"])  # plain first: fewer moving parts
    estate = next(((lst, login) for lst in listeners if (login := _login(lst, conn, credentials))), None)
    checks: list[Check] = []
    for bridge, cloud in sorted(clouds.items()):
        where = cloud["provider"]
        if estate is None:
            checks.append(Check(where, f"{bridge}: an estate listener to publish on", False, "none reachable"))
            continue
        lst, login = estate
        login = {k: v for k, v in login.items() if k != "user"}
        local = connect(lst, ca_file=conn["ca_file"], **login)
        remote = connect({**cloud["tap"], "tls": False}, client_id=f"smoke-tap-{uuid.uuid4().hex[:8]}")
        if not (local.accepted and remote.accepted):
            checks.append(Check(where, f"{bridge}: connect to the estate and the stand-in's tap", False,
                                local.error or remote.error))
        else:
            for mapping in cloud["mappings"]:
                topic = concrete(mapping["topic"], f"smoke-{uuid.uuid4().hex[:8]}")
                local_topic, remote_topic = mapping["local_prefix"] + topic, mapping["remote_prefix"] + topic
                qos = min(int(mapping["qos"]), 1)
                if mapping["direction"] in ("out", "both"):
                    ok = _cross_trip(local.client, remote.client, local_topic, remote_topic, qos)
                    checks.append(Check(where, f"out: estate {local_topic} -> cloud {remote_topic}", ok))
                if mapping["direction"] in ("in", "both"):
                    ok = _cross_trip(remote.client, local.client, remote_topic, local_topic, qos)
                    checks.append(Check(where, f"in: cloud {remote_topic} -> estate {local_topic}", ok))
        local.close()
        remote.close()
    return checks


NOTHING_TO_CHECK = "smoke: nothing to check: the estate has no listener the smoke suite can reach"
"""The report when the suite made no check at all: a failure, not a pass (`passed`)."""


def passed(checks: list[Check]) -> bool:
    """Whether the suite passed: at least one check, and every check ok (nothing checked proves nothing)."""
    return bool(checks) and all(c.ok for c in checks)


def report(checks: list[Check]) -> str:
    if not checks:
        return NOTHING_TO_CHECK
    lines = [f"  {'ok  ' if c.ok else 'FAIL'} {c.listener:<16} {c.name}" + ("" if c.ok or not c.detail else f" ({c.detail})")
             for c in checks]
    passed = sum(c.ok for c in checks)
    lines.append(f"smoke: {passed} passed, {len(checks) - passed} failed")
    return "\n".join(lines)
