"""MonitoringStack's alert rules: `alert_groups(targets)` is the `spec.groups` of its PrometheusRule (and, wrapped
in `{"groups": ...}`, a promtool rule file), generated from MonitoringTargets so the rules name the same jobs, pods
and limits as the estate's configuration.

Every alert carries the labels `severity` (critical: clients or data are being lost now; warning: they will be
unless somebody acts) and `namespace`, and the annotations `summary`, `description` and `runbook_url` (the README
has a `#### <AlertName>` heading per alert, hence the lower-cased anchor). Alerts whose inputs the estate does not
have (no connection limit, no cloud bridge, no HAProxy frontend, no SAS token, no backup sidecar) are left out
rather than written against series that never exist.

The output is plain dicts and lists in a fixed order: the same targets give byte-identical YAML.
"""

from __future__ import annotations

from ..stacks.grammar import prometheus_duration_ms
from .backup_sidecar import METRICS_PORT_NAME as BACKUP_PORT_NAME
from .exporter_sidecar import PORT_NAME as EXPORTER_PORT_NAME
from .promql import alternatives, selector
from .monitoring_targets import (BACKUP_FAILURES, BACKUP_INTERVAL, BACKUP_LAST_ATTEMPT, BACKUP_LAST_SUCCESS,
                                 DATABASE_RECOVERY, BridgeTarget, MonitoringTargets)

DAY = 86400

CERTIFICATE_CRITICAL_SECONDS = 7 * DAY
"""A certificate this close to expiry is an emergency: a week is what a factory change window typically needs."""

CHURN_ALLOWANCE_PER_MINUTE = 60
"""Reconnects per minute tolerated on top of one per connected client (rolling restarts, a reconnecting line)."""

BACKUP_STALE_INTERVALS = 2
"""A backup older than this many schedule intervals (plus alert_after) is stale: one missed backup can be a slow
upload or a pod restart between two schedules, two in a row cannot."""

RECOVERY_WINDOW_SECONDS = DAY
"""How long a database recovery stays an alert: long enough to be seen on the next working shift."""

RECOVERY_SEVERITY = {"empty": "critical", "restored": "warning"}
"""The recovery outcomes that alert. `empty`: no backup could be restored and the broker started without its
retained messages and queued sessions (data lost now). `restored`: the last good backup replaced a damaged database,
so what arrived since that backup is gone and the damage has a cause to find. `requested` does not alert: the stack
asked for that restore (`restore.request`) and the same `pulumi up` applied it; the dashboard shows it."""


# --------------------------------------------------------------------------------------------------- helpers


def _prometheus_duration(seconds: int) -> str:
    """90060 -> "25h1m": a Prometheus duration (a rule's `for`, a range), in hours, minutes and seconds."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"


def _duration(seconds: int) -> str:
    """3600 -> "1h", 90000 -> "1d 1h": for descriptions."""
    out = []
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(out) or "0s"


def _alert(t: MonitoringTargets, name: str, expr: str, severity: str, summary: str, description: str,
           for_: str | None = None, **labels: str) -> dict:
    rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "namespace": t.namespace, **labels}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{t.runbook_url}#{name.lower()}",
    }
    return rule


# --------------------------------------------------------------------------------------------------- brokers


def broker_down(t: MonitoringTargets) -> list[dict]:
    """The exporter answers but says its broker is not serving (no MQTT connection, or no `$SYS` heartbeat for
    stale_after seconds). Critical after alert_after: clients of that broker are cut off or failing over."""
    return [_alert(
        t, "MosquittoBrokerDown", f"{selector('mosquitto_up', job=t.broker_job)} == 0", "critical",
        "Mosquitto broker {{ $labels.pod }} is not serving",
        "The exporter of {{ $labels.pod }} in " + t.namespace + " has had no live connection to its broker (or no "
        "$SYS heartbeat) for " + t.alert_after + ".",
        for_=t.alert_after)]


def broker_absent(t: MonitoringTargets) -> list[dict]:
    """Fewer broker pods scraped than broker_replicas (the autoscaler's minimum): a pod is gone, Pending or its
    exporter is dead, which `mosquitto_up` cannot say since nobody reports it. `or vector(0)` makes "no target at
    all" count as 0 instead of no series. Only the exporter's endpoint is counted: the backup sidecar's port is a
    second target of the same pod."""
    n = t.broker_replicas
    # one `up` per scraped port of a pod: count the exporter's (with backups on the backup sidecar has its own)
    up = selector("up", job=t.broker_job, endpoint=EXPORTER_PORT_NAME)
    return [_alert(
        t, "MosquittoBrokerAbsent", f"(count({up} == 1) or vector(0)) < {n}",
        "critical",
        f"Fewer than {n} Mosquitto brokers are up in {t.namespace}",
        "Only {{ $value }} of the " + str(n) + " broker pods of " + t.broker + " have been scraped successfully "
        "for " + t.alert_after + ".",
        for_=t.alert_after)]


def metrics_stale(t: MonitoringTargets) -> list[dict]:
    """Connected (last update > 0: the exporter zeroes it while disconnected) but no `$SYS` heartbeat for more
    than stale_after seconds, the exporter's own staleness limit: the broker's event loop is stuck or `$SYS`
    publishing is off. Warning: MosquittoBrokerDown fires too, this one says why. No `for`: the age only grows."""
    last = selector("mosquitto_exporter_last_update_timestamp_seconds", job=t.broker_job)
    s = t.stale_after_seconds
    return [_alert(
        t, "MosquittoMetricsStale", f"time() - {last} > {s} and {last} > 0", "warning",
        "Mosquitto broker {{ $labels.pod }} stopped publishing $SYS",
        "The exporter of {{ $labels.pod }} is connected but its last $SYS heartbeat is {{ $value | humanizeDuration }} "
        f"old (limit {_duration(s)}).")]


def connections_near_limit(t: MonitoringTargets) -> list[dict]:
    """Above 80% of a broker's connection capacity (max_connections x its client listeners) for 5 minutes:
    past 100% mosquitto refuses new clients; 20% leaves room for the clients of one failed broker's share to land
    on the others in a 5+ broker estate, and for the autoscaler to add a pod. Skipped when connections are
    unlimited."""
    if not t.connection_capacity:
        return []
    limit = t.connection_capacity * 4 // 5
    return [_alert(
        t, "MosquittoConnectionsNearLimit", f"{selector('mosquitto_clients_connected', job=t.broker_job)} > {limit}",
        "warning",
        "Mosquitto broker {{ $labels.pod }} is near its connection limit",
        "{{ $labels.pod }} has {{ $value }} clients connected, above " + str(limit) + " (80% of its capacity of "
        + str(t.connection_capacity) + " connections).",
        for_="5m")]


def messages_dropped(t: MonitoringTargets) -> list[dict]:
    """Any PUBLISH dropped in the last 5 minutes: a client's queue (max_queued_messages/bytes) is full, or
    QoS 0 messages to an offline session were discarded. Warning: it is data loss, but for one slow or absent
    consumer, not the estate."""
    dropped = selector("mosquitto_publish_messages_dropped_total", job=t.broker_job)
    return [_alert(
        t, "MosquittoMessagesDropped", f"increase({dropped}[5m]) > 0", "warning",
        "Mosquitto broker {{ $labels.pod }} is dropping messages",
        "{{ $labels.pod }} dropped {{ $value }} PUBLISH messages in the last 5 minutes (a client's queue of "
        + str(t.max_queued_messages) + " messages is full, or it is offline).")]


def store_growing(t: MonitoringTargets) -> list[dict]:
    """The message store above max_queued_messages (what one client may queue) and still growing over 15
    minutes, for 15 minutes: persistent sessions are accumulating messages nobody collects, which ends in dropped
    messages and memory pressure. The store also holds retained messages; the growth condition keeps a large but
    stable retained set from firing."""
    store = selector("mosquitto_store_messages", job=t.broker_job)
    m = t.max_queued_messages
    return [_alert(
        t, "MosquittoStoreGrowing", f"{store} > {m} and deriv({store}[15m]) > 0", "warning",
        "Mosquitto broker {{ $labels.pod }} is accumulating undelivered messages",
        "{{ $labels.pod }} holds {{ $value }} messages in its store (more than the per-client limit of " + str(m)
        + ") and the number has kept growing for 15 minutes.",
        for_="15m")]


def client_churn(t: MonitoringTargets) -> list[dict]:
    """New connections per minute (mosquitto's 5-minute moving average) above the clients connected plus 60, for
    10 minutes: on average every client reconnects more than once a minute, i.e. clients are being kicked (duplicate
    client ids, keepalive too short, ACL or TLS failures) or a crash-looping fleet hammers the broker."""
    load = selector("mosquitto_load_connections_per_minute", job=t.broker_job, window="5min")
    connected = selector("mosquitto_clients_connected", job=t.broker_job)
    return [_alert(
        t, "MosquittoClientChurn",
        f"{load} > ignoring(window) ({connected} + {CHURN_ALLOWANCE_PER_MINUTE})", "warning",
        "Clients of Mosquitto broker {{ $labels.pod }} keep reconnecting",
        "{{ $labels.pod }} accepts {{ $value }} new connections per minute (5-minute average), more than its "
        f"connected clients plus {CHURN_ALLOWANCE_PER_MINUTE}.",
        for_="10m")]


BROKER_ALERTS = (broker_down, broker_absent, metrics_stale, connections_near_limit, messages_dropped, store_growing,
                 client_churn)


# --------------------------------------------------------------------------------------------------- bridges


def _bridge_labels(b: BridgeTarget) -> dict:
    return {"bridge": b.name, "provider": b.provider}


def bridge_down(t: MonitoringTargets, b: BridgeTarget) -> list[dict]:
    """One of the bridge pod's legs is down (in a cloud-bridge pod mosquitto_clients_disconnected counts exactly
    its bridge connections that are down), or its exporter says the broker is down, or the pod is not scraped at
    all. Each branch is reduced to an empty label set (what `absent()` of an expression returns), so the alert
    keeps one identity, and its `for` timer, as the cause changes; the pod is a static label. Critical after
    alert_after: messages towards the cloud only queue from now on."""
    sel = {"job": t.bridge_job, "pod": b.pod}
    expr = (f"max({selector('mosquitto_clients_disconnected', **sel)} > 0)"
            f" or max({selector('mosquitto_up', **sel)} == 0)"
            f" or absent({selector('up', **sel)} == 1)")
    return [_alert(
        t, "MqttBridgeDown", expr, "critical",
        f"Cloud bridge {b.name} ({b.provider}) is down",
        f"The bridge pod {b.pod} has had a connection down, its broker not serving or no scrape for "
        f"{t.alert_after}; messages for {b.provider} are being buffered (limit {b.max_queued_messages}).",
        for_=t.alert_after, pod=b.pod, **_bridge_labels(b))]


def bridge_buffer_filling(t: MonitoringTargets, b: BridgeTarget) -> list[dict]:
    """The bridge's store above 80% of its buffer (maxQueuedMessages): past 100% mosquitto drops. Warning: the
    remaining 20% is the time left to restore the cloud link."""
    limit = b.max_queued_messages * 4 // 5
    store = selector("mosquitto_store_messages", job=t.bridge_job, pod=b.pod)
    return [_alert(
        t, "MqttBridgeBufferFilling", f"{store} > {limit}", "warning",
        f"Cloud bridge {b.name} buffer is filling up",
        "Bridge pod " + b.pod + " holds {{ $value }} messages, above " + str(limit) + " (80% of its buffer of "
        + str(b.max_queued_messages) + "); beyond the buffer messages for " + b.provider + " are dropped.",
        **_bridge_labels(b))]


def bridge_dropping(t: MonitoringTargets, b: BridgeTarget) -> list[dict]:
    """Any message dropped by the bridge pod in 5 minutes: its buffer is full and data meant for the cloud is lost
    for good. Critical."""
    dropped = selector("mosquitto_publish_messages_dropped_total", job=t.bridge_job, pod=b.pod)
    return [_alert(
        t, "MqttBridgeDroppingMessages", f"increase({dropped}[5m]) > 0", "critical",
        f"Cloud bridge {b.name} is losing messages",
        "Bridge pod " + b.pod + " dropped {{ $value }} messages for " + b.provider + " in the last 5 minutes.",
        **_bridge_labels(b))]


BRIDGE_ALERTS = (bridge_down, bridge_buffer_filling, bridge_dropping)


# --------------------------------------------------------------------------------------------------- frontend


def backend_servers_missing(t: MonitoringTargets) -> list[dict]:
    """An HAProxy client backend with fewer servers UP than broker_replicas, for alert_after: HAProxy's MQTT
    health check fails for a broker that should serve (or every broker, when the value is 0). Per frontend pod
    and backend, since each HAProxy checks on its own. Critical: that broker's share of new clients is refused
    or piled on the others."""
    f = t.frontend
    n = t.broker_replicas
    active = selector("haproxy_backend_active_servers", job=f.job, proxy="=~" + alternatives(f.backends))
    return [_alert(
        t, "HaproxyBackendServersMissing", f"{active} < {n}", "critical",
        "HAProxy {{ $labels.pod }} sees too few brokers in backend {{ $labels.proxy }}",
        "Backend {{ $labels.proxy }} of {{ $labels.pod }} has {{ $value }} of " + str(n) + " broker servers UP "
        "for " + t.alert_after + ".",
        for_=t.alert_after)]


def frontend_down(t: MonitoringTargets) -> list[dict]:
    """Fewer HAProxy pods scraped than frontend replicas, for alert_after (`or vector(0)`: none at all counts as
    0). Critical: the clients behind the missing replica's address are cut off."""
    f = t.frontend
    return [_alert(
        t, "HaproxyFrontendDown", f"(count({selector('up', job=f.job)} == 1) or vector(0)) < {f.replicas}",
        "critical",
        f"Fewer than {f.replicas} HAProxy frontends are up in {t.namespace}",
        "Only {{ $value }} of the " + str(f.replicas) + " HAProxy frontend pods have been scraped successfully "
        "for " + t.alert_after + ".",
        for_=t.alert_after)]


FRONTEND_ALERTS = (backend_servers_missing, frontend_down)


# --------------------------------------------------------------------------------------------------- credentials


def certificate_critical_seconds(t: MonitoringTargets) -> int:
    """7 days, or half the early-renewal window when that is shorter (short-lived test PKIs): the critical
    threshold must stay below the warning one, and below what a fresh certificate has."""
    return min(CERTIFICATE_CRITICAL_SECONDS, t.early_renewal_seconds // 2)


def certificates_expiring(t: MonitoringTargets) -> list[dict]:
    """pulumi-tls renews a certificate on the first `pulumi up` within early_renewal_seconds of its expiry, so a
    certificate with less left means nobody has run one since (warning), and with less than a week it becomes an
    emergency (critical): once it expires TLS clients, peers and bridges are refused. The SAS token has its own
    alert."""
    remaining = (f"{selector('mqtt_estate_credential_expiry_timestamp_seconds', credential='!=sas-token', namespace=t.namespace)}"
                 " - time()")
    critical = certificate_critical_seconds(t)
    description = ("The {{ $labels.credential }} of {{ $labels.pod }} expires in {{ $value | humanizeDuration }}")
    return [
        _alert(t, "CertificateExpiringSoon", f"{remaining} < {t.early_renewal_seconds}", "warning",
               "{{ $labels.credential }} of {{ $labels.pod }} was not renewed",
               description + f"; `pulumi up` renews it within {_duration(t.early_renewal_seconds)} of expiry, so "
               "none has run since."),
        _alert(t, "CertificateExpiryCritical", f"{remaining} < {critical}", "critical",
               "{{ $labels.credential }} of {{ $labels.pod }} is about to expire",
               description + f" (less than {_duration(critical)}); run `pulumi up` now."),
    ]


def sas_tokens_expiring(t: MonitoringTargets) -> list[dict]:
    """A SAS token with less than a quarter of its validity left. Every `pulumi up` issues one with more than half
    of it left (components/azure_sas.py), so this means none has run for at least a quarter of the validity;
    the remaining quarter is the time to run one before Azure IoT Hub refuses the bridge. One rule per bridge,
    since validities differ."""
    rules = []
    for b in t.bridges:
        if not b.sas_validity_seconds:
            continue
        threshold = b.sas_validity_seconds // 4
        expiry = selector("mqtt_estate_credential_expiry_timestamp_seconds", credential="sas-token",
                           namespace=t.namespace, pod=b.pod)
        rules.append(_alert(
            t, "SasTokenExpiringSoon", f"{expiry} - time() < {threshold}", "warning",
            f"SAS token of cloud bridge {b.name} is about to expire",
            "The SAS token of " + b.pod + " expires in {{ $value | humanizeDuration }} (less than a quarter of its "
            + _duration(b.sas_validity_seconds) + " validity); run `pulumi up` to issue a new one.",
            **_bridge_labels(b)))
    return rules


# --------------------------------------------------------------------------------------------------- backups
# The backup sidecar of every broker pod (container `backup`, port backup-metrics) is scraped by the broker
# PodMonitor: its samples carry the broker job, the pod, and endpoint="backup-metrics".


def _backup_selector(t: MonitoringTargets, metric: str, **matchers: str) -> str:
    return selector(metric, job=t.broker_job, **matchers)


def _alert_after_seconds(t: MonitoringTargets) -> int:
    return prometheus_duration_ms(t.alert_after) // 1000


def backup_stale_seconds(t: MonitoringTargets) -> int:
    """How long a broker pod may go without a successful backup: two schedule intervals plus alert_after."""
    return BACKUP_STALE_INTERVALS * t.backup_interval_seconds + _alert_after_seconds(t)


def backup_stale(t: MonitoringTargets) -> list[dict]:
    """No successful backup of a broker pod for more than two schedule intervals plus alert_after (W). One rule, so
    the alert keeps one identity (the sidecar target's job, namespace, pod, container and endpoint) whichever
    branch holds; its value is how long there has been no success, at least:

    - the last success is older than two of the intervals the sidecar exports plus alert_after (a pod still on an
      old schedule during a rollout is judged by its own); the value is its age;
    - or the sidecar's target exists (up 1, or 0 when it cannot be scraped: crash-looping, not started) and has
      reported no success at all in the last W (the metric is absent until a sidecar's first success, and a
      restarted sidecar forgets the last one), while the target already existed W ago (`offset`: a pod or a
      backup sidecar younger than W has not had its chance); the value is W.

    The age only grows and W is already waited for, so no `for`. Warning: nothing is lost until the volume is, but
    from now on a lost volume loses more than two schedules' worth of messages."""
    last = _backup_selector(t, BACKUP_LAST_SUCCESS)
    interval = _backup_selector(t, BACKUP_INTERVAL)
    target = selector("up", job=t.broker_job, endpoint=BACKUP_PORT_NAME)
    w_seconds = backup_stale_seconds(t)
    w = _prometheus_duration(w_seconds)
    old = f"time() - {last} > {BACKUP_STALE_INTERVALS} * {interval} + {_alert_after_seconds(t)}"
    none = (f"(({target} * 0 + {w_seconds} unless on(namespace, pod) last_over_time({last}[{w}]))"
            f" and on(namespace, pod) ({target} offset {w}))")
    return [_alert(
        t, "BackupStale", f"{old} or {none}", "warning",
        "No recent backup of Mosquitto broker {{ $labels.pod }}",
        "{{ $labels.pod }} in " + t.namespace + " has had no successful backup of its mosquitto.db for "
        "{{ $value | humanizeDuration }} or more (limit: " + str(BACKUP_STALE_INTERVALS) + " backup intervals of "
        + _duration(t.backup_interval_seconds) + " plus " + t.alert_after + "); a lost volume would lose everything "
        "written since.")]


def backup_failing(t: MonitoringTargets) -> list[dict]:
    """Backup attempts of a broker pod failed within the last two schedule intervals (the counter increased),
    unless a success is at least as recent as the last attempt: one failure is then already repaired by the next
    attempt. A window of two intervals always holds an attempt, so a sidecar failing on every attempt fires without
    a gap. Warning, before BackupStale: the sidecar logs one line per failure (container `backup`)."""
    window = _prometheus_duration(BACKUP_STALE_INTERVALS * t.backup_interval_seconds)
    failures = _backup_selector(t, BACKUP_FAILURES)
    succeeded = (f"{_backup_selector(t, BACKUP_LAST_SUCCESS)} >= "
                 f"{_backup_selector(t, BACKUP_LAST_ATTEMPT)}")
    return [_alert(
        t, "BackupFailing", f"increase({failures}[{window}]) > 0 unless on(namespace, pod) ({succeeded})",
        "warning",
        "Backups of Mosquitto broker {{ $labels.pod }} are failing",
        "Backup attempts of {{ $labels.pod }} in " + t.namespace + " failed in the last " + window + " and none "
        "has succeeded since; the log of its container `backup` has one line per failure.")]


def database_recovered(t: MonitoringTargets) -> list[dict]:
    """The restore initContainer replaced a broker's database in the last day (RECOVERY_SEVERITY: which outcomes
    alert and why). One rule per outcome, since the severity differs; the `outcome` label comes from the series."""
    rules = []
    for outcome, severity in RECOVERY_SEVERITY.items():
        recovered = _backup_selector(t, DATABASE_RECOVERY, outcome=outcome)
        happened = "{{ $value | humanizeDuration }} ago"
        if outcome == "empty":
            summary = "Mosquitto broker {{ $labels.pod }} started with an empty database"
            what = ("its database was damaged or missing and no backup could be restored, so it started empty: "
                    "its retained messages and the queued messages of offline sessions are gone")
        else:
            summary = "Mosquitto broker {{ $labels.pod }} was restored from a backup"
            what = ("its database was damaged or missing and was replaced by the last good backup: what arrived "
                    "after that backup is gone")
        rules.append(_alert(
            t, "BrokerDatabaseRecovered", f"time() - {recovered} < {RECOVERY_WINDOW_SECONDS}", severity, summary,
            happened + ", when {{ $labels.pod }} in " + t.namespace + " started, " + what + ". Nothing was "
            "deleted: a damaged database is kept as mosquitto.db.corrupt-<UTC time>."))
    return rules


BACKUP_ALERTS = (backup_stale, backup_failing, database_recovered)


# --------------------------------------------------------------------------------------------------- groups


def alert_groups(t: MonitoringTargets) -> list[dict]:
    """The PrometheusRule's `spec.groups`, in a fixed order."""
    groups = [{"name": "mqtt-estate-brokers", "rules": [r for make in BROKER_ALERTS for r in make(t)]}]
    if t.backup_interval_seconds:
        groups.append({"name": "mqtt-estate-backups", "rules": [r for make in BACKUP_ALERTS for r in make(t)]})
    if t.bridges and t.bridge_job:
        groups.append({"name": "mqtt-estate-bridges",
                       "rules": [r for make in BRIDGE_ALERTS for b in t.bridges for r in make(t, b)]})
    if t.frontend is not None:
        groups.append({"name": "mqtt-estate-frontend", "rules": [r for make in FRONTEND_ALERTS for r in make(t)]})
    groups.append({"name": "mqtt-estate-credentials", "rules": certificates_expiring(t) + sas_tokens_expiring(t)})
    return groups


def alert_names(t: MonitoringTargets) -> list[str]:
    """Every alert name alert_groups(t) defines, once each, in order."""
    return list(dict.fromkeys(r["alert"] for g in alert_groups(t) for r in g["rules"]))
