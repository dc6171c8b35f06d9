"""The cloud bridge rules (policy/rules_bridge.py) and what the broker and PKI rules say about a cloud bridge, on
really rendered resources: tests/stacks/cloud.yaml (an AWS IoT Core, an Azure IoT Hub and a generic MQTT bridge)
passes every mandatory policy, and changing one line of its rendered files makes exactly the named policy fail."""

from __future__ import annotations

import copy

import pytest

from mqtt_estate.estate.policy_run import load_policies, mandatory, run_policies
from mqtt_estate.estate.render import evaluate
from mqtt_estate.policy import rules_bridge
from tests.conftest import ROOT

STACK = "cloud"
POLICIES = {p.name: p for p in load_policies()}
BRIDGE_RULES = {p.name for p in rules_bridge.POLICIES}
AWS_CLOUD, AZURE_CLOUD = "mosquitto-cloud-aws-cloud", "mosquitto-cloud-azure-cloud"
HQ_CLOUD = "mosquitto-cloud-hq-cloud"
AWS_CONFIG, AZURE_CONFIG = "mosquitto-cloud-aws-config", "mosquitto-cloud-azure-config"
CLOUD_CONF = "cloud.conf"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """The registry of tests/stacks/cloud.yaml, rendered once for the module."""
    return evaluate(STACK, ROOT / "tests" / "stacks" / "cloud.yaml", tmp_path_factory.mktemp("cloud-state"))[1]


def violations_of(policy: str, registry) -> list:
    return run_policies(registry, STACK, policies=[POLICIES[policy]])


def resource(registry, name: str):
    return next(r for r in registry.resources if r.name == name)


# --- mutations of the rendered inputs -------------------------------------------------------------------------

def cloud_conf(old: str, new: str):
    def mutate(props):
        assert old in props["stringData"][CLOUD_CONF], old
        props["stringData"][CLOUD_CONF] = props["stringData"][CLOUD_CONF].replace(old, new, 1)
    return mutate


def main_conf(old: str, new: str):
    def mutate(props):
        assert old in props["data"]["mosquitto.conf"], old
        props["data"]["mosquitto.conf"] = props["data"]["mosquitto.conf"].replace(old, new, 1)
    return mutate


def setter(fn):
    def mutate(props):
        fn(props)
    return mutate


def moved_into_config_map(registry):
    """The Azure bridge's cloud.conf (with its SAS token) written into the bridge's ConfigMap instead."""
    text = resource(registry, AZURE_CLOUD).inputs["stringData"][CLOUD_CONF]
    resource(registry, AZURE_CONFIG).inputs["data"][CLOUD_CONF] = text


def public_root_as_estate_ca(registry):
    """Amazon Root CA 1 (RSA 2048) as the estate's own CA: still judged there."""
    root = resource(registry, AWS_CLOUD).inputs["stringData"]["ca.crt"]
    resource(registry, "mosquitto-tls").inputs["stringData"]["ca.crt"] = root


def label(name: str, value):
    def mutate(props):
        if value is None:
            props["metadata"]["labels"].pop(rules_bridge.PROVIDER_LABEL)
        else:
            props["metadata"]["labels"][rules_bridge.PROVIDER_LABEL] = value
    return name, setter(mutate)


# (id, policy, Pulumi resource name or "" for a registry mutation, mutation, words of one violation message)
FAILING = [
    # bridge-cloud-profile
    ("aws-qos-2", "bridge-cloud-profile", AWS_CLOUD, cloud_conf("topic factory/# out 1", "topic factory/# out 2"),
     "'topic factory/# out 2 \"\" plant7/' uses QoS 2; AWS IoT Core takes at most QoS 1"),
    ("azure-qos-2", "bridge-cloud-profile", AZURE_CLOUD, cloud_conf("topic # in 1", "topic # in 2"),
     "Azure IoT Hub takes at most QoS 1"),
    ("aws-both", "bridge-cloud-profile", AWS_CLOUD, cloud_conf("topic factory/# out 1", "topic factory/# both 1"),
     "bridges both ways"),
    ("azure-mqtt5", "bridge-cloud-profile", AZURE_CLOUD,
     cloud_conf("bridge_protocol_version mqttv311", "bridge_protocol_version mqttv50"),
     "bridge_protocol_version mqttv50: Azure IoT Hub speaks mqttv311"),
    ("aws-try-private", "bridge-cloud-profile", AWS_CLOUD, cloud_conf("try_private false", "try_private true"),
     "try_private is not false"),
    ("aws-try-private-default", "bridge-cloud-profile", AWS_CLOUD, cloud_conf("try_private false\n", ""),
     "try_private is not false"),
    # notifications to the remote: a `$SYS` publish and a will the cloud refuses (local-only sends neither)
    ("azure-notifications-default", "bridge-cloud-profile", AZURE_CLOUD,
     cloud_conf("notifications_local_only true\n", ""), "notifications go to the remote"),
    ("aws-notifications", "bridge-cloud-profile", AWS_CLOUD,
     cloud_conf("notifications_local_only true", "notifications_local_only false"), "lib/send_connect.c:107"),
    ("aws-443-without-alpn", "bridge-cloud-profile", AWS_CLOUD,
     cloud_conf(".amazonaws.com:8883", ".amazonaws.com:443"),
     "on port 443 without bridge_alpn x-amzn-mqtt-ca"),
    ("azure-retain", "bridge-cloud-profile", AZURE_CLOUD,
     cloud_conf("bridge_outgoing_retain false", "bridge_outgoing_retain true"), "bridge_outgoing_retain is not false"),
    ("azure-keepalive", "bridge-cloud-profile", AZURE_CLOUD,
     cloud_conf("keepalive_interval 60", "keepalive_interval 1200"),
     "keepalive_interval 1200 is outside Azure IoT Hub's range (5 to 1177 seconds)"),
    ("aws-keepalive", "bridge-cloud-profile", AWS_CLOUD, cloud_conf("keepalive_interval 60", "keepalive_interval 10"),
     "outside AWS IoT Core's range (30 to 1200 seconds)"),
    ("azure-username-form", "bridge-cloud-profile", AZURE_CLOUD, cloud_conf("/?api-version=2021-04-12", ""),
     "is not Azure IoT Hub's device user name"),
    ("azure-client-id", "bridge-cloud-profile", AZURE_CLOUD,
     cloud_conf("remote_clientid plant-7-gateway", "remote_clientid plant-8-gateway"),
     "remote_clientid plant-8-gateway is not the device id plant-7-gateway"),
    ("azure-other-hub", "bridge-cloud-profile", AZURE_CLOUD,
     cloud_conf("remote_username plant-hub.", "remote_username other-hub."), "names hub other-hub.azure-devices.net"),
    ("no-cloud-connection", "bridge-cloud-profile", AWS_CLOUD,
     setter(lambda p: p["stringData"].pop(CLOUD_CONF)), "no connection towards AWS IoT Core found"),
    # bridge-cloud-tls-verified
    ("aws-insecure", "bridge-cloud-tls-verified", AWS_CLOUD,
     cloud_conf("bridge_insecure false", "bridge_insecure true"), "sets bridge_insecure"),
    ("hq-no-ca", "bridge-cloud-tls-verified", HQ_CLOUD, cloud_conf("bridge_capath /etc/ssl/certs\n", ""),
     "to mqtt.hq.example names neither bridge_cafile nor bridge_capath"),
    ("azure-tls-1.1", "bridge-cloud-tls-verified", AZURE_CLOUD,
     cloud_conf("bridge_tls_version tlsv1.2", "bridge_tls_version tlsv1.1"), "allows tlsv1.1"),
    # bridge-credentials-in-secrets
    ("cloud-conf-in-config-map", "bridge-credentials-in-secrets", "", moved_into_config_map,
     "data 'cloud.conf' line 22: remote_password (bridge cloud) is a bridge credential in a ConfigMap"),
    ("sas-as-username", "bridge-credentials-in-secrets", AWS_CONFIG,
     main_conf("remote_clientid mosquitto-cloud-aws", "remote_username SharedAccessSignature sr=x&sig=y&se=1\n"
               "remote_clientid mosquitto-cloud-aws"),
     "remote_username (bridge estate) carries an Azure shared access signature"),
    ("psk-in-config-map", "bridge-credentials-in-secrets", AWS_CONFIG,
     main_conf("try_private true", "try_private true\nbridge_psk 6b3f9c01d2e4"), "bridge_psk (bridge estate)"),
    ("local-password-in-config-map", "bridge-credentials-in-secrets", AWS_CONFIG,
     main_conf("try_private true", "try_private true\nlocal_password hunter2"), "local_password (bridge estate)"),
    # bridge-single-connection
    ("two-replicas", "bridge-single-connection", "mosquitto-cloud-aws-statefulset",
     setter(lambda p: p["spec"].update(replicas=2)), "has replicas 2: two pods with one client id"),
    ("as-a-deployment", "bridge-single-connection", "mosquitto-cloud-hq-statefulset",
     setter(lambda p: p.update(kind="Deployment")), "runs as a Deployment"),
    # broker-persistence: a bridge-only mosquitto sets no session expiry; the estate's brokers still must
    ("bridge-session-expiry", "broker-persistence", AWS_CONFIG,
     main_conf("persistence true", "persistence true\npersistent_client_expiration 7d"),
     "persistent_client_expiration 7d on a bridge-only mosquitto"),
    ("broker-without-expiry", "broker-persistence", "mosquitto-config",
     setter(lambda p: p["data"].update({k: "\n".join(line for line in v.splitlines()
                                                     if not line.startswith("persistent_client_expiration"))
                                        for k, v in p["data"].items() if k.endswith(".conf")})),
     "mosquitto-0.conf: persistent_client_expiration is not set"),
    ("bridge-without-keepalive-limit", "broker-limits", AWS_CONFIG, main_conf("max_keepalive 60\n", ""),
     "mosquitto.conf: max_keepalive is not set"),
    # pki-ca-in-use: only a cloud bridge's public roots are exempt
    ("public-root-as-estate-ca", "pki-ca-in-use", "", public_root_as_estate_ca, "key is RSA 2048 bits"),
    ("cloud-secret-without-provider", "pki-ca-in-use", *label(AWS_CLOUD, None), "key is RSA 2048 bits"),
    ("cloud-secret-of-an-mqtt-bridge", "pki-ca-in-use", *label(AZURE_CLOUD, "mqtt"), "key is RSA 2048 bits"),
    ("unreadable-public-root", "pki-ca-in-use", AWS_CLOUD,
     setter(lambda p: p["stringData"].update({"ca.crt": "not a PEM"})), "ca.crt is not a PEM certificate"),
]

# (id, policy, resource, mutation) that must still pass (the baseline's hq bridge already has QoS 2 to a generic
# MQTT broker, whose profile takes it)
PASSING = [
    ("hq-both-to-mqtt", "bridge-cloud-profile", HQ_CLOUD, cloud_conf("factory/# out 2", "factory/# both 2")),
    ("aws-443-with-alpn", "bridge-cloud-profile", AWS_CLOUD,
     cloud_conf(".amazonaws.com:8883", ".amazonaws.com:443\nbridge_alpn x-amzn-mqtt-ca")),
    ("azure-username-with-more-properties", "bridge-cloud-profile", AZURE_CLOUD,
     cloud_conf("api-version=2021-04-12", "api-version=2021-04-12&DeviceClientType=mqtt-estate")),
    ("hq-in-cluster-without-tls", "bridge-cloud-tls-verified", HQ_CLOUD,
     lambda p: (cloud_conf("bridge_capath /etc/ssl/certs\n", "")(p),
                cloud_conf("mqtt.hq.example:8883", "hq.mqtt.svc.cluster.local:1883")(p))),
    ("replicas-left-to-the-default", "bridge-single-connection", "mosquitto-cloud-aws-statefulset",
     setter(lambda p: p["spec"].pop("replicas"))),
]


def _mutated(registry, name: str, mutation):
    changed = copy.deepcopy(registry)
    if name:
        mutation(resource(changed, name).inputs)
    else:
        mutation(changed)
    return changed


def test_the_cloud_stack_passes_every_mandatory_policy(cloud):
    assert [v.line() for v in mandatory(run_policies(cloud, STACK))] == []


@pytest.mark.parametrize("policy", sorted(BRIDGE_RULES | {"broker-persistence", "broker-limits", "pki-ca-in-use"}))
def test_the_cloud_stack_passes(cloud, policy):
    assert violations_of(policy, cloud) == []


def test_the_rules_see_every_bridge(cloud):
    """Not a vacuous pass: every bridge of the stack has its provider and its cloud connection found."""
    workloads = {w.instance: w for w in rules_bridge.bridge_workloads(
        [type("R", (), {"resource_type": r.type, "props": r.inputs})() for r in cloud.resources if r.custom])}
    assert {name: w.provider for name, w in workloads.items()} == {
        "mosquitto-cloud-aws": "aws-iot-core", "mosquitto-cloud-azure": "azure-iot-hub", "mosquitto-cloud-hq": "mqtt"}
    for workload in workloads.values():
        connections = list(workload.connections())
        assert [(key, bridge["connection"]) for _, key, bridge in connections] == [(CLOUD_CONF, ["cloud"])]


@pytest.mark.parametrize("policy,name,mutation,words", [c[1:] for c in FAILING], ids=[c[0] for c in FAILING])
def test_one_changed_line_fails(cloud, policy, name, mutation, words):
    assert violations_of(policy, cloud) == [], "the compliant baseline must pass"
    found = violations_of(policy, _mutated(cloud, name, mutation))
    assert any(words in v.message for v in found), [v.message for v in found]
    assert all(not v.message.startswith("could not evaluate") for v in found), [v.message for v in found]
    assert {v.policy for v in found} == {policy}


@pytest.mark.parametrize("policy,name,mutation", [c[1:] for c in PASSING], ids=[c[0] for c in PASSING])
def test_allowed_change_passes(cloud, policy, name, mutation):
    assert [v.message for v in violations_of(policy, _mutated(cloud, name, mutation))] == []


def test_every_bridge_rule_has_a_failing_case():
    assert BRIDGE_RULES == {"bridge-cloud-profile", "bridge-cloud-tls-verified", "bridge-credentials-in-secrets",
                            "bridge-single-connection"}
    assert BRIDGE_RULES <= {case[1] for case in FAILING}
    assert all(POLICIES[name].enforcement_level.value == "mandatory" for name in BRIDGE_RULES)


def test_labels_are_the_components():
    """The pack cannot import components/cloud_bridge.py (it needs pulumi): its copies of the labels must agree."""
    from mqtt_estate.components import cloud_bridge

    assert (rules_bridge.APP, rules_bridge.PROVIDER_LABEL) == (cloud_bridge.APP, cloud_bridge.PROVIDER_LABEL)
    assert set(rules_bridge.PUBLIC_ROOT_PROVIDERS) == set(cloud_bridge.CLOUD_CA)
