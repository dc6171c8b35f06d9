"""MonitoringStack against real software on 127.0.0.1.

- The exporter (the sidecar's own program, mqtt_estate.exporter) against real mosquitto: every metric named by
  the generated alert rules and dashboards is in its live output, typed as mosquitto computes it; `mosquitto_up`
  goes to 0 when the broker dies, with every broker value withdrawn, and back to 1 when it returns; a bridge's
  state follows its link.
- The local estate of tests/stacks/monitoring.yaml (three brokers with their exporters, two HAProxy replicas) with
  a real Prometheus scraping it as the rendered PodMonitors say and evaluating the rendered PrometheusRule: every
  target up, no alert firing, every dashboard query returning data, and the broker-down alert firing through
  Prometheus' API when a broker is killed.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from mqtt_estate.components.alert_rules import alert_groups
from mqtt_estate.components.dashboards import dashboard_queries, dashboards, substitute
from mqtt_estate.components.mosquitto_conf import bridge_notifications
from mqtt_estate.estate.local import free_port
from mqtt_estate.estate.local_exporters import package_path
from mqtt_estate.estate.manifests import object_data
from mqtt_estate.estate.processes import terminate
from mqtt_estate.estate.prometheus_local import LocalPrometheus
from tests.mqtt5_kit import boot
from tests.promql_names import metric_names
from tests.test_dashboards import FULL

EXPORTED_PREFIXES = ("mosquitto_", "mqtt_estate_")


@pytest.fixture(autouse=True)
def _need_binaries():
    for binary in ("mosquitto", "haproxy", "prometheus"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is not installed (bash .ci/run installs it)")


def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(interval)


# --- the exporter against real mosquitto -------------------------------------------------------------------------

def _certificate(path, days: int) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mosquitto")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert.not_valid_after_utc.timestamp()


class Mosquitto:
    def __init__(self, directory, name: str, port: int, extra: list[str] = ()):
        self.conf = directory / f"{name}.conf"
        self.conf.write_text("\n".join([f"listener {port} 127.0.0.1", "allow_anonymous true", "sys_interval 1",
                                        "log_dest stdout", *extra]) + "\n")
        self.log = directory / f"{name}.log"
        self.process = None

    def start(self):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self):
        terminate(self.process)


def scrape(port: int) -> dict[str, list]:
    """metric sample name -> [(labels, value)] of the exporter's /metrics (parsed as Prometheus parses it); {}
    while it is not listening yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(samples: dict, name: str, **labels):
    for found, number in samples.get(name, []):
        if all(found.get(k) == v for k, v in labels.items()):
            return number
    return None


@pytest.fixture
def spoke_and_hub(tmp_path):
    """A hub, a spoke bridging to it with the estate's bridge notifications, and the exporter on the spoke."""
    hub_port, spoke_port, metrics_port = free_port(), free_port(), free_port()
    hub = Mosquitto(tmp_path, "hub", hub_port)
    spoke = Mosquitto(tmp_path, "spoke", spoke_port, [
        "connection estate-star", f"address 127.0.0.1:{hub_port}", "topic # both 1", "cleansession false",
        "local_cleansession false", "remote_clientid spoke", "restart_timeout 1 2", *bridge_notifications("estate-star")])
    cert_file = tmp_path / "tls.crt"
    expires = _certificate(cert_file, 30)
    exporter = None
    try:
        hub.start()
        spoke.start()
        exporter = subprocess.Popen(
            [sys.executable, "-m", "mqtt_estate.exporter", "--broker", f"127.0.0.1:{spoke_port}",
             "--listen", f"127.0.0.1:{metrics_port}", "--stale-after", "5", "--reconnect-max", "1",
             "--credential", f"server-certificate={cert_file}", "--credential", "sas-token=@2030-01-01T00:00:00Z"],
            env=package_path(dict(__import__("os").environ)), stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "exporter.log", "w"))
        yield hub, spoke, metrics_port, expires
    finally:
        terminate(exporter)
        spoke.stop()
        hub.stop()


def test_exporter_emits_every_metric_the_rules_and_dashboards_use(spoke_and_hub):
    """The names are read out of every rule expression and every dashboard query (tests/promql_names.py) of an
    estate with bridges and a frontend; the exporter's share (mosquitto_*, mqtt_estate_*) must all be live."""
    _hub, _spoke, port, expires = spoke_and_hub
    used = {name for group in alert_groups(FULL) for rule in group["rules"] for name in metric_names(rule["expr"])}
    used |= {name for text in dashboards(FULL).values() for q in dashboard_queries(text)
             for name in metric_names(substitute(q, {"pod": "mosquitto-0"}))}
    wanted = {name for name in used if name.startswith(EXPORTED_PREFIXES)}
    assert len(wanted) > 15, wanted

    def complete():
        samples = scrape(port)
        return samples if wanted <= set(samples) and value(samples, "mosquitto_bridge_connected") == 1 else None
    samples = wait_until(complete, 15, f"the exporter showing {sorted(wanted - set(scrape(port)))}")
    assert value(samples, "mosquitto_up") == 1
    assert value(samples, "mosquitto_bridge_connected", connection="estate-star") == 1
    assert value(samples, "mqtt_estate_credential_expiry_timestamp_seconds", credential="server-certificate") \
        == pytest.approx(expires)
    assert value(samples, "mqtt_estate_credential_expiry_timestamp_seconds", credential="sas-token") \
        == dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    assert "# TYPE mosquitto_publish_messages_dropped_total counter" in text
    assert "# TYPE mosquitto_clients_connected gauge" in text
    assert "python_gc" not in text  # only the broker's metrics and the exporter's own


def test_exporter_follows_the_broker_down_and_back(spoke_and_hub):
    """Kill the broker: up 0 at once and nothing stale is served; start it again: up 1 without restarting the
    exporter. Kill the hub: the spoke's bridge reports its link down (the local `0` of the bridge's will)."""
    hub, spoke, port, _ = spoke_and_hub
    wait_until(lambda: value(scrape(port), "mosquitto_bridge_connected") == 1, 15, "bridge up")

    hub.process.kill()
    hub.process.wait()
    wait_until(lambda: value(scrape(port), "mosquitto_bridge_connected", connection="estate-star") == 0, 15,
               "the bridge reported down")
    hub.start()
    wait_until(lambda: value(scrape(port), "mosquitto_bridge_connected", connection="estate-star") == 1, 15,
               "the bridge reported up again")

    spoke.process.kill()
    spoke.process.wait()
    samples = wait_until(lambda: (s := scrape(port)) and value(s, "mosquitto_up") == 0 and s, 10, "mosquitto_up 0")
    assert "mosquitto_clients_connected" not in samples and "mosquitto_uptime_seconds" not in samples
    assert "mosquitto_bridge_connected" not in samples
    spoke.start()
    samples = wait_until(lambda: (s := scrape(port)) and value(s, "mosquitto_up") == 1 and s, 15, "mosquitto_up 1")
    assert value(samples, "mosquitto_exporter_broker_connects_total") == 2
    assert value(samples, "mosquitto_uptime_seconds") < 30


# --- the local estate with a real Prometheus ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def monitored(rendered, tmp_path_factory):
    render = rendered("monitoring")
    local, conn = boot(render, tmp_path_factory.mktemp("monitored"))
    prometheus = None
    try:
        prometheus = LocalPrometheus(render.objects, local.brokers + local.bridges + local.frontends,
                                     tmp_path_factory.mktemp("prometheus"), free_port(local.taken_ports)).start()
        yield render, local, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        local.stop()


def firing(prometheus, name: str) -> list[dict]:
    return [a for a in prometheus.api("alerts")["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_prometheus_scrapes_every_pod_and_all_is_quiet(monitored):
    render, local, prometheus = monitored
    jobs = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in render.objects if o["kind"] == "PodMonitor"}
    assert jobs == {"mqtt-mon/mosquitto", "mqtt-mon/mosquitto-frontend"}

    def all_up():
        targets = prometheus.api("targets")["activeTargets"]
        return targets if len(targets) == 5 and all(t["health"] == "up" for t in targets) else None
    targets = wait_until(all_up, 20, "five targets up (three exporters, two HAProxy with basic auth)")
    assert {t["labels"]["pod"] for t in targets} == {"mosquitto-0", "mosquitto-1", "mosquitto-2",
                                                     "mosquitto-frontend-0", "mosquitto-frontend-1"}
    rules = prometheus.api("rules")["groups"]
    assert sum(len(g["rules"]) for g in rules) >= 8
    time.sleep(3)
    assert [a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]] == []


def test_every_dashboard_query_returns_data(monitored):
    """Each query of each rendered dashboard ConfigMap, its variables filled in as Grafana would, through
    /api/v1/query."""
    render, _local, prometheus = monitored
    texts = [text for obj in render.objects if obj["kind"] == "ConfigMap"
             and (obj["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"
             for text in object_data(obj).values()]
    assert len(texts) == 2
    wait_until(lambda: len(prometheus.api("query", query="up == 1")["result"]) == 5, 20, "targets up")
    time.sleep(3)  # two scrapes of every counter, so rate() has something to say
    empty = []
    for text in texts:
        for query in dashboard_queries(text):
            expr = substitute(query, {"pod": "mosquitto-1"})
            if not prometheus.api("query", query=expr)["result"]:
                empty.append(expr)
    assert empty == []


def test_rules_use_only_metrics_that_exist(monitored):
    """Every metric name of every rendered rule has samples in the running estate."""
    render, _local, prometheus = monitored
    rule = next(o for o in render.objects if o["kind"] == "PrometheusRule")
    names = {n for g in rule["spec"]["groups"] for r in g["rules"] for n in metric_names(r["expr"])}
    wait_until(lambda: len(prometheus.api("query", query="up == 1")["result"]) == 5, 20, "targets up")
    missing = [n for n in sorted(names) if not prometheus.api("query", query=f"count({n})")["result"]]
    assert missing == []


def test_killed_broker_fires_broker_down(monitored):
    """kill -9 of mosquitto-1 (its exporter lives on, as a sidecar does): MosquittoBrokerDown fires for that pod
    after alertAfter (5 s in the test stack), and the frontend's backends miss a server; back up, it clears."""
    _render, local, prometheus = monitored
    wait_until(lambda: len(prometheus.api("query", query="mosquitto_up == 1")["result"]) == 3, 20, "brokers up")
    local.kill("mosquitto-1")
    try:
        alerts = wait_until(lambda: firing(prometheus, "MosquittoBrokerDown"), 40, "MosquittoBrokerDown firing")
        assert [a["labels"]["pod"] for a in alerts] == ["mosquitto-1"]
        assert alerts[0]["labels"]["severity"] == "critical"
        assert alerts[0]["annotations"]["runbook_url"].endswith("#mosquittobrokerdown")
        wait_until(lambda: firing(prometheus, "HaproxyBackendServersMissing"), 30,
                   "HaproxyBackendServersMissing firing")
    finally:
        local.restart("mosquitto-1")
    wait_until(lambda: not firing(prometheus, "MosquittoBrokerDown")
               and len(prometheus.api("query", query="mosquitto_up == 1")["result"]) == 3, 40,
               "the alert resolved and mosquitto-1 up again")
