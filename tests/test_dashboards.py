"""components/dashboards.py: the Grafana dashboards MonitoringStack ships, checked offline (valid JSON, stable uids,
a layout without overlaps, panels left out for what the estate lacks) and against the metric names that exist:
every name a dashboard queries is one the estate's exporter writes, one the backup sidecar serves or one HAProxy's
built-in exporter writes."""

from __future__ import annotations

import json
import re

import pytest

from mqtt_estate.components.dashboards import (BROKER, DEFAULT_VARIABLES, OVERVIEW, dashboard_queries, dashboards,
                                               substitute, variable_expression)
from mqtt_estate.components.monitoring_targets import (BACKUP_METRICS, BridgeTarget, FrontendTarget,
                                                       MonitoringTargets)
from mqtt_estate.exporter.sys_topics import metric_names as exporter_metric_names
from tests.promql_names import metric_names

HAPROXY_METRICS = {
    # name: where HAProxy's promex writes it. Names are the prefix of the object type + the field's name:
    # addons/promex/service-prometheus.c, v2.6.0 (v2.8.0 where lines differ): prefixes "haproxy_frontend_" 609 (611),
    # "haproxy_backend_" 801 (803), "haproxy_server_" 955 (983); labels proxy 978 (1006), server 988 (1016) and,
    # for ST_F_STATUS, one sample per state (DOWN/UP/MAINT/DRAIN/NOLB, promex_srv_st 386-391) 1002 (1030).
    "haproxy_frontend_current_sessions": "ST_F_SCUR current_sessions, FRONT metric, 208 (208)",
    "haproxy_backend_active_servers": "ST_F_ACT active_servers, BACK metric, 223 (223)",
    "haproxy_backend_redispatch_warnings_total": "ST_F_WREDIS redispatch_warnings_total, BACK metric, 220 (220)",
    "haproxy_server_status": "ST_F_STATUS status, SRV metric with a state label, 221 (221)",
    "haproxy_server_check_up_down_total": "ST_F_CHKDOWN check_up_down_total, SRV metric, 226 (226)",
}
"""The HAProxy metrics the dashboards may use; each also appears in a scrape of haproxy 2.6.12 (Debian 12) taken
while building issue 13."""

FULL = MonitoringTargets(
    namespace="mqtt", broker="mosquitto", broker_job="mqtt/mosquitto", broker_replicas=3, connection_capacity=2000,
    max_queued_messages=1000, leaf_validity_seconds=90 * 86400, early_renewal_seconds=30 * 86400,
    alert_after="2m", stale_after_seconds=60, bridge_job="mqtt/mosquitto-cloud",
    bridges=(BridgeTarget("aws", "mosquitto-cloud-aws-0", "aws-iot-core", 5000),
             BridgeTarget("azure", "mosquitto-cloud-azure-0", "azure-iot-hub", 5000, sas_validity_seconds=86400)),
    frontend=FrontendTarget("mqtt/mosquitto-frontend", 2, ("mqtt", "mqtts")))
BARE = MonitoringTargets(
    namespace="iot", broker="broker", broker_job="iot/broker", broker_replicas=1, connection_capacity=None,
    max_queued_messages=100, leaf_validity_seconds=30 * 86400, early_renewal_seconds=7 * 86400,
    alert_after="5m", stale_after_seconds=60)
LONG = MonitoringTargets(
    namespace="a-very-long-namespace-name-for-a-factory", broker="mosquitto-broker-of-the-north-plant",
    broker_job="a-very-long-namespace-name-for-a-factory/mosquitto-broker-of-the-north-plant", broker_replicas=2,
    connection_capacity=10, max_queued_messages=10, leaf_validity_seconds=86400, early_renewal_seconds=3600,
    alert_after="1m", stale_after_seconds=30)
ALL = {"full": FULL, "bare": BARE, "long": LONG}
BACKUP = MonitoringTargets(**{**FULL.__dict__, "backup_interval_seconds": 900})
"""FULL with a backup sidecar in every broker pod (its uids are FULL's: same namespace and broker)."""
WITH_BACKUP = {**ALL, "backup": BACKUP}


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def loaded(t: MonitoringTargets) -> dict[str, dict]:
    return {name: json.loads(text) for name, text in dashboards(t).items()}


def all_queries(t: MonitoringTargets) -> list[str]:
    return [q for text in dashboards(t).values() for q in dashboard_queries(text)]


@pytest.mark.parametrize("t", ALL.values(), ids=ALL.keys())
def test_two_dashboards_of_valid_json(t):
    out = dashboards(t)
    assert sorted(out) == sorted([OVERVIEW, BROKER])
    for name, text in out.items():
        assert text.endswith("}\n")
        dashboard = json.loads(text)
        assert text == json.dumps(dashboard, indent=2, sort_keys=True) + "\n"
        assert dashboard["schemaVersion"] == 39
        assert dashboard["id"] is None
        assert dashboard["title"] and dashboard["panels"]


@pytest.mark.parametrize("t", ALL.values(), ids=ALL.keys())
def test_byte_identical_across_calls(t):
    assert dashboards(t) == dashboards(t)
    copy = MonitoringTargets(**{f: getattr(t, f) for f in t.__dataclass_fields__})
    assert dashboards(copy) == dashboards(t)


def test_uids_stable_short_and_distinct():
    uids = {key: {name: d["uid"] for name, d in loaded(t).items()} for key, t in ALL.items()}
    flat = [uid for per in uids.values() for uid in per.values()]
    assert len(set(flat)) == len(flat)
    for uid in flat:
        assert len(uid) <= 40 and re.fullmatch(r"[a-zA-Z0-9_-]+", uid)
    assert uids["full"] == {OVERVIEW: "mqtt-mosquitto-overview-" + uids["full"][OVERVIEW].rsplit("-", 1)[1],
                            BROKER: "mqtt-mosquitto-broker-" + uids["full"][BROKER].rsplit("-", 1)[1]}
    # namespace and broker alone decide them: another bridge or frontend keeps the uids
    assert {n: d["uid"] for n, d in loaded(MonitoringTargets(**{**FULL.__dict__, "bridges": (), "frontend": None})
                                           ).items()} == uids["full"]
    # the same broker name in another namespace gets other uids
    other = MonitoringTargets(**{**FULL.__dict__, "namespace": "mqtt2", "broker_job": "mqtt2/mosquitto"})
    assert not {d["uid"] for d in loaded(other).values()} & set(flat)


@pytest.mark.parametrize("t", WITH_BACKUP.values(), ids=WITH_BACKUP.keys())
def test_every_panel_queries_prometheus_through_the_datasource_variable(t):
    for dashboard in loaded(t).values():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids)
        for panel in panels(dashboard):
            assert panel["type"] in ("stat", "timeseries"), panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids)
            for target in panel["targets"]:
                assert target["expr"].strip(), panel["title"]
                assert target["datasource"] == panel["datasource"]


@pytest.mark.parametrize("t", WITH_BACKUP.values(), ids=WITH_BACKUP.keys())
def test_layout_has_no_overlaps(t):
    for dashboard in loaded(t).values():
        boxes = [(p["title"], p["gridPos"]) for p in panels(dashboard)]
        for title, g in boxes:
            assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0
            assert g["x"] + g["w"] <= 24, title
        for i, (title_a, a) in enumerate(boxes):
            for title_b, b in boxes[i + 1:]:
                apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                         or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
                assert apart, (title_a, a, title_b, b)


def test_broker_dashboard_selects_a_pod():
    dashboard = loaded(FULL)[BROKER]
    pod = {v["name"]: v for v in dashboard["templating"]["list"]}["pod"]
    assert pod["type"] == "query" and pod["datasource"]["uid"] == "${datasource}"
    assert pod["query"]["query"] == 'label_values(mosquitto_up{job="mqtt/mosquitto"}, pod)'
    assert pod["current"]["value"] == "mosquitto-0"
    assert variable_expression(pod["query"]["query"]) == 'mosquitto_up{job="mqtt/mosquitto"}'
    for panel in panels(dashboard):
        for target in panel["targets"]:
            assert 'job="mqtt/mosquitto"' in target["expr"] and 'pod="$pod"' in target["expr"], panel["title"]
    titles = {p["title"] for p in panels(dashboard)}
    for wanted in ("Up", "Uptime", "Clients", "PUBLISH messages /s", "Bytes /s", "Dropped messages /s", "Store",
                   "Subscriptions and retained messages", "Sessions", "Connection load", "Version"):
        assert wanted in titles


def test_overview_has_the_estate():
    dashboard = loaded(FULL)[OVERVIEW]
    queries = dashboard_queries(dashboards(FULL)[OVERVIEW])
    assert not any(v["type"] == "query" for v in dashboard["templating"]["list"])
    assert 'sum(mosquitto_up{job="mqtt/mosquitto"}) or vector(0)' in queries
    assert any("rate(mosquitto_publish_messages_received_total" in q and "[$__rate_interval]" in q for q in queries)
    assert any('mosquitto_clients_disconnected{job="mqtt/mosquitto-cloud", '
               'pod=~"mosquitto-cloud-aws-0|mosquitto-cloud-azure-0"}' in q for q in queries)
    assert any('haproxy_backend_active_servers{job="mqtt/mosquitto-frontend", proxy=~"mqtt|mqtts"}' in q
               for q in queries)
    assert any('proxy="health"' in q for q in queries)
    assert any("mqtt_estate_credential_expiry_timestamp_seconds" in q and "time()" in q for q in queries)


def test_panels_left_out_without_bridges_or_frontend():
    full = {p["title"] for p in panels(loaded(FULL)[OVERVIEW])}
    stripped = MonitoringTargets(**{**FULL.__dict__, "bridge_job": None, "bridges": (), "frontend": None})
    bare = {p["title"] for p in panels(loaded(stripped)[OVERVIEW])}
    assert bare < full
    missing = full - bare
    assert any("bridge" in title.lower() for title in missing)
    assert any("frontend" in title.lower() for title in missing)
    assert not any("bridge" in t.lower() or "frontend" in t.lower() for t in bare)
    bare_queries = all_queries(BARE)
    assert not any("haproxy_" in q for q in bare_queries)
    assert not any("cloud" in q or "mosquitto_clients_disconnected" in q for q in dashboard_queries(
        dashboards(BARE)[OVERVIEW]))
    only_bridges = MonitoringTargets(**{**FULL.__dict__, "frontend": None})
    titles = {p["title"] for p in panels(loaded(only_bridges)[OVERVIEW])}
    assert any("bridge" in t.lower() for t in titles) and not any("frontend" in t.lower() for t in titles)


@pytest.mark.parametrize("t", WITH_BACKUP.values(), ids=WITH_BACKUP.keys())
def test_every_metric_exists(t):
    exporter = exporter_metric_names()
    used = set()
    for expr in all_queries(t):
        names = metric_names(expr)
        assert names, expr
        used |= names
    unknown = {n for n in used if n not in exporter and n not in HAPROXY_METRICS and n not in BACKUP_METRICS}
    assert not unknown


def test_backup_panels_only_with_a_backup_sidecar():
    """The broker dashboard's backup row: the last success's age against the schedule, failures, size and the
    restore initContainer's recoveries; none of it without a backup sidecar."""
    with_backup = loaded(BACKUP)[BROKER]
    without = loaded(FULL)[BROKER]
    titles = {p["title"] for p in panels(with_backup)} - {p["title"] for p in panels(without)}
    assert titles == {"Last backup", "Backups", "Backup size", "Database recoveries (last day)"}
    used = {n for expr in dashboard_queries(dashboards(BACKUP)[BROKER]) for n in metric_names(expr)}
    assert used & set(BACKUP_METRICS) == {"mosquitto_backup_last_success_timestamp_seconds",
                                          "mosquitto_backup_failures_total", "mosquitto_backup_size_bytes",
                                          "mosquitto_database_recovery_timestamp_seconds"}
    assert not {n for t in ALL.values() for q in all_queries(t) for n in metric_names(q)} & set(BACKUP_METRICS)
    assert dashboards(BACKUP)[OVERVIEW] == dashboards(FULL)[OVERVIEW]
    for panel in panels(with_backup):
        for target in panel["targets"]:
            assert 'job="mqtt/mosquitto"' in target["expr"] and 'pod="$pod"' in target["expr"], panel["title"]
    last = next(p for p in panels(with_backup) if p["title"] == "Last backup")
    # orange past one 15-minute schedule (and a minute), red at BackupStale's limit (2 x 15m + alert_after 2m)
    assert [s["value"] for s in last["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 960, 1920]


def test_the_dashboards_use_every_listed_haproxy_metric():
    """The list above is what the dashboards need, not a catalogue: a name no panel uses anymore goes."""
    used = {n for expr in all_queries(FULL) for n in metric_names(expr)}
    assert set(HAPROXY_METRICS) <= used


def test_queries_include_template_variables_and_come_once():
    queries = dashboard_queries(dashboards(FULL)[BROKER])
    assert len(set(queries)) == len(queries)
    assert queries[-1] == 'mosquitto_up{job="mqtt/mosquitto"}'


@pytest.mark.parametrize("query, expr", [
    ('label_values(up{job="a,b"}, pod)', 'up{job="a,b"}'),
    ("label_values(pod)", None),
    ("query_result(sum by (pod) (up))", "sum by (pod) (up)"),
    ("label_names()", None),
    ("metrics(mosquitto_.*)", None),
    ("up", "up"),
])
def test_variable_expression(query, expr):
    assert variable_expression(query) == expr


def test_substitute():
    assert DEFAULT_VARIABLES["__rate_interval"] == "1m"
    assert substitute('rate(x{pod="$pod"}[$__rate_interval])', {"pod": "m-0"}) == 'rate(x{pod="m-0"}[1m])'
    assert substitute('x{pod="${pod}"} + y{pod=~"${pod:regex}"} + z{pod="[[pod]]"}', {"pod": "m-1"}) == \
        'x{pod="m-1"} + y{pod=~"m-1"} + z{pod="m-1"}'
    assert substitute("rate(x[$__rate_interval])", {"__rate_interval": "5m"}) == "rate(x[5m])"
    assert substitute('label_replace(x, "a", "$1", "b", "(.*)")') == 'label_replace(x, "a", "$1", "b", "(.*)")'
    with pytest.raises(KeyError):
        substitute('x{pod="$pod"}')


@pytest.mark.parametrize("t", WITH_BACKUP.values(), ids=WITH_BACKUP.keys())
def test_every_query_substitutes_to_plain_promql(t):
    for expr in all_queries(t):
        plain = substitute(expr, {"pod": f"{t.broker}-0"})
        assert "$" not in plain and "[[" not in plain, plain
        assert metric_names(plain) == metric_names(expr)
