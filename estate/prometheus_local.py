"""`estate up --local --monitoring`: a real Prometheus (Debian's `prometheus`) scraping the local estate as
Prometheus Operator would scrape the cluster, with the rendered PrometheusRule.

The scrape configuration is made from the rendered PodMonitors: one job per PodMonitor, named as the Operator
names it (`<namespace>/<name>`), its pods the local pods its selector matches, their samples labelled namespace,
pod, container and endpoint like the Operator's relabelling does; interval, path and basic auth (read from the
rendered Secret) as the PodMonitor says. Only the addresses are local. Every process started here is stopped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .manifests import object_data
from .output import write_file
from .processes import terminate

PROMETHEUS = "prometheus"


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to a pod's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values or op == "NotIn" and labels.get(key) in values \
                or op == "Exists" and key not in labels or op == "DoesNotExist" and key in labels:
            return False
    return True


def _secret_value(objects: list[dict], namespace: str, ref: dict) -> str:
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Secret" and meta["name"] == ref["name"] and meta.get("namespace") == namespace:
            return object_data(obj)[ref["key"]]
    raise KeyError(f"Secret {namespace}/{ref['name']} (key {ref['key']}) is not in the render")


def scrape_configs(objects: list[dict], pods, secrets_dir: Path) -> list[dict]:
    """One scrape job per rendered PodMonitor; `pods` are the local processes (pod, labels, named_ports)."""
    jobs = []
    for monitor in sorted((o for o in objects if o["kind"] == "PodMonitor"),
                          key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
        namespace, name = monitor["metadata"]["namespace"], monitor["metadata"]["name"]
        for index, endpoint in enumerate(monitor["spec"]["podMetricsEndpoints"]):
            targets = [{"targets": [f"127.0.0.1:{pod.named_ports[endpoint['port']]}"],
                        "labels": {"job": f"{namespace}/{name}", "namespace": namespace, "pod": pod.pod,
                                   "endpoint": endpoint["port"], "container": pod.container_of(endpoint["port"])}}
                       for pod in pods if _selects(monitor["spec"]["selector"], pod.labels)
                       and endpoint["port"] in pod.named_ports]
            # one scrape job per endpoint, named as the Operator names it; the `job` label is the PodMonitor's
            # (a target label wins over job_name), so two endpoints of one PodMonitor share it
            job = {"job_name": f"podMonitor/{namespace}/{name}/{index}", "honor_labels": False,
                   "metrics_path": endpoint.get("path", "/metrics"), "static_configs": targets}
            if endpoint.get("interval"):
                job["scrape_interval"] = endpoint["interval"]
            auth = endpoint.get("basicAuth")
            if auth:
                password_file = secrets_dir / f"{namespace}-{name}-{index}.password"
                write_file(password_file, _secret_value(objects, namespace, auth["password"]), secret=True)
                job["basic_auth"] = {"username": _secret_value(objects, namespace, auth["username"]),
                                     "password_file": str(password_file)}
            jobs.append(job)
    return jobs


def rule_files(objects: list[dict], directory: Path) -> list[Path]:
    """Each rendered PrometheusRule as a Prometheus rule file."""
    paths = []
    for rule in (o for o in objects if o["kind"] == "PrometheusRule"):
        meta = rule["metadata"]
        path = directory / f"{meta['namespace']}-{meta['name']}.rules.yaml"
        write_file(path, yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
        paths.append(path)
    return paths


@dataclass
class LocalPrometheus:
    """A Prometheus process over the local estate; `url` is its web address."""

    objects: list[dict]
    pods: list
    directory: Path
    port: int
    evaluation_interval: str = "1s"
    """How often rules are evaluated here (the Operator's default is 30s; an alert's `for` still holds)."""
    process: subprocess.Popen | None = None
    rules: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 30.0) -> "LocalPrometheus":
        if shutil.which(PROMETHEUS) is None:
            raise RuntimeError("prometheus is not installed (Debian: apt-get install prometheus)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rules = rule_files(self.objects, self.directory)
        config = {"global": {"evaluation_interval": self.evaluation_interval},
                  "rule_files": [str(p) for p in self.rules],
                  "scrape_configs": scrape_configs(self.objects, self.pods, self.directory / "secrets")}
        config_file = self.directory / "prometheus.yml"
        write_file(config_file, yaml.safe_dump(config, sort_keys=False))
        log = open(self.directory / "prometheus.log", "w")
        try:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config_file}", f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: "
                                   f"{(self.directory / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus was not ready within {wait} s")

    def stop(self) -> None:
        terminate(self.process)

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; the `data` of a successful answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as answer:
            body = json.loads(answer.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body}")
        return body["data"]

    def __enter__(self) -> "LocalPrometheus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
