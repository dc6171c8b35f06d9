"""MonitoringStack's shape (the prod stack, clustered, has it on by default) and the mistakes a plant engineer
makes in its arguments (components/monitoring_rules.py serves them and the stack check,
tests/test_monitoring_config.py)."""

from __future__ import annotations

import pytest
import yaml

from mqtt_estate.components.arguments import problems
from mqtt_estate.components.monitoring import MONITORING_API, MonitoringStack, MonitoringStackArgs
from mqtt_estate.estate.manifests import object_data
from tests.harness import by_name, run_components


def objects(rendered, stack: str) -> list[dict]:
    return rendered(stack).objects


def of_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def test_off_for_a_single_broker_on_for_prod(rendered):
    assert not [o for o in objects(rendered, "dev") if o["apiVersion"] == MONITORING_API]
    monitors = {o["metadata"]["name"]: o for o in of_kind(objects(rendered, "prod"), "PodMonitor")}
    assert sorted(monitors) == ["mosquitto", "mosquitto-frontend"]
    for monitor in monitors.values():
        # kube-prometheus-stack selects by its Helm release label
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rule = of_kind(objects(rendered, "prod"), "PrometheusRule")[0]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"MosquittoBrokerDown", "HaproxyBackendServersMissing", "MosquittoConnectionsNearLimit"} <= names


def test_frontend_metrics_need_the_stats_secret(rendered):
    objs = objects(rendered, "prod")
    monitor = next(o for o in of_kind(objs, "PodMonitor") if o["metadata"]["name"] == "mosquitto-frontend")
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    auth = endpoint["basicAuth"]
    secret = next(o for o in of_kind(objs, "Secret") if o["metadata"]["name"] == auth["password"]["name"])
    assert secret["metadata"]["namespace"] == monitor["metadata"]["namespace"]  # the Operator reads it from there
    assert {auth["username"]["key"], auth["password"]["key"]} <= set(object_data(secret))
    cfg = next(v for o in of_kind(objs, "ConfigMap") for k, v in object_data(o).items() if k == "haproxy.cfg")
    stats = cfg[cfg.index("frontend stats"):].split("\n\n")[0]
    rules = [line.strip() for line in stats.splitlines() if line.strip().startswith("http-request")]
    assert rules[0].startswith("http-request auth") and "use-service prometheus-exporter" in rules[1]


def broker_pod(objs) -> dict:
    sts = next(o for o in of_kind(objs, "StatefulSet") if o["metadata"]["name"] == "mosquitto")
    return sts["spec"]["template"]["spec"]


def test_only_the_prometheus_namespace_reaches_the_metrics_ports(rendered):
    objs = objects(rendered, "prod")
    scrape = [o for o in of_kind(objs, "NetworkPolicy") if o["metadata"]["name"].endswith("-scrape")]
    assert len(scrape) == 2
    # the exporter's port, and the backup sidecar's when the brokers have one
    backups = any(c["name"] == "backup" for c in broker_pod(objs)["containers"])
    for policy in scrape:
        (rule,) = policy["spec"]["ingress"]
        assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        assert [p["port"] for p in rule["ports"]] in ([9234, 9235] if backups else [9234], [8404])


def test_the_broker_podmonitor_scrapes_ports_the_pods_have(rendered):
    """Every endpoint of the broker PodMonitor names a container port of the broker pods (the Operator finds the
    target by that name), the backup sidecar's among them exactly when the pods have one."""
    objs = objects(rendered, "prod")
    monitor = next(o for o in of_kind(objs, "PodMonitor") if o["metadata"]["name"] == "mosquitto")
    scraped = [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]]
    pod = broker_pod(objs)
    named = {port["name"]: c["name"] for c in pod["containers"] for port in c.get("ports", [])}
    assert set(scraped) <= set(named)
    assert ("backup-metrics" in scraped) == any(c["name"] == "backup" for c in pod["containers"])
    assert named.get("backup-metrics", "backup") == "backup" and named["metrics"] == "exporter"


def test_exporter_sidecar_is_restricted_and_never_sees_the_key(rendered):
    sts = next(o for o in of_kind(objects(rendered, "prod"), "StatefulSet") if o["metadata"]["name"] == "mosquitto")
    pod = sts["spec"]["template"]["spec"]
    exporter = next(c for c in pod["containers"] if c["name"] == "exporter")
    assert exporter["securityContext"]["readOnlyRootFilesystem"] and exporter["securityContext"]["runAsNonRoot"]
    assert exporter["args"][:2] == ["--broker", "127.0.0.1:1880"]  # the loopback health listener: no credentials
    assert not any("password" in arg.lower() for arg in exporter["args"])
    mounted = {m["name"] for m in exporter["volumeMounts"]}
    for volume in pod["volumes"]:
        if volume["name"] in mounted:
            assert [i["key"] for i in volume["secret"]["items"]] == ["ca.crt", "tls.crt"]


def test_dashboards_are_configmaps_for_grafana_without_secrets(rendered):
    maps = [o for o in of_kind(objects(rendered, "prod"), "ConfigMap")
            if (o["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"]
    assert len(maps) == 2 and {m["metadata"]["namespace"] for m in maps} == {"monitoring"}
    for cm in maps:
        text = "".join(object_data(cm).values())
        assert "BEGIN" not in text and "password" not in text.lower()


ARGS: MonitoringStackArgs = {"namespace": "mqtt", "broker": "mosquitto", "broker_replicas": 3,
                             "max_queued_messages": 1000, "leaf_validity_hours": 8760, "early_renewal_hours": 720}


@pytest.mark.parametrize("change, line", [
    ({"alert_after": "10s", "scrape_interval": "30s"}, "args.alert_after: '10s' is shorter than scrape_interval"),
    ({"scrape_interval": "1h"}, "args.scrape_interval: '1h' is outside 1s to 2m"),
    ({"selector_labels": {"release": "a b"}}, "args.selector_labels:"),
    ({"broker_replicas": 0}, "args.broker_replicas: must be at least 1"),
    ({"backup_interval_seconds": "15m"}, "args.backup_interval_seconds: '15m' is not allowed"),
])
def test_component_arguments_follow_the_same_rules(change, line):
    found = problems("MonitoringStack", "mosquitto-monitoring", {**ARGS, **change}, MonitoringStackArgs)
    assert len(found) == 1 and line in found[0], found


def test_valid_arguments_pass():
    assert problems("MonitoringStack", "mosquitto-monitoring", ARGS, MonitoringStackArgs) == []


def test_podmonitors_use_only_fields_the_operator_defines(rendered):
    """PodMonitor spec fields used here, from prometheus-operator pkg/apis/monitoring/v1/podmonitor_types.go
    (selector, podMetricsEndpoints; endpoint port, path, interval, basicAuth with SecretKeySelectors)."""
    for monitor in of_kind(objects(rendered, "prod"), "PodMonitor"):
        assert set(monitor["spec"]) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "basicAuth"}
    yaml.safe_dump(objects(rendered, "prod"))


@pytest.mark.parametrize("backup_interval", [None, 900], ids=["no-backups", "backups"])
def test_backup_sidecars_are_scraped_only_when_backups_are_on(backup_interval):
    """With backups the broker PodMonitor gets the sidecar's port as a second endpoint, its NetworkPolicy admits
    the Prometheus namespace to it too, and the PrometheusRule gets the backup group."""
    args = {**ARGS, **({"backup_interval_seconds": backup_interval} if backup_interval else {})}
    registry = run_components(lambda: MonitoringStack("mosquitto-monitoring", args))
    monitor = by_name(registry, "mosquitto-monitoring-brokers-podmonitor").inputs
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    scrape = by_name(registry, "mosquitto-monitoring-brokers-scrape").inputs["spec"]
    (rule,) = scrape["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    groups = [g["name"] for g in by_name(registry, "mosquitto-monitoring-rules").inputs["spec"]["groups"]]
    if backup_interval:
        assert [e["port"] for e in endpoints] == ["metrics", "backup-metrics"]
        assert {e["interval"] for e in endpoints} == {"30s"} and {e["path"] for e in endpoints} == {"/metrics"}
        assert rule["ports"] == [{"port": 9234, "protocol": "TCP"}, {"port": 9235, "protocol": "TCP"}]
        assert "mqtt-estate-backups" in groups
    else:
        assert [e["port"] for e in endpoints] == ["metrics"]
        assert rule["ports"] == [{"port": 9234, "protocol": "TCP"}]
        assert "mqtt-estate-backups" not in groups
