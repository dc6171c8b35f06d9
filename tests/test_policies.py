"""Every policy of the pack on really rendered resources: the shipped stacks pass, and changing one field of a
compliant baseline makes exactly that policy fail. Plus the offline runner and its CLI."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest

from mqtt_estate.components.credentials import SUPPLIED_ANNOTATION
from mqtt_estate.estate.policy_run import load_policies, mandatory, run_policies
from tests.conftest import ROOT

POLICIES = {p.name: p for p in load_policies()}


def conf_edit(key, old, new):
    def mutate(props):
        assert old in props["data"][key], (key, old)
        props["data"][key] = props["data"][key].replace(old, new, 1)
    return mutate


def conf_sub(key, pattern, new):
    """Like conf_edit, for text whose exact spelling other parts decide (paths): the first regex match."""
    def mutate(props):
        assert re.search(pattern, props["data"][key]), (key, pattern)
        props["data"][key] = re.sub(pattern, new, props["data"][key], count=1)
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
    # behind the frontend: the broker admits its pods only, and HAProxy's mqtts frontend forwards from everyone
    ("broker-anonymous-listener-restricted", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "allow_anonymous false", "allow_anonymous true")),
    ("broker-tls-on-network-listeners", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "cafile /mosquitto/certs/ca.crt\ncertfile /mosquitto/certs/tls.crt\n"
               "keyfile /mosquitto/certs/tls.key\ntls_version tlsv1.2\nrequire_certificate false\n\n# mqtts-devices", "\n# mqtts-devices")),
    ("broker-tls-minimum-version", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "tls_version tlsv1.2", "tls_version tlsv1.1")),
    ("broker-mtls-coherent", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "use_identity_as_username true\n", "")),
    ("broker-acl-present", "prod", "mosquitto-config",
     conf_sub("mosquitto-0.conf", r"acl_file \S+/acl\n", "")),
    ("broker-limits", "prod", "mosquitto-config", conf_edit("mosquitto-0.conf", "max_packet_size 1048576\n", "")),
    ("broker-persistence", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "persistent_client_expiration 7d\n", "")),
    ("broker-session-expiry-bounded", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "persistent_client_expiration 7d", "persistent_client_expiration 68y")),
    ("broker-sys-metrics", "prod", "mosquitto-config", conf_edit("mosquitto-0.conf", "sys_interval 10", "sys_interval 0")),
    # ops-admin's generated password is hashed with 101 iterations: said to be supplied, it is too few
    ("broker-password-hashes", "prod", "mosquitto-auth",
     setter(lambda p: p["metadata"]["annotations"].update({SUPPLIED_ANNOTATION: "ops-admin"}))),
    ("broker-password-hash-cost", "prod", "mosquitto-auth", secret_edit("passwd", "$7$101$", "$7$210000$")),
    ("random-password-entropy", "prod", "mosquitto-password-ops-admin", setter(lambda p: p.update(length=16))),
    ("broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     secret_edit("acl", append="\n# role: device\nuser plc-9\ntopic readwrite #\n")),
    ("broker-acl-no-impersonation", "prod", "mosquitto-auth",
     secret_edit("acl", append="\n# role: edge-node\nuser gw-9\ntopic write spBv1.0/+/NCMD/#\n")),
    ("broker-acl-patterns-by-username", "prod", "mosquitto-auth",
     secret_edit("acl", append="pattern write devices/%c/#\n")),
    ("broker-acl-unique-identities", "prod", "mosquitto-auth",
     secret_edit("acl", append="\n# role: device\nuser ops-admin\ntopic read factory/#\n")),
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
    # the provider side (no enableSecretMutable) is in tests/test_secret_mutable_policy.py
    ("k8s-secrets-mutable", "prod", "mosquitto-auth", setter(lambda p: p.update(immutable=True))),
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
     setter(lambda p: (p.pop("dnsNames", None), p.pop("ipAddresses", None)))),
    ("pki-ca-in-use", "prod", "mosquitto-tls", setter(lambda p: p["stringData"].update({"ca.crt": "not a PEM"}))),
    ("pki-no-exported-private-keys", "prod", "", "leak-key"),
    ("frontend-timeouts-cover-keepalive", "prod", "mosquitto-frontend-config",
     cfg_edit("timeout client 450s", "timeout client 60s")),
    ("frontend-maxconn", "prod", "mosquitto-frontend-config", cfg_edit("    maxconn 20000\n    stats socket", "    stats socket")),
    ("frontend-stats-auth-from-secret", "prod", "mosquitto-frontend-config",
     cfg_edit('insecure-password "$STATS_PASSWORD"', 'insecure-password "admin"')),
    # the Prometheus endpoint left open: use-service answers before `stats auth` is looked at
    ("frontend-stats-auth-from-secret", "prod", "mosquitto-frontend-config",
     cfg_edit("    http-request auth realm stats unless { http_auth(stats_users) }\n", "")),
    ("frontend-tls-passthrough", "prod", "mosquitto-frontend-config",
     cfg_edit("bind :8883", "bind :8883 ssl crt /usr/local/etc/haproxy/certs/server.pem")),
    ("frontend-replicas", "prod", "mosquitto-frontend-statefulset", setter(lambda p: p["spec"].update(replicas=1))),
    ("frontend-flood-protection", "prod", "mosquitto-frontend-config",
     cfg_edit("    tcp-request connection reject if { sc0_conn_cur gt 100 }\n", "")),
    ("frontend-client-addresses-kept", "prod", "mosquitto-frontend-service",
     setter(lambda p: p["spec"].update(externalTrafficPolicy="Cluster"))),
    ("bridge-tls-verified", "prod", "mosquitto-config",
     conf_edit("mosquitto-1.conf", "bridge_insecure false", "bridge_insecure true")),
    ("bridge-topic-limits", "prod", "mosquitto-config",
     conf_edit("mosquitto-1.conf", "svc.cluster.local:1884", "cloud.example.com:8883")),
    ("bridge-unique-client-ids", "prod", "mosquitto-config",
     conf_edit("mosquitto-2.conf", "remote_clientid mosquitto-2-bridge", "remote_clientid mosquitto-1-bridge")),
]


def test_every_policy_has_a_case():
    """The cloud bridge rules have theirs on the cloud stack, in tests/test_bridge_policies.py, the backup rules on
    backup buckets and backup sidecars, in tests/test_backup_policies.py."""
    from tests.test_backup_policies import BACKUP_RULES
    from tests.test_bridge_policies import BRIDGE_RULES

    assert sorted({name for name, *_ in CASES} | set(BRIDGE_RULES) | set(BACKUP_RULES)) == sorted(POLICIES)
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
    from mqtt_estate.estate.render import evaluate

    _, registry = evaluate("insecure", ROOT / "tests" / "stacks" / "insecure.yaml", state_dir)
    failing = {v.policy for v in mandatory(run_policies(registry, "insecure"))}
    assert failing == {"broker-no-anonymous", "broker-anonymous-listener-restricted", "broker-password-hashes",
                       "broker-persistence", "broker-acl-no-device-wildcards", "k8s-not-default-namespace",
                       "k8s-only-entry-point-exposed", "pki-ca-constraints", "pki-ca-in-use"}


def test_enforcement_level_is_overridable(rendered, state_dir):
    from mqtt_estate.estate.render import evaluate

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
    assert lines[1] == "mandatory violations: 19"
    assert any(line.startswith("  [broker-no-anonymous] kubernetes:core/v1:ConfigMap mosquitto-config:")
               for line in lines)
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cli_render_refuses_mandatory_violations_unless_overridden(tmp_path):
    base = [sys.executable, "-m", "estate", "render", "--stack", "insecure", "--config",
            str(ROOT / "tests" / "stacks" / "insecure.yaml"), "--out", str(tmp_path / "out")]
    refused = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3 and not (tmp_path / "out").exists()
    assert "refusing: 19 mandatory policy violation(s)" in refused.stderr
    forced = subprocess.run(base + ["--i-accept-mandatory-policy-violations"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert forced.returncode == 0 and (tmp_path / "out" / "k8s").is_dir()
    assert "WARNING: going on despite 19 MANDATORY POLICY VIOLATION(S)" in forced.stderr


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


# --- what review found: each problem as one changed field of a compliant baseline ---------------------------

def acl_line(old, new):
    return secret_edit("acl", old, new)


def source_ranges(*ranges):
    return setter(lambda p: p["spec"].update(loadBalancerSourceRanges=list(ranges)))


AZURE_SAS = "SharedAccessSignature sr=plant-hub.azure-devices.net%2Fdevices%2Fplc-7&sig=c2lnbmF0dXJl%3D&se=1767225600"

# (id, policy, stack, resource, mutation, words the message must contain)
FOUND = [
    ("pattern-readwrite-all", "broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     secret_edit("acl", append="pattern readwrite #\n"), "every client may read and write every topic"),
    ("pattern-write-plus-hash", "broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     secret_edit("acl", append="pattern write +/#\n"), "every client may write to every topic"),
    ("pattern-implicit-readwrite-all", "broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     secret_edit("acl", append="pattern   #  \n"), "every client may read and write every topic"),
    ("device-plus-hash", "broker-acl-no-device-wildcards", "dev", "mosquitto-auth",
     acl_line("topic write factory/production/sensor-01/data/#", "topic write +/#"),
     "user sensor-01 (role device) may write to every topic"),
    ("device-plus-plus-hash", "broker-acl-no-device-wildcards", "dev", "mosquitto-auth",
     acl_line("topic write factory/production/sensor-01/data/#", "topic +/+/#"),
     "every topic of 2 or more levels"),
    ("device-reads-everything", "broker-acl-no-device-wildcards", "dev", "mosquitto-auth",
     acl_line("topic read factory/production/sensor-01/cmd/#", "topic read #"), "may read every topic"),
    ("edge-node-whole-sparkplug", "broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     acl_line("topic read spBv1.0/Factory/NCMD/edge-gw-01", "topic read spBv1.0/#"),
     "user edge-gw-01 (role edge-node) may read the whole Sparkplug namespace"),
    ("edge-node-sparkplug-group-wildcards", "broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     acl_line("topic write spBv1.0/Factory/NDATA/edge-gw-01", "topic write spBv1.0/+/+/#"),
     "whole Sparkplug namespace"),
    ("host-writes-whole-sparkplug", "broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     acl_line("topic write spBv1.0/+/NCMD/+", "topic write spBv1.0/#"),
     "user scada-host (role host-application) may write to the whole Sparkplug namespace"),
    ("anonymous-rules-catch-all", "broker-acl-no-device-wildcards", "prod", "mosquitto-auth",
     acl_line("# Generated by mqtt-estate. Anything not granted here is denied.\n",
              "# Generated by mqtt-estate. Anything not granted here is denied.\ntopic write #\n"),
     "anonymous clients may write to every topic"),
    ("duplicate-bridge-block", "broker-acl-unique-identities", "prod", "mosquitto-auth",
     secret_edit("acl", append="\n# role: device\nuser mosquitto-bridge\ntopic read factory/#\n"),
     "user mosquitto-bridge has 2 blocks"),
    ("password-user-named-like-bridge", "broker-acl-unique-identities", "prod", "mosquitto-auth",
     secret_edit("passwd", "scada-host:", "mosquitto-bridge:"),
     "password user mosquitto-bridge has the name of an internal certificate identity"),
    ("password-user-named-like-health-check", "broker-acl-unique-identities", "prod", "mosquitto-auth",
     secret_edit("passwd", "scada-host:", "mosquitto-frontend-check:"), "mosquitto-frontend-check-tls"),
    ("device-commands-every-node", "broker-acl-no-impersonation", "prod", "mosquitto-auth",
     secret_edit("acl", append="\n# role: device\nuser plc-9\ntopic write spBv1.0/+/NCMD/#\n"),
     "plc-9 (role device) may write as another client"),
    ("edge-node-forges-host-state", "broker-acl-no-impersonation", "prod", "mosquitto-auth",
     secret_edit("acl", append="\n# role: edge-node\nuser gw-9\ntopic write spBv1.0/STATE/+\n"), "<a host>"),
    ("edge-node-writes-its-whole-group", "broker-acl-no-impersonation", "prod", "mosquitto-auth",
     secret_edit("acl", append="\n# role: edge-node\nuser gw-9\ntopic write spBv1.0/Factory/#\n"),
     "spBv1.0/Factory/NBIRTH/<another node>"),
    ("device-commands-every-zone", "broker-acl-no-impersonation", "dev", "mosquitto-auth",
     secret_edit("acl", append="\n# role: device\nuser plc-9\ntopic write factory/+/+/cmd/#\n"),
     "<another device>"),
    ("loopback-sans", "pki-server-sans", "prod", "mosquitto-pki-server-csr",
     setter(lambda p: p["dnsNames"].append("localhost")), "valid for localhost"),
    ("pattern-rooted-at-the-user-name", "broker-acl-patterns-by-username", "prod", "mosquitto-auth",
     secret_edit("acl", append="\npattern write %u/#\n"), "makes the name the topic root"),
    ("source-range-0.0.0.0/0", "k8s-only-entry-point-exposed", "prod", "mosquitto-frontend-service",
     source_ranges("0.0.0.0/0"), "0.0.0.0/0 admits everyone"),
    ("source-range-::/0", "k8s-only-entry-point-exposed", "prod", "mosquitto-frontend-service",
     source_ranges("10.20.0.0/16", "::/0"), "::/0 admits everyone"),
    ("source-ranges-that-add-up-to-everything", "k8s-only-entry-point-exposed", "prod", "mosquitto-frontend-service",
     source_ranges("0.0.0.0/1", "128.0.0.0/1"), "together admit everyone"),
    ("bridge-remote-password", "k8s-no-secrets-in-configmaps", "prod", "mosquitto-config",
     conf_edit("mosquitto-1.conf", "bridge_insecure false",
               "bridge_insecure false\nremote_username plant-01\nremote_password hunter2"),
     "remote_password (bridge estate-star) carries a secret in plain text, the password of remote_username"),
    ("bridge-psk", "k8s-no-secrets-in-configmaps", "prod", "mosquitto-config",
     conf_edit("mosquitto-2.conf", "try_private true", "try_private true\nbridge_psk 6b3f9c01d2e4"),
     "bridge_psk (bridge estate-star) carries a secret"),
    ("plugin-password-option", "k8s-no-secrets-in-configmaps", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "sys_interval 10", "sys_interval 10\nplugin /usr/lib/mosquitto_go_auth.so\n"
               "auth_opt_pg_password hunter2\nauth_opt_pg_password_file /etc/unused"),
     "auth_opt_pg_password carries a secret"),
    ("azure-sas-bridge", "k8s-no-secrets-in-configmaps", "prod", "mosquitto-config",
     setter(lambda p: p["data"].update({"azure-bridge.conf": (
         "connection azure\naddress plant-hub.azure-devices.net:8883\n"
         "remote_username plant-hub.azure-devices.net/plc-7/?api-version=2021-04-12\n"
         f"remote_password {AZURE_SAS}\n")})), "line 4: remote_password"),
    ("azure-sas-any-line", "k8s-no-secrets-in-configmaps", "prod", "mosquitto-config",
     setter(lambda p: p["data"].update({"iothub.txt": f"HostName=plant-hub.azure-devices.net;{AZURE_SAS}\n"})),
     "'iothub.txt' line 1: an Azure shared access signature"),
    ("url-with-password", "k8s-no-secrets-in-configmaps", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "sys_interval 10", "sys_interval 10\nplugin /usr/lib/mosquitto_go_auth.so\n"
               "auth_opt_redis_url redis://auth:hunter2@redis.plant.example:6379/0"), "a URL with a password"),
    ("private-key-any-key", "k8s-no-secrets-in-configmaps", "prod", "mosquitto-config",
     setter(lambda p: p["data"].update({"notes.md": "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n"})), "private key"),
    ("global-option-after-listener", "broker-persistence", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "require_certificate true\n", "require_certificate true\npersistence false\n"),
     "persistence is off"),
    ("boolean-as-1-after-listener", "broker-no-anonymous", "prod", "mosquitto-config",
     conf_edit("mosquitto-0.conf", "allow_anonymous false\npassword_file", "allow_anonymous 1\npassword_file"),
     "allows anonymous clients"),
    # per-source limits: every client frontend, shared-subscription ports included
    ("flood-shared-port-untracked", "frontend-flood-protection", "ha", "mosquitto-frontend-config",
     cfg_edit("    bind :1885\n    maxconn 20000\n    # flood protection: new and open connections per source "
              "address, counted on this replica\n    tcp-request connection track-sc0 src table flood-limits\n",
              "    bind :1885\n    maxconn 20000\n"), "frontend mqtt-shared: does not track source addresses"),
    ("flood-rate-too-high", "frontend-flood-protection", "prod", "mosquitto-frontend-config",
     cfg_edit("sc0_conn_rate gt 20 }", "sc0_conn_rate gt 2000 }"), "2000 connections per 10s, more than 5"),
    ("flood-window-too-long", "frontend-flood-protection", "prod", "mosquitto-frontend-config",
     cfg_edit("conn_rate(10s)", "conn_rate(1d)"), "longer than 60 s"),
    ("flood-concurrent-too-high", "frontend-flood-protection", "prod", "mosquitto-frontend-config",
     cfg_edit("sc0_conn_cur gt 100 }", "sc0_conn_cur gt 20000 }"), "hold 20000 connections"),
    ("flood-exempt-everyone", "frontend-flood-protection", "prod", "mosquitto-frontend-config",
     cfg_edit("    tcp-request connection track-sc0", "    tcp-request connection accept if { src 0.0.0.0/0 ::/0 }\n"
              "    tcp-request connection track-sc0"), "without naming them"),
    ("flood-limits-before-tracking", "frontend-flood-protection", "prod", "mosquitto-frontend-config",
     cfg_edit("    tcp-request connection track-sc0 src table flood-limits\n    tcp-request connection reject if "
              "{ sc0_conn_rate gt 20 }\n", "    tcp-request connection reject if { sc0_conn_rate gt 20 }\n"
              "    tcp-request connection track-sc0 src table flood-limits\n"), "refuses no source for its connection"),
    ("flood-table-without-conn-cur", "frontend-flood-protection", "prod", "mosquitto-frontend-config",
     cfg_edit("store conn_rate(10s),conn_cur", "store conn_rate(10s)"), "does not keep conn_rate and conn_cur"),
    ("flood-tracks-one-network", "frontend-flood-protection", "prod", "mosquitto-frontend-config",
     cfg_edit("track-sc0 src table flood-limits", "track-sc0 src table flood-limits if { src 10.0.0.0/8 }"),
     "tracks only some sources"),
]


@pytest.mark.parametrize("policy,stack,resource,mutation,words", [c[1:] for c in FOUND], ids=[c[0] for c in FOUND])
def test_found_problem_is_caught(rendered, policy, stack, resource, mutation, words):
    registry = rendered(stack).registry
    assert violations_of(policy, registry, stack) == [], "the compliant baseline must pass"
    changed = copy.deepcopy(registry)
    mutation(next(r for r in changed.resources if r.name == resource).inputs)
    found = violations_of(policy, changed, stack)
    assert any(words in v.message for v in found), [v.message for v in found]
    assert all(not v.message.startswith("could not evaluate") for v in found)


def test_global_option_after_listener_blocks_is_global(rendered):
    """`persistence true` written after the last listener is mosquitto's global persistence (conf.c 1785)."""
    registry = copy.deepcopy(rendered("prod").registry)
    config = next(r for r in registry.resources if r.name == "mosquitto-config").inputs
    text = config["data"]["mosquitto-0.conf"]
    assert "persistence true\n" in text
    config["data"]["mosquitto-0.conf"] = text.replace("persistence true\n", "", 1) + "persistence true\n"
    assert violations_of("broker-persistence", registry, "prod") == []


def test_secret_detector_leaves_paths_and_public_psk_identities_alone(rendered):
    registry = copy.deepcopy(rendered("prod").registry)
    config = next(r for r in registry.resources if r.name == "mosquitto-config").inputs
    config["data"]["mosquitto-0.conf"] += ("psk_hint plant\npsk_file /mosquitto/auth/psk\n"
                                          "auth_opt_password_file /mosquitto/auth/passwd\n"
                                          "auth_opt_token_url https://auth.plant.example/token\n")
    assert violations_of("k8s-no-secrets-in-configmaps", registry, "prod") == []


# --- the CA in use, when it is brought (pki.existingCa): judged from ca.crt in the Secrets ----------------

def _ca_pem(key="ec", ca=True, cert_sign=True, hash_name="sha384", days=(-1, 3650)) -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP384R1()) if key == "ec" else rsa.generate_private_key(65537, key)
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Plant Root CA")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=days[0])).not_valid_after(now + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True))
    if hash_name == "sha1":
        # cryptography no longer signs with SHA-1: sign with SHA-256, then name sha1WithRSAEncryption in both
        # AlgorithmIdentifiers (same length, so the DER stays well-formed; the policy reads the algorithm, it
        # does not verify the self-signature)
        der = builder.sign(private, hashes.SHA256()).public_bytes(Encoding.DER)
        der = der.replace(bytes.fromhex("06092a864886f70d01010b"), bytes.fromhex("06092a864886f70d010105"))
        return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
    return builder.sign(private, {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}[hash_name]) \
        .public_bytes(Encoding.PEM).decode()


BROUGHT_CAS = [
    ("rsa-2048", dict(key=2048, hash_name="sha256"), "key is RSA 2048 bits (minimum 3072 for a CA)"),
    ("sha1", dict(key=3072, hash_name="sha1"), "is signed with SHA1"),
    ("expired", dict(days=(-3650, -1)), "expired on"),
    ("expires-within-leaf-validity", dict(days=(-1, 200)), "within the 8760 h a leaf issued now is valid for"),
    ("ca-false", dict(ca=False), "CA:FALSE"),
    ("no-keycertsign", dict(cert_sign=False), "keyUsage lacks keyCertSign"),
    ("malformed-pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
     "is not a readable PEM certificate"),
    ("no-pem", "MIIB...", "is not a PEM certificate"),
]


@pytest.mark.parametrize("how,words", [(c[1], c[2]) for c in BROUGHT_CAS], ids=[c[0] for c in BROUGHT_CAS])
def test_brought_ca_is_judged_from_the_secrets(rendered, how, words):
    registry = copy.deepcopy(rendered("prod").registry)
    pem = how if isinstance(how, str) else _ca_pem(**how)
    for resource in registry.resources:  # as with pki.existingCa: every Secret carries the brought CA
        if resource.type == "kubernetes:core/v1:Secret" and "ca.crt" in (resource.inputs.get("stringData") or {}):
            resource.inputs["stringData"]["ca.crt"] = pem
    registry.resources = [r for r in registry.resources if r.type != "tls:index/selfSignedCert:SelfSignedCert"]
    found = violations_of("pki-ca-in-use", registry, "prod")
    assert len(found) == 1 and words in found[0].message, [v.message for v in found]


def test_a_good_brought_ca_passes(rendered):
    registry = copy.deepcopy(rendered("prod").registry)
    pem = _ca_pem()
    for resource in registry.resources:
        if resource.type == "kubernetes:core/v1:Secret" and "ca.crt" in (resource.inputs.get("stringData") or {}):
            resource.inputs["stringData"]["ca.crt"] = pem
    assert violations_of("pki-ca-in-use", registry, "prod") == []


# --- the pack's mosquitto.conf reader follows mosquitto's src/conf.c ------------------------------------------

def test_conf_reader_places_options_by_kind_not_position():
    from mqtt_estate.components.mosquitto_conf import parse_listeners, parse_mosquitto_conf

    conf = parse_mosquitto_conf("per_listener_settings true\n"
                                "# plain\nlistener 1883 0.0.0.0\nallow_anonymous 0\nsys_interval 5\n"
                                "connection up\naddress a:1883\ntopic # out 1\ncafile /c/ca.crt\n"
                                "clientid up-1\npersistence true\n")
    assert conf.settings["sys_interval"] == ["5"] and conf.settings["persistence"] == ["true"]
    (lst,) = conf.listeners
    assert (lst.port, lst.bind, lst.name) == (1883, "0.0.0.0", "plain")
    assert lst.settings == {"allow_anonymous": "false", "cafile": "/c/ca.crt"}  # cafile: still the listener's
    assert conf.bridges == [{"connection": ["up"], "address": ["a:1883"], "topic": ["# out 1"],
                             "remote_clientid": ["up-1"]}]
    (tls,) = parse_listeners("# mqtts: devices\nlistener 8883\ncertfile /c/tls.crt\nrequire_certificate true\n"
                             "protocol websockets\n")
    assert (tls.port, tls.bind, tls.name, tls.protocol, tls.tls, tls.mtls) == (8883, None, "mqtts", "websockets",
                                                                                True, True)


def test_conf_reader_auth_options_are_global_without_per_listener_settings():
    from mqtt_estate.components.mosquitto_conf import parse_mosquitto_conf

    conf = parse_mosquitto_conf("listener 1883\nallow_anonymous false\nlistener 8883\nallow_anonymous true\n"
                                "acl_file /a/acl\n")
    assert [lst.settings["allow_anonymous"] for lst in conf.listeners] == ["true", "true"]
    assert all(lst.settings["acl_file"] == "/a/acl" for lst in conf.listeners)
    default = parse_mosquitto_conf("port 1884\npassword_file /a/passwd\n").listeners
    assert [(lst.port, lst.name, lst.settings.get("password_file")) for lst in default] == [(1884, "default",
                                                                                             "/a/passwd")]


def test_conf_reader_never_raises():
    from mqtt_estate.components.mosquitto_conf import parse_mosquitto_conf

    for text in (None, "", "listener\n", "listener abc def\n", "remote_password x\n", "auth_opt_x y\n",
                 "connection\n", "\x00\n", "max_connections\n", 12):
        parse_mosquitto_conf(text)


# --- no program, however odd, stops the run -----------------------------------------------------------------

def _stringify_numbers(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return {k: _stringify_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_numbers(v) for v in value]
    return value


def test_numbers_given_as_text_change_no_verdict(rendered):
    registry = copy.deepcopy(rendered("prod").registry)
    for resource in registry.resources:
        resource.inputs = _stringify_numbers(resource.inputs)
    found = run_policies(registry, "prod")
    assert mandatory(found) == [] and not [v for v in found if v.message.startswith("could not evaluate")]


@pytest.mark.parametrize("odd", ["none", "garbage", "empty-lists"])
def test_odd_props_stop_nothing(rendered, odd):
    registry = copy.deepcopy(rendered("prod").registry)
    for index, resource in enumerate(registry.resources):
        if odd == "none":
            resource.inputs = {key: None for key in resource.inputs}
        elif odd == "garbage":
            resource.inputs = {key: (index if key != "kind" else value) for key, value in resource.inputs.items()}
        else:
            resource.inputs = {key: ([None] if isinstance(value, (dict, list)) else value)
                               for key, value in resource.inputs.items()}
    found = run_policies(registry, "prod")  # must not raise
    assert not [v.message for v in found if v.message.startswith("could not evaluate")]
