"""The backup alerts of MonitoringStack (components/alert_rules.py: BackupStale, BackupFailing,
BrokerDatabaseRecovered), checked by promtool like the others (tests/test_alert_rules.py): the rule file passes
`promtool check rules`, and for each alert `promtool test rules` has cases where it fires (labels and annotations
exact) and cases where healthy, just-below-threshold or not-yet-due series leave it silent.

The series are the backup sidecar's (the issue 15 contract, components/monitoring_targets.BACKUP_METRICS) as the
broker PodMonitor's second endpoint scrapes them: job and pod of the broker, container `backup`, endpoint
`backup-metrics`. Promtool's clock starts at Unix 0, so a timestamp gauge's value is the minute it stands for x 60.
"""

from __future__ import annotations

import dataclasses

import pytest

from mqtt_estate.components.alert_rules import RECOVERY_SEVERITY, alert_groups, alert_names, backup_stale_seconds
from mqtt_estate.components.dashboards import BROKER, dashboard_queries, dashboards, substitute
from mqtt_estate.components.backup_sidecar import METRICS_PORT_NAME as BACKUP_PORT_NAME
from mqtt_estate.components.monitoring_targets import BACKUP_METRICS
from tests.conftest import ROOT
from tests.promql_names import metric_names
from tests.test_alert_rules import (DAY, NS, RUNBOOK, TARGETS, Case, Fired, _labels, crit, promtool_passes,
                                    promtool_tests, rule_file_fixture, series, warn)

INTERVAL = 900
"""A 15-minute schedule: with alert_after 1m, BackupStale's limit is 2 x 15m + 1m = 31m (1860 s)."""
BACKUP = dataclasses.replace(TARGETS, backup_interval_seconds=INTERVAL)
LIMIT = 2 * INTERVAL + 60
BACKUP_ALERTS = ("BackupStale", "BackupFailing", "BrokerDatabaseRecovered")


def sidecar(i: int, **extra: str) -> dict:
    """The labels of broker pod i's backup sidecar target."""
    return {**_labels(BACKUP.broker_job, f"mosquitto-{i}", "backup", **extra), "endpoint": BACKUP_PORT_NAME}


def success(i: int, values: str) -> dict:
    return series("mosquitto_backup_last_success_timestamp_seconds", sidecar(i), values)


def attempt(i: int, values: str) -> dict:
    return series("mosquitto_backup_last_attempt_timestamp_seconds", sidecar(i), values)


def failures(i: int, values: str) -> dict:
    return series("mosquitto_backup_failures_total", sidecar(i), values)


def interval(i: int, seconds: int = INTERVAL, samples: int = 120) -> dict:
    return series("mosquitto_backup_interval_seconds", sidecar(i), f"{seconds}x{samples}")


def up(i: int, values: str = "1x120") -> dict:
    return series("up", sidecar(i), values)


def recovery(i: int, outcome: str, values: str, **extra: str) -> dict:
    return series("mosquitto_database_recovery_timestamp_seconds", {**sidecar(i, outcome=outcome), **extra}, values)


def every_15m(minutes: int) -> str:
    """A last-success gauge renewed every 15 minutes from minute 0: one sample per minute for `minutes` minutes."""
    return " ".join(str(m // 15 * 900) for m in range(minutes + 1))


CASES: list[Case] = [
    # BackupStale (a): the last success older than 2 x its exported interval + 60 s
    Case("BackupStale", "renewed-every-15m", [up(0), interval(0), success(0, every_15m(90))], "90m"),
    Case("BackupStale", "just-below-the-limit", [up(0), interval(0), success(0, "0x60")], "31m"),
    Case("BackupStale", "last-success-40m-old",
         [up(0), interval(0), success(0, "0x60"), up(1), interval(1), success(1, every_15m(60))], "40m",
         [Fired(warn(sidecar(0)), 2400, {
             "summary": "No recent backup of Mosquitto broker mosquitto-0",
             "description": "mosquitto-0 in factory has had no successful backup of its mosquitto.db for 40m 0s or "
                            "more (limit: 2 backup intervals of 15m plus 1m); a lost volume would lose everything "
                            "written since.",
             "runbook_url": RUNBOOK + "#backupstale"})]),
    # a pod whose sidecar still runs an hourly schedule (a rollout in progress) is judged by its own interval
    Case("BackupStale", "own-hourly-schedule", [up(0), interval(0, 3600), success(0, "0x60")], "40m"),
    # BackupStale (b): the sidecar's target exists but no success was reported in the last 31m
    Case("BackupStale", "never-succeeded-target-younger-than-the-limit", [up(0)], "30m"),
    Case("BackupStale", "never-succeeded", [up(0), interval(0)], "35m", [Fired(warn(sidecar(0)), LIMIT)]),
    Case("BackupStale", "sidecar-not-scrapable", [up(0, "0x60")], "35m", [Fired(warn(sidecar(0)), LIMIT)]),
    # backups enabled at minute 20 on an estate whose pods are older: counted from the sidecar's first scrape
    Case("BackupStale", "backups-just-enabled", [up(0, "_x20 1x60")], "50m"),
    # a restarted sidecar forgets its last success: silent while one was reported in the last 31m, then fires
    Case("BackupStale", "restarted-within-the-limit", [up(0), interval(0), success(0, "0x14 900x5 _x60")], "45m"),
    Case("BackupStale", "restarted-and-never-succeeded-again",
         [up(0), interval(0), success(0, "0x14 900x5 _x60")], "55m", [Fired(warn(sidecar(0)), LIMIT)]),
    # a pod the autoscaler removed has no target now: nothing to back up
    Case("BackupStale", "pod-removed", [up(2, "1x20 _x60")], "50m"),
    # BackupFailing: failures within 2 x 15m, unless a success is as recent as the last attempt
    Case("BackupFailing", "healthy",
         [failures(0, "0x60"), attempt(0, every_15m(60)), success(0, every_15m(60))], "60m"),
    Case("BackupFailing", "attempt-in-progress",
         [failures(0, "0x31"), attempt(0, "0x29 1800x2"), success(0, "0x31")], "30m"),
    Case("BackupFailing", "failed-at-15m",
         [failures(0, "0x14 1x20"), attempt(0, "0x14 900x20"), success(0, "0x34")], "20m",
         [Fired(warn(sidecar(0)), 1, {
             "summary": "Backups of Mosquitto broker mosquitto-0 are failing",
             "description": "Backup attempts of mosquitto-0 in factory failed in the last 30m and none has "
                            "succeeded since; the log of its container `backup` has one line per failure.",
             "runbook_url": RUNBOOK + "#backupfailing"})]),
    Case("BackupFailing", "failed-at-15m-succeeded-at-30m",
         [failures(0, "0x14 1x30"), attempt(0, "0x14 900x15 1800x15"), success(0, "0x29 1800x15")], "35m"),
    Case("BackupFailing", "failing-every-attempt-never-succeeded",
         [failures(0, "0x14 1x15 2x15 3x15"), attempt(0, every_15m(60)), failures(1, "0x60"),
          attempt(1, every_15m(60)), success(1, every_15m(60))], "55m",
         [Fired(warn(sidecar(0)), 1)]),
    # BrokerDatabaseRecovered: one series per pod with the last event's outcome; a day long
    Case("BrokerDatabaseRecovered", "requested-restore",
         [recovery(0, "requested", "0x120")], "60m"),
    Case("BrokerDatabaseRecovered", "restored-more-than-a-day-ago",
         [recovery(0, "restored", "0x1600")], "25h"),
    Case("BrokerDatabaseRecovered", "another-namespace",
         [recovery(0, "empty", "0x120", namespace="other", job="other/mosquitto")], "60m"),
    Case("BrokerDatabaseRecovered", "restored-2h-ago",
         [recovery(1, "restored", "0x240"), recovery(0, "requested", "0x240")], "2h",
         [Fired(warn(sidecar(1, outcome="restored")), 7200, {
             "summary": "Mosquitto broker mosquitto-1 was restored from a backup",
             "description": "2h 0m 0s ago, when mosquitto-1 in factory started, its database was damaged or "
                            "missing and was replaced by the last good backup: what arrived after that backup is "
                            "gone. Nothing was deleted: a damaged database is kept as mosquitto.db.corrupt-<UTC time>.",
             "runbook_url": RUNBOOK + "#brokerdatabaserecovered"})]),
    Case("BrokerDatabaseRecovered", "started-empty-50m-ago",
         [recovery(2, "empty", "600x120")], "60m",
         [Fired(crit(sidecar(2, outcome="empty")), 3000, {
             "summary": "Mosquitto broker mosquitto-2 started with an empty database",
             "description": "50m 0s ago, when mosquitto-2 in factory started, its database was damaged or missing "
                            "and no backup could be restored, so it started empty: its retained messages and the "
                            "queued messages of offline sessions are gone. Nothing was deleted: a damaged "
                            "database is kept as mosquitto.db.corrupt-<UTC time>.",
             "runbook_url": RUNBOOK + "#brokerdatabaserecovered"})]),
]


rule_file = rule_file_fixture(BACKUP, "backup-alert-rules")


def test_promtool_check_rules(rule_file):
    promtool_passes("check", "rules", str(rule_file))


@pytest.mark.parametrize("alert", BACKUP_ALERTS)
def test_alert_fires_and_stays_silent(alert, rule_file):
    promtool_passes(tests=promtool_tests(alert, rule_file, CASES, BACKUP), name=f"test-{alert}")


def test_every_backup_alert_has_firing_and_silent_cases():
    assert set(alert_names(BACKUP)) - set(alert_names(TARGETS)) == set(BACKUP_ALERTS)
    for alert in BACKUP_ALERTS:
        cases = [c for c in CASES if c.alert == alert]
        assert any(c.fired for c in cases) and any(not c.fired for c in cases), alert
    fired = {f.labels["severity"] for c in CASES if c.alert == "BrokerDatabaseRecovered" for f in c.fired}
    assert fired == set(RECOVERY_SEVERITY.values())


def test_backup_alerts_only_with_a_backup_sidecar():
    assert "mqtt-estate-backups" not in [g["name"] for g in alert_groups(TARGETS)]
    groups = alert_groups(BACKUP)
    assert [g["name"] for g in groups] == ["mqtt-estate-brokers", "mqtt-estate-backups", "mqtt-estate-bridges",
                                           "mqtt-estate-frontend", "mqtt-estate-credentials"]
    backups = next(g for g in groups if g["name"] == "mqtt-estate-backups")
    for rule in backups["rules"]:
        assert rule["labels"]["severity"] in ("critical", "warning") and rule["labels"]["namespace"] == NS
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK}#{rule['alert'].lower()}"
        # every metric a backup rule reads is one the sidecar serves, or the scrape's own `up`
        assert metric_names(rule["expr"]) <= set(BACKUP_METRICS) | {"up"}, rule["expr"]
    # a recovery the stack asked for never alerts
    assert not any('"requested"' in r["expr"] for r in backups["rules"])


def test_limits_follow_the_schedule_and_alert_after():
    daily = dataclasses.replace(BACKUP, backup_interval_seconds=DAY, alert_after="5m")
    assert backup_stale_seconds(daily) == 2 * DAY + 300
    rules = {r["alert"]: r for g in alert_groups(daily) for r in g["rules"]}
    assert "[48h5m]" in rules["BackupStale"]["expr"] and "offset 48h5m" in rules["BackupStale"]["expr"]
    assert "+ 300" in rules["BackupStale"]["expr"]
    assert "[48h]" in rules["BackupFailing"]["expr"]


def test_broker_absent_counts_the_exporter_endpoint_only():
    rule = next(r for g in alert_groups(BACKUP) for r in g["rules"] if r["alert"] == "MosquittoBrokerAbsent")
    assert 'endpoint="metrics"' in rule["expr"]


def test_the_agent_serves_every_metric_the_rules_read():
    """The names the alerts and panels use are the backup agent's (backup/agent.py; the components do not import
    the backup package, which is the sidecar image's)."""
    text = (ROOT / "backup" / "agent.py").read_text()
    assert [name for name in BACKUP_METRICS if f'"{name}"' not in text] == []


def str_labels(labels: dict) -> str:
    """A promtool exp_samples label set: `name{a="b", ...}` or `{a="b", ...}`."""
    name = labels.get("__name__", "")
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{inner}}}"


def test_backup_panels_read_the_sidecar_series(rule_file):
    """The broker dashboard's backup queries, its `pod` variable filled in, evaluated by promtool on the sidecar's
    series (promql_expr_test): each returns the pod's value, and nothing of another pod."""
    queries = [substitute(q, {"pod": "mosquitto-0"}) for q in dashboard_queries(dashboards(BACKUP)[BROKER])
               if set(metric_names(q)) & set(BACKUP_METRICS)]
    inputs = [success(0, "300x60"), success(1, "0x60"), failures(0, "0+1x60"), failures(1, "0x60"),
              series("mosquitto_backup_size_bytes", sidecar(0), "4096x60"),
              recovery(0, "restored", "120x60"), recovery(1, "empty", "120x60")]
    plain = sidecar(0)
    expected = {
        "mosquitto_backup_last_success_timestamp_seconds": [{"labels": str_labels(plain), "value": 3600 - 300}],
        "mosquitto_backup_failures_total": [{"labels": str_labels(plain), "value": 60}],
        "mosquitto_backup_size_bytes": [{"labels": str_labels({**plain, "__name__": "mosquitto_backup_size_bytes"}),
                                         "value": 4096}],
        "mosquitto_database_recovery_timestamp_seconds": [
            {"labels": str_labels({**plain, "outcome": "restored"}), "value": 3600 - 120}],
    }
    assert len(queries) == len(expected)
    tests = {"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": [{
        "name": "backup panels", "interval": "1m", "input_series": inputs,
        "promql_expr_test": [{"expr": q, "eval_time": "60m", "exp_samples": expected[metric_names(q).pop()]}
                             for q in queries]}]}
    promtool_passes(tests=tests, name="test-backup-panels")
