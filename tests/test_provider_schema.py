"""The component provider (provider/, components/provider.py): the golden schema, every property typed and
documented, GetSchema over gRPC from `python provider <engine>` as the Pulumi CLI starts it, and Construct with
inputs as another language sends them (camelCase names, numbers as doubles) building what the Python call builds.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, TypedDict

import grpc
import pulumi
import pytest
from google.protobuf import empty_pb2
from pulumi.errors import InputPropertyError
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from mqtt_estate.components.broker import MosquittoBroker, pod_dns_names
from mqtt_estate.components.haproxy import HaProxyFrontend
from mqtt_estate.components.nfs import NfsStorage
from mqtt_estate.components.pki import Pki
from mqtt_estate import __version__
from mqtt_estate.components.provider import PACKAGE, EstateComponentProvider, schema_text
from tests.harness import run_components

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "schema" / "provider.schema.json"
REGENERATE = "python3 -m estate schema --provider > schema/provider.schema.json"
COMPONENTS = ["BackupBucket", "CloudBridge", "HaProxyFrontend", "MonitoringStack", "MosquittoBroker", "NfsStorage",
              "Pki"]


@pytest.fixture(scope="module")
def provider() -> EstateComponentProvider:
    return EstateComponentProvider()


@pytest.fixture(scope="module")
def schema(provider) -> dict:
    return json.loads(provider.schema)


# --- the golden schema ------------------------------------------------------------------------------------------

def test_golden_schema_is_what_the_analyzer_makes_of_the_components():
    assert schema_text() == GOLDEN.read_text(), (
        f"schema/provider.schema.json is stale: the components' types or docstrings changed. Run `{REGENERATE}`, "
        "review the diff (it is the package's API in every language) and commit it.")


def test_schema_names_the_package_its_version_and_every_component(schema):
    assert (schema["name"], schema["version"]) == (PACKAGE, __version__)
    assert sorted(schema["resources"]) == [f"mqtt-estate:index:{name}" for name in COMPONENTS]
    assert all(resource["isComponent"] for resource in schema["resources"].values())


def undocumented(schema: dict) -> list[str]:
    """Every resource, type and property (with its items and map values) lacking a type or $ref, or a description."""
    found = []

    def check(where: str, prop: dict) -> None:
        if not (prop.get("type") or prop.get("$ref")):
            found.append(f"{where}: no type")
        if not (prop.get("description") or "").strip():
            found.append(f"{where}: no description")
        for part in ("items", "additionalProperties"):
            if part in prop:
                check(f"{where}.{part}", prop[part])

    for token, resource in schema["resources"].items():
        if not (resource.get("description") or "").strip():
            found.append(f"{token}: no description")
        for kind in ("inputProperties", "properties"):
            for name, prop in resource[kind].items():
                check(f"{token} {kind}.{name}", prop)
    for token, typ in schema["types"].items():
        if not (typ.get("description") or "").strip():
            found.append(f"{token}: no description")
        for name, prop in typ["properties"].items():
            check(f"{token}.{name}", prop)
    return found


def test_every_input_output_and_type_is_typed_and_documented(schema):
    assert undocumented(schema) == []
    for resource in schema["resources"].values():
        assert resource["inputProperties"] and resource["properties"]


# (no `from __future__ import annotations` in this module: the analyzer needs these annotations as types)
class _HalfDocumentedArgs(TypedDict, total=False):
    documented: str
    """Has its docstring."""
    forgotten: int


class _HalfDocumented(pulumi.ComponentResource):
    """A component whose args lack one docstring."""

    result: str
    """Documented."""

    def __init__(self, name: str, args: _HalfDocumentedArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mqtt-estate:index:_HalfDocumented", name, None, opts)


def test_the_documentation_check_finds_a_field_without_a_docstring():
    analyzed = Analyzer(PACKAGE).analyze([_HalfDocumented])
    made = generate_schema(PACKAGE, "0.0.0", None, analyzed["component_definitions"],
                           analyzed["type_definitions"], []).to_json()
    assert undocumented(made) == ["mqtt-estate:index:_HalfDocumented inputProperties.forgotten: no description"]


def test_secret_values_are_marked_and_documented_as_secret(schema):
    """Every password and private key, input or output, is `secret: true` (so the generated SDKs wrap it) and its
    description says so; nothing else is marked."""
    expected = {("resources", "Pki", "properties", "serverKeyPem"), ("resources", "Pki", "properties", "clientKeyPems"),
                ("resources", "Pki", "inputProperties", "existingCaKeyPem"),
                ("resources", "MosquittoBroker", "properties", "credentials"),
                ("resources", "MosquittoBroker", "inputProperties", "serverKeyPem"),
                ("resources", "HaProxyFrontend", "properties", "statsPassword"),
                ("types", "BrokerUser", "properties", "password"),
                ("types", "ClientCertificate", "properties", "keyPem"),
                ("types", "AzureIotArgs", "properties", "deviceKey"), ("types", "MqttRemoteArgs", "properties", "password")}
    marked = {(section, token.rsplit(":", 1)[1], kind, name)
              for section in ("resources", "types") for token, owner in schema[section].items()
              for kind in ("inputProperties", "properties") for name, prop in owner.get(kind, {}).items()
              if prop.get("secret")}
    assert marked == expected
    for section, owner, kind, name in expected:
        description = schema[section][f"mqtt-estate:index:{owner}"][kind][name]["description"].lower()
        assert "secret" in description, (owner, name)


# --- GetSchema over gRPC from the provider process ----------------------------------------------------------------

def test_provider_process_serves_the_golden_schema_over_grpc(tmp_path):
    """Started as the Python language host starts a plugin: `python <plugin folder> <engine address>`
    (pulumi-language-python main.go:1617-1623), from another directory and without PYTHONPATH, so the checkout is
    found the way a `pulumi package add` clone finds it. GetSchema and GetPluginInfo need no engine: the address is
    only kept for Construct and Call (pulumi/provider/server.py:163 and 378), so a closed port will do."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    log = tmp_path / "stderr"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, str(ROOT / "provider"), "127.0.0.1:1"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        port = proc.stdout.readline().strip()  # server.py:541 prints the port once it listens
        if not port.isdigit():  # stdout ended: the process is exiting
            proc.wait()
            pytest.fail(f"no port from the provider (exit {proc.returncode}):\n{log.read_text()}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            served = stub.GetSchema(provider_pb2.GetSchemaRequest(version=0)).schema
            info = stub.GetPluginInfo(empty_pb2.Empty())
        assert json.loads(served) == json.loads(GOLDEN.read_text())
        assert info.version == __version__
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# --- Construct with another language's inputs ---------------------------------------------------------------------

def over_the_wire(value):
    """What deserialising a google.protobuf Struct hands the provider: every number a float (Outputs untouched)."""
    if isinstance(value, dict):
        return {key: over_the_wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [over_the_wire(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def construct(provider: EstateComponentProvider, component: str, name: str, inputs: dict) -> dict:
    """Construct a component as the provider does for a remote program (map the inputs, build it, read its state
    back) and return that state."""
    return provider.construct(name, f"mqtt-estate:index:{component}", over_the_wire(inputs), None).state


LISTENERS = [{"name": "mqtts", "port": 8883, "tls": True},
             {"name": "legacy", "port": 1885, "allow_anonymous": True, "source_ranges": ["10.30.0.0/24"],
              "anonymous_topics": [{"access": "write", "topic": "legacy/#"}]}]
SETTINGS = {"listeners": LISTENERS, "internal_port": 1884, "persistence": True, "autosave_interval": 60,
            "session_expiry": "7d", "max_connections": 100, "max_queued_messages": 1000,
            "max_inflight_messages": 20, "max_packet_size": 1048576, "max_keepalive": 300}
PKI_ARGS = {"server_dns_names": pod_dns_names("b", "ns", 3), "client_names": ["plc-1", "bridge", "check"],
            "leaf_key": {"algorithm": "ECDSA", "ecdsa_curve": "P256"}, "early_renewal_hours": 720}


def python_estate():
    """The estate as a Python program builds it."""
    pki = Pki("b-pki", PKI_ARGS)
    NfsStorage("b-storage", {"server": "nfs.plant", "path": "/exports/mqtt", "namespace": "ns", "statefulset": "b",
                             "count": 3})
    MosquittoBroker("b", {
        "namespace": "ns", "replicas": 2, "max_replicas": 3, "settings": SETTINGS, "password_iterations": 1000,
        "resources": {"cpu_request": "500m"},
        "autoscaling": {"min_replicas": 2, "max_replicas": 3, "target_cpu_percent": 70},
        "users": [{"name": "admin", "role": "admin"}, {"name": "plc-1", "role": "device", "zone": "press",
                                                       "password_login": False},
                  {"name": "scada", "role": "host-application",
                   "topics": [{"access": "read", "topic": "legacy/#"}]},
                  {"name": "bridge", "role": "bridge", "password_login": False}],
        "acl_patterns": [{"access": "readwrite", "topic": "devices/%u/#"}], "factory_zones": ["press"],
        "sparkplug": True, "ca_cert_pem": pki.ca_cert_pem, "server_cert_pem": pki.server_cert_pem,
        "server_key_pem": pki.server_key_pem, "client_certificates": {"plc-1": pki.clients["plc-1"]},
        "bridge_certificate": pki.clients["bridge"], "internal_clients": [{"app": "f"}],
        "storage_volume_prefix": "b"})
    HaProxyFrontend("f", {
        "namespace": "ns", "ports": [{"name": "mqtts", "port": 8883, "tls": True, "scheme": "mqtts"}],
        "broker_servers": pod_dns_names("b", "ns", 3), "broker_selector": {"app.kubernetes.io/instance": "b"},
        "internal_port": 1884, "check_name": pod_dns_names("b", "ns", 1)[0],
        "check_certificate": pki.clients["check"], "ca_cert_pem": pki.ca_cert_pem, "timeout_seconds": 450,
        "flood": {"connection_rate": 30, "rate_period_ms": 10000, "exempt_sources": ["10.40.0.0/16"]},
        "resources": {"memory_limit": "1Gi"}})


def remote_estate(provider: EstateComponentProvider):
    """The same estate as a TypeScript or YAML program sends it: the schema's names, plain objects whose values
    may be Outputs (the Pki's), numbers as doubles."""
    pki = construct(provider, "Pki", "b-pki", {
        "serverDnsNames": pod_dns_names("b", "ns", 3), "clientNames": ["plc-1", "bridge", "check"],
        "leafKey": {"algorithm": "ECDSA", "ecdsaCurve": "P256"}, "earlyRenewalHours": 720})

    def certificate(user: str) -> dict:
        return {"certPem": pki["clientCertPems"][user], "keyPem": pki["clientKeyPems"][user]}

    construct(provider, "NfsStorage", "b-storage", {
        "server": "nfs.plant", "path": "/exports/mqtt", "namespace": "ns", "statefulset": "b", "count": 3})
    construct(provider, "MosquittoBroker", "b", {
        "namespace": "ns", "replicas": 2, "maxReplicas": 3, "passwordIterations": 1000,
        "settings": {"listeners": [{"name": "mqtts", "port": 8883, "tls": True},
                                   {"name": "legacy", "port": 1885, "allowAnonymous": True,
                                    "sourceRanges": ["10.30.0.0/24"],
                                    "anonymousTopics": [{"access": "write", "topic": "legacy/#"}]}],
                     "internalPort": 1884, "persistence": True, "autosaveInterval": 60, "sessionExpiry": "7d",
                     "maxConnections": 100, "maxQueuedMessages": 1000, "maxInflightMessages": 20,
                     "maxPacketSize": 1048576, "maxKeepalive": 300},
        "resources": {"cpuRequest": "500m"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 3, "targetCpuPercent": 70},
        "users": [{"name": "admin", "role": "admin"}, {"name": "plc-1", "role": "device", "zone": "press",
                                                       "passwordLogin": False},
                  {"name": "scada", "role": "host-application", "topics": [{"access": "read", "topic": "legacy/#"}]},
                  {"name": "bridge", "role": "bridge", "passwordLogin": False}],
        "aclPatterns": [{"access": "readwrite", "topic": "devices/%u/#"}], "factoryZones": ["press"],
        "sparkplug": True, "caCertPem": pki["caCertPem"], "serverCertPem": pki["serverCertPem"],
        "serverKeyPem": pki["serverKeyPem"], "clientCertificates": {"plc-1": certificate("plc-1")},
        "bridgeCertificate": certificate("bridge"), "internalClients": [{"app": "f"}],
        "storageVolumePrefix": "b"})
    construct(provider, "HaProxyFrontend", "f", {
        "namespace": "ns", "ports": [{"name": "mqtts", "port": 8883, "tls": True, "scheme": "mqtts"}],
        "brokerServers": pod_dns_names("b", "ns", 3), "brokerSelector": {"app.kubernetes.io/instance": "b"},
        "internalPort": 1884, "checkName": pod_dns_names("b", "ns", 1)[0], "checkCertificate": certificate("check"),
        "caCertPem": pki["caCertPem"], "timeoutSeconds": 450,
        "flood": {"connectionRate": 30, "ratePeriodMs": 10000, "exemptSources": ["10.40.0.0/16"]},
        "resources": {"memoryLimit": "1Gi"}})


def registered(registry) -> list[tuple]:
    return sorted((r.type, r.name, r.parent, json.dumps(r.inputs, sort_keys=True), r.secret)
                  for r in registry.resources)


def test_construct_from_another_language_builds_what_the_python_call_builds(provider):
    python, remote = run_components(python_estate), run_components(lambda: remote_estate(provider))
    assert len(python.resources) > 40
    assert registered(remote) == registered(python)
    conf = next(r for r in remote.resources if r.name == "b-config").inputs["data"]["b-0.conf"]
    assert "listener 8883\n" in conf and "max_connections 100\n" in conf  # integers, not 8883.0


def test_construct_state_uses_the_schema_names_and_keeps_keys_secret(provider, schema):
    """What a remote program reads back: every output under its schema name; private keys still secret."""
    states = {}

    def body():
        states["Pki"] = construct(provider, "Pki", "p", {"clientNames": ["plc-1"]})
        states["NfsStorage"] = construct(provider, "NfsStorage", "s", {
            "server": "nfs", "path": "/x", "namespace": "ns", "statefulset": "b", "count": 2})
        pulumi.export("clientKeyPems", states["Pki"]["clientKeyPems"])
        pulumi.export("serverKeyPem", states["Pki"]["serverKeyPem"])
        pulumi.export("clientCertPems", states["Pki"]["clientCertPems"])

    registry = run_components(body)
    for component, state in states.items():
        assert sorted(state) == sorted(schema["resources"][f"mqtt-estate:index:{component}"]["properties"])
    assert states["NfsStorage"]["volumeNames"] == ["ns-b-0", "ns-b-1"]
    assert {"clientKeyPems", "serverKeyPem"} <= registry.secret_outputs
    assert "clientCertPems" not in registry.secret_outputs
    assert "BEGIN CERTIFICATE" in registry.stack_outputs["clientCertPems"]["plc-1"]


# --- what a program in another language can get wrong -------------------------------------------------------------

BROKER = {"settings": {"listeners": [{"name": "mqtt", "port": 1883}], "persistence": False,
                       "maxConnections": 10, "maxQueuedMessages": 10, "maxInflightMessages": 10,
                       "maxPacketSize": 1024, "maxKeepalive": 60},
          "caCertPem": "ca", "serverCertPem": "cert", "serverKeyPem": "key"}


def mapped(provider, component: str, inputs: dict) -> dict:
    return provider.map_inputs(over_the_wire(inputs), provider._component_defs[component])


@pytest.mark.parametrize("inputs, path", [
    ({key: value for key, value in BROKER.items() if key != "settings"}, "settings"),
    ({**BROKER, "settings": {**BROKER["settings"], "listeners": [{"name": "mqtt"}]}}, "settings.listeners[0].port"),
    ({**BROKER, "users": [{"role": "admin"}]}, "users[0].name"),
    ({**BROKER, "bridgeCertificate": {"certPem": "cert"}}, "bridgeCertificate.keyPem"),
    ({**BROKER, "aclPatterns": [{"topic": "#"}]}, "aclPatterns[0].access"),
])
def test_a_missing_required_input_is_refused_by_its_path(provider, inputs, path):
    with pytest.raises(InputPropertyError) as refused:
        mapped(provider, "MosquittoBroker", inputs)
    assert refused.value.property_path == path
    assert f"Missing required input '{path}' on 'MosquittoBroker'" in refused.value.reason


def test_a_certificate_passed_as_one_output_is_refused_not_read_as_empty(provider):
    """The SDK reads an object-typed input that is not an object (one Output holding both PEMs, as
    `pki.clientCertPems.apply(...)` would make) as {}: the missing PEMs are named instead of a KeyError later."""
    whole = pulumi.Output.from_input({"certPem": "cert", "keyPem": "key"})
    with pytest.raises(InputPropertyError) as refused:
        mapped(provider, "MosquittoBroker", {**BROKER, "bridgeCertificate": whole})
    assert refused.value.property_path == "bridgeCertificate.certPem"


@pytest.mark.parametrize("inputs, path", [
    ({**BROKER, "replicas": 1.5}, "replicas"),
    ({**BROKER, "settings": {**BROKER["settings"], "listeners": [{"name": "mqtt", "port": 1883.5}]}},
     "settings.listeners[0].port"),
])
def test_a_fractional_integer_is_refused_by_its_path(provider, inputs, path):
    with pytest.raises(InputPropertyError) as refused:
        mapped(provider, "MosquittoBroker", inputs)
    assert refused.value.property_path == path and "not a whole number" in refused.value.reason


def test_whole_doubles_become_ints_everywhere(provider):
    args = mapped(provider, "MosquittoBroker", {**BROKER, "replicas": 2, "autoscaling": {"minReplicas": 2,
                                                                                          "maxReplicas": 4}})
    assert type(args["replicas"]) is int and type(args["settings"]["listeners"][0]["port"]) is int
    assert type(args["autoscaling"]["max_replicas"]) is int and type(args["settings"]["max_keepalive"]) is int
    assert args["settings"]["persistence"] is False  # booleans stay booleans
    pki = mapped(provider, "Pki", {"caKey": {"algorithm": "RSA", "rsaBits": 4096}})
    assert pki == {"ca_key": {"algorithm": "RSA", "rsa_bits": 4096}} and type(pki["ca_key"]["rsa_bits"]) is int
