"""What MonitoringStack watches, as its alert rules and dashboards see it: one value derived from the estate's
configuration, so the PrometheusRule and the dashboards name the same jobs, pods and limits.

Prometheus Operator labels every sample scraped through a PodMonitor with `job` ("<namespace>/<PodMonitor
name>" unless the PodMonitor names a jobLabel), `namespace`, `pod`, `container` and `endpoint` (the port name)
(prometheus-operator v0.93.0-24-g6adcebc50 pkg/prometheus/promcfg.go:1602-1612 for namespace, container and pod,
1632-1641 for job, 1646-1648 for endpoint);
the local Prometheus of `estate up --local --monitoring` attaches the same labels (estate/prometheus_local.py).

With backups on, the broker PodMonitor scrapes two ports of each broker pod: the exporter's (endpoint `metrics`) and
the backup sidecar's (endpoint `backup-metrics`), so the backup agent's samples carry the broker job too and a
per-pod `up` exists once per endpoint.
"""

from dataclasses import dataclass
from typing import Optional

BACKUP_LAST_SUCCESS = "mosquitto_backup_last_success_timestamp_seconds"
"""Gauge: when the last backup was verified and stored (renewed without an upload when the database has not changed);
absent until the sidecar's first success."""
BACKUP_LAST_ATTEMPT = "mosquitto_backup_last_attempt_timestamp_seconds"
BACKUP_FAILURES = "mosquitto_backup_failures_total"
BACKUP_UPLOADS = "mosquitto_backup_uploads_total"
BACKUP_SIZE = "mosquitto_backup_size_bytes"
BACKUP_INTERVAL = "mosquitto_backup_interval_seconds"
"""The sidecar's schedule (BACKUP_INTERVAL_SECONDS), exported so an alert compares each pod with its own schedule."""
DATABASE_RECOVERY = "mosquitto_database_recovery_timestamp_seconds"
"""When the restore initContainer last replaced or emptied the database, with `outcome` restored (from a backup),
empty (no backup to restore: the broker started without its data) or requested (a restore the stack asked for)."""
BACKUP_METRICS = (BACKUP_LAST_SUCCESS, BACKUP_LAST_ATTEMPT, BACKUP_FAILURES, BACKUP_UPLOADS, BACKUP_SIZE,
                  BACKUP_INTERVAL, DATABASE_RECOVERY)
"""What the backup sidecar serves on its metrics port (backup_sidecar.METRICS_PORT; backup/agent.py names them)."""


@dataclass(frozen=True)
class BridgeTarget:
    name: str
    """The bridge's name in the stack config (`bridges[].name`)."""
    pod: str
    """Its pod: the StatefulSet `<broker>-cloud-<name>` has one replica, so `<broker>-cloud-<name>-0`."""
    provider: str
    """aws-iot-core, azure-iot-hub or mqtt"""
    max_queued_messages: int
    """Its buffer's limit (`bridges[].buffer.maxQueuedMessages`): beyond it mosquitto drops."""
    sas_validity_seconds: Optional[int] = None
    """An Azure SAS token's validity, when the bridge authenticates with one."""


@dataclass(frozen=True)
class FrontendTarget:
    job: str
    """`<namespace>/<frontend PodMonitor name>`"""
    replicas: int
    backends: tuple[str, ...]
    """HAProxy backends that carry clients (one per frontend port); each has one server per broker."""


@dataclass(frozen=True)
class MonitoringTargets:
    namespace: str
    broker: str
    """The broker StatefulSet's name: its pods are `<broker>-0`, `<broker>-1`, ..."""
    broker_job: str
    """`<namespace>/<broker PodMonitor name>`"""
    broker_replicas: int
    """Brokers that should be up (the autoscaler's minimum when there is one)."""
    connection_capacity: Optional[int]
    """max_connections x the client listeners of one broker; None when unlimited (no saturation alert)."""
    max_queued_messages: int
    """Per-client queue limit of the brokers (`limits.maxQueuedMessages`)."""
    leaf_validity_seconds: int
    """Validity of the server and client certificates (`pki.leafValidityHours`)."""
    early_renewal_seconds: int
    """pulumi-tls renews a certificate on the first `pulumi up` this long before it expires
    (`pki.earlyRenewalHours`): past it, nobody has run one."""
    alert_after: str
    """How long a broker, bridge or frontend must be down before its alert fires (a Prometheus duration)."""
    stale_after_seconds: int
    """The exporter withdraws a broker's values after this long without a `$SYS` heartbeat."""
    bridge_job: Optional[str] = None
    """`<namespace>/<cloud-bridge PodMonitor name>` when there are cloud bridges."""
    bridges: tuple[BridgeTarget, ...] = ()
    frontend: Optional[FrontendTarget] = None
    runbook_url: str = "https://github.com/mqtt-estate/mqtt-estate/blob/main/README.md"
    """Base of every alert's runbook_url annotation (a README anchor per alert is appended)."""
    backup_interval_seconds: Optional[int] = None
    """Seconds between a broker's backups (`broker.persistence.backup.schedule`); None: no backup sidecar, so no
    backup scrape, alerts or panels."""
