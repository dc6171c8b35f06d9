"""What MonitoringStack watches, as its alert rules and dashboards see it: one value derived from the estate's
configuration, so the PrometheusRule and the dashboards name the same jobs, pods and limits.

Prometheus Operator labels every sample scraped through a PodMonitor with `job` ("<namespace>/<PodMonitor
name>" unless the PodMonitor names a jobLabel), `namespace`, `pod`, `container` and `endpoint` (the port name)
(prometheus-operator v0.93.0-24-g6adcebc50 pkg/prometheus/promcfg.go:1602-1612 for namespace, container and pod,
1632-1641 for job, 1646-1648 for endpoint);
the local Prometheus of `estate up --local --monitoring` attaches the same labels (estate/prometheus_local.py).
"""

from dataclasses import dataclass
from typing import Optional


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
