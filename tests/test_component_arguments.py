"""Component arguments (components/arguments.py): what a plant engineer gets wrong when calling the components
directly, in Python or through the component provider, is refused before anything is registered, with one line
per problem that names the path and what is allowed; what is valid still builds, and no name, topic or setting
can add a line to a rendered file."""

from __future__ import annotations

import copy
import datetime as dt
import random
import re
from functools import lru_cache

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pulumi.errors import InputPropertiesError

from mqtt_estate import ComponentArgumentsError, HaProxyFrontend, MosquittoBroker, NfsStorage, Pki
from mqtt_estate.components import arguments
from mqtt_estate.components.broker import MosquittoBrokerArgs
from mqtt_estate.components.haproxy import HaProxyFrontendArgs
from mqtt_estate.components.provider import EstateComponentProvider
from tests.harness import run_components
from tests.test_provider_schema import over_the_wire


@lru_cache(maxsize=None)
def pem_pair() -> tuple[str, str]:
    """A self-signed certificate and its key, PEM: what a program that brings its own PKI passes as text."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plant CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def broker_args() -> dict:
    """A small plant: one TLS listener, a legacy anonymous one, a PLC, a SCADA host and an operator."""
    cert, key = pem_pair()
    return {
        "namespace": "plant-a", "image": "eclipse-mosquitto:2.0.20", "storage_size": "10Gi", "storage_class": "fast",
        "settings": {"listeners": [{"name": "mqtts", "port": 8883, "protocol": "mqtt", "tls": True,
                                    "tls_version": "tlsv1.3"},
                                   {"name": "legacy", "port": 1885, "allow_anonymous": True,
                                    "source_ranges": ["10.30.0.0/24"],
                                    "anonymous_topics": [{"access": "write", "topic": "legacy/#"}]}],
                     "persistence": True, "autosave_interval": 60, "session_expiry": "7d", "max_connections": 100,
                     "max_queued_messages": 1000, "max_inflight_messages": 20, "max_packet_size": 1048576,
                     "max_keepalive": 300},
        "users": [{"name": "plc-1", "role": "device", "zone": "press",
                   "topics": [{"access": "write", "topic": "plant/press/plc-1/#"}]},
                  {"name": "scada", "role": "host-application"},
                  {"name": "ops", "role": "admin"}],
        "acl_patterns": [{"access": "readwrite", "topic": "devices/%u/#"}], "factory_zones": ["press", "paint"],
        "ca_cert_pem": cert, "server_cert_pem": cert, "server_key_pem": key,
        "client_certificates": {"plc-1": {"cert_pem": cert, "key_pem": key}},
        "service_type": "LoadBalancer", "load_balancer_source_ranges": ["10.20.0.0/16"],
    }


def frontend_args() -> dict:
    cert, key = pem_pair()
    servers = [f"b-{i}.b-headless.plant-a.svc.cluster.local" for i in range(2)]
    return {"namespace": "plant-a", "image": "haproxy:2.8.16", "topology": "active-active",
            "ports": [{"name": "mqtts", "port": 8883, "tls": True, "scheme": "mqtts"},
                                              {"name": "mqtt", "port": 1883, "source_ranges": ["10.30.0.0/24"]}],
            "broker_servers": servers, "broker_selector": {"app.kubernetes.io/instance": "b"}, "internal_port": 1884,
            "check_name": servers[0], "check_certificate": {"cert_pem": cert, "key_pem": key}, "ca_cert_pem": cert,
            "timeout_seconds": 450, "flood": {"exempt_sources": ["10.40.0.1/32"]}}


def nfs_args() -> dict:
    return {"server": "filer.plant.example", "path": "/exports/mqtt", "namespace": "plant-a", "statefulset": "b",
            "count": 2}


def pki_args() -> dict:
    return {"organization": "Plant A", "server_dns_names": ["b.plant-a.svc", "mqtt.plant.example"],
            "server_ip_addresses": ["10.20.0.5"], "client_names": ["plc-1", "b-bridge"]}


COMPONENTS = {"MosquittoBroker": (MosquittoBroker, "b", broker_args),
              "HaProxyFrontend": (HaProxyFrontend, "f", frontend_args),
              "NfsStorage": (NfsStorage, "s", nfs_args), "Pki": (Pki, "p", pki_args)}
"""Component -> (class, the name the tests give it, its valid args)."""


def with_value(args: dict, path: str, value) -> dict:
    """A deep copy of `args` with the value at a Python path (users[0].topics[0].topic) replaced."""
    changed = copy.deepcopy(args)
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    target = changed
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = value
    return changed


def value_at(args: dict, path: str):
    for part in re.findall(r"[^.\[\]]+", path):
        args = args[int(part) if part.isdigit() else part]
    return args


def _build(component: str, args: dict, name: str | None, created: list[str]):
    """A program that constructs the component, noting the name of every Resource created (the component itself
    first, then its children), synchronously, as the constructor creates them."""
    cls, default_name, _ = COMPONENTS[component]
    original = pulumi.Resource.__init__

    def record(self, t, resource_name, *rest, **kwargs):
        created.append(resource_name)
        original(self, t, resource_name, *rest, **kwargs)

    def body():
        pulumi.Resource.__init__ = record
        try:
            cls(name or default_name, args)
        finally:
            pulumi.Resource.__init__ = original
    return body


def constructed(component: str, args: dict, name: str | None = None) -> list[str]:
    """Construct the component under mocks; the names of the Resources created, in order."""
    created: list[str] = []
    run_components(_build(component, args, name, created))
    return created


def refusal(component: str, args: dict, name: str | None = None) -> ComponentArgumentsError:
    """The error constructing the component raises; nothing may have been created before it."""
    created: list[str] = []
    with pytest.raises(ComponentArgumentsError) as raised:
        run_components(_build(component, args, name, created))
    assert created == [], f"registered before refusing: {created}"
    return raised.value


# --- what is valid still builds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_valid_arguments_build_the_component(component):
    created = constructed(component, COMPONENTS[component][2]())
    assert created[0] == COMPONENTS[component][1] and len(created) > 1


def test_minimal_arguments_build_the_component():
    """Only the required keys (each component's defaults fill in the rest)."""
    cert, key = pem_pair()
    assert constructed("MosquittoBroker", {
        "settings": {"listeners": [{"name": "mqtts", "port": 8883, "tls": True}], "persistence": False,
                     "max_connections": 10, "max_queued_messages": 10, "max_inflight_messages": 10,
                     "max_packet_size": 1024, "max_keepalive": 60},
        "ca_cert_pem": cert, "server_cert_pem": cert, "server_key_pem": key})
    assert constructed("Pki", {})
    assert constructed("NfsStorage", {"server": "10.20.0.9", "path": "/", "namespace": "ns", "statefulset": "b",
                                      "count": 1})


def test_outputs_are_skipped_not_refused():
    """Values only known at `pulumi up` (another resource's output) cannot be judged at construct time."""
    args = with_value(broker_args(), "namespace", pulumi.Output.from_input("Not Known Yet"))
    args["users"][0]["name"] = pulumi.Output.from_input("whoever")
    args["ca_cert_pem"] = pulumi.Output.secret("not judged")
    assert arguments.problems("MosquittoBroker", "b", args, MosquittoBrokerArgs) == []


def test_every_rule_names_a_field_of_the_arguments():
    """A rule under a misspelt type or field would never run."""
    import mqtt_estate

    types = {name: getattr(mqtt_estate, name) for name in mqtt_estate.PUBLIC if name[0].isupper()}
    for table in (arguments.RULES, arguments.KEY_RULES):
        for owner, fields in table.items():
            assert set(fields) <= set(types[owner].__annotations__), owner
    for owner, field in arguments.SECRET:
        assert field in types[owner].__annotations__


# --- a plant engineer's mistakes, one line each ----------------------------------------------------------------

MISTAKES = [
    ("MosquittoBroker", "users[0].topics[0].topic", "plant/#/temperature",
     "MosquittoBroker b: args.users[0].topics[0].topic: 'plant/#/temperature' is not allowed ('#' may only be the "
     "last level; for one level in the middle use '+', as in plant/+/temperature)"),
    ("MosquittoBroker", "users[1].name", "line 1 scada",
     "MosquittoBroker b: args.users[1].name: 'line 1 scada' is not allowed (use letters, digits, '_', '.' and '-', "
     "at most 64, no spaces)"),
    ("MosquittoBroker", "settings.listeners[0].port", 0,
     "MosquittoBroker b: args.settings.listeners[0].port: 0 is out of range (allowed: 1-65535)"),
    ("MosquittoBroker", "settings.listeners[1].port", 70000,
     "MosquittoBroker b: args.settings.listeners[1].port: 70000 is out of range (allowed: 1-65535)"),
    ("MosquittoBroker", "settings.listeners[1].port", 8883,
     "MosquittoBroker b: args.settings.listeners[1].port: 8883 is already used by settings.listeners[0] (listener "
     "ports must be unique)"),
    ("MosquittoBroker", "settings.listeners[1].name", "mqtts",
     "MosquittoBroker b: args.settings.listeners[1].name: 'mqtts' is already used by settings.listeners[0] "
     "(listener names must be unique)"),
    ("MosquittoBroker", "settings.listeners[1].port", "1885",
     "MosquittoBroker b: args.settings.listeners[1].port: '1885' is not allowed (expected a whole number)"),
    ("MosquittoBroker", "settings.listeners[0].name", "MQTTS",
     "MosquittoBroker b: args.settings.listeners[0].name: 'MQTTS' must be lower-case (did you mean 'mqtts'?)"),
    ("MosquittoBroker", "namespace", "Plant-A",
     "MosquittoBroker b: args.namespace: 'Plant-A' must be lower-case (did you mean 'plant-a'?)"),
    ("MosquittoBroker", "image", "eclipse-mosquitto:latest",
     "MosquittoBroker b: args.image: 'eclipse-mosquitto:latest' uses the moving tag 'latest' (pin a version tag, "
     "e.g. eclipse-mosquitto:<version>, or add @sha256:...)"),
    ("MosquittoBroker", "storage_size", "10GB",
     "MosquittoBroker b: args.storage_size: '10GB' has the unknown suffix 'GB' (Kubernetes has no 'b'/'B' unit: "
     "write 10Gi (binary) or 10G (decimal))"),
    ("MosquittoBroker", "load_balancer_source_ranges", ["10.0.0.0/33"],
     "MosquittoBroker b: args.load_balancer_source_ranges[0]: '10.0.0.0/33' has prefix length 33 (an IPv4 prefix "
     "length is 0-32)"),
    ("MosquittoBroker", "service_type", "ClusterIP",
     "MosquittoBroker b: args.load_balancer_source_ranges: is only allowed with service_type LoadBalancer (the API "
     "server refuses it on a ClusterIP Service)"),
    ("MosquittoBroker", "users[2].name", "plc-1",
     "MosquittoBroker b: args.users[2].name: 'plc-1' is given twice (as users[0] too; mosquitto merges the ACL "
     "blocks of one name, so the second would share the first's rights)"),
    ("MosquittoBroker", "users[0].zone", "pres",
     "MosquittoBroker b: args.users[0].zone: 'pres' is not one of factory_zones (press, paint)"),
    ("MosquittoBroker", "users[0].role", "plc",
     "MosquittoBroker b: args.users[0].role: 'plc' is not allowed (allowed: admin, device, edge-node, "
     "host-application, dashboard, service, bridge)"),
    ("MosquittoBroker", "users[0].topics[0].access", "write-only",
     "MosquittoBroker b: args.users[0].topics[0].access: 'write-only' is not allowed (allowed: read, write, "
     "readwrite, deny)"),
    ("MosquittoBroker", "acl_patterns[0].topic", "devices/%u%c/#",
     "MosquittoBroker b: args.acl_patterns[0].topic: 'devices/%u%c/#' is not allowed (mosquitto substitutes %u "
     "only when it is a whole topic level, as in devices/%u/#)"),
    ("MosquittoBroker", "password_iterations", 500,
     "MosquittoBroker b: args.password_iterations: 500 is out of range (allowed: 1000-100000; every password "
     "CONNECT, right or wrong, costs the broker's thread that many PBKDF2 rounds)"),
    ("MosquittoBroker", "settings.session_expiry", "7 days",
     "MosquittoBroker b: args.settings.session_expiry: '7 days' spells out the unit (write 7d; a whole number "
     "followed by h, d, w, m (months) or y, as in 14d)"),
    ("MosquittoBroker", "resources", {"cpu_request": "4"},
     "MosquittoBroker b: args.resources.cpu_request: the cpu request 4 is above the limit 2 (a request must not "
     "exceed its limit)"),
    ("MosquittoBroker", "internal_listener", True,
     "MosquittoBroker b: args.settings.internal_port: is required with more than one broker or internal_listener "
     "True (the bridges and the frontend's health checks use it)"),
    ("MosquittoBroker", "replicas", 3,
     "MosquittoBroker b: args.settings.internal_port: is required with more than one broker or internal_listener "
     "True (the bridges and the frontend's health checks use it)\n"
     "MosquittoBroker b: args.bridge_certificate: is required with more than one broker (3: the pods bridge to "
     "each other with it)"),
    ("MosquittoBroker", "settings.listners", [],
     "MosquittoBroker b: args.settings.listners: unknown key (allowed: listeners, internal_port, allow_anonymous, "
     "persistence, autosave_interval, session_expiry, max_connections, max_queued_messages, max_inflight_messages, "
     "max_packet_size, max_keepalive, max_queued_bytes)"),
    ("MosquittoBroker", "settings.listeners[1].tls", "false",
     "MosquittoBroker b: args.settings.listeners[1].tls: 'false' is not allowed (expected True or False)"),
    ("MosquittoBroker", "settings.listeners[1].name", "health",
     "MosquittoBroker b: args.settings.listeners[1].name: 'health' is not allowed for an anonymous listener: its "
     "ACL file would be the health listener's health.acl"),
    ("MosquittoBroker", "settings.listeners[0].port", 1880,
     "MosquittoBroker b: args.settings.listeners[0].port: 1880 is reserved for the in-pod health listener (use "
     "another port)"),
    ("MosquittoBroker", "client_certificates", {"plc 1": {"cert_pem": pulumi.Output.from_input("c"),
                                                          "key_pem": pulumi.Output.from_input("k")}},
     "MosquittoBroker b: args.client_certificates: the key 'plc 1' is not allowed (use letters, digits, '_', '.' "
     "and '-', at most 64, no spaces)"),
    ("MosquittoBroker", "internal_clients", [{"app.kubernetes.io/name": "haproxy frontend"}],
     "MosquittoBroker b: args.internal_clients[0].app.kubernetes.io/name: 'haproxy frontend' is not a valid label "
     "value (1-63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"),
    ("HaProxyFrontend", "ports[1].name", "stats",
     "HaProxyFrontend f: args.ports[1].name: 'stats' is reserved for HAProxy's stats/metrics frontend and "
     "container port (choose another name)"),
    ("HaProxyFrontend", "ports[1].port", 8404,
     "HaProxyFrontend f: args.ports[1].port: 8404 is reserved for HAProxy's stats and metrics port (use another "
     "port)"),
    ("HaProxyFrontend", "ports[1].port", 8883,
     "HaProxyFrontend f: args.ports[1].port: 8883 is already used by ports[0] (ports must be unique)"),
    ("HaProxyFrontend", "flood.exempt_sources", ["10.0.0.0/33"],
     "HaProxyFrontend f: args.flood.exempt_sources[0]: '10.0.0.0/33' has prefix length 33 (an IPv4 prefix length "
     "is 0-32)"),
    ("HaProxyFrontend", "flood.rate_period_ms", 0,
     "HaProxyFrontend f: args.flood.rate_period_ms: 0 is out of range (allowed: 1-2073600000; HAProxy's longest "
     "timer)"),
    ("HaProxyFrontend", "topology", "active-passive",
     "HaProxyFrontend f: args.topology: 'active-passive' is not allowed (allowed: active-active, active-standby)"),
    ("HaProxyFrontend", "broker_servers", ["b-0 b-1"],
     "HaProxyFrontend f: args.broker_servers[0]: 'b-0 b-1' contains ' ' (use dot-separated parts of lower-case "
     "letters, digits and '-', each starting and ending with a letter or digit)"),
    ("HaProxyFrontend", "image", "haproxy",
     "HaProxyFrontend f: args.image: 'haproxy' is not pinned (pin a tag or digest, e.g. haproxy:<version> or "
     "haproxy@sha256:...)"),
    ("HaProxyFrontend", "timeout_seconds", 0,
     "HaProxyFrontend f: args.timeout_seconds: 0 is out of range (allowed: 1-2147483; HAProxy counts milliseconds "
     "in a C int)"),
    ("NfsStorage", "path", "/exports/../etc",
     "NfsStorage s: args.path: '/exports/../etc' is not allowed (no '..' in export paths)"),
    ("NfsStorage", "server", "nfs://filer",
     "NfsStorage s: args.server: 'nfs://filer' is a URL (write only the host name, e.g. filer)"),
    ("NfsStorage", "version", "4.3",
     "NfsStorage s: args.version: '4.3' is not allowed (allowed: 3, 4, 4.1, 4.2)"),
    ("NfsStorage", "size", "10GB",
     "NfsStorage s: args.size: '10GB' has the unknown suffix 'GB' (Kubernetes has no 'b'/'B' unit: write 10Gi "
     "(binary) or 10G (decimal))"),
    ("NfsStorage", "count", 0, "NfsStorage s: args.count: 0 is out of range (allowed: 1-2147483647)"),
    ("NfsStorage", "statefulset", "Mosquitto",
     "NfsStorage s: args.statefulset: 'Mosquitto' must be lower-case (did you mean 'mosquitto'?)"),
    ("Pki", "client_names", ["plc-1", "plc-1"],
     "Pki p: args.client_names[1]: 'plc-1' is already given as [0] (list it once)"),
    ("Pki", "server_dns_names", ["10.20.0.5"],
     "Pki p: args.server_dns_names[0]: '10.20.0.5' is an IP address (use server_ip_addresses for IP addresses)"),
    ("Pki", "leaf_key", {"algorithm": "ECDSA", "ecdsa_curve": "P224"},
     "Pki p: args.leaf_key.ecdsa_curve: 'P224' is not allowed (allowed: P256, P384)"),
    ("Pki", "early_renewal_hours", 9000,
     "Pki p: args.early_renewal_hours: 9000 is not below leaf_validity_hours 8760 (pulumi-tls would re-issue the "
     "certificates on every `pulumi up`)"),
    ("Pki", "existing_ca_cert_pem", pulumi.Output.from_input("cert"),
     "Pki p: args.existing_ca_key_pem: is required with existing_ca_cert_pem (a brought CA is its certificate and "
     "key)"),
]


@pytest.mark.parametrize("component, path, value, line", MISTAKES,
                         ids=[f"{m[0]}-{m[1]}-{m[2]!r}"[:60] for m in MISTAKES])
def test_a_mistake_is_one_line_naming_the_path(component, path, value, line):
    error = refusal(component, with_value(COMPONENTS[component][2](), path, value))
    assert str(error) == line
    assert isinstance(error, ValueError) and isinstance(error, pulumi.RunError)


@pytest.mark.parametrize("component, name, line", [
    ("MosquittoBroker", "plant_broker", "MosquittoBroker plant_broker: name: 'plant_broker' contains '_' (use lower-"
                                        "case letters, digits and '-', starting and ending with a letter or digit)"),
    ("MosquittoBroker", "1broker", "MosquittoBroker 1broker: name: '1broker' must start with a lower-case letter (a "
                                   "Service name is a DNS-1035 label, e.g. mqtt-1broker)"),
    ("HaProxyFrontend", "f" * 53, f"HaProxyFrontend {'f' * 53}: name: '{'f' * 53}' is 53 characters long (at most 52)"),
])
def test_the_component_name_must_name_its_kubernetes_objects(component, name, line):
    assert str(refusal(component, COMPONENTS[component][2](), name)) == line


def test_every_problem_is_listed_each_on_its_own_line():
    args = with_value(broker_args(), "namespace", "Plant A")
    args["settings"]["listeners"][0]["port"] = 0
    args["users"][0]["topics"][0]["topic"] = "a/#/b"
    args.pop("ca_cert_pem")
    lines = str(refusal("MosquittoBroker", args)).split("\n")
    assert [line.split(": ")[1] for line in lines] == [
        "args.ca_cert_pem", "args.namespace", "args.settings.listeners[0].port", "args.users[0].topics[0].topic"]


def test_secrets_are_never_shown():
    weak = "Summer2024!Factory"
    text = str(refusal("MosquittoBroker", with_value(broker_args(), "users[2].password", weak)))
    assert text.startswith("MosquittoBroker b: args.users[2].password: is too easy to guess") and weak not in text
    args = with_value(broker_args(), "server_key_pem",
                      "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n")
    args["client_certificates"]["plc-1"]["key_pem"] = 12345678
    text = str(refusal("MosquittoBroker", args))
    assert "c2VjcmV0" not in text and "12345678" not in text
    assert "MosquittoBroker b: args.server_key_pem: is not a readable PEM private key" in text
    assert "MosquittoBroker b: args.client_certificates.plc-1.key_pem: the value is not valid (expected text)" in text


def test_a_brought_ca_given_as_text_is_checked_like_the_stack_config_checks_it():
    cert, _ = pem_pair()
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    args = {**pki_args(), "existing_ca_cert_pem": cert, "existing_ca_key_pem": other}
    assert "Pki p: args.existing_ca_key_pem: " in str(refusal("Pki", args))


# --- injection: line breaks and NUL are refused before anything is registered ----------------------------------

INJECTIONS = [
    ("MosquittoBroker", "users[1].name", "x\ntopic readwrite #"),
    ("MosquittoBroker", "users[1].name", "scada\x00admin"),
    ("MosquittoBroker", "users[0].topics[0].topic", "a\nuser admin"),
    ("MosquittoBroker", "users[0].topics[0].topic", "plant/\x00/#"),
    ("MosquittoBroker", "acl_patterns[0].topic", "devices/%u/#\ntopic readwrite #"),
    ("MosquittoBroker", "settings.listeners[1].anonymous_topics[0].topic", "legacy/#\ntopic readwrite #"),
    ("MosquittoBroker", "settings.listeners[0].name", "mqtts\nallow_anonymous true"),
    ("MosquittoBroker", "settings.session_expiry", "7d\nallow_anonymous true"),
    ("MosquittoBroker", "users[0].zone", "press\ntopic readwrite #"),
    ("MosquittoBroker", "factory_zones", ["press", "paint\nuser ops"]),
    ("MosquittoBroker", "users[1].groups", ["line-1/#"]),
    ("HaProxyFrontend", "check_name", "b-0.local\n    server evil 10.0.0.1:1883"),
    ("HaProxyFrontend", "ports[0].name", "mqtts\nbackend evil"),
    ("HaProxyFrontend", "broker_servers", ["b-0.local\n    server evil 10.0.0.1"]),
    ("HaProxyFrontend", "flood.exempt_sources", ["0.0.0.0/0 }\n"]),
    ("HaProxyFrontend", "ports[1].source_ranges", ["10.0.0.0/8\x00"]),
    ("NfsStorage", "path", "/exports\n"),
    ("Pki", "organization", "Plant A\nCN=admin"),
    ("Pki", "client_names", ["plc-1\x00"]),
]


@pytest.mark.parametrize("component, path, value", INJECTIONS, ids=[f"{c}-{p}" for c, p, _ in INJECTIONS])
def test_injection_is_refused_before_anything_is_registered(component, path, value):
    error = refusal(component, with_value(COMPONENTS[component][2](), path, value))
    assert len(error.lines) == 1 and "\n" not in error.lines[0] and "\x00" not in error.lines[0]
    shown = re.sub(r"\[\d+\]", "", path)
    assert re.sub(r"\[\d+\]", "", error.lines[0].split(": ")[1]).startswith(f"args.{shown}")


def test_a_line_break_in_a_map_key_or_the_component_name_does_not_forge_a_line():
    args = with_value(broker_args(), "internal_clients", [{"app\nuser admin": "x"}])
    error = refusal("MosquittoBroker", args, name="b\nMosquittoBroker ok: fine")
    assert len(str(error).split("\n")) == len(error.lines) == 2
    assert error.lines[0].startswith("MosquittoBroker b\\nMosquittoBroker ok: fine: name: ")


# --- the component provider: another language's inputs ---------------------------------------------------------

@pytest.fixture(scope="module")
def provider() -> EstateComponentProvider:
    return EstateComponentProvider()


def test_the_provider_refuses_with_the_same_lines(provider):
    """A TypeScript or YAML program's inputs (schema names, numbers as doubles): the construct fails with the
    component's lines, before the component registers anything, as an InputPropertiesError (which the provider
    server sends as they are, without its Python traceback)."""
    cert, key = pem_pair()
    inputs = {"namespace": "Plant-A", "caCertPem": cert, "serverCertPem": cert, "serverKeyPem": key,
              "settings": {"listeners": [{"name": "mqtt", "port": 70000}], "persistence": False,
                           "maxConnections": 10, "maxQueuedMessages": 10, "maxInflightMessages": 10,
                           "maxPacketSize": 1024, "maxKeepalive": 60},
              "users": [{"name": "x\ntopic readwrite #"}]}
    raised = {}

    def body():
        with pytest.raises(InputPropertiesError) as error:
            provider.construct("b", "mqtt-estate:index:MosquittoBroker", over_the_wire(inputs), None)
        raised["error"] = error.value

    assert run_components(body).resources == []
    assert isinstance(raised["error"].__cause__, ComponentArgumentsError)
    assert sorted(raised["error"].message.split("\n")) == [
        "MosquittoBroker b: args.namespace: 'Plant-A' must be lower-case (did you mean 'plant-a'?)",
        "MosquittoBroker b: args.settings.listeners[0].port: 70000 is out of range (allowed: 1-65535)",
        "MosquittoBroker b: args.users[0].name: 'x\\ntopic readwrite #' is not allowed (use letters, digits, '_', '.' "
        "and '-', at most 64, no spaces)"]


def test_the_provider_still_builds_valid_inputs(provider):
    def body():
        provider.construct("s", "mqtt-estate:index:NfsStorage", over_the_wire(
            {"server": "filer", "path": "/exports", "namespace": "ns", "statefulset": "b", "count": 2}), None)

    assert {r.name for r in run_components(body).resources} >= {"s", "s-pv-0", "s-pv-1"}


# --- no name, topic or setting adds a line to a rendered file --------------------------------------------------

PLAIN = "az09-"
JUNK = "abc-_./ #+%$:;=\"'\\{}[]<>|&*?!@~^`()\t\n\r\x00\x0b\x0c\x1b\x7f\x85\u00a0\u2028\u2029\u200b\u202e\ufeffZ9"
FIELDS = {
    "MosquittoBroker": ["namespace", "image", "storage_size", "storage_class", "users[0].name", "users[1].name",
                        "users[0].zone", "users[0].topics[0].topic", "users[0].topics[0].access",
                        "acl_patterns[0].topic", "factory_zones[1]", "settings.listeners[0].name",
                        "settings.listeners[1].name", "settings.listeners[1].anonymous_topics[0].topic",
                        "settings.listeners[1].source_ranges[0]", "settings.session_expiry",
                        "settings.listeners[0].protocol", "settings.listeners[0].tls_version",
                        "load_balancer_source_ranges[0]"],
    "HaProxyFrontend": ["namespace", "image", "check_name", "ports[0].name", "ports[1].name", "ports[0].scheme",
                        "broker_servers[0]", "flood.exempt_sources[0]", "ports[1].source_ranges[0]", "topology"],
}
SPECS = {"MosquittoBroker": MosquittoBrokerArgs, "HaProxyFrontend": HaProxyFrontendArgs}


def rendered_lines(component: str, args: dict) -> dict[str, int]:
    """Lines of each rendered file (ConfigMap data and the auth Secret's files), by resource and key, counted as
    mosquitto and HAProxy read them: up to each '\n' (fgets). U+2028 and U+2029 are allowed in MQTT topics (MQTT
    5.0 §1.5.4 refuses only control characters and non-characters) and end no line there."""
    registry = run_components(lambda: COMPONENTS[component][0](COMPONENTS[component][1], args))
    counts: dict[str, int] = {}
    for resource in registry.resources:
        files = resource.inputs.get("data") or resource.inputs.get("stringData") or {}
        if resource.type in ("kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:Secret") and \
                resource.name.endswith(("-config", "-auth")):
            for key, text in files.items():
                slot = f"{resource.name}/{'<listener>.acl' if key.endswith('.acl') and key != 'health.acl' else key}"
                counts[slot] = counts.get(slot, 0) + str(text).count("\n")
    return counts


@pytest.mark.parametrize("component", sorted(FIELDS))
def test_junk_in_any_name_is_refused_or_adds_no_line(component):
    """A seeded random loop (no hypothesis here): every junk value either is refused, or renders every file with
    exactly the lines of the valid estate."""
    rng = random.Random(20261126)
    base = COMPONENTS[component][2]()
    baseline = rendered_lines(component, base)
    accepted = 0
    for _ in range(150):
        path = rng.choice(FIELDS[component])
        if rng.random() < 0.5:  # a few characters slipped into the valid value: often still valid
            junk = value_at(base, path)
            for _ in range(rng.randint(1, 2)):
                at = rng.randint(0, len(junk))
                junk = junk[:at] + rng.choice(PLAIN if rng.random() < 0.6 else JUNK) + junk[at:]
        else:
            junk = "".join(rng.choice(JUNK) for _ in range(rng.randint(1, 12)))
        args = with_value(base, path, junk)
        if arguments.problems(component, COMPONENTS[component][1], args, SPECS[component]):
            continue
        accepted += 1
        assert rendered_lines(component, args) == baseline, (path, junk)
    assert 20 < accepted < 130, accepted  # the loop met both junk that passes and junk that must be refused


# --- the grammars added for the components ----------------------------------------------------------------------

def test_label_keys_and_values_follow_apimachinery():
    from mqtt_estate.stacks import grammar

    assert grammar.label_key("app.kubernetes.io/instance") is None and grammar.label_key("tier") is None
    assert "invalid prefix" in grammar.label_key("App.io/name")
    assert "more than one '/'" in grammar.label_key("a/b/c")
    assert "at most 63" in grammar.label_key("x" * 64)
    assert grammar.label_value("") is None and grammar.label_value("v1.2_b-3") is None
    assert "not a valid label value" in grammar.label_value("-edge")
    assert grammar.dns_1035_label("mqtt-1") is None
    assert "start with a lower-case letter" in grammar.dns_1035_label("1mqtt")


def test_a_readwrite_rule_on_a_topic_with_a_space_keeps_its_access():
    """mosquitto reads the first word after `topic` as the access when more words follow: the rule is written with
    its access, and read back (as mosquitto and the policy pack read it) as given."""
    from mqtt_estate.components.acl import render_acl
    from mqtt_estate.policy.rules_broker import READ, WRITE, parse_acl

    acl = render_acl([{"name": "ops", "topics": [{"access": "readwrite", "topic": "read me/#"},
                                                 {"access": "readwrite", "topic": "plant/#"}]}])
    assert "topic readwrite read me/#\ntopic plant/#\n" in acl
    rules = parse_acl(acl).blocks[0].rules
    assert [(rule.access, rule.topic) for rule in rules] == [(READ | WRITE, "read me/#"), (READ | WRITE, "plant/#")]
