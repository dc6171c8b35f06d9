"""Mistakes a plant engineer makes in `mqtt-estate:monitoring`, each refused at config time with one key-path line
and nothing written."""

from __future__ import annotations

import pytest

from tests.test_config_errors import isolated  # noqa: F401 (fixture)
from tests.test_config_mistakes import assert_one_key_path_line

BASE = """
config:
  mqtt-estate:broker:
    preset: ha-cluster
  mqtt-estate:monitoring:
"""

MISTAKES = [
    ("scrape-too-slow", "    scrapeInterval: 5m\n", "monitoring.scrapeInterval", "outside 1s to 2m"),
    ("scrape-with-space", "    scrapeInterval: 30 s\n", "monitoring.scrapeInterval", "not a Prometheus duration"),
    ("minutes-as-M", "    alertAfter: 1M\n", "monitoring.alertAfter", "not a Prometheus duration"),
    ("alert-before-a-scrape", "    scrapeInterval: 1m\n    alertAfter: 30s\n", "monitoring.alertAfter",
     "shorter than scrapeInterval"),
    ("release-label-with-space", "    selectorLabels: {release: kube prometheus}\n", "monitoring.selectorLabels.release",
     "label value"),
    ("label-key-slash", "    selectorLabels: {'a/b/c': x}\n", "monitoring.selectorLabels.a/b/c.[key]", "more than one '/'"),
    ("runbook-not-http", "    runbookUrl: wiki/mqtt\n", "monitoring.runbookUrl", "not an http(s) URL"),
    ("prometheus-in-kube-system", "    prometheusNamespace: kube-system\n", "monitoring.prometheusNamespace",
     "system namespace"),
    ("enabled-as-text", "    enabled: yes please\n", "monitoring.enabled", ""),
    ("unknown-key", "    release: prom\n", "monitoring.release", "unknown key"),
]


@pytest.mark.parametrize("extra, path, fragment", [c[1:] for c in MISTAKES], ids=[c[0] for c in MISTAKES])
def test_monitoring_mistake_is_one_key_path_line(tmp_path, capsys, extra, path, fragment):
    assert_one_key_path_line(tmp_path, capsys, BASE + extra, path, fragment)


