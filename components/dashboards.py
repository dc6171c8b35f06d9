"""MonitoringStack's Grafana dashboards, generated from MonitoringTargets so they query the same jobs, pods and
HAProxy backends as the alert rules.

`dashboards(targets)` returns {file name: dashboard JSON}:

- `mqtt-estate-overview.json`: the estate at a glance: brokers up, clients, message rates, drops, retained and
  stored messages, the cloud bridges' legs (only with cloud bridges), the HAProxy frontend's backends, server
  states, sessions and failovers (only with a frontend), and the days left on the pods' certificates and tokens;
- `mqtt-estate-broker.json`: one broker pod, chosen with the `pod` template variable; with backups on, a row for its
  backup sidecar: the age of the last successful backup against the schedule, failures, the size of the last upload
  and the database recoveries of its restore initContainer.

Both pick their Prometheus with a `datasource` template variable, so they import into any Grafana (a sidecar
ConfigMap or the UI) without editing. The JSON is `json.dumps(..., indent=2, sort_keys=True)` of plain values built
in a fixed order: the same targets give byte-identical files, and the uids are derived from namespace and broker, so
a re-import replaces the dashboards instead of duplicating them.

Metrics: the estate's exporter (exporter/sys_topics.py, exporter/collector.py), the backup sidecar
(monitoring_targets.BACKUP_METRICS) and HAProxy's built-in Prometheus exporter (addons/promex,
`haproxy_frontend_*`, `haproxy_backend_*`, `haproxy_server_*` with `proxy`, `server` and `state` labels). Prometheus
Operator adds `job`, `namespace` and `pod` to every sample.

`dashboard_queries(json_text)` lists every PromQL expression of a dashboard, and `substitute(expr, variables)`
replaces Grafana's variables in one, so a test can send each to Prometheus' /api/v1/query as it is.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Iterator, Mapping, Optional

from .promql import alternatives, quote, selector
from .haproxy_cfg import HEALTH_BACKEND
from .alert_rules import RECOVERY_WINDOW_SECONDS, backup_stale_seconds
from .monitoring_targets import (BACKUP_FAILURES, BACKUP_LAST_SUCCESS, BACKUP_SIZE, DATABASE_RECOVERY,
                                 MonitoringTargets)

OVERVIEW = "mqtt-estate-overview.json"
BROKER = "mqtt-estate-broker.json"

SCHEMA_VERSION = 39
"""Grafana 10.4 / 11.0 write this; older Grafana (8+) reads it, newer migrates it on load."""

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
DAY = 86400
GRID_WIDTH = 24

DEFAULT_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h", "__range_s": "3600",
                     "__interval_ms": "60000"}
"""What `substitute` puts in place of Grafana's built-in variables unless told otherwise: `$__rate_interval` ->
`1m` (four times a 15 s scrape interval, the smallest window Grafana itself would pick)."""


# --------------------------------------------------------------------------------------------------- PromQL








def _rate(selector: str) -> str:
    return f"rate({selector}[{RATE}])"


# --------------------------------------------------------------------------------------------------- panels


def _target(expr: str, legend: str, ref: int, instant: bool = False) -> dict:
    return {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "instant": instant,
            "legendFormat": legend, "range": not instant, "refId": chr(ord("A") + ref)}


def _thresholds(*steps: tuple[str, Optional[float]]) -> dict:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


def _panel(kind: str, title: str, description: str, queries: list[tuple[str, str]], unit: str = "short",
           thresholds: Optional[dict] = None, mappings: Optional[list] = None, minimum: Optional[float] = 0,
           decimals: Optional[int] = None, options: Optional[dict] = None, custom: Optional[dict] = None) -> dict:
    defaults: dict = {"color": {"mode": "thresholds" if kind == "stat" else "palette-classic"}, "unit": unit,
                      "mappings": mappings or [],
                      "thresholds": thresholds or _thresholds(("green", None))}
    if minimum is not None:
        defaults["min"] = minimum
    if decimals is not None:
        defaults["decimals"] = decimals
    if kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never",
                              "spanNulls": False, **(custom or {})}
        panel_options = {"legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
                         "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        panel_options = {"colorMode": "value", "graphMode": "none", "justifyMode": "auto", "orientation": "auto",
                         "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                         "textMode": "auto"}
    panel_options.update(options or {})
    return {"datasource": DATASOURCE, "description": description, "fieldConfig": {"defaults": defaults,
                                                                                   "overrides": []},
            "options": panel_options, "title": title, "type": kind,
            "targets": [_target(expr, legend, i, instant=kind == "stat") for i, (expr, legend) in enumerate(queries)]}


def _stat(title: str, description: str, queries: list[tuple[str, str]], **kw) -> dict:
    return _panel("stat", title, description, queries, **kw)


def _series(title: str, description: str, queries: list[tuple[str, str]], **kw) -> dict:
    return _panel("timeseries", title, description, queries, **kw)


def _layout(rows: list[list[tuple[dict, int, int]]]) -> list[dict]:
    """Panels row by row, each (panel, width, height), left to right; a row wider than the grid wraps. Every panel
    gets a gridPos below everything placed before its line, so none overlap, and an id in order."""
    out, y = [], 0
    for row in rows:
        x, line_height = 0, 0
        for panel, width, height in row:
            if x + width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            out.append({**panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}, "id": len(out) + 1})
            x += width
            line_height = max(line_height, height)
        y += line_height
    return out


# --------------------------------------------------------------------------------------------------- dashboards


def dashboard_uid(t: MonitoringTargets, kind: str) -> str:
    """`<namespace>-<broker>` (cut to fit) + `-<kind>-<8 hex of sha256(namespace/broker)>`, at most 40 characters
    (Grafana's limit): readable, stable across runs, and distinct between estates even when the cut hides it."""
    digest = hashlib.sha256(f"{t.namespace}/{t.broker}".encode()).hexdigest()[:8]
    suffix = f"-{kind}-{digest}"
    stem = re.sub(r"[^a-zA-Z0-9_-]", "-", f"{t.namespace}-{t.broker}")[:40 - len(suffix)].rstrip("-_")
    return f"{stem}{suffix}"


def _estate_tag(t: MonitoringTargets) -> str:
    return f"{t.namespace}/{t.broker}"


def _datasource_variable() -> dict:
    return {"current": {}, "hide": 0, "includeAll": False, "label": "Data source", "multi": False,
            "name": "datasource", "options": [], "query": "prometheus", "refresh": 1, "regex": "",
            "skipUrlSync": False, "type": "datasource"}


def _query_variable(name: str, label: str, query: str, default: str) -> dict:
    return {"current": {"selected": False, "text": default, "value": default}, "datasource": DATASOURCE,
            "definition": query, "hide": 0, "includeAll": False, "label": label, "multi": False, "name": name,
            "options": [],
            "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 3, "type": "query"}


def _dashboard(t: MonitoringTargets, kind: str, title: str, description: str, panels: list[dict],
               variables: list[dict]) -> dict:
    return {
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{"asDropdown": False, "icon": "external link", "includeVars": False, "keepTime": True,
                   "tags": [_estate_tag(t)], "targetBlank": False, "title": "mqtt-estate", "type": "dashboards"}],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["mqtt-estate", _estate_tag(t)],
        "templating": {"list": [_datasource_variable(), *variables]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": dashboard_uid(t, kind),
        "version": 1,
    }


def _overview(t: MonitoringTargets) -> dict:
    job = t.broker_job
    broker = dict(job=job)
    up_colors = _thresholds(("red", None), ("green", t.broker_replicas))
    expiry = [(f"min by (credential) ((mqtt_estate_credential_expiry_timestamp_seconds{{job={quote(job)}}} - time())"
               f" / {DAY})", "{{credential}}")]
    if t.bridges and t.bridge_job:
        expiry.append((f"min by (pod, credential) ((mqtt_estate_credential_expiry_timestamp_seconds"
                       f"{{job={quote(t.bridge_job)}}} - time()) / {DAY})", "{{pod}} {{credential}}"))
    renewal_days = round(t.early_renewal_seconds / DAY, 2)
    capacity = t.connection_capacity

    top = [
        (_stat(f"Brokers up (of {t.broker_replicas})",
               f"Broker pods whose exporter reports mosquitto up (job {job}); {t.broker_replicas} should be.",
               [(f"sum({selector('mosquitto_up', **broker)}) or vector(0)", "up")], thresholds=up_colors, decimals=0),
         4, 5),
        (_stat("Clients connected", "Clients connected to all brokers.",
               [(f"sum({selector('mosquitto_clients_connected', **broker)})", "clients")], decimals=0,
               thresholds=_thresholds(("green", None), *(
                   [("orange", round(0.8 * capacity * t.broker_replicas))] if capacity else []))), 4, 5),
        (_stat("Messages in /s", "PUBLISH messages received by all brokers per second.",
               [(f"sum({_rate(selector('mosquitto_publish_messages_received_total', **broker))})", "in")],
               unit="short", decimals=1), 4, 5),
        (_stat("Messages out /s", "PUBLISH messages sent by all brokers per second.",
               [(f"sum({_rate(selector('mosquitto_publish_messages_sent_total', **broker))})", "out")],
               unit="short", decimals=1), 4, 5),
        (_stat("Credentials: days left",
               "Days until each certificate or token a pod uses expires. Yellow: inside the early-renewal window "
               f"({renewal_days} days) yet not renewed, so nobody has run `pulumi up`; red: under a day.",
               expiry, unit="d", decimals=1, minimum=None,
               thresholds=_thresholds(("red", None), ("yellow", 1), ("green", renewal_days))), 8, 5),
    ]
    clients = [(f"sum by (pod) ({selector('mosquitto_clients_connected', **broker)})", "{{pod}}")]
    clients_custom = {}
    if capacity:
        clients_custom = {"thresholdsStyle": {"mode": "dashed"}}
    traffic = [
        (_series("Clients connected per broker",
                 "Connected clients per broker pod" + (f"; the dashed line is one broker's capacity ({capacity})."
                                                       if capacity else "."),
                 clients, decimals=0, custom=clients_custom,
                 thresholds=_thresholds(("green", None), *([("red", capacity)] if capacity else []))), 12, 8),
        (_series("Messages in / out per broker", "PUBLISH messages received and sent per second, per broker pod.",
                 [(f"sum by (pod) ({_rate(selector('mosquitto_publish_messages_received_total', **broker))})",
                   "{{pod}} in"),
                  (f"sum by (pod) ({_rate(selector('mosquitto_publish_messages_sent_total', **broker))})",
                   "{{pod}} out")]), 12, 8),
    ]
    drops = [(f"sum by (pod) ({_rate(selector('mosquitto_publish_messages_dropped_total', **broker))})", "{{pod}}")]
    if t.bridges and t.bridge_job:
        drops.append((f"sum by (pod) ({_rate(selector('mosquitto_publish_messages_dropped_total', job=t.bridge_job))})",
                      "{{pod}} (bridge)"))
    storage = [
        (_series("Dropped messages /s",
                 "PUBLISH messages mosquitto dropped per second (a client's queue beyond "
                 f"{t.max_queued_messages} messages" + (", or a cloud bridge's buffer full" if t.bridges else "") +
                 "): data lost.", drops, thresholds=_thresholds(("green", None), ("red", 0.001))), 8, 8),
        (_series("Retained messages", "Retained messages per broker pod.",
                 [(f"sum by (pod) ({selector('mosquitto_retained_messages', **broker)})", "{{pod}}")], decimals=0), 8, 8),
        (_series("Stored messages", "Messages in each broker's store (queued for clients and retained).",
                 [(f"sum by (pod) ({selector('mosquitto_store_messages', **broker)})", "{{pod}}")], decimals=0), 8, 8),
    ]
    rows = [top, traffic, storage]

    if t.bridges and t.bridge_job:
        pods = {"job": t.bridge_job, "pod": "=~" + alternatives(b.pod for b in t.bridges)}
        named = ", ".join(f"{b.pod}: {b.name} ({b.provider})" for b in t.bridges)
        rows.append([(_series("Cloud bridges: legs down / broker up",
                              "Per cloud-bridge pod: its bridge connections that are down (mosquitto_clients_"
                              "disconnected, 0 when healthy) and whether its mosquitto is up. " + named + ".",
                              [(f"sum by (pod) ({selector('mosquitto_clients_disconnected', **pods)})",
                                "{{pod}} legs down"),
                               (f"max by (pod) ({selector('mosquitto_up', **pods)})", "{{pod}} up")],
                              decimals=0, thresholds=_thresholds(("green", None), ("red", 1))), 24, 8)])

    if t.frontend:
        f = t.frontend
        backends = {"job": f.job, "proxy": "=~" + alternatives(f.backends)}
        servers = t.broker_replicas
        rows.append([
            (_series("Frontend: active servers per backend",
                     f"Brokers each HAProxy replica ({f.replicas}) can send clients of each backend to; "
                     f"{servers} when all are up.",
                     [(f"min by (pod, proxy) ({selector('haproxy_backend_active_servers', **backends)})",
                       "{{pod}} {{proxy}}")],
                     decimals=0, thresholds=_thresholds(("red", None), ("green", servers))), 12, 8),
            (_series("Frontend: servers per state",
                     "Broker servers of the client backends by HAProxy state (UP, DOWN, MAINT, DRAIN, NOLB), "
                     "counted over backends and HAProxy replicas.",
                     [(f"sum by (server, state) ({selector('haproxy_server_status', **backends)} == 1)",
                       "{{server}} {{state}}")], decimals=0), 12, 8),
            (_series("Frontend: client sessions", "Client sessions open on each frontend, summed over replicas.",
                     [(f"sum by (proxy) ({selector('haproxy_frontend_current_sessions', **backends)})", "{{proxy}}")],
                     decimals=0), 12, 8),
            (_series("Frontend: failovers",
                     f"Broker servers that went down in the `{HEALTH_BACKEND}` backend's MQTT checks (the client "
                     "backends track them), and connections HAProxy redispatched to another broker.",
                     [(f"max by (server) (increase("
                       f"{selector('haproxy_server_check_up_down_total', job=f.job, proxy=HEALTH_BACKEND)}[{RATE}]))",
                       "{{server}} went down"),
                      (f"sum by (proxy) (increase({selector('haproxy_backend_redispatch_warnings_total', **backends)}"
                       f"[{RATE}]))", "{{proxy}} redispatched")],
                     decimals=0, thresholds=_thresholds(("green", None), ("red", 1))), 12, 8),
        ])

    return _dashboard(t, "overview", f"mqtt-estate {t.namespace}/{t.broker}: overview",
                      f"Eclipse Mosquitto estate {t.broker} in namespace {t.namespace}.", _layout(rows), [])


def _broker(t: MonitoringTargets) -> dict:
    pod = {"job": t.broker_job, "pod": "$pod"}

    def one(metric: str) -> str:
        return selector(metric, **pod)

    up_mapping = [{"options": {"0": {"color": "red", "index": 1, "text": "DOWN"},
                               "1": {"color": "green", "index": 0, "text": "UP"}}, "type": "value"}]
    top = [
        (_stat("Up", "mosquitto_up: the exporter gets $SYS heartbeats from this broker.", [(one("mosquitto_up"), "up")],
               mappings=up_mapping, thresholds=_thresholds(("red", None), ("green", 1))), 4, 4),
        (_stat("Uptime", "Since mosquitto started.", [(one("mosquitto_uptime_seconds"), "uptime")], unit="s"), 4, 4),
        (_stat("Clients connected", "Clients connected now.", [(one("mosquitto_clients_connected"), "clients")],
               decimals=0), 4, 4),
        (_stat("Subscriptions", "Subscriptions now.", [(one("mosquitto_subscriptions"), "subscriptions")],
               decimals=0), 4, 4),
        (_stat("Version", "mosquitto's version ($SYS/broker/version).",
               [(f"max by (version) ({one('mosquitto_build_info')})", "{{version}}")],
               options={"textMode": "name", "colorMode": "none"}), 8, 4),
    ]
    rates = [
        (_series("Clients", "Connected clients, and persistent sessions whose client is disconnected.",
                 [(one("mosquitto_clients_connected"), "connected"),
                  (one("mosquitto_clients_disconnected"), "disconnected")], decimals=0), 12, 8),
        (_series("Connection load", "New connections per minute, mosquitto's own moving averages.",
                 [(one("mosquitto_load_connections_per_minute"), "{{window}}")], unit="short"), 12, 8),
        (_series("PUBLISH messages /s", "PUBLISH messages received and sent per second.",
                 [(_rate(one("mosquitto_publish_messages_received_total")), "received"),
                  (_rate(one("mosquitto_publish_messages_sent_total")), "sent")]), 12, 8),
        (_series("Bytes /s", "All bytes received and sent per second (every MQTT packet).",
                 [(_rate(one("mosquitto_bytes_received_total")), "received"),
                  (_rate(one("mosquitto_bytes_sent_total")), "sent")], unit="Bps"), 12, 8),
        (_series("Dropped messages /s",
                 f"PUBLISH messages dropped per second: a client's queue was beyond {t.max_queued_messages}.",
                 [(_rate(one("mosquitto_publish_messages_dropped_total")), "dropped")],
                 thresholds=_thresholds(("green", None), ("red", 0.001))), 12, 8),
        (_series("Store", "Messages held in the store (queued and retained), and their payload bytes.",
                 [(one("mosquitto_store_messages"), "messages"), (one("mosquitto_store_messages_bytes"), "bytes")],
                 decimals=0), 12, 8),
        (_series("Subscriptions and retained messages", "Subscriptions, shared subscriptions, retained messages.",
                 [(one("mosquitto_subscriptions"), "subscriptions"),
                  (one("mosquitto_shared_subscriptions"), "shared subscriptions"),
                  (one("mosquitto_retained_messages"), "retained messages")], decimals=0), 12, 8),
        # no heap panel: mosquitto tracks memory only on glibc, macOS and FreeBSD (eclipse/mosquitto v2.0.11
        # lib/memory_mosq.h:25-29) and the image is built FROM alpine:3.20 (v2.0.20 docker/2.0/Dockerfile:1), so the
        # cluster's brokers publish no $SYS/broker/heap topics
        (_series("Sessions", "Sessions the broker holds (connected or not), and persistent sessions expired.",
                 [(one("mosquitto_clients_known"), "sessions"),
                  (f"increase({one('mosquitto_clients_expired_total')}[1h])", "expired in the last hour")],
                 decimals=0), 12, 8),
    ]
    brokers = selector("mosquitto_up", job=t.broker_job)
    variable = _query_variable("pod", "Broker pod", f"label_values({brokers}, pod)", f"{t.broker}-0")
    rows = [top, rates] + ([_backup_row(t, one)] if t.backup_interval_seconds else [])
    return _dashboard(t, "broker", f"mqtt-estate {t.namespace}/{t.broker}: broker",
                      f"One broker pod of {t.broker} in namespace {t.namespace}.", _layout(rows), [variable])


def _backup_row(t: MonitoringTargets, one) -> list[tuple[dict, int, int]]:
    """The pod's backup sidecar: age of the last success (orange past one interval, red past BackupStale's limit),
    failures and upload size, and the restore initContainer's last recovery of the database."""
    interval, stale = t.backup_interval_seconds, backup_stale_seconds(t)
    age = f"time() - {one(BACKUP_LAST_SUCCESS)}"
    recovery = one(DATABASE_RECOVERY)
    return [
        (_stat("Last backup", "Time since the last successful backup of this pod's mosquitto.db (scheduled every "
               f"{interval} s). Orange: a schedule was missed; red: BackupStale's limit ({stale} s). No value: "
               "no success since the backup sidecar started.", [(age, "age")], unit="s", decimals=0,
               thresholds=_thresholds(("green", None), ("orange", interval + 60), ("red", stale))), 6, 6),
        (_series("Backups", "Age of the last successful backup, and failed attempts per hour (the sidecar logs one "
                 "line per failure).",
                 [(age, "age of last backup"),
                  (f"increase({one(BACKUP_FAILURES)}[1h])", "failures in the last hour")],
                 unit="s", thresholds=_thresholds(("green", None), ("red", stale)),
                 custom={"thresholdsStyle": {"mode": "dashed"}}), 9, 6),
        (_series("Backup size", "Size of the last uploaded mosquitto.db.", [(one(BACKUP_SIZE), "bytes")],
                 unit="bytes", decimals=0), 9, 6),
        (_stat("Database recoveries (last day)",
               "Time since the restore initContainer last replaced this pod's database, by outcome: restored (a "
               "damaged or missing database replaced by the last good backup), empty (no backup could be "
               "restored: the broker started without its data) or requested (a restore the stack asked for). "
               "Shown for a day, as long as BrokerDatabaseRecovered fires.",
               [(f"time() - {recovery} < {RECOVERY_WINDOW_SECONDS}", "{{outcome}}")], unit="s", decimals=0,
               minimum=None, thresholds=_thresholds(("orange", None)),
               options={"textMode": "value_and_name"}), 24, 4),
    ]


def dashboards(t: MonitoringTargets) -> dict[str, str]:
    """{file name: Grafana dashboard JSON}, byte-identical for the same targets."""
    return {name: json.dumps(build(t), indent=2, sort_keys=True) + "\n"
            for name, build in ((OVERVIEW, _overview), (BROKER, _broker))}


# --------------------------------------------------------------------------------------------------- queries


def _panels(panels: list) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _top_level_split(args: str) -> list[str]:
    """`a{x="1,2"}, b` -> ['a{x="1,2"}', 'b']: commas outside strings, braces, brackets and parentheses."""
    parts, depth, open_quote, start, i = [], 0, "", 0, 0
    while i < len(args):
        c = args[i]
        if open_quote:
            if c == "\\" and open_quote != "`":
                i += 1
            elif c == open_quote:
                open_quote = ""
        elif c in "\"'`":
            open_quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
        i += 1
    parts.append(args[start:].strip())
    return parts


def variable_expression(query: str) -> Optional[str]:
    """The PromQL of a Prometheus template query: label_values(selector, label) -> selector, query_result(expr) ->
    expr; None for those that send none (label_values(label), label_names(), metrics(regex))."""
    query = query.strip()
    m = re.fullmatch(r"(label_values|query_result)\s*\((.*)\)", query, re.S)
    if not m:
        if re.fullmatch(r"(label_names|metrics)\s*\(.*\)", query, re.S):
            return None
        return query or None
    args = _top_level_split(m.group(2))
    if m.group(1) == "query_result":
        return m.group(2).strip()
    return args[0] if len(args) == 2 else None


def dashboard_queries(dashboard_json: str) -> list[str]:
    """Every PromQL expression of a dashboard, in order, without repeats: its panels' target exprs, then its query
    variables' (see variable_expression). Grafana variables are left in; see `substitute`."""
    dashboard = json.loads(dashboard_json)
    out: list[str] = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append(target["expr"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        expr = variable_expression(query or "")
        if expr:
            out.append(expr)
    return list(dict.fromkeys(out))


_VARIABLE = re.compile(r"\$\{([a-zA-Z0-9_]+)(?::[^}]*)?\}|\[\[([a-zA-Z0-9_]+)(?::[^\]]*)?\]\]|\$([a-zA-Z0-9_]+)")


def substitute(expr: str, variables: Optional[Mapping[str, str]] = None) -> str:
    """`expr` with Grafana's variables (`$name`, `${name}`, `${name:format}`, `[[name]]`) replaced by `variables`
    over DEFAULT_VARIABLES (`$__rate_interval` -> `1m`, ...), ready for Prometheus' /api/v1/query. Values go in as
    they are (a single value, no format applied). `$1`-style references (label_replace) stay; an unknown named
    variable raises KeyError, so a query is never sent with a variable in it."""
    values = {**DEFAULT_VARIABLES, **(variables or {})}

    def replace(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name.isdigit():
            return m.group(0)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)
