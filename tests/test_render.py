"""Offline render: byte-identical output, kubectl-appliable objects valid for Kubernetes 1.29 and 1.33, secrets kept."""

from __future__ import annotations

import filecmp
import stat
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from mqtt_estate.components.monitoring import MONITORING_API

from mqtt_estate.estate.render import render
from tests.conftest import ROOT


@pytest.mark.parametrize("stack", ["dev", "prod", "ha"])
@pytest.mark.parametrize("version", ["1.29", "1.33"])
def test_every_object_passes_strict_schema(rendered, stack, version):
    files = sorted((rendered(stack).out / "k8s").glob("*.yaml"))
    assert len(files) >= 11
    for path in files:
        obj = yaml.safe_load(path.read_text())
        if obj["apiVersion"] == MONITORING_API:
            continue  # Prometheus Operator's kinds: no schema in kubernetes-validate (tests/test_monitoring_component.py)
        kubernetes_validate.validate(obj, version, strict=True)


def test_integers_stay_integers(rendered):
    frontend = yaml.safe_load((rendered("prod").out / "k8s" / "40-statefulset-mosquitto-frontend.yaml").read_text())
    assert frontend["spec"]["replicas"] == 2 and isinstance(frontend["spec"]["replicas"], int)
    sts = yaml.safe_load((rendered("prod").out / "k8s" / "40-statefulset-mosquitto.yaml").read_text())
    # the HorizontalPodAutoscaler owns the count (spec.replicas is in ignore_changes), but a replaced StatefulSet
    # starts at the minimum, never at Kubernetes' default of 1
    assert sts["spec"]["replicas"] == 3 and isinstance(sts["spec"]["replicas"], int)
    ports = sts["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert all(isinstance(p["containerPort"], int) for p in ports)


def test_two_renders_are_byte_identical(tmp_path, state_dir):
    first = render("prod", out=tmp_path / "a", state_dir=state_dir)
    second = render("prod", out=tmp_path / "b", state_dir=state_dir)
    compare = filecmp.dircmp(first.out, second.out)

    def same(cmp):
        return not (cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files) and all(
            same(sub) for sub in cmp.subdirs.values())

    assert same(compare)
    a = sorted(p.relative_to(first.out) for p in first.out.rglob("*") if p.is_file())
    assert len(a) > 20
    for rel in a:
        assert (first.out / rel).read_bytes() == (second.out / rel).read_bytes(), rel


def test_secret_files_are_private(rendered):
    out = rendered("prod").out
    for path in out.rglob("*"):
        if path.is_file() and ("secret" in path.name or path.parent.name in ("auth", "certs")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_no_secret_in_summaries_or_configmaps(rendered):
    result = rendered("prod")
    passwords = list(result.registry.stack_outputs["credentials"].values())
    keys = [r.outputs["privateKeyPem"] for r in result.registry.of_type("tls:index/privateKey")]
    public = [result.out / "resources.txt", result.out / "outputs.json", *result.out.glob("k8s/*configmap*")]
    for path in public:
        text = path.read_text()
        assert "PRIVATE KEY" not in text
        for secret in passwords + [k.splitlines()[1] for k in keys]:
            assert secret not in text, path
    assert '"credentials": "[secret]"' in (result.out / "outputs.json").read_text()


def test_resource_tree_lists_every_resource(rendered):
    result = rendered("prod")
    tree = (result.out / "resources.txt").read_text()
    for res in result.registry.resources:
        assert res.name in tree
    assert "mqtt-estate:index:MosquittoBroker" in tree and "└─" in tree


def test_pod_files_match_secret_and_configmap(rendered):
    out = rendered("prod").out
    conf = (out / "files/mosquitto/mosquitto/config/mosquitto-1.conf").read_text()
    cm = yaml.safe_load(next((out / "k8s").glob("20-configmap-mosquitto-config-*.yaml")).read_text())
    assert cm["data"]["mosquitto-1.conf"] == conf
    secret = yaml.safe_load((out / "k8s/20-secret-mosquitto-auth.yaml").read_text())
    assert secret["stringData"]["passwd"] == (out / "files/mosquitto/mosquitto/auth/passwd").read_text()


def test_cli_render_prints_tree_and_exits_zero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "estate", "render", "--stack", "dev", "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pulumi:pulumi:Stack" in proc.stdout and "rendered 11 Kubernetes objects" in proc.stdout


def test_schema_command_matches_published_file():
    proc = subprocess.run([sys.executable, "-m", "estate", "schema"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout == (ROOT / "schema" / "stack.schema.json").read_text()
