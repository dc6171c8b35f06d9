"""Every policy of the pack on really rendered resources: the shipped stacks pass, and changing one field of a
compliant baseline makes exactly that policy fail. Plus the offline runner and its CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from estate.policy_run import load_policies, mandatory, run_policies
from tests.conftest import ROOT

POLICIES = {p.name: p for p in load_policies()}


def conf_edit(key, old, new):
    def mutate(props):
        assert old in props["data"][key], (key, old)
        props["data"][key] = props["data"][key].replace(old, new, 1)
    return mutate


def secret_edit(key, old=None, new="", append=None):
    def mutate(props):
        if append is not None:
            props["stringData"][key] += append
        else:
            assert old in props["stringData"][key]
            props["stringData"][key] = props["stringData"][key].replace(old, new, 1)
    return mutate


def container(props):
    return props["spec"]["template"]["spec"]["containers"][0]


def setter(fn):
    def mutate(props):
        fn(props)
    return mutate


def cfg_edit(old, new):
    return conf_edit("haproxy.cfg", old, new)


# (policy, baseline stack, Pulumi resource name or "", mutation of that resource's props or of the registry)
CASES = [
    ("broker-no-anonymous", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "allow_anonymous false", "allow_anonymous true")),
    ("broker-tls-on-network-listeners", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "cafile /mosquitto/certs/ca.crt\ncertfile /mosquitto/certs/tls.crt\n"
               "keyfile /mosquitto/certs/tls.key\ntls_version tlsv1.2\nrequire_certificate false\n\n# mqtts-devices", "\n# mqtts-devices")),
    ("broker-tls-minimum-version", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "tls_version tlsv1.2", "tls_version tlsv1.1")),
    ("broker-mtls-coherent", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "use_identity_as_username true\n", "")),
    ("broker-acl-present", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "acl_file /mosquitto/auth/acl\n", "")),
    ("broker-limits", "prod", "mosquitto-config", conf_edit("mosquitto-0.conf", "max_packet_size 1048576\n", "")),
    ("broker-persistence", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "persistent_client_expiration 7d\n", "")),
    ("broker-sys-metrics", "prod", "mosquitto-config", conf_edit("mosquitto-0.conf", "sys_interval 10", "sys_interval 0")),
    ("broker-password-hashes", "prod", "mosquitto-auth", secret_edit("passwd", "$7$210000$", "$7$101$")),
    ("broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     secret_edit("acl", append="\n# role: device\nuser plc-9\ntopic readwrite #\n")),
    ("broker-acl-patterns-by-username", "prod", "mosquitto-auth",
     secret_edit("acl", append="pattern write devices/%c/#\n")),
    ("k8s-restricted-pod-security", "prod", "mosquitto-statefulset",
     setter(lambda p: container(p)["securityContext"].update(allowPrivilegeEscalation=True))),
    ("k8s-read-only-root-filesystem", "prod", "mosquitto-statefulset",
     setter(lambda p: container(p)["securityContext"].update(readOnlyRootFilesystem=False))),
    ("k8s-pinned-images", "prod", "mosquitto-statefulset",
     setter(lambda p: container(p).update(image="eclipse-mosquitto:latest"))),
    ("k8s-requests-and-limits", "prod", "mosquitto-statefulset",
     setter(lambda p: container(p)["resources"].pop("limits"))),
    ("k8s-probes", "prod", "mosquitto-statefulset", setter(lambda p: container(p).pop("livenessProbe"))),
    ("k8s-no-service-account-token", "prod", "mosquitto-statefulset",
     setter(lambda p: p["spec"]["template"]["spec"].update(automountServiceAccountToken=True))),
    ("k8s-no-secrets-in-configmaps", "prod", "mosquitto-config",
     setter(lambda p: p["data"].update({"key.pem": "-----BEGIN EC PRIVATE KEY-----\nMHc...\n"}))),
    ("k8s-no-secret-env-values", "prod", "mosquitto-statefulset",
     setter(lambda p: container(p)["env"].append({"name": "ADMIN_PASSWORD", "value": "hunter2"}))),
    ("k8s-only-entry-point-exposed", "prod", "mosquitto-frontend-service",
     setter(lambda p: p["spec"].pop("loadBalancerSourceRanges"))),
    ("k8s-not-default-namespace", "prod", "mosquitto-statefulset",
     setter(lambda p: p["metadata"].update(namespace="default"))),
    ("k8s-namespace-pod-security", "prod", "mosquitto-namespace",
     setter(lambda p: p["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "baseline"}))),
    ("k8s-nfs-hard-retain", "ha", "mosquitto-storage-pv-0",
     setter(lambda p: p["spec"].update(mountOptions=["soft", "nfsvers=4.1"]))),
    ("k8s-no-inline-nfs-or-hostpath", "prod", "mosquitto-statefulset",
     setter(lambda p: p["spec"]["template"]["spec"]["volumes"].append({"name": "raw", "hostPath": {"path": "/srv"}}))),
    ("k8s-app-labels", "prod", "mosquitto-service",
     setter(lambda p: p["metadata"]["labels"].pop("app.kubernetes.io/name"))),
    ("k8s-explicit-storage-class", "ha", "mosquitto-statefulset",
     setter(lambda p: p["spec"]["volumeClaimTemplates"][0]["spec"].pop("storageClassName"))),
    ("k8s-network-policies", "prod", "mosquitto-default-deny", "delete"),
    ("k8s-disruption-budgets", "prod", "mosquitto-pdb", "delete"),
    ("k8s-anti-affinity", "prod", "mosquitto-statefulset",
     setter(lambda p: p["spec"]["template"]["spec"].pop("affinity"))),
    ("pki-key-strength", "prod", "mosquitto-pki-ca-key", setter(lambda p: p.update(ecdsaCurve="P224"))),
    ("pki-ca-constraints", "prod", "mosquitto-pki-ca-cert",
     setter(lambda p: p["allowedUses"].append("server_auth"))),
    ("pki-leaf-usages", "prod", "mosquitto-pki-server-cert",
     setter(lambda p: p["allowedUses"].append("client_auth"))),
    ("pki-leaf-lifetime", "prod", "mosquitto-pki-server-cert", setter(lambda p: p.update(validityPeriodHours=20000))),
    ("pki-server-sans", "prod", "mosquitto-pki-server-csr",
     setter(lambda p: (p.pop("dnsNames"), p.pop("ipAddresses")))),
    ("pki-no-exported-private-keys", "prod", "", "leak-key"),
    ("frontend-timeouts-cover-keepalive", "prod", "mosquitto-frontend-config",
     cfg_edit("timeout client 450s", "timeout client 60s")),
    ("frontend-maxconn", "prod", "mosquitto-frontend-config", cfg_edit("    maxconn 20000\n    stats socket", "    stats socket")),
    ("frontend-stats-auth-from-secret", "prod", "mosquitto-frontend-config",
     cfg_edit('"$STATS_USER":"$STATS_PASSWORD"', "admin:admin")),
    ("frontend-tls-passthrough", "prod", "mosquitto-frontend-config",
     cfg_edit("bind :8883", "bind :8883 ssl crt /usr/local/etc/haproxy/certs/server.pem")),
    ("frontend-replicas", "prod", "mosquitto-frontend-statefulset", setter(lambda p: p["spec"].update(replicas=1))),
    ("bridge-tls-verified", "prod", "mosquitto-config",
     conf_edit("mosquitto-1.conf", "bridge_insecure false", "bridge_insecure true")),
    ("bridge-topic-limits", "prod", "mosquitto-config",
     conf_edit("mosquitto-1.conf", "svc.cluster.local:1884", "cloud.example.com:8883")),
    ("bridge-unique-client-ids", "prod", "mosquitto-config",
     conf_edit("mosquitto-2.conf", "remote_clientid mosquitto-2-bridge", "remote_clientid mosquitto-1-bridge")),
]


def test_every_policy_has_a_case():
    assert sorted(name for name, *_ in CASES) == sorted(POLICIES)
    assert len(POLICIES) >= 35


def test_every_policy_documents_itself():
    for policy in POLICIES.values():
        assert policy.description and policy.remediation_steps and policy.enforcement_level is not None


def violations_of(policy_name: str, registry, stack: str):
    return [v for v in run_policies(registry, stack, policies=[POLICIES[policy_name]])]


@pytest.mark.parametrize("policy,stack,resource,mutation", CASES, ids=[c[0] for c in CASES])
def test_policy_passes_baseline_and_fails_one_changed_field(rendered, policy, stack, resource, mutation):
    registry = rendered(stack).registry
    assert violations_of(policy, registry, stack) == [], "the compliant baseline must pass"
    changed = copy.deepcopy(registry)
    if mutation == "delete":
        changed.resources = [r for r in changed.resources if r.name != resource]
    elif mutation == "leak-key":
        key = next(r for r in changed.resources if r.name == "mosquitto-pki-server-key")
        changed.stack_outputs["serverKey"] = key.outputs["privateKeyPem"]
    else:
        mutation(next(r for r in changed.resources if r.name == resource).inputs)
    found = violations_of(policy, changed, stack)
    assert found, f"{policy} did not notice the change"
    assert {v.policy for v in found} == {policy}


def test_shipped_stacks_pass_every_mandatory_policy(rendered):
    for stack in ("dev", "prod", "ha"):
        assert mandatory(run_policies(rendered(stack).registry, stack)) == [], stack


def test_insecure_example_fails_with_the_expected_list(rendered, state_dir):
    from estate.render import evaluate

    _, registry = evaluate("insecure", ROOT / "tests" / "stacks" / "insecure.yaml", state_dir)
    failing = {v.policy for v in mandatory(run_policies(registry, "insecure"))}
    assert failing == {"broker-no-anonymous", "broker-password-hashes", "broker-persistence",
                       "broker-acl-no-device-wildcards", "k8s-not-default-namespace", "k8s-only-entry-point-exposed",
                       "pki-ca-constraints", "pki-leaf-lifetime"}


def test_enforcement_level_is_overridable(rendered, state_dir):
    from estate.render import evaluate

    _, registry = evaluate("insecure", ROOT / "tests" / "stacks" / "insecure.yaml", state_dir)
    overrides = {"broker-no-anonymous": "advisory", "broker-password-hashes": {"minimumIterations": 1000},
                 "k8s-not-default-namespace": {"enforcementLevel": "disabled"}}
    found = run_policies(registry, "insecure", overrides)
    levels = {v.policy: v.level.value for v in found}
    assert levels["broker-no-anonymous"] == "advisory"
    assert "broker-password-hashes" not in levels and "k8s-not-default-namespace" not in levels


def test_cli_policy_groups_output_and_exits_3_on_mandatory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "estate", "policy", "--stack", "insecure", "--config",
                           str(ROOT / "tests" / "stacks" / "insecure.yaml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == "mandatory violations: 17"
    assert any(line.startswith("  [broker-no-anonymous] kubernetes:core/v1:ConfigMap mosquitto-config:")
               for line in lines)
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cli_render_refuses_mandatory_violations_unless_overridden(tmp_path):
    base = [sys.executable, "-m", "estate", "render", "--stack", "insecure", "--config",
            str(ROOT / "tests" / "stacks" / "insecure.yaml"), "--out", str(tmp_path / "out")]
    refused = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3 and not (tmp_path / "out").exists()
    assert "refusing: 17 mandatory policy violation(s)" in refused.stderr
    forced = subprocess.run(base + ["--i-accept-mandatory-policy-violations"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert forced.returncode == 0 and (tmp_path / "out" / "k8s").is_dir()
    assert "WARNING: going on despite 17 MANDATORY POLICY VIOLATION(S)" in forced.stderr


def test_policy_config_file_is_read(tmp_path):
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({name: "advisory" for name in POLICIES}))
    proc = subprocess.run([sys.executable, "-m", "estate", "policy", "--stack", "insecure", "--config",
                           str(ROOT / "tests" / "stacks" / "insecure.yaml"), "--policy-config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "mandatory violations: 0" in proc.stdout


def test_pack_starts_as_pulumi_starts_it():
    """`pulumi preview --policy-pack policy` runs policy/__main__.py, which serves the pack and prints its port."""
    proc = subprocess.Popen([sys.executable, "__main__.py"], cwd=ROOT / "policy", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.isdigit(), proc.stderr.read() if proc.poll() is not None else port
        assert proc.poll() is None  # still serving: every policy was accepted by PolicyPack
    finally:
        proc.kill()
        proc.wait()
