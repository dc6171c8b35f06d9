"""Cloud bridge mistakes a plant engineer makes, each refused at config time with one key-path line (nothing
written), and the same rules on the component's own arguments (components/bridge_rules.py serves both).

The provider numbers (QoS, sizes, slashes, keepalive, ports) are cited in components/cloud_profiles.py."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mqtt_estate.components.arguments import problems
from mqtt_estate.components.cloud_bridge import CloudBridgeArgs
from mqtt_estate.stacks.checks import warnings  # noqa: F401 (the module under test imports cleanly)
from tests.test_config_errors import isolated  # noqa: F401 (fixture)
from tests.test_config_mistakes import assert_one_key_path_line

BASE = """
config:
  mqtt-estate:broker:
    listeners:
      - {name: mqtts, port: 8883, tls: true}
    limits:
      maxPacketSize: 131072
"""


def _bridge(body: str, extra: str = "", packet: int = 131072) -> str:
    base = BASE.replace("131072", str(packet))
    return base + "  mqtt-estate:bridges:\n" + "\n".join("    " + line for line in body.strip("\n").splitlines()) \
        + "\n" + extra


AWS = """- name: aws
  provider: aws-iot-core
  endpoint: a1b2c3-ats.iot.eu-west-1.amazonaws.com
  clientId: plant-7-gateway
  aws: {provision: false}
  mappings:
    - {topic: "factory/#", direction: out, qos: %s, remotePrefix: "plant7/"}
"""
AZURE = """- name: azure
  provider: azure-iot-hub
  clientId: press-7
  azure: {hubName: plant-hub, auth: sas}
  mappings:
    - {topic: "#", direction: out, qos: 1, localPrefix: "azure/"}
"""
MQTT = """- name: hq
  provider: mqtt
  endpoint: mqtt.hq.example
  clientId: plant-7
  mappings:
    - {topic: "factory/#", direction: %s, qos: 2}
"""
KEY = '  mqtt-estate:bridge-key-azure: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="\n'

MISTAKES = [
    ("aws-qos-2", _bridge(AWS % 2), "bridges[0].mappings[0].qos", "not accepted by AWS IoT Core"),
    ("azure-qos-2", _bridge(AZURE.replace("qos: 1", "qos: 2"), KEY), "bridges[0].mappings[0].qos",
     "not accepted by Azure IoT Hub"),
    ("aws-both-loops", _bridge((AWS % 1).replace("direction: out", "direction: both")),
     "bridges[0].mappings[0].direction", "would loop"),
    ("mqtt-both-without-no-local", _bridge(MQTT % "both"), "bridges[0].mappings[0].direction", "would loop"),
    ("in-overlaps-out", _bridge((AWS % 1) + '    - {topic: "factory/line1/cmd", direction: in, qos: 1, '
                                           'remotePrefix: "plant7/"}\n'),
     "bridges[0].mappings[1].topic", "straight back"),
    ("aws-deep-remote-topic", _bridge((AWS % 1).replace('remotePrefix: "plant7/"', 'remotePrefix: "a/b/c/d/e/f/g/"')),
     "bridges[0].mappings[0].remotePrefix", "at most 7"),
    ("aws-reserved-topic", _bridge((AWS % 1).replace('remotePrefix: "plant7/"', 'remotePrefix: "$aws/things/x/"')),
     "bridges[0].mappings[0].remotePrefix", "reserved"),
    ("aws-long-topic", _bridge((AWS % 1).replace('remotePrefix: "plant7/"', f'remotePrefix: "{"p" * 260}/"')),
     "bridges[0].mappings[0].remotePrefix", "256"),
    ("aws-thing-name", _bridge((AWS % 1).replace("plant-7-gateway", "plant.7.gateway")), "bridges[0].clientId",
     "thing name"),
    ("aws-port", _bridge((AWS % 1).replace("clientId:", "port: 1883\n  clientId:")), "bridges[0].port",
     "443 with ALPN"),
    ("aws-keepalive", _bridge((AWS % 1).replace("clientId:", "keepalive: 1800\n  clientId:")),
     "bridges[0].keepalive", "30 to 1200"),
    ("aws-packet-size", _bridge(AWS % 1, packet=1048576), "broker.limits.maxPacketSize", "vanish at the bridge"),
    ("aws-no-endpoint", _bridge((AWS % 1).replace("  endpoint: a1b2c3-ats.iot.eu-west-1.amazonaws.com\n", "")),
     "bridges[0].endpoint", "describe-endpoint"),
    ("azure-without-key", _bridge(AZURE), "bridges[0].azure.auth", "bridge-key-azure"),
    ("azure-bad-key", _bridge(AZURE, '  mqtt-estate:bridge-key-azure: "not base64!"\n'), "bridge-key-azure",
     "not valid base64"),
    ("azure-port-443", _bridge(AZURE.replace("clientId:", "port: 443\n  clientId:"), KEY), "bridges[0].port",
     "8883"),
    ("azure-wrong-events-topic", _bridge(AZURE.replace('localPrefix: "azure/"', 'remotePrefix: "telemetry/"'), KEY),
     "bridges[0].mappings[0].remotePrefix", "messages/events/"),
    ("azure-keepalive", _bridge(AZURE.replace("clientId:", "keepalive: 1500\n  clientId:"), KEY),
     "bridges[0].keepalive", "1177"),
    ("azure-section-missing", _bridge(AZURE.replace("  azure: {hubName: plant-hub, auth: sas}\n", "")),
     "bridges[0].azure", "hubName"),
    ("aws-settings-on-azure", _bridge(AZURE.replace("clientId:", "aws: {provision: true}\n  clientId:"), KEY),
     "bridges[0].aws", "no effect"),
    ("mqtt-plain-outside-cluster", _bridge((MQTT % "out").replace("clientId:", "mqtt: {tls: false}\n  clientId:")),
     "bridges[0].mqtt.tls", "clear text"),
    ("mqtt-username-without-password", _bridge((MQTT % "out").replace("clientId:", "mqtt: {username: p7}\n  clientId:")),
     "bridges[0].mqtt.username", "bridge-password-hq"),
    ("password-for-no-bridge", _bridge(MQTT % "out", '  mqtt-estate:bridge-password-nobody: "x"\n'),
     "bridge-password-nobody", "names no bridge"),
    ("same-identity-twice", _bridge((AWS % 1) + (AWS % 1).replace("name: aws", "name: aws2")),
     "bridges[1].clientId", "drop them in turn"),
    ("same-name-twice", _bridge((MQTT % "out") + (MQTT % "out").replace("plant-7\n", "plant-8\n")),
     "bridges[1].name", "hq"),
    ("identity-is-a-user", _bridge(MQTT % "out", "  mqtt-estate:users:\n    - {name: mosquitto-cloud-hq}\n"),
     "bridges[0].name", "also a user"),
    ("topic-with-space", _bridge((MQTT % "out").replace('"factory/#"', '"factory floor/#"')),
     "bridges[0].mappings[0].topic", "space"),
    ("prefix-with-wildcard", _bridge((MQTT % "out").replace("qos: 2}", 'qos: 2, localPrefix: "site/+/"}')),
     "bridges[0].mappings[0].localPrefix", "wildcard"),
    ("buffer-beyond-memory", _bridge((MQTT % "out") + "  buffer: {maxQueuedBytes: 268435456}\n"),
     "bridges[0].buffer.maxQueuedBytes", "memoryLimit"),
    ("buffer-beyond-volume", _bridge((MQTT % "out") + "  buffer: {maxQueuedBytes: 134217728, memoryLimit: 1Gi, "
                                                      "storage: 200Mi}\n"),
     "bridges[0].buffer.storage", "two snapshots"),
    ("injected-line-in-username", _bridge((MQTT % "out").replace("clientId:", 'mqtt: {username: "p7\\ntopic # both 2"}\n  clientId:')),
     "bridges[0].mqtt.username", "not allowed"),
    ("injected-line-in-password", _bridge((MQTT % "out").replace("clientId:", "mqtt: {username: p7}\n  clientId:"),
                                          '  mqtt-estate:bridge-password-hq: "pw\\ntopic # both 2"\n'),
     "bridge-password-hq", "line break"),
    ("quote-as-topic", _bridge((MQTT % "out").replace('"factory/#"', "'\"\"'")), "bridges[0].mappings[0].topic", "empty prefix"),
    ("quote-as-prefix", _bridge((MQTT % "out").replace("qos: 2}", "qos: 2, localPrefix: '\"\"'}")),
     "bridges[0].mappings[0].localPrefix", "empty prefix"),
    ("same-azure-device-by-endpoint", _bridge(AZURE + AZURE.replace("name: azure", "name: azure2").replace(
        "clientId:", "endpoint: plant-hub.azure-devices.net\n  clientId:"), KEY + KEY.replace("azure:", "azure2:")),
     "bridges[1].clientId", "drop them in turn"),
    ("same-thing-other-endpoint", _bridge((AWS % 1) + (AWS % 1).replace("name: aws", "name: aws2").replace(
        "a1b2c3-ats", "x9y8z7-ats")), "bridges[1].clientId", "drop them in turn"),
    ("out-mappings-overlap", _bridge((MQTT % "out") + '    - {topic: "factory/line1/#", direction: out, qos: 1}\n'),
     "bridges[0].mappings[1].topic", "sent twice"),
    ("aws-echo-back", _bridge((AWS % 1) + '    - {topic: "factory/cmd/#", direction: in, qos: 1, remotePrefix: "plant7/", '
                                         'localPrefix: "aws/"}\n'),
     "bridges[0].mappings[1].topic", "straight back"),
    ("azure-devicebound-subtopic", _bridge(AZURE + '    - {topic: "cmd/#", direction: in, qos: 1}\n', KEY),
     "bridges[0].mappings[1].remotePrefix", "one cloud-to-device subscription"),
    ("aws-thing-name-with-colon", _bridge((AWS % 1).replace("plant-7-gateway", "plant:7")), "bridges[0].clientId",
     "policy name"),
    ("aws-policy-wildcard-in-topic", _bridge((AWS % 1).replace('"factory/#"', '"factory/*/temp"')),
     "bridges[0].mappings[0].remotePrefix", "policy wildcard"),
    ("workload-name-too-long", _bridge((MQTT % "out").replace("name: hq", "name: " + "h" * 32)).replace(
        "  mqtt-estate:broker:\n", "  mqtt-estate:broker:\n    name: " + "b" * 20 + "\n"), "bridges[0].name",
     "at most 52"),
    ("sas-validity-too-short", _bridge(AZURE.replace("auth: sas}", "auth: sas, sasValidity: 1h}"), KEY),
     "bridges[0].azure.sasValidity", "at least 2d"),
    ("bridge-to-itself", _bridge((MQTT % "out").replace("mqtt.hq.example", "mosquitto.mqtt.svc.cluster.local")),
     "bridges[0].endpoint", "this estate"),
    ("sys-local-prefix", _bridge((MQTT % "out").replace("direction: out, qos: 2}", 'direction: in, qos: 1, localPrefix: "$SYS/"}')),
     "bridges[0].mappings[0].localPrefix", "$SYS"),
    ("unknown-provider", _bridge((MQTT % "out").replace("provider: mqtt", "provider: aws-iot")),
     "bridges[0].provider", "aws-iot-core"),
]


@pytest.mark.parametrize("text, path, fragment", [c[1:] for c in MISTAKES], ids=[c[0] for c in MISTAKES])
def test_bridge_mistake_is_one_key_path_line(tmp_path, capsys, text, path, fragment):
    assert_one_key_path_line(tmp_path, capsys, text, path, fragment)


def _pem_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mosquitto-cloud-aws")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


CERT, KEY_PEM = _pem_pair()


def _args(**overrides) -> CloudBridgeArgs:
    args = {"provider": "aws-iot-core", "client_id": "plant-7-gateway", "endpoint": "x-ats.iot.eu-west-1.amazonaws.com",
            "aws": {"provision": False},
            "mappings": [{"topic": "factory/#", "direction": "out", "qos": 1, "remote_prefix": "plant7/"}],
            "estate_addresses": ["mosquitto-0.mosquitto-headless.mqtt.svc.cluster.local:1884"],
            "estate_selector": {"app.kubernetes.io/name": "mosquitto"}, "estate_port": 1884,
            "ca_cert_pem": CERT, "estate_certificate": {"cert_pem": CERT, "key_pem": KEY_PEM}}
    args.update(overrides)
    return args


def test_component_arguments_refuse_qos_2_towards_aws():
    """A program of your own (any language, through the provider) gets the same refusal, by argument path."""
    lines = problems("CloudBridge", "mosquitto-cloud-aws", _args(
        mappings=[{"topic": "factory/#", "direction": "out", "qos": 2}]), CloudBridgeArgs)
    assert any("args.mappings[0].qos: 2 is not accepted by AWS IoT Core" in line for line in lines), lines


def test_component_arguments_refuse_sas_without_a_key():
    lines = problems("CloudBridge", "mosquitto-cloud-azure", _args(
        provider="azure-iot-hub", client_id="press-7", aws=None, azure={"hub_name": "plant-hub", "auth": "sas"},
        mappings=[{"topic": "#", "direction": "out", "local_prefix": "azure/",
                   "remote_prefix": "devices/press-7/messages/events/"}]), CloudBridgeArgs)
    assert any("args.azure.device_key: is required with auth sas" in line for line in lines), lines


def test_component_arguments_refuse_aws_without_provisioning_or_endpoint():
    """Without either the bridge would dial `None:8883`; the stack check and the component share the rule."""
    args = _args(aws={"provision": False})
    del args["endpoint"]
    lines = problems("CloudBridge", "mosquitto-cloud-aws", args, CloudBridgeArgs)
    assert any("args.endpoint: is required unless aws.provision is true" in line for line in lines), lines


def test_component_arguments_accept_a_good_bridge():
    assert problems("CloudBridge", "mosquitto-cloud-aws", _args(), CloudBridgeArgs) == []
