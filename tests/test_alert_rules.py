"""MonitoringStack's alert rules (components/alert_rules.py), checked by promtool: the generated rule file passes
`promtool check rules`, and for every alert a `promtool test rules` file has cases where it fires (labels and
annotations exact) and cases where the healthy, or just-below-threshold, series leave it silent.

One pytest test per alert, so a failure names the alert; promtool's own report (expected vs got) is shown.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from mqtt_estate.components.alert_rules import alert_groups, alert_names
from mqtt_estate.components.monitoring_targets import BridgeTarget, FrontendTarget, MonitoringTargets

PROMTOOL = "/usr/bin/promtool"
DAY = 86400
NS = "factory"
RUNBOOK = "https://example.test/mqtt-estate/README.md"

TARGETS = MonitoringTargets(
    namespace=NS, broker="mosquitto", broker_job=f"{NS}/mosquitto", broker_replicas=3, connection_capacity=10_000,
    max_queued_messages=1000, leaf_validity_seconds=365 * DAY, early_renewal_seconds=30 * DAY, alert_after="1m",
    stale_after_seconds=120, bridge_job=f"{NS}/mosquitto-cloud",
    bridges=(BridgeTarget("aws", "mosquitto-cloud-aws-0", "aws-iot-core", 5000),
             BridgeTarget("azure", "mosquitto-cloud-azure-0", "azure-iot-hub", 2000, sas_validity_seconds=DAY)),
    frontend=FrontendTarget(f"{NS}/mqtt-frontend", 2, ("mqtt", "mqtts")),
    runbook_url=RUNBOOK)


# ------------------------------------------------------------------------------------------ series and labels


def _labels(job: str, pod: str, container: str, **extra: str) -> dict:
    return {"job": job, "namespace": NS, "pod": pod, "container": container, "endpoint": "metrics", **extra}


def broker(i: int, **extra: str) -> dict:
    return _labels(TARGETS.broker_job, f"mosquitto-{i}", "exporter", **extra)


def bridge(name: str, **extra: str) -> dict:
    return _labels(TARGETS.bridge_job, f"mosquitto-cloud-{name}-0", "exporter", **extra)


def haproxy(i: int, **extra: str) -> dict:
    return _labels(TARGETS.frontend.job, f"mqtt-frontend-{i}", "haproxy", **extra)


def series(metric: str, labels: dict, values: str) -> dict:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{metric}{{{inner}}}", "values": values}


def all_up(values: str = "1x30") -> list[dict]:
    """Every scrape target of the full estate up."""
    return ([series("up", broker(i), values) for i in range(3)]
            + [series("up", bridge(b), values) for b in ("aws", "azure")]
            + [series("up", haproxy(i), values) for i in range(2)])


# ------------------------------------------------------------------------------------------ expected annotations


def go_float(value: float) -> str:
    """How Go's text/template prints a float64 ($value): shortest digits, exponent form from 1e6 up or below
    1e-4 (strconv 'g', -1)."""
    if value == int(value) and abs(value) < 1e21:
        digits = Decimal(int(value)).normalize()
    else:
        digits = Decimal(repr(value)).normalize()
    sign, ds, exp = digits.as_tuple()
    point = len(ds) + exp - 1
    if point < -4 or point >= 21 or (point >= 6):
        mantissa = "".join(map(str, ds))
        m = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
        return f"{'-' if sign else ''}{m}e{'+' if point >= 0 else '-'}{abs(point):02d}"
    return format(digits, "f")


def humanize_duration(value: float) -> str:
    """Prometheus' humanizeDuration, for the values these tests produce (at least one second)."""
    assert value >= 1
    d = int(value)
    days, hours, minutes, seconds = d // DAY, d // 3600 % 24, d // 60 % 60, d % 60
    if days:
        return f"{days}d {hours}h {minutes}m {seconds}s"
    if hours:
        return f"{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{value:.4g}s"


def expand(template: str, labels: dict, value: float) -> str:
    """The few template forms the rules use: {{ $labels.x }}, {{ $value }}, {{ $value | humanizeDuration }}."""
    def one(m: re.Match) -> str:
        expr = m.group(1).strip()
        if expr.startswith("$labels."):
            return labels[expr.removeprefix("$labels.")]
        if expr == "$value":
            return go_float(value)
        if expr == "$value | humanizeDuration":
            return humanize_duration(value)
        raise AssertionError(f"template form {expr!r} not handled by the test")
    return re.sub(r"\{\{(.*?)\}\}", one, template)


def rule_for(alert: str, labels: dict, targets: MonitoringTargets = TARGETS) -> dict:
    """The rule (of possibly several with that name, e.g. one per bridge) whose static labels the alert has."""
    rules = [r for g in alert_groups(targets) for r in g["rules"]
             if r["alert"] == alert and r["labels"].items() <= labels.items()]
    assert len(rules) == 1, f"{alert} {labels}: {len(rules)} rules match"
    return rules[0]


# ------------------------------------------------------------------------------------------ cases


@dataclass
class Fired:
    labels: dict
    """The alert's full label set (without alertname)."""
    value: float
    """Its $value at eval_time, for the templated annotations."""
    annotations: dict | None = None
    """Literal expected annotations; None expands the rule's own templates with labels and value."""


@dataclass
class Case:
    alert: str
    name: str
    input_series: list[dict]
    eval_time: str
    fired: list[Fired] = field(default_factory=list)


def crit(labels: dict, **extra) -> dict:
    return {**labels, **extra, "severity": "critical"}


def warn(labels: dict, **extra) -> dict:
    return {**labels, **extra, "severity": "warning"}


AWS = {"bridge": "aws", "provider": "aws-iot-core"}
AZURE = {"bridge": "azure", "provider": "azure-iot-hub"}
HEALTHY_BRIDGES = [s for b in ("aws", "azure") for s in (series("mosquitto_up", bridge(b), "1x30"),
                                                          series("mosquitto_clients_disconnected", bridge(b), "0x30"))]

CASES: list[Case] = [
    # MosquittoBrokerDown
    Case("MosquittoBrokerDown", "healthy", all_up() + [series("mosquitto_up", broker(i), "1x30") for i in range(3)],
         "5m"),
    Case("MosquittoBrokerDown", "pending-within-alert_after",
         [series("mosquitto_up", broker(1), "1 1 1 1 0x30")], "4m"),
    Case("MosquittoBrokerDown", "broker-1-down",
         [series("mosquitto_up", broker(0), "1x30"), series("mosquitto_up", broker(1), "1 1 0x30")], "5m",
         [Fired(crit(broker(1)), 0, {
             "summary": "Mosquitto broker mosquitto-1 is not serving",
             "description": "The exporter of mosquitto-1 in factory has had no live connection to its broker (or no "
                            "$SYS heartbeat) for 1m.",
             "runbook_url": RUNBOOK + "#mosquittobrokerdown"})]),
    # MosquittoBrokerAbsent
    Case("MosquittoBrokerAbsent", "all-three-up", all_up(), "5m"),
    Case("MosquittoBrokerAbsent", "broker-2-not-scraped",
         [series("up", broker(0), "1x30"), series("up", broker(1), "1x30"), series("up", broker(2), "1 1 0x30")],
         "5m",
         [Fired({"namespace": NS, "severity": "critical"}, 2, {
             "summary": "Fewer than 3 Mosquitto brokers are up in factory",
             "description": "Only 2 of the 3 broker pods of mosquitto have been scraped successfully for 1m.",
             "runbook_url": RUNBOOK + "#mosquittobrokerabsent"})]),
    Case("MosquittoBrokerAbsent", "no-target-at-all", [series("up", haproxy(0), "1x30")], "5m",
         [Fired({"namespace": NS, "severity": "critical"}, 0)]),
    # with backups on each broker pod is scraped twice (exporter and backup sidecar): only the exporter counts
    Case("MosquittoBrokerAbsent", "broker-2-gone-its-peers-backup-targets-up",
         [series("up", broker(i), "1x30") for i in range(2)]
         + [series("up", {**broker(i), "container": "backup", "endpoint": "backup-metrics"}, "1x30")
            for i in range(2)], "5m",
         [Fired({"namespace": NS, "severity": "critical"}, 2)]),
    # MosquittoMetricsStale: the heartbeat's timestamp follows the clock (0+60 per 1m step) while fresh
    Case("MosquittoMetricsStale", "fresh-heartbeats",
         [series("mosquitto_exporter_last_update_timestamp_seconds", broker(i), "0+60x30") for i in range(3)], "10m"),
    Case("MosquittoMetricsStale", "disconnected-is-not-stale",
         [series("mosquitto_exporter_last_update_timestamp_seconds", broker(0), "0x30")], "10m"),
    Case("MosquittoMetricsStale", "heartbeat-stopped-at-3m",
         [series("mosquitto_exporter_last_update_timestamp_seconds", broker(0), "0+60x30"),
          series("mosquitto_exporter_last_update_timestamp_seconds", broker(2), "0+60x3 180x30")], "10m",
         [Fired(warn(broker(2)), 420, {
             "summary": "Mosquitto broker mosquitto-2 stopped publishing $SYS",
             "description": "The exporter of mosquitto-2 is connected but its last $SYS heartbeat is 7m 0s old "
                            "(limit 2m).",
             "runbook_url": RUNBOOK + "#mosquittometricsstale"})]),
    # MosquittoConnectionsNearLimit: capacity 10000, limit 8000
    Case("MosquittoConnectionsNearLimit", "at-80-percent",
         [series("mosquitto_clients_connected", broker(0), "8000x30")], "10m"),
    Case("MosquittoConnectionsNearLimit", "above-for-less-than-5m",
         [series("mosquitto_clients_connected", broker(0), "100x6 8500x30")], "10m"),
    Case("MosquittoConnectionsNearLimit", "above-80-percent",
         [series("mosquitto_clients_connected", broker(0), "8500x30"),
          series("mosquitto_clients_connected", broker(1), "3000x30")], "10m",
         [Fired(warn(broker(0)), 8500)]),
    # MosquittoMessagesDropped
    Case("MosquittoMessagesDropped", "counter-flat",
         [series("mosquitto_publish_messages_dropped_total", broker(0), "7x30")], "10m"),
    Case("MosquittoMessagesDropped", "drops-in-last-5m",
         [series("mosquitto_publish_messages_dropped_total", broker(1), "0 0 0 5x30")], "5m",
         [Fired(warn(broker(1)), 5)]),
    # MosquittoStoreGrowing: limit 1000 messages
    Case("MosquittoStoreGrowing", "large-but-stable",
         [series("mosquitto_store_messages", broker(0), "5000x40")], "30m"),
    Case("MosquittoStoreGrowing", "growing-but-small",
         [series("mosquitto_store_messages", broker(0), "100+10x40")], "30m"),
    Case("MosquittoStoreGrowing", "above-and-growing",
         [series("mosquitto_store_messages", broker(0), "500+100x40")], "30m",
         [Fired(warn(broker(0)), 3500)]),
    # MosquittoClientChurn: 5min load above connected + 60
    Case("MosquittoClientChurn", "normal-reconnects",
         [series("mosquitto_load_connections_per_minute", broker(0, window="5min"), "100x30"),
          series("mosquitto_load_connections_per_minute", broker(0, window="1min"), "500x30"),
          series("mosquitto_clients_connected", broker(0), "50x30")], "15m"),
    Case("MosquittoClientChurn", "reconnect-storm",
         [series("mosquitto_load_connections_per_minute", broker(0, window="5min"), "200x30"),
          series("mosquitto_clients_connected", broker(0), "50x30")], "15m",
         [Fired(warn(broker(0)), 200)]),
    # MqttBridgeDown
    Case("MqttBridgeDown", "both-bridges-healthy", all_up() + HEALTHY_BRIDGES, "5m"),
    Case("MqttBridgeDown", "aws-leg-down",
         all_up() + HEALTHY_BRIDGES[2:] + [series("mosquitto_up", bridge("aws"), "1x30"),
                                           series("mosquitto_clients_disconnected", bridge("aws"), "0 0 1x30")], "5m",
         [Fired(crit({"pod": "mosquitto-cloud-aws-0", "namespace": NS}, **AWS), 1, {
             "summary": "Cloud bridge aws (aws-iot-core) is down",
             "description": "The bridge pod mosquitto-cloud-aws-0 has had a connection down, its broker not serving "
                            "or no scrape for 1m; messages for aws-iot-core are being buffered (limit 5000).",
             "runbook_url": RUNBOOK + "#mqttbridgedown"})]),
    Case("MqttBridgeDown", "aws-broker-down",
         all_up() + HEALTHY_BRIDGES[2:] + [series("mosquitto_up", bridge("aws"), "1 0x30"),
                                           series("mosquitto_clients_disconnected", bridge("aws"), "0 _x30")], "5m",
         [Fired(crit({"pod": "mosquitto-cloud-aws-0", "namespace": NS}, **AWS), 0)]),
    Case("MqttBridgeDown", "cause-changes-timer-kept",
         all_up() + HEALTHY_BRIDGES[2:] + [series("mosquitto_up", bridge("aws"), "1 1 1 0x30"),
                                           series("mosquitto_clients_disconnected", bridge("aws"), "0 0 1 _x30")],
         "3m", [Fired(crit({"pod": "mosquitto-cloud-aws-0", "namespace": NS}, **AWS), 0)]),
    Case("MqttBridgeDown", "azure-pod-gone",
         [s for s in all_up() if "azure" not in s["series"]] + HEALTHY_BRIDGES[:2], "5m",
         [Fired(crit({"pod": "mosquitto-cloud-azure-0", "namespace": NS}, **AZURE), 1)]),
    # MqttBridgeBufferFilling: aws buffer 5000 (limit 4000), azure 2000 (limit 1600)
    Case("MqttBridgeBufferFilling", "at-80-percent",
         [series("mosquitto_store_messages", bridge("aws"), "4000x10"),
          series("mosquitto_store_messages", bridge("azure"), "1600x10")], "5m"),
    Case("MqttBridgeBufferFilling", "azure-above-80-percent",
         [series("mosquitto_store_messages", bridge("aws"), "1700x10"),
          series("mosquitto_store_messages", bridge("azure"), "1700x10")], "5m",
         [Fired(warn(bridge("azure"), **AZURE), 1700)]),
    # MqttBridgeDroppingMessages
    Case("MqttBridgeDroppingMessages", "counter-flat",
         [series("mosquitto_publish_messages_dropped_total", bridge(b), "3x30") for b in ("aws", "azure")], "10m"),
    Case("MqttBridgeDroppingMessages", "aws-dropping",
         [series("mosquitto_publish_messages_dropped_total", bridge("aws"), "0 0 0 4x30"),
          series("mosquitto_publish_messages_dropped_total", bridge("azure"), "0x30")], "5m",
         [Fired(crit(bridge("aws"), **AWS), 4, {
             "summary": "Cloud bridge aws is losing messages",
             "description": "Bridge pod mosquitto-cloud-aws-0 dropped 4 messages for aws-iot-core in the last "
                            "5 minutes.",
             "runbook_url": RUNBOOK + "#mqttbridgedroppingmessages"})]),
    # HaproxyBackendServersMissing: 3 brokers per backend
    Case("HaproxyBackendServersMissing", "all-servers-up",
         [series("haproxy_backend_active_servers", haproxy(i, proxy=p), "3x10") for i in range(2)
          for p in ("mqtt", "mqtts")] + [series("haproxy_backend_active_servers", haproxy(0, proxy="stats"), "0x10")],
         "5m"),
    Case("HaproxyBackendServersMissing", "mqtts-of-frontend-1-lost-one",
         [series("haproxy_backend_active_servers", haproxy(i, proxy=p), "3x10") for i in range(2) for p in ("mqtt",)]
         + [series("haproxy_backend_active_servers", haproxy(0, proxy="mqtts"), "3x10"),
            series("haproxy_backend_active_servers", haproxy(1, proxy="mqtts"), "3 2x10")], "5m",
         [Fired(crit(haproxy(1, proxy="mqtts")), 2, {
             "summary": "HAProxy mqtt-frontend-1 sees too few brokers in backend mqtts",
             "description": "Backend mqtts of mqtt-frontend-1 has 2 of 3 broker servers UP for 1m.",
             "runbook_url": RUNBOOK + "#haproxybackendserversmissing"})]),
    # HaproxyFrontendDown: 2 replicas
    Case("HaproxyFrontendDown", "both-up", all_up(), "5m"),
    Case("HaproxyFrontendDown", "frontend-0-down",
         [series("up", haproxy(0), "1 0x10"), series("up", haproxy(1), "1x10")], "5m",
         [Fired({"namespace": NS, "severity": "critical"}, 1)]),
    # CertificateExpiringSoon: early renewal 30 days (evaluated at 10m = Unix 600)
    Case("CertificateExpiringSoon", "renewed-certificates",
         [series("mqtt_estate_credential_expiry_timestamp_seconds", broker(0, credential="server-certificate"),
                 f"{100 * DAY}x20"),
          series("mqtt_estate_credential_expiry_timestamp_seconds", broker(0, credential="ca-certificate"),
                 f"{3000 * DAY}x20"),
          series("mqtt_estate_credential_expiry_timestamp_seconds", bridge("azure", credential="sas-token"),
                 "3600x20"),
          series("mqtt_estate_credential_expiry_timestamp_seconds",
                 {**broker(0, credential="server-certificate"), "namespace": "other"}, f"{DAY}x20")], "10m"),
    Case("CertificateExpiringSoon", "server-certificate-not-renewed",
         [series("mqtt_estate_credential_expiry_timestamp_seconds", broker(0, credential="server-certificate"),
                 f"{20 * DAY}x20"),
          series("mqtt_estate_credential_expiry_timestamp_seconds", broker(1, credential="server-certificate"),
                 f"{100 * DAY}x20")], "10m",
         [Fired(warn(broker(0, credential="server-certificate")), 20 * DAY - 600, {
             "summary": "server-certificate of mosquitto-0 was not renewed",
             "description": "The server-certificate of mosquitto-0 expires in 19d 23h 50m 0s; `pulumi up` renews "
                            "it within 30d of expiry, so none has run since.",
             "runbook_url": RUNBOOK + "#certificateexpiringsoon"})]),
    # CertificateExpiryCritical: 7 days
    Case("CertificateExpiryCritical", "twenty-days-left",
         [series("mqtt_estate_credential_expiry_timestamp_seconds", bridge("aws", credential="cloud-certificate"),
                 f"{20 * DAY}x20"),
          series("mqtt_estate_credential_expiry_timestamp_seconds", bridge("azure", credential="sas-token"),
                 "3600x20")], "10m"),
    Case("CertificateExpiryCritical", "cloud-certificate-five-days",
         [series("mqtt_estate_credential_expiry_timestamp_seconds", bridge("aws", credential="cloud-certificate"),
                 f"{5 * DAY}x20")], "10m",
         [Fired(crit(bridge("aws", credential="cloud-certificate")), 5 * DAY - 600)]),
    # SasTokenExpiringSoon: azure validity 1 day, alert below 6h
    Case("SasTokenExpiringSoon", "fresh-token",
         [series("mqtt_estate_credential_expiry_timestamp_seconds", bridge("azure", credential="sas-token"),
                 f"{20 * 3600}x20"),
          series("mqtt_estate_credential_expiry_timestamp_seconds", bridge("aws", credential="sas-token"),
                 "3600x20")], "10m"),
    Case("SasTokenExpiringSoon", "azure-token-five-hours",
         [series("mqtt_estate_credential_expiry_timestamp_seconds", bridge("azure", credential="sas-token"),
                 f"{5 * 3600}x20")], "10m",
         [Fired(warn(bridge("azure", credential="sas-token"), **AZURE), 5 * 3600 - 600, {
             "summary": "SAS token of cloud bridge azure is about to expire",
             "description": "The SAS token of mosquitto-cloud-azure-0 expires in 4h 50m 0s (less than a quarter of "
                            "its 1d validity); run `pulumi up` to issue a new one.",
             "runbook_url": RUNBOOK + "#sastokenexpiringsoon"})]),
]

ALERTS = sorted({c.alert for c in CASES})


def exp_alert(case: Case, fired: Fired, targets: MonitoringTargets = TARGETS) -> dict:
    annotations = fired.annotations
    if annotations is None:
        rule = rule_for(case.alert, fired.labels, targets)
        annotations = {k: expand(v, fired.labels, fired.value) for k, v in rule["annotations"].items()}
    return {"exp_labels": fired.labels, "exp_annotations": annotations}


def promtool_tests(alert: str, rule_file: Path, cases: list[Case] = CASES,
                   targets: MonitoringTargets = TARGETS) -> dict:
    """A `promtool test rules` file with every case of `alert`."""
    return {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": [{
            "name": f"{alert}/{case.name}",
            "interval": "1m",
            "input_series": case.input_series,
            "alert_rule_test": [{"eval_time": case.eval_time, "alertname": alert,
                                 "exp_alerts": [exp_alert(case, f, targets) for f in case.fired]}],
        } for case in cases if case.alert == alert],
    }


def dump(groups: list[dict]) -> str:
    return yaml.safe_dump({"groups": groups}, sort_keys=True, width=1000)


def rule_file_fixture(targets: MonitoringTargets, directory: str):
    """A module fixture: the rule file of `targets`, written once."""
    @pytest.fixture(scope="module")
    def rule_file(tmp_path_factory) -> Path:
        path = tmp_path_factory.mktemp(directory) / "rules.yaml"
        path.write_text(dump(alert_groups(targets)))
        return path
    return rule_file


def promtool_passes(*args: str, tests: dict | None = None, name: str = "test") -> None:
    """Run promtool (`check rules FILE`, or `test rules` on `tests` written beside the rule file) and show its
    report when it fails."""
    if tests is not None:
        test_file = Path(tests["rule_files"][0]).parent / f"{name}.yaml"
        test_file.write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
        args = ("test", "rules", str(test_file))
    run = subprocess.run([PROMTOOL, *args], capture_output=True, text=True)
    assert run.returncode == 0, f"{name}:\n{run.stdout}{run.stderr}"


# ------------------------------------------------------------------------------------------ tests


rule_file = rule_file_fixture(TARGETS, "alert-rules")


def test_promtool_check_rules(rule_file):
    promtool_passes("check", "rules", str(rule_file))


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_fires_and_stays_silent(alert, rule_file):
    promtool_passes(tests=promtool_tests(alert, rule_file), name=f"test-{alert}")


def test_every_alert_has_firing_and_silent_cases():
    assert set(alert_names(TARGETS)) == set(ALERTS)
    for alert in ALERTS:
        cases = [c for c in CASES if c.alert == alert]
        assert any(c.fired for c in cases), f"{alert}: no case where it fires"
        assert any(not c.fired for c in cases), f"{alert}: no case where it stays silent"


def test_every_rule_has_severity_namespace_and_runbook():
    groups = alert_groups(TARGETS)
    assert [g["name"] for g in groups] == ["mqtt-estate-brokers", "mqtt-estate-bridges", "mqtt-estate-frontend",
                                           "mqtt-estate-credentials"]
    for rule in (r for g in groups for r in g["rules"]):
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["labels"]["namespace"] == NS, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK}#{rule['alert'].lower()}"


def test_absent_inputs_drop_their_alerts():
    bare = dataclasses.replace(TARGETS, connection_capacity=None, bridge_job=None, bridges=(), frontend=None)
    assert [g["name"] for g in alert_groups(bare)] == ["mqtt-estate-brokers", "mqtt-estate-credentials"]
    assert set(alert_names(bare)) == set(ALERTS) - {
        "MosquittoConnectionsNearLimit", "MqttBridgeDown", "MqttBridgeBufferFilling", "MqttBridgeDroppingMessages",
        "HaproxyBackendServersMissing", "HaproxyFrontendDown", "SasTokenExpiringSoon"}

    no_sas = dataclasses.replace(TARGETS, bridges=(TARGETS.bridges[0],))
    assert "SasTokenExpiringSoon" not in alert_names(no_sas)
    assert {r["labels"]["bridge"] for g in alert_groups(no_sas) for r in g["rules"] if "bridge" in r["labels"]} \
        == {"aws"}


def test_one_rule_per_bridge():
    bridge_rules = [r for g in alert_groups(TARGETS) for r in g["rules"] if "bridge" in r["labels"]]
    assert sorted((r["alert"], r["labels"]["bridge"]) for r in bridge_rules) == sorted(
        [(a, b) for a in ("MqttBridgeDown", "MqttBridgeBufferFilling", "MqttBridgeDroppingMessages")
         for b in ("aws", "azure")] + [("SasTokenExpiringSoon", "azure")])


def test_critical_certificate_threshold_stays_below_warning():
    short = dataclasses.replace(TARGETS, leaf_validity_seconds=2 * DAY, early_renewal_seconds=DAY)
    rules = {r["alert"]: r for g in alert_groups(short) for r in g["rules"]}
    assert rules["CertificateExpiringSoon"]["expr"].endswith(f"< {DAY}")
    assert rules["CertificateExpiryCritical"]["expr"].endswith(f"< {DAY // 2}")


def test_output_is_deterministic():
    twin = MonitoringTargets(**{f.name: getattr(TARGETS, f.name) for f in dataclasses.fields(TARGETS)})
    assert dump(alert_groups(TARGETS)) == dump(alert_groups(TARGETS)) == dump(alert_groups(twin))
