"""CloudBridge's shape under Pulumi mocks: one pod, credentials only in Secrets, the estate identity's ACL, and a
pod that rolls when a credential changes without any credential (or a quick hash of one) in the pod template."""

from __future__ import annotations

import json

import pulumi
import pytest

from mqtt_estate.components import cloud_bridge as cb
from mqtt_estate.components.cloud_bridge import CloudBridge, estate_rules
from tests.harness import by_name, run_components
from tests.test_cloud_bridge_config import CERT, KEY_PEM

DEVICE_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
ESTATE = {"estate_addresses": ["mosquitto-0.mosquitto-headless.mqtt.svc.cluster.local:1884"],
          "estate_selector": {"app.kubernetes.io/name": "mosquitto", "app.kubernetes.io/instance": "mosquitto"},
          "estate_port": 1884, "ca_cert_pem": CERT, "estate_certificate": {"cert_pem": CERT, "key_pem": KEY_PEM}}


def _azure(**extra) -> dict:
    return {**ESTATE, "provider": "azure-iot-hub", "client_id": "press-7",
            "azure": {"hub_name": "plant-hub", "auth": "sas", "device_key": pulumi.Output.secret(DEVICE_KEY),
                      **extra},
            "mappings": [{"topic": "#", "direction": "out", "qos": 1, "local_prefix": "azure/",
                          "remote_prefix": "devices/press-7/messages/events/"},
                         {"topic": "#", "direction": "in", "qos": 1, "local_prefix": "c2d/",
                          "remote_prefix": "devices/press-7/messages/devicebound/"}]}


def _mqtt(password: str) -> dict:
    return {**ESTATE, "provider": "mqtt", "client_id": "plant-7", "endpoint": "mqtt.hq.example",
            "mqtt": {"username": "plant-7", "password": pulumi.Output.secret(password)},
            "mappings": [{"topic": "factory/#", "direction": "out", "qos": 2, "remote_prefix": "plants/7/"}]}


def _render(args: dict, name: str = "mosquitto-cloud-x"):
    return run_components(lambda: CloudBridge(name, args))


def _set(registry, name):
    return by_name(registry, f"mosquitto-cloud-x-{name}").inputs


def test_children_are_parented_and_named_after_the_component():
    registry = _render(_azure())
    component = by_name(registry, "mosquitto-cloud-x")
    assert component.type == "mqtt-estate:index:CloudBridge"
    children = [r for r in registry.resources if r.parent == component.urn]
    assert {r.name for r in children} >= {"mosquitto-cloud-x-config", "mosquitto-cloud-x-cloud",
                                          "mosquitto-cloud-x-estate-tls", "mosquitto-cloud-x-statefulset",
                                          "mosquitto-cloud-x-netpol"}
    assert all(r.name.startswith("mosquitto-cloud-x-") for r in children)


def test_one_pod_holds_the_one_cloud_connection():
    spec = _set(_render(_azure()), "statefulset")["spec"]
    assert spec["replicas"] == 1 and spec["podManagementPolicy"] == "OrderedReady"
    assert spec["template"]["spec"]["automountServiceAccountToken"] is False
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"


def test_the_sas_token_lives_only_in_the_secret():
    registry = _render(_azure())
    config = json.dumps(_set(registry, "config"))
    cloud = _set(registry, "cloud")["stringData"]["cloud.conf"]
    assert "SharedAccessSignature" not in config and "remote_password" not in config
    assert "remote_password SharedAccessSignature sr=plant-hub.azure-devices.net%2Fdevices%2Fpress-7" in cloud
    assert "remote_username plant-hub.azure-devices.net/press-7/?api-version=2021-04-12" in cloud
    assert by_name(registry, "mosquitto-cloud-x-cloud").secret
    template = json.dumps(_set(registry, "statefulset")["spec"]["template"])
    assert "sig=" not in template and DEVICE_KEY not in template


def test_a_renewed_token_rolls_the_pod(monkeypatch):
    """mosquitto cannot reload a bridge's credentials, so a new token must restart the pod."""
    def cloud_hash(now: int) -> str:
        monkeypatch.setattr(cb.time, "time", lambda: now)
        registry = _render(_azure(sas_validity_seconds=86400))
        return _set(registry, "statefulset")["spec"]["template"]["metadata"]["annotations"]["mqtt-estate.io/cloud-hash"]

    assert cloud_hash(1_800_000_000) == cloud_hash(1_800_000_000 + 100)  # same half-period: same token, no roll
    assert cloud_hash(1_800_000_000) != cloud_hash(1_800_000_000 + 86400)


def test_a_new_remote_password_rolls_the_pod_without_showing_it():
    def template(password: str) -> dict:
        return _set(_render(_mqtt(password)), "statefulset")["spec"]["template"]

    first, second = template("quartz-harbour-violet-meadow-42"), template("quartz-harbour-violet-meadow-43")
    assert first["metadata"]["annotations"] != second["metadata"]["annotations"]
    assert "quartz" not in json.dumps(first)


def test_the_estate_identity_may_read_what_goes_out_and_write_what_comes_in():
    rules = estate_rules(_azure()["mappings"])
    assert rules == [{"access": "read", "topic": "azure/#"}, {"access": "write", "topic": "c2d/#"}]


def test_network_policy_admits_nothing_and_reaches_only_dns_the_estate_and_the_cloud_port():
    spec = _set(_render(_azure()), "netpol")["spec"]
    assert spec["ingress"] == [] and spec["policyTypes"] == ["Ingress", "Egress"]
    ports = [p["port"] for rule in spec["egress"] for p in rule["ports"]]
    assert ports == [53, 53, 1884, 8883]


@pytest.mark.parametrize("qos", [2])
def test_qos_2_towards_azure_is_refused_before_anything_registers(qos):
    args = _azure()
    args["mappings"][0]["qos"] = qos
    with pytest.raises(Exception, match=r"args.mappings\[0\].qos: 2 is not accepted by Azure IoT Hub"):
        _render(args)
