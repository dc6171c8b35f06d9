"""Component shape under Pulumi mocks: tokens, child names and parents, security settings, rollout model."""

from __future__ import annotations

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from mqtt_estate.components.broker import MosquittoBroker, pod_dns_names
from mqtt_estate.components.pki import Pki
from tests.harness import by_name, run_components

LISTENERS = [
    {"name": "mqtt", "port": 1883},
    {"name": "mqtts", "port": 8883, "tls": True, "tls_version": "tlsv1.2"},
    {"name": "mqtts-dev", "port": 8884, "tls": True, "require_certificate": True},
]
SETTINGS = {"listeners": LISTENERS, "allow_anonymous": False, "persistence": True, "autosave_interval": 60,
            "session_expiry": "7d", "max_connections": 100, "max_queued_messages": 1000,
            "max_inflight_messages": 20, "max_packet_size": 1048576, "max_keepalive": 300,
            "internal_port": 1884}  # the bridges of the two brokers need it (components/arguments.py refuses it absent)


def build(users=None, settings=None, **overrides):
    def body():
        pki = Pki("b-pki", {"server_dns_names": pod_dns_names("b", "ns", 2), "client_names": ["dev1", "b-bridge"]})
        args = {"namespace": "ns", "replicas": 2, "settings": settings or SETTINGS, "password_iterations": 1000,
                "users": users if users is not None else [{"name": "admin", "role": "admin"},
                                                          {"name": "dev1", "password_login": False}],
                "ca_cert_pem": pki.ca_cert_pem, "server_cert_pem": pki.server_cert_pem,
                "server_key_pem": pki.server_key_pem, "client_certificates": {"dev1": pki.clients["dev1"]},
                "bridge_certificate": pki.clients["b-bridge"], **overrides}
        broker = MosquittoBroker("b", args)
        pulumi.export("credentials", broker.credentials)
    return run_components(body)


@pytest.fixture(scope="module")
def registry():
    return build()


def obj(registry, name):
    return by_name(registry, name).inputs


def test_component_tokens_and_parents(registry):
    broker = by_name(registry, "b")
    pki = by_name(registry, "b-pki")
    assert broker.type == "mqtt-estate:index:MosquittoBroker" and not broker.custom
    assert pki.type == "mqtt-estate:index:Pki"
    for res in registry.resources:
        if res.name.startswith("b-pki-"):
            assert res.parent == pki.urn, res.name
        elif res.name.startswith("b-") and res.name != "b-pki":
            assert res.parent == broker.urn, res.name


def test_children_named_after_component(registry):
    names = {r.name for r in registry.resources}
    assert {"b-namespace", "b-sa", "b-config", "b-auth", "b-tls", "b-headless", "b-service", "b-statefulset",
            "b-pdb", "b-netpol", "b-default-deny", "b-password-admin", "b-client-certs-0"} <= names
    assert "b-password-dev1" not in names  # certificate-only users have no password


def test_namespace_enforces_restricted_pod_security(registry):
    labels = obj(registry, "b-namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_statefulset_is_restricted_and_probed(registry):
    sts = obj(registry, "b-statefulset")
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"] and ctx["capabilities"]["drop"] == ["ALL"]
    assert ":" in container["image"] and not container["image"].endswith(":latest")
    assert container["resources"]["limits"] and container["resources"]["requests"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:5] == ["mosquitto_sub", "-h", "127.0.0.1", "-p", "1880"]  # loopback, plain: no TLS noise
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_no_secret_in_configmap(registry):
    data = obj(registry, "b-config")["data"]
    # one file per pod ordinal when clustered; the start script, and the reloader's script and the one both source
    assert sorted(data) == ["auth-files.sh", "b-0.conf", "b-1.conf", "health.acl", "reload.sh", "start.sh"]
    for conf in data.values():
        assert "BEGIN" not in conf and "$7$" not in conf
    assert "allow_anonymous false" in data["b-0.conf"] and "per_listener_settings true" in data["b-0.conf"]


def test_password_file_uses_pbkdf2_sha512_hashes(registry):
    auth = by_name(registry, "b-auth")
    assert auth.secret  # string data arrived marked secret
    line = auth.inputs["stringData"]["passwd"].strip()
    user, hashed = line.split(":", 1)
    assert user == "admin" and hashed.startswith("$7$101$")  # generated (190 bits): mosquitto's default count


def test_credentials_output_is_secret(registry):
    assert "credentials" in registry.secret_outputs
    assert set(registry.stack_outputs["credentials"]) == {"admin"}


def test_pod_template_carries_content_hashes(registry):
    annotations = obj(registry, "b-statefulset")["spec"]["template"]["metadata"]["annotations"]
    assert set(annotations) == {"mqtt-estate.io/config-hash", "mqtt-estate.io/tls-restart-hash"}


def test_without_reloader_every_secret_change_rolls():
    """reloader False: the auth and full TLS hashes are back in the pod template, and no sidecar or shared PID
    namespace."""
    pod = obj(build(reloader=False), "b-statefulset")["spec"]["template"]
    assert set(pod["metadata"]["annotations"]) == {"mqtt-estate.io/config-hash", "mqtt-estate.io/auth-hash",
                                                   "mqtt-estate.io/tls-hash"}
    assert "shareProcessNamespace" not in pod["spec"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["mosquitto"]


def test_reloader_sidecar_shares_the_pod_and_its_volumes(registry):
    pod = obj(registry, "b-statefulset")["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    broker, reloader = pod["containers"][0], pod["containers"][-1]
    assert reloader["name"] == "reloader" and reloader["image"] == broker["image"]
    assert reloader["command"] == ["/bin/sh", "/mosquitto/config/reload.sh"]
    mounts = {m["name"]: (m["mountPath"], m.get("readOnly", False)) for m in reloader["volumeMounts"]}
    broker_mounts = {m["name"]: m["mountPath"] for m in broker["volumeMounts"]}
    assert mounts == {"config": (broker_mounts["config"], True), "auth": (broker_mounts["auth"], True),
                      "certs": (broker_mounts["certs"], True), "run": (broker_mounts["run"], False)}
    assert all("subPath" not in m for c in pod["containers"] for m in c["volumeMounts"])  # the kubelet updates them
    assert reloader["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert reloader["securityContext"]["allowPrivilegeEscalation"] is False
    assert "pid_file /mosquitto/run/mosquitto.pid" in obj(registry, "b-config")["data"]["b-0.conf"]


def test_adding_a_user_touches_only_the_auth_secret():
    """The rollout model: a new user changes one Secret; the pod template stays as it was (the reloader applies
    it), so nothing restarts."""
    before = build()
    after = build(users=[{"name": "admin", "role": "admin"}, {"name": "dev1", "password_login": False},
                         {"name": "new-user", "role": "device"}])
    changed = sorted(r.name for r in after.resources
                     if r.custom and r.type.startswith("kubernetes:")
                     and by_name(before, r.name).inputs != r.inputs)
    assert changed == ["b-auth"]


def test_a_new_ca_rolls_the_pods_a_new_server_certificate_does_not():
    """mosquitto reloads the server certificate and key on SIGHUP, never the CA (src/net.c:470-506 at v2.0.20)."""
    def restart_hash(registry):
        return obj(registry, "b-statefulset")["spec"]["template"]["metadata"]["annotations"][
            "mqtt-estate.io/tls-restart-hash"]

    def with_pems(ca: int, cert: int):
        def body():
            pkis = [Pki(f"p{i}", {"server_dns_names": pod_dns_names("b", "ns", 1), "client_names": []})
                    for i in (1, 2)]
            settings = {key: value for key, value in SETTINGS.items() if key != "internal_port"}
            MosquittoBroker("b", {"namespace": "ns", "settings": settings, "password_iterations": 1000,
                                  "users": [{"name": "admin", "role": "admin"}], "ca_cert_pem": pkis[ca].ca_cert_pem,
                                  "server_cert_pem": pkis[cert].server_cert_pem,
                                  "server_key_pem": pkis[cert].server_key_pem})
        return run_components(body)

    base = restart_hash(with_pems(0, 0))
    assert restart_hash(with_pems(0, 1)) == base
    assert restart_hash(with_pems(1, 0)) != base


def test_config_change_gets_a_new_configmap_name():
    before = build()
    after = build(settings={**SETTINGS, "max_queued_messages": 5000})
    old_name = obj(before, "b-config")["metadata"]["name"]
    new_name = obj(after, "b-config")["metadata"]["name"]
    assert old_name != new_name and old_name.startswith("b-config-")
    sts = obj(after, "b-statefulset")
    assert sts["spec"]["volumeClaimTemplates"] == obj(before, "b-statefulset")["spec"]["volumeClaimTemplates"]


def test_network_policy_allows_only_listener_ports(registry):
    spec = obj(registry, "b-netpol")["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert sorted(p["port"] for p in spec["ingress"][0]["ports"]) == [1883, 8883, 8884]
    deny = obj(registry, "b-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_pki_issues_a_proper_chain(registry):
    ca = x509.load_pem_x509_certificate(by_name(registry, "b-pki-ca-cert").outputs["certPem"].encode())
    server = x509.load_pem_x509_certificate(by_name(registry, "b-pki-server-cert").outputs["certPem"].encode())
    client = x509.load_pem_x509_certificate(by_name(registry, "b-pki-client-dev1-cert").outputs["certPem"].encode())
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp384r1"
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "b.ns.svc.cluster.local" in sans and "b-1.b-headless.ns.svc.cluster.local" in sans
    assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])
    assert client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert client.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == "dev1"


def test_existing_ca_is_used_instead_of_a_new_one():
    reference = build()
    ca_pem = by_name(reference, "b-pki-ca-cert").outputs["certPem"]
    key_pem = by_name(reference, "b-pki-ca-key").outputs["privateKeyPem"]

    def body():
        Pki("byo", {"existing_ca_cert_pem": ca_pem, "existing_ca_key_pem": key_pem, "client_names": []})

    registry = run_components(body)
    names = {r.name for r in registry.resources}
    assert "byo-ca-cert" not in names and "byo-ca-key" not in names
    server = x509.load_pem_x509_certificate(by_name(registry, "byo-server-cert").outputs["certPem"].encode())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))


def test_load_balancer_gets_source_ranges():
    registry = build(service_type="LoadBalancer", load_balancer_source_ranges=["10.0.0.0/8"])
    spec = obj(registry, "b-service")["spec"]
    assert spec["type"] == "LoadBalancer" and spec["loadBalancerSourceRanges"] == ["10.0.0.0/8"]


def test_autoscaled_statefulset_names_its_minimum_and_ignores_later_counts(monkeypatch):
    """A replaced StatefulSet starts at the HPA minimum (never Kubernetes' default 1), and `spec.replicas` is in
    ignore_changes so an update leaves the HPA's count alone (pulumi-kubernetes await/await.go:716-806)."""
    from mqtt_estate.estate import engine

    seen = {}
    original = engine.RecordingMonitor.RegisterResource

    def record(self, request):
        seen[request.name] = list(request.ignoreChanges)
        return original(self, request)

    monkeypatch.setattr(engine.RecordingMonitor, "RegisterResource", record)
    scaled = build(max_replicas=4, autoscaling={"min_replicas": 2, "max_replicas": 4, "target_cpu_percent": 60})
    assert obj(scaled, "b-statefulset")["spec"]["replicas"] == 2
    assert seen["b-statefulset"] == ["spec.replicas"]
    fixed = build()
    assert obj(fixed, "b-statefulset")["spec"]["replicas"] == 2 and seen["b-statefulset"] == []


def test_a_user_given_twice_is_refused():
    with pytest.raises(Exception, match="given twice"):
        build(users=[{"name": "admin", "role": "admin"}, {"name": "admin", "role": "device"}])


def test_broker_files_are_not_world_readable_and_are_copied_private_at_start(registry):
    sts = obj(registry, "b-statefulset")["spec"]["template"]["spec"]
    modes = {v["name"]: (v.get("secret") or v.get("configMap") or {}).get("defaultMode") for v in sts["volumes"]}
    assert modes["auth"] == modes["certs"] == modes["config"] == 0o440
    command = sts["containers"][0]["command"]
    assert command[:2] == ["/bin/sh", "/mosquitto/config/start.sh"]
    conf = obj(registry, "b-config")["data"]["b-0.conf"]
    assert "password_file /mosquitto/run/passwd" in conf and "acl_file /mosquitto/run/acl" in conf
