"""MonitoringStack: what Prometheus Operator and Grafana need to watch an estate.

- a PodMonitor per kind of pod (brokers, cloud bridges: their exporter sidecars, and the brokers' backup sidecars
  when backups are on; the frontend: HAProxy's own Prometheus endpoint, behind the stats credentials), labelled so
  kube-prometheus-stack selects them;
- a NetworkPolicy per kind admitting the Prometheus namespace to those ports only (the brokers' namespace denies
  everything else);
- a PrometheusRule generated from the estate (components/alert_rules.py);
- Grafana dashboards as ConfigMaps for the dashboard sidecar (components/dashboards.py).
The exporter and backup sidecars themselves belong to the pods they watch (MosquittoBroker's `exporter` and
`backup`, CloudBridge's `exporter`).
"""

from typing import Mapping, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
from typing_extensions import Required

from .alert_rules import alert_groups
from .arguments import check_arguments
from .backup_sidecar import METRICS_PORT as BACKUP_PORT, METRICS_PORT_NAME as BACKUP_PORT_NAME
from .broker import APP as BROKER_APP
from .cloud_bridge import APP as BRIDGE_APP
from .dashboards import dashboards
from .exporter_sidecar import PORT as EXPORTER_PORT, PORT_NAME as EXPORTER_PORT_NAME, STALE_AFTER_SECONDS
from .haproxy_cfg import STATS_PORT
from .haproxy_pod import APP as FRONTEND_APP
from .kube import labels, selector
from .monitoring_targets import BridgeTarget, FrontendTarget, MonitoringTargets

APP = "mqtt-estate-monitoring"
MONITORING_API = "monitoring.coreos.com/v1"
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
"""What kube-prometheus-stack's Grafana sidecar looks for in ConfigMaps, in every namespace
(prometheus-community/helm-charts cf408a29 charts/kube-prometheus-stack/values.yaml:1536-1542: label
grafana_dashboard, labelValue "1", searchNamespace ALL). Its Prometheus selects PodMonitors and PrometheusRules by
`release: <Helm release>` (templates/prometheus/prometheus.yaml:209-217 and 277-285): our selector_labels."""
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set on every namespace automatically (kubernetes/api 10b39a39 core/v1/well_known_labels.go:72-73), so a
NetworkPolicy can select one by name."""
FRONTEND_METRICS_PATH = "/metrics"


class MonitoredBridge(TypedDict):
    """A cloud bridge as the alerts see it."""

    name: str
    """The bridge's name (`bridges[].name`)."""
    workload: str
    """Its StatefulSet (one pod, `<workload>-0`)."""
    provider: str
    """aws-iot-core, azure-iot-hub or mqtt."""
    max_queued_messages: int
    """Its buffer's limit."""
    sas_validity_seconds: Optional[int]
    """An Azure SAS token's validity (absent: no token)."""


class MonitoredFrontend(TypedDict):
    """The HAProxy frontend as the alerts see it."""

    name: str
    """Its Deployment's name (the pods' app.kubernetes.io/instance)."""
    replicas: int
    """HAProxy replicas that should be up."""
    backends: Sequence[str]
    """Backends carrying clients; each has a server per broker."""
    stats_secret: pulumi.Input[str]
    """The Secret with keys `username` and `password` of HAProxy's stats and metrics endpoint."""


class MonitoringStackArgs(TypedDict, total=False):
    namespace: Required[str]
    """The estate's namespace."""
    broker: Required[str]
    """The MosquittoBroker's name (its StatefulSet)."""
    broker_replicas: Required[int]
    """Brokers that should be up."""
    connection_capacity: Optional[int]
    """Connections one broker admits (max_connections x client listeners); absent: no saturation alert."""
    max_queued_messages: Required[int]
    """The brokers' per-client queue limit."""
    leaf_validity_hours: Required[int]
    """Validity of the estate's server and client certificates."""
    early_renewal_hours: Required[int]
    """How early `pulumi up` renews them."""
    bridges: Sequence[MonitoredBridge]
    """Cloud bridges with an exporter sidecar."""
    frontend: Optional[MonitoredFrontend]
    """The HAProxy frontend (absent: none)."""
    selector_labels: Mapping[str, str]
    """Labels by which Prometheus selects the PodMonitors and the PrometheusRule (default release:
    kube-prometheus-stack)."""
    prometheus_namespace: str
    """Where Prometheus runs (default monitoring): admitted to the metrics ports."""
    scrape_interval: str
    """PodMonitor interval (default 30s)."""
    alert_after: str
    """How long something is down before its alert fires (default 1m)."""
    dashboards: bool
    """Grafana dashboards as ConfigMaps (default True)."""
    dashboards_namespace: Optional[str]
    """Where the dashboard ConfigMaps go (default: prometheus_namespace)."""
    runbook_url: str
    """Base URL of the alerts' runbook (README sections)."""
    backup_interval_seconds: Optional[int]
    """Seconds between the brokers' backups when they have a backup sidecar (absent: none; no backup scrape,
    alerts or dashboard panels)."""


class MonitoringStack(pulumi.ComponentResource):
    """PodMonitors, NetworkPolicies, a PrometheusRule and Grafana dashboards for one estate."""

    prometheus_rule_name: str
    """The PrometheusRule's name (its groups are generated from the arguments: components/alert_rules.py)."""

    def __init__(self, name: str, args: MonitoringStackArgs, opts: Optional[pulumi.ResourceOptions] = None):
        check_arguments("MonitoringStack", name, args, MonitoringStackArgs)
        super().__init__("mqtt-estate:index:MonitoringStack", name, None, opts)
        self._name, self._ns = name, args["namespace"]
        self._child = pulumi.ResourceOptions(parent=self)
        self._select = dict(args.get("selector_labels", {"release": "kube-prometheus-stack"}))
        self._interval = args.get("scrape_interval", "30s")
        self._prometheus_ns = args.get("prometheus_namespace", "monitoring")
        broker, bridges, frontend = args["broker"], list(args.get("bridges", ())), args.get("frontend")

        backup_interval = args.get("backup_interval_seconds")
        broker_ports = [(EXPORTER_PORT_NAME, EXPORTER_PORT)] + ([(BACKUP_PORT_NAME, BACKUP_PORT)]
                                                                if backup_interval else [])
        broker_monitor = self._pod_monitor("brokers", broker, {"matchLabels": selector(BROKER_APP, broker)},
                                           broker_ports)
        bridge_monitor = self._pod_monitor(
            "bridges", f"{broker}-cloud-bridges", {"matchLabels": {"app.kubernetes.io/name": BRIDGE_APP},
                                                   "matchExpressions": [{
                                                       "key": "app.kubernetes.io/instance", "operator": "In",
                                                       "values": sorted(b["workload"] for b in bridges)}]},
            [(EXPORTER_PORT_NAME, EXPORTER_PORT)]) if bridges else None
        frontend_monitor = self._pod_monitor(
            "frontend", frontend["name"], {"matchLabels": selector(FRONTEND_APP, frontend["name"])},
            [("stats", STATS_PORT)], basic_auth=frontend["stats_secret"]) if frontend else None

        targets = MonitoringTargets(
            namespace=self._ns, broker=broker, broker_job=broker_monitor, broker_replicas=args["broker_replicas"],
            connection_capacity=args.get("connection_capacity"), max_queued_messages=args["max_queued_messages"],
            leaf_validity_seconds=args["leaf_validity_hours"] * 3600,
            early_renewal_seconds=args["early_renewal_hours"] * 3600,
            alert_after=args.get("alert_after", "1m"), stale_after_seconds=STALE_AFTER_SECONDS,
            bridge_job=bridge_monitor,
            bridges=tuple(BridgeTarget(b["name"], f"{b['workload']}-0", b["provider"], b["max_queued_messages"],
                                       b.get("sas_validity_seconds")) for b in bridges),
            frontend=FrontendTarget(frontend_monitor, frontend["replicas"], tuple(frontend["backends"]))
            if frontend else None,
            runbook_url=args.get("runbook_url", "https://github.com/mqtt-estate/mqtt-estate/blob/main/README.md"),
            backup_interval_seconds=backup_interval or None)
        k8s.apiextensions.CustomResource(
            f"{name}-rules", api_version=MONITORING_API, kind="PrometheusRule",
            metadata=self._meta(name), spec={"groups": alert_groups(targets)}, opts=self._child)
        if args.get("dashboards", True):
            self._dashboards(targets, args.get("dashboards_namespace") or self._prometheus_ns)
        self.prometheus_rule_name = name
        self.register_outputs({"prometheus_rule_name": name})

    def _meta(self, obj_name: str, namespace: Optional[str] = None, **extra_labels) -> dict:
        return {"name": obj_name, "namespace": namespace or self._ns,
                "labels": {**labels(APP, self._name, "monitoring"), **self._select, **extra_labels}}

    def _pod_monitor(self, role: str, monitor: str, pod_selector: dict, ports: list[tuple[str, int]],
                     basic_auth: Optional[pulumi.Input[str]] = None) -> str:
        """A PodMonitor scraping each (port name, port) of the pods, and the NetworkPolicy that lets Prometheus
        reach those ports; returns the `job` label Prometheus Operator gives the samples of every endpoint
        (`<namespace>/<PodMonitor name>`; the `endpoint` label tells the ports apart)."""
        endpoints = []
        for port_name, _ in ports:
            endpoint: dict = {"port": port_name, "path": "/metrics", "interval": self._interval}
            if basic_auth is not None:
                # the Secret must be in the PodMonitor's namespace: Prometheus Operator reads it from there
                # (v0.93.0-24-g6adcebc50 pkg/prometheus/resource_selector.go:365 and 392)
                endpoint["basicAuth"] = {"username": {"name": basic_auth, "key": "username"},
                                         "password": {"name": basic_auth, "key": "password"}}
            endpoints.append(endpoint)
        k8s.apiextensions.CustomResource(
            f"{self._name}-{role}-podmonitor", api_version=MONITORING_API, kind="PodMonitor",
            metadata=self._meta(monitor),
            spec={"selector": pod_selector, "podMetricsEndpoints": endpoints}, opts=self._child)
        k8s.networking.v1.NetworkPolicy(
            f"{self._name}-{role}-scrape", metadata=self._meta(f"{monitor}-scrape"),
            spec={"podSelector": pod_selector, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                      NAMESPACE_NAME_LABEL: self._prometheus_ns}}}],
                      "ports": [{"port": port, "protocol": "TCP"} for _, port in ports]}]},
            opts=self._child)
        return f"{self._ns}/{monitor}"

    def _dashboards(self, targets: MonitoringTargets, namespace: str) -> None:
        for file_name, text in sorted(dashboards(targets).items()):
            role = file_name.removesuffix(".json").removeprefix("mqtt-estate-")
            k8s.core.v1.ConfigMap(
                f"{self._name}-dashboard-{role}", metadata=self._meta(
                    f"{self._name}-dashboard-{role}", namespace, **DASHBOARD_LABEL),
                data={file_name: text}, opts=self._child)
