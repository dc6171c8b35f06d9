"""`estate health`: one line per broker, bridge and frontend of an estate (local or deployed), OK or what is wrong.

What each line checks, from the connection file (estate/connection.py):

- broker: each of its listeners reachable over TCP; the TLS handshake verified against ca_file (a server certificate
  expiring within WARN_DAYS is a warning); an admin login (password, or an admin's client certificate on an mTLS
  listener); `$SYS/broker/uptime` and `$SYS/broker/clients/connected`.
  Who may read `$SYS`: components/acl.py grants the admin and bridge roles `#`, and mosquitto never matches a
  filter starting with a wildcard against a `$` topic (MQTT 5.0 §4.7.2; the broker even grants the SUBSCRIBE and
  then delivers nothing), so no user of the estate reads `$SYS` through a client listener. The pod's loopback
  health listener does, anonymously (mosquitto_conf.HEALTH_ACL): `health_port` in the connection file (a local
  estate has it; `kubectl port-forward pod/<pod> LOCAL:1880` reaches it in a cluster, since the kubelet's port
  forward dials localhost inside the pod). Without it the line says that `$SYS` could not be read, and why.
- bridge: the state every bridge publishes on its own mosquitto, `$SYS/broker/connection/<name>/state`
  (`1` connected, mosquitto_conf.bridge_notifications): a broker's bridge to the broker below it (shown as
  `<pod>/<connection>`, after its broker) and each cloud-bridge pod's connections, read on the pod's health
  listener.
- frontend: each listener reachable; every backend server UP, from HAProxy's `show stat` (a local estate's
  runtime_socket) or its stats page as CSV (`stats_url`, with the stats user's password file; the stats
  frontend of components/haproxy_cfg.py). A server whose ordinal has no broker in the connection file is a spare
  (a StatefulSet ordinal not running), not a problem.

Every network step has a timeout; components are checked at the same time and printed in order as each completes.
Exit 0 when nothing failed (warnings do not fail), 1 otherwise.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import queue
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .haproxy_runtime import runtime_command
from .mqtt_client import connect
from .operator_commands import DEFAULT_TIMEOUT
from .smoke import _login

WARN_DAYS = 30
"""A server certificate expiring within this many days is a warning."""
SYS_UPTIME = "$SYS/broker/uptime"
SYS_CONNECTED = "$SYS/broker/clients/connected"
SYS_BRIDGES = "$SYS/broker/connection/+/state"
BAD_SERVER = ("DOWN", "MAINT", "NOLB", "DRAIN")
"""HAProxy server statuses (stats field `status`) that take no new connections."""


@dataclass
class Line:
    status: str
    """OK, WARN or FAIL"""
    kind: str
    name: str
    detail: str

    def text(self) -> str:
        return f"{self.status:<4} {self.kind:<8} {self.name:<28} {self.detail}"


def _verdict(problems: list[str], warnings: list[str], facts: list[str]) -> tuple[str, str]:
    status = "FAIL" if problems else "WARN" if warnings else "OK"
    return status, "; ".join(problems + warnings + facts)


def _error(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def tcp_error(host: str, port: int, timeout: float) -> Optional[str]:
    """Why a TCP connection to host:port fails (None: it opens)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return _error(exc)


def tls_probe(listener: dict, ca_file: str, timeout: float, cert: Optional[str] = None,
              key: Optional[str] = None) -> tuple[Optional[str], Optional[float]]:
    """(why the handshake failed or None, the server certificate's notAfter as a timestamp)."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert:
        context.load_cert_chain(cert, key)
    name = listener.get("server_name") or listener["host"]
    try:
        with socket.create_connection((listener["host"], listener["port"]), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                peer = tls.getpeercert()
    except (OSError, ssl.SSLError, ValueError) as exc:
        return _error(exc), None
    return None, ssl.cert_time_to_seconds(peer["notAfter"]) if peer and peer.get("notAfter") else None


def read_sys(client, timeout: float) -> dict[str, bytes]:
    """The retained `$SYS` values a connected paho client is sent: uptime, clients connected, bridge states.

    mosquitto sends a subscription's retained messages in the order of the SUBSCRIBE's filters, so once the last
    filter's value is in, the bridge states (first filter) are too."""
    got: dict[str, bytes] = {}
    done = threading.Event()

    def on_message(_c, _u, message):
        got[message.topic] = message.payload
        if SYS_UPTIME in got and SYS_CONNECTED in got:
            done.set()

    client.on_message = on_message
    client.subscribe([(SYS_BRIDGES, 0), (SYS_UPTIME, 0), (SYS_CONNECTED, 0)])
    done.wait(timeout)
    return dict(got)


def _uptime(text: bytes) -> str:
    match = re.match(rb"(\d+)", text)
    if not match:
        return text.decode(errors="replace")
    seconds = int(match.group(1))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _bridge_lines(pod: str, values: dict[str, bytes]) -> list[Line]:
    lines = []
    for topic, payload in sorted(values.items()):
        match = re.fullmatch(r"\$SYS/broker/connection/(.+)/state", topic)
        if match:
            up = payload.strip() == b"1"
            lines.append(Line("OK" if up else "FAIL", "bridge", f"{pod}/{match.group(1)}",
                              "connected" if up else f"disconnected ({topic} is {payload.decode(errors='replace')!r})"))
    return lines


def _admins(conn: dict) -> list[str]:
    return [u["name"] for u in conn["users"] if u["role"] == "admin"]


def _admin_cert(conn: dict) -> Optional[dict]:
    certs = conn.get("client_certificates") or {}
    user = next((a for a in _admins(conn) if a in certs), None)
    return certs[user] if user else None


def _health_listener(pod: dict) -> dict:
    return {"name": "health", "host": pod.get("health_host", "127.0.0.1"), "port": pod["health_port"], "tls": False,
            "transport": "tcp"}


def _read_health_port(pod: dict, timeout: float) -> tuple[Optional[dict], Optional[str]]:
    """The `$SYS` values from a pod's loopback health listener (anonymous), or why not."""
    lst = _health_listener(pod)
    problem = tcp_error(lst["host"], lst["port"], timeout)
    if problem:
        return None, f"health listener {lst['host']}:{lst['port']} not reachable ({problem})"
    result = connect(lst, timeout=timeout)
    if not result.accepted:
        return None, f"health listener refused the login ({result.error or f'reason {result.reason}'})"
    try:
        return read_sys(result.client, timeout), None
    finally:
        result.close()


def check_broker(conn: dict, broker: dict, credentials: dict, timeout: float) -> list[Line]:
    pod, listeners = broker["pod"], broker.get("listeners") or []
    problems: list[str] = []
    warnings: list[str] = []
    facts: list[str] = []
    if not listeners and not broker.get("health_port"):
        return [Line("FAIL", "broker", pod, "nothing to dial: no listeners and no health_port in the connection file")]
    reachable = []
    for lst in listeners:
        problem = tcp_error(lst["host"], lst["port"], timeout)
        if problem:
            problems.append(f"{lst['name']} {lst['host']}:{lst['port']} not reachable ({problem})")
        else:
            reachable.append(lst)
    if listeners and not reachable:
        return [Line("FAIL", "broker", pod, "not reachable: " + "; ".join(problems))]
    if reachable:
        facts.append(f"{len(reachable)}/{len(listeners)} listeners reachable")

    # TLS against the estate CA, and the server certificate's expiry
    admin_cert = _admin_cert(conn)
    expiries, checked, skipped = [], [], []
    for lst in (item for item in reachable if item["tls"]):
        if lst["mtls"] and admin_cert is None:
            skipped.append(lst["name"])
            continue
        pair = admin_cert if lst["mtls"] else {}
        problem, not_after = tls_probe(lst, conn["ca_file"], timeout, pair.get("cert"), pair.get("key"))
        if problem:
            problems.append(f"{lst['name']}: TLS handshake failed ({problem})")
            continue
        checked.append(lst["name"])
        if not_after is not None:
            expiries.append(not_after)
    if expiries:
        soonest = min(expiries)
        days = (soonest - time.time()) / 86400
        date = dt.datetime.fromtimestamp(soonest, dt.timezone.utc).strftime("%Y-%m-%d")
        if days < WARN_DAYS:
            warnings.append(f"server certificate expires in {max(days, 0):.0f} days ({date})")
        else:
            facts.append(f"TLS ok ({', '.join(checked)}; certificate valid until {date})")
    if skipped:
        facts.append(f"TLS of {', '.join(skipped)} not checked (no admin client certificate)")

    # an admin login, on the first listener an admin can use (a password listener first)
    admin = None
    for lst in sorted(reachable, key=lambda item: item["mtls"]):
        login = _login(lst, conn, credentials)
        if login is None:
            continue
        user = login.pop("user")
        result = connect(lst, ca_file=conn["ca_file"], timeout=timeout, **login)
        if result.accepted:
            admin = result
            facts.append(f"admin login ok ({user} on {lst['name']})")
        else:
            problems.append(f"admin login as {user} on {lst['name']} failed "
                            f"({result.error or f'CONNACK reason {result.reason}'})")
        break
    else:
        if reachable:
            problems.append("no admin login to try (no user with role admin that has a password in "
                            "credentials_file or a certificate in client_certificates)")

    # $SYS: the health listener, else whatever the admin may read (nothing: see the module docstring)
    values: Optional[dict] = None
    try:
        if broker.get("health_port"):
            values, problem = _read_health_port(broker, timeout)
            if problem:
                problems.append(problem)
        elif admin is not None:
            values = read_sys(admin.client, min(timeout, 1.5))
            if SYS_UPTIME not in values:
                warnings.append("$SYS not read: no user of the connection file may read it (the ACL grants admin "
                                "`#`, which never matches $SYS topics); give the broker a health_port: its "
                                "loopback health listener, kubectl port-forward pod/" + pod + " LOCAL:1880")
                values = None
    finally:
        if admin is not None:
            admin.close()
    lines = []
    if values is not None:
        if SYS_UPTIME in values and SYS_CONNECTED in values:
            facts.append(f"uptime {_uptime(values[SYS_UPTIME])}, "
                         f"{values[SYS_CONNECTED].decode(errors='replace')} clients connected")
        else:
            problems.append(f"no {SYS_UPTIME} within {timeout:g} s")
        lines = _bridge_lines(pod, values)
    status, detail = _verdict(problems, warnings, facts)
    return [Line(status, "broker", pod, detail)] + lines


def check_bridge_pod(conn: dict, bridge: dict, timeout: float) -> list[Line]:
    """A cloud-bridge pod: the state of each of its connections, from its health listener."""
    pod = bridge["pod"]
    if not bridge.get("health_port"):
        return [Line("WARN", "bridge", pod, "state not read: no health_port in the connection file (the pod's "
                                            f"loopback health listener: kubectl port-forward pod/{pod} LOCAL:1880)")]
    values, problem = _read_health_port(bridge, timeout)
    if problem:
        return [Line("FAIL", "bridge", pod, problem)]
    lines = _bridge_lines(pod, values)
    return lines or [Line("FAIL", "bridge", pod, f"no connection state on {SYS_BRIDGES} within {timeout:g} s")]


def parse_stat(text: str) -> list[dict]:
    """HAProxy `show stat` / stats CSV rows as dicts (header `# pxname,svname,...`)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"not HAProxy stats CSV: {lines[0][:60]!r}" if lines else "empty answer")
    header = lines[0][2:].split(",")
    return [dict(zip(header, row)) for row in csv.reader(lines[1:])]


def _stats_over_http(frontend: dict, timeout: float) -> str:
    url = frontend["stats_url"].rstrip("/") + ";csv"
    request = urllib.request.Request(url)
    if frontend.get("stats_password_file"):
        text = Path(frontend["stats_password_file"]).read_text()
        password = text.splitlines()[0] if text else ""
        token = base64.b64encode(f"{frontend.get('stats_username', 'stats')}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (a URL the operator gave)
        return answer.read(4 * 1024 * 1024).decode(errors="replace")


def _ordinal(name: str) -> Optional[int]:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else None


def check_frontend(conn: dict, frontend: dict, timeout: float) -> list[Line]:
    pod = frontend["pod"]
    problems: list[str] = []
    warnings: list[str] = []
    facts: list[str] = []
    listeners = frontend.get("listeners") or []
    unreachable = []
    for lst in listeners:
        problem = tcp_error(lst["host"], lst["port"], timeout)
        if problem:
            unreachable.append(f"{lst['name']} {lst['host']}:{lst['port']} ({problem})")
    if unreachable:
        problems.append("not reachable: " + ", ".join(unreachable))
    elif listeners:
        facts.append(f"{len(listeners)} listeners reachable")
    try:
        if frontend.get("runtime_socket"):
            source = "runtime socket"
            text = runtime_command(Path(frontend["runtime_socket"]), "show stat", timeout)
        elif frontend.get("stats_url"):
            source = "stats page"
            text = _stats_over_http(frontend, timeout)
        else:
            warnings.append("backend servers not read: no runtime_socket or stats_url in the connection file")
            text = None
        rows = parse_stat(text) if text is not None else None
    except urllib.error.HTTPError as exc:
        problems.append(f"{source} {frontend['stats_url']} answered HTTP {exc.code}"
                        + (" (stats credentials refused)" if exc.code == 401 else ""))
        rows = None
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, str) else _error(exc.reason)
        problems.append(f"{source} {frontend['stats_url']} not readable ({reason})")
        rows = None
    except (OSError, ValueError) as exc:
        where = frontend.get("runtime_socket") or frontend.get("stats_url")
        problems.append(f"{source} {where} not readable ({_error(exc)})")
        rows = None
    if rows is not None:
        problems += _server_problems(conn, rows, facts)
    status, detail = _verdict(problems, warnings, facts)
    return [Line(status, "frontend", pod, detail)]


def _server_problems(conn: dict, rows: list[dict], facts: list[str]) -> list[str]:
    """Frontends not OPEN and backend servers not UP, one entry per server with every backend it is down in."""
    brokers = {o: b["pod"] for b in conn.get("brokers") or [] if (o := _ordinal(b["pod"])) is not None}
    problems = [f"frontend {r['pxname']} is {r['status']}" for r in rows
                if r.get("svname") == "FRONTEND" and r.get("status") != "OPEN"]
    servers: dict[str, dict] = {}
    for row in rows:
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        entry = servers.setdefault(row["svname"], {"backends": [], "bad": [], "why": ""})
        entry["backends"].append(row["pxname"])
        if row.get("status", "").startswith(BAD_SERVER):
            entry["bad"].append((row["pxname"], row["status"]))
        if row.get("last_chk") or row.get("check_desc"):
            entry["why"] = entry["why"] or ": ".join(x for x in (row.get("check_desc"), row.get("last_chk")) if x)
    up, spares = [], []
    for name, entry in sorted(servers.items(), key=lambda kv: (_ordinal(kv[0]) is None, _ordinal(kv[0]) or 0, kv[0])):
        ordinal = _ordinal(name)
        if brokers and ordinal is not None:  # an ordinal the StatefulSet does not run (locally: no process)
            spare = ordinal not in brokers
        else:  # a pod that does not exist: its name does not resolve, HAProxy holds it in MAINT everywhere
            spare = len(entry["bad"]) == len(entry["backends"]) and all(s.startswith("MAINT") for _, s in entry["bad"])
        if spare:
            spares.append(name)
        elif entry["bad"]:
            statuses = sorted({status for _, status in entry["bad"]})
            who = f"{name} ({brokers[ordinal]})" if ordinal in brokers else name
            problems.append(f"{who} {'/'.join(statuses)} in {', '.join(px for px, _ in entry['bad'])}"
                            + (f" ({entry['why']})" if entry["why"] else ""))
        else:
            up.append(name)
    backends = len({px for entry in servers.values() for px in entry["backends"]})
    if up:
        facts.append(f"{' '.join(up)} UP in {backends} backends")
    if spares:
        facts.append(f"{' '.join(spares)} spare (no such broker pod running)")
    return problems


def _tasks(conn: dict, credentials: dict, timeout: float) -> list[tuple[str, str, Callable[[], list[Line]]]]:
    tasks = [("broker", b["pod"], lambda b=b: check_broker(conn, b, credentials, timeout))
             for b in conn.get("brokers") or []]
    tasks += [("bridge", b["pod"], lambda b=b: check_bridge_pod(conn, b, timeout)) for b in conn.get("bridges") or []]
    tasks += [("frontend", f["pod"], lambda f=f: check_frontend(conn, f, timeout)) for f in conn.get("frontends") or []]
    return tasks


NOTHING_TO_CHECK = ("health: nothing to check: the connection file lists no brokers, bridges or frontends "
                    "(see the connection file format)")


def run_health(conn: dict, credentials: dict, timeout: float = DEFAULT_TIMEOUT,
               write: Callable[[str], None] = lambda text: print(text, flush=True)) -> bool:
    """Check every component at once; write each one's lines in order as soon as they are known. Whether all
    passed (warnings pass; nothing to check does not)."""
    tasks = _tasks(conn, credentials, timeout)
    if not tasks:
        write(NOTHING_TO_CHECK)
        return False
    budget = 8 * timeout + 2  # a component's steps are each bounded; this bounds the component
    answers: list[queue.Queue] = []
    for _kind, _name, job in tasks:
        answer: queue.Queue = queue.Queue(maxsize=1)

        def run(job=job, answer=answer):
            try:
                answer.put(job())
            except Exception as exc:  # noqa: BLE001 (one component's surprise must not hide the others)
                answer.put(exc)
        threading.Thread(target=run, daemon=True).start()
        answers.append(answer)
    counts = {"OK": 0, "WARN": 0, "FAIL": 0}
    started = time.monotonic()
    for (kind, name, _job), answer in zip(tasks, answers):
        try:
            found = answer.get(timeout=max(budget - (time.monotonic() - started), 0.1))
        except queue.Empty:
            found = [Line("FAIL", kind, name, f"no answer within {budget:g} s")]
        if isinstance(found, Exception):
            found = [Line("FAIL", kind, name, f"check failed: {type(found).__name__}: {found}")]
        for line in found:
            counts[line.status] += 1
            write(line.text())
    write(f"health: {counts['OK']} ok, {counts['WARN']} warnings, {counts['FAIL']} failed")
    return counts["FAIL"] == 0
