"""Realistic stack-file mistakes, one class of issue #8 at a time: each is refused with one key-path line.

Where test_config_errors.py pins exact wording, these cases pin the key path and the gist of the message, so the
corpus can grow without restating every sentence. Valid edge cases that the real grammars allow (a registry with a
port, a tag plus a digest, IPv6 ranges, wildcard SANs, long namespace names) must still be accepted. The last tests
run the real program (`__main__.py`) the way `pulumi up` does, so the same rules hold under the Pulumi CLI.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mqtt_estate.estate.cli import EXIT_CONFIG
from mqtt_estate.estate.engine import run_program
from mqtt_estate.estate.render import PROGRAM, evaluate
from mqtt_estate.estate.stackfile import read_stack_file
from mqtt_estate.stacks.errors import StackConfigError
from tests.harness import TEST_SEED
from tests.test_config_errors import TRACEBACK, isolated, render_cli, run_in_process  # noqa: F401 (fixture)

CLUSTER = """
config:
  mqtt-estate:broker:
    preset: ha-cluster
    listeners:
      - {name: mqtts, port: 8883, tls: true}
      - {name: devices, port: 8884, tls: true, requireCertificate: true}
"""
SINGLE = """
config:
  mqtt-estate:broker:
    listeners:
      - {name: mqtt, port: 1883}
      - {name: mqtts, port: 8883, tls: true}
"""

def _with(base: str, extra: str) -> str:
    return base.rstrip("\n") + "\n" + extra.strip("\n") + "\n"


def _user(name: str, **fields) -> str:
    body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in {"name": name, **fields}.items())
    return f"  mqtt-estate:users:\n    - {{{body}}}\n"


ANONYMOUS = """
config:
  mqtt-estate:broker:
    listeners:
      - {name: mqtt, port: 1883}
      - name: legacy
        port: 1885
        allowAnonymous: true
        anonymousTopics: [{access: readwrite, topic: "legacy/#"}]
        sourceRanges: [10.30.0.0/24]
"""
"""A broker with one listener for anonymous legacy sensors, restricted to their network."""
ANONYMOUS_CLUSTER = _with(ANONYMOUS.replace("    listeners:\n      - {name: mqtt, port: 1883}\n",
                                            "    preset: ha-cluster\n    listeners:\n"
                                            "      - {name: mqtts, port: 8883, tls: true}\n"),
                          "  mqtt-estate:frontend:\n    service: {type: LoadBalancer, loadBalancerSourceRanges: "
                          "[10.20.0.0/16]}\n  mqtt-estate:pki: {extraDnsNames: [mqtt.plant.example]}")


def _flood(settings: str) -> str:
    """The clustered stack with `settings` (a YAML flow mapping) as frontend.floodProtection."""
    return _with(CLUSTER, "  mqtt-estate:frontend: {floodProtection: " + settings + "}")


def _without_ranges(text: str) -> str:
    return text.replace("        sourceRanges: [10.30.0.0/24]\n", "")


# (id, stack file text, key path, a fragment of the message)
MISTAKES = [
    # 1. identity hijack: internal identities are not user names
    ("user-named-like-the-bridge", _with(CLUSTER, _user("mosquitto-bridge", role="device")),
     "users[0].name", "identity of the brokers' bridges"),
    ("certificate-user-named-like-the-bridge", _with(CLUSTER, _user("mosquitto-bridge", auth="certificate")),
     "users[0].name", "share that identity's ACL"),
    ("user-named-like-the-health-check", _with(CLUSTER, _user("mosquitto-frontend-check", role="service")),
     "users[0].name", "frontend's health checks"),
    # 3. broken at run time
    ("acl-hash-in-the-middle", _with(SINGLE, _user("plc-7", topics=[{"access": "write", "topic": "factory/#/data"}])),
     "users[0].topics[0].topic", "'#'"),
    ("acl-plus-inside-a-level", _with(SINGLE, _user("plc-7", topics=[{"access": "read", "topic": "sensors/temp+"}])),
     "users[0].topics[0].topic", "'+'"),
    ("acl-newline-injection", _with(SINGLE, _user("plc-7", topics=[{"access": "read", "topic": "a\nuser admin"}])),
     "users[0].topics[0].topic", ""),
    ("acl-pattern-substitution-inside-level",
     "config:\n  mqtt-estate:broker:\n    acl: {patterns: [{access: read, topic: 'devices/x%u'}]}\n",
     "broker.acl.patterns[0].topic", "%u"),
    ("internal-port-equals-health-port", _with(CLUSTER, "    ha: {internalPort: 1880}"),
     "broker.ha.internalPort", "health listener"),
    ("internal-port-equals-listener", _with(CLUSTER, "    ha: {internalPort: 8883}"),
     "broker.listeners[0].port", "internalPort"),
    ("listener-named-stats-behind-frontend", CLUSTER.replace("name: mqtts,", "name: stats,"),
     "broker.listeners[0].name", "reserved"),
    ("listener-named-internal", SINGLE.replace("name: mqtt,", "name: internal,"),
     "broker.listeners[0].name", "reserved"),
    ("listener-on-the-stats-port", CLUSTER.replace("port: 8883", "port: 8404"),
     "broker.listeners[0].port", "stats"),
    ("listener-on-the-peer-port", CLUSTER.replace("port: 8883", "port: 10000"),
     "broker.listeners[0].port", "peer"),
    ("listener-on-a-privileged-port", SINGLE.replace("port: 8883", "port: 883"),
     "broker.listeners[1].port", "privileged"),
    # 4. values the API server or clients refuse
    ("cidr-prefix-too-long", _with(SINGLE, "    service: {type: LoadBalancer, loadBalancerSourceRanges: [10.20.0.0/33]}\n"
                                           "  mqtt-estate:pki: {extraDnsNames: [mqtt.plant.example]}"),
     "broker.service.loadBalancerSourceRanges[0]", "10.20.0.0/33"),
    ("cidr-host-bits", _with(SINGLE, "    service: {type: LoadBalancer, loadBalancerSourceRanges: [10.20.1.5/16]}\n"
                                     "  mqtt-estate:pki: {extraDnsNames: [mqtt.plant.example]}"),
     "broker.service.loadBalancerSourceRanges[0]", "10.20.0.0/16"),
    ("cpu-request-above-limit", _with(SINGLE, "    resources: {cpuRequest: '4', cpuLimit: '2'}"),
     "broker.resources.cpuRequest", "above the limit"),
    ("memory-request-above-preset-limit", _with(SINGLE, "    resources: {memoryRequest: 4Gi}"),
     "broker.resources.memoryRequest", "above the limit"),
    ("memory-in-millibytes", _with(SINGLE, "    resources: {memoryLimit: 512m}"),
     "broker.resources.memoryLimit", "Mi"),
    ("memory-gigabits", _with(SINGLE, "    resources: {memoryLimit: 2Gb}"), "broker.resources.memoryLimit", "2Gb"),
    ("zero-storage", _with(SINGLE, "    persistence: {size: 0Gi}"), "broker.persistence.size", "0Gi"),
    ("port-name-upper-case", SINGLE.replace("name: mqtt,", "name: MQTT_TLS,"), "broker.listeners[0].name", ""),
    ("port-name-double-dash", SINGLE.replace("name: mqtt,", "name: mqtt--tls,"), "broker.listeners[0].name", "--"),
    ("port-name-digits-only", SINGLE.replace("name: mqtt,", "name: '1883',"), "broker.listeners[0].name", "letter"),
    ("ip-in-dns-sans", _with(SINGLE, "  mqtt-estate:pki: {extraDnsNames: [10.1.2.3]}"),
     "pki.extraDnsNames[0]", "pki.extraIpAddresses"),
    ("wildcard-in-the-middle", _with(SINGLE, "  mqtt-estate:pki: {extraDnsNames: [mqtt.*.plant.example]}"),
     "pki.extraDnsNames[0]", "*"),
    ("double-wildcard", _with(SINGLE, "  mqtt-estate:pki: {extraDnsNames: ['*.*.plant.example']}"),
     "pki.extraDnsNames[0]", "*"),
    ("wildcard-for-a-public-suffix", _with(SINGLE, "  mqtt-estate:pki: {extraDnsNames: ['*.co.uk']}"),
     "pki.extraDnsNames[0]", "public suffix"),
    ("kube-system-namespace", _with(SINGLE, "  mqtt-estate:namespace: {name: kube-system}"),
     "namespace.name", "system namespace"),
    ("kube-node-lease-namespace", _with(SINGLE, "  mqtt-estate:namespace: {name: kube-node-lease, create: false}"),
     "namespace.name", "system namespace"),
    ("create-default-namespace", _with(SINGLE, "  mqtt-estate:namespace: {name: default}"),
     "namespace.name", "default"),
    ("namespace-upper-case", _with(SINGLE, "  mqtt-estate:namespace: {name: MQTT}"), "namespace.name", ""),
    ("nfs-server-with-scheme", _with(SINGLE, "    persistence: {nfs: {server: 'nfs://filer', path: /exports}}"),
     "broker.persistence.nfs.server", ""),
    ("nfs-path-escapes", _with(SINGLE, "    persistence: {nfs: {server: filer.plant.example, path: /exports/../etc}}"),
     "broker.persistence.nfs.path", ".."),
    # 6. PKI lifetimes
    ("renewal-as-long-as-validity", _with(SINGLE, "  mqtt-estate:pki: {leafValidityHours: 1440, earlyRenewalHours: 1440}"),
     "pki.earlyRenewalHours", "re-issued"),
    ("leaf-shorter-than-the-pack-allows", _with(SINGLE, "  mqtt-estate:pki: {leafValidityHours: 24}"),
     "pki.leafValidityHours", "1440"),
    ("renewal-below-the-pack-minimum", _with(SINGLE, "  mqtt-estate:pki: {earlyRenewalHours: 24}"),
     "pki.earlyRenewalHours", "720"),
    ("ca-shorter-than-leaves", _with(SINGLE, "  mqtt-estate:pki: {caValidityHours: 4000, leafValidityHours: 8760}"),
     "pki.caValidityHours", "outlive"),
    # 8. limits against the pod's memory
    ("packets-that-cannot-fit", _with(SINGLE, "    limits: {maxPacketSize: 268435455}"),
     "broker.limits", "maxQueuedBytes"),
    ("connections-that-cannot-fit", _with(SINGLE, "    preset: edge-broker\n    limits: {maxConnections: 100000}"),
     "broker.limits.maxConnections", "at most"),
    # settings that would have no effect
    ("zone-on-a-dashboard", _with(SINGLE.replace("    listeners:", "    acl: {factory: {zones: [press]}}\n    listeners:"),
                                  _user("hmi-1", role="dashboard", zone="press")), "users[0].zone", "no effect"),
    ("groups-on-a-device", _with(SINGLE.replace("    listeners:", "    acl: {sparkplug: {groups: [Plant]}}\n    listeners:"),
                                 _user("plc-1", role="device", groups=["Plant"])), "users[0].groups", "no effect"),
    ("tls-version-on-a-plain-listener", SINGLE.replace("port: 1883}", "port: 1883, tlsVersion: tlsv1.3}"),
     "broker.listeners[0].tlsVersion", "no effect"),
    ("frontend-settings-without-frontend", _with(SINGLE, "  mqtt-estate:frontend: {enabled: false, replicas: 3}"),
     "frontend.replicas", "no effect"),
    ("persistence-settings-while-off", _with(SINGLE, "    persistence: {enabled: false, size: 50Gi}"),
     "broker.persistence.size", "no effect"),
    ("broker-service-behind-frontend", _with(CLUSTER, "    service: {type: LoadBalancer}"),
     "broker.service", "only the frontend is exposed"),
    ("source-ranges-without-load-balancer", _with(CLUSTER, "  mqtt-estate:frontend: {service: {loadBalancerSourceRanges: [10.0.0.0/8]}}"),
     "frontend.service.loadBalancerSourceRanges", "LoadBalancer"),
    ("skip-await-without-load-balancer", _with(SINGLE, "    service: {skipAwait: true}"),
     "broker.service.skipAwait", "no effect"),
    ("password-for-certificate-only-user", _with(CLUSTER, _user("plc-7", auth="certificate")
                                                  + "  mqtt-estate:password-plc-7: s3cret-but-unused"),
     "password-plc-7", "certificate only"),
    ("ca-material-without-existing-ca", _with(SINGLE, "  mqtt-estate:caCertPem: x"),
     "caCertPem", "existingCa"),
    ("mtls-on-websockets", SINGLE.replace("port: 8883, tls: true}", "port: 9443, tls: true, protocol: websockets, "
                                                                    "requireCertificate: true}"),
     "broker.listeners[1].requireCertificate", "websockets"),
    ("zone-listed-twice", SINGLE.replace("    listeners:", "    acl: {factory: {zones: [press, paint, press]}}\n    listeners:"),
     "broker.acl.factory.zones[2]", "once"),
    # found by an independent review
    ("internal-port-privileged", _with(CLUSTER, "    ha: {internalPort: 884}"), "broker.ha.internalPort", "privileged"),
    ("iterations-that-stall-the-broker", _with(SINGLE, "    auth: {passwordIterations: 10000000}"),
     "broker.auth.passwordIterations", "100000"),
    ("iterations-of-the-old-default", _with(SINGLE, "    auth: {passwordIterations: 210000}"),
     "broker.auth.passwordIterations", "100000"),
    ("session-expiry-overflows", _with(SINGLE, "    persistence: {sessionExpiry: 100y}"),
     "broker.persistence.sessionExpiry", "100y"),
    ("rsa-bits-on-an-ecdsa-key", _with(SINGLE, "  mqtt-estate:pki: {caKey: {algorithm: ECDSA, rsaBits: 4096}}"),
     "pki.caKey.rsaBits", "no effect"),
    ("topology-on-one-broker", _with(SINGLE, "    ha: {topology: active-standby}"), "broker.ha.topology", "single"),
    ("cpu-target-without-autoscaling", _with(CLUSTER, "    ha: {targetCpuPercent: 80}"),
     "broker.ha.targetCpuPercent", "autoscaling"),
    ("frontend-maxconn-that-cannot-fit", _with(CLUSTER, "  mqtt-estate:frontend: {maxconn: 1000000}"),
     "frontend.maxconn", "memory"),
    ("empty-password", _with(SINGLE, _user("scada", role="admin") + "  mqtt-estate:password-scada: ''"),
     "password-scada", "empty"),
    ("password-is-the-user-name", _with(SINGLE, _user("scada", role="admin") + "  mqtt-estate:password-scada: Scada"),
     "password-scada", "user name"),
    ("short-password", _with(SINGLE, _user("scada", role="admin") + "  mqtt-estate:password-scada: admin"),
     "password-scada", "too easy to guess"),
    ("a-weak-password-of-four-classes", _with(SINGLE, _user("scada", role="admin")
                                              + "  mqtt-estate:password-scada: Summer2024!Factory"),
     "password-scada", "at least 10^15"),
    ("unspecified-ip-san", _with(SINGLE, "  mqtt-estate:pki: {extraIpAddresses: [0.0.0.0]}"),
     "pki.extraIpAddresses[0]", "LoadBalancer"),
    ("localhost-as-extra-name", _with(SINGLE, "  mqtt-estate:pki: {extraDnsNames: [localhost]}"),
     "pki.extraDnsNames[0]", "loopbackSans"),
    ("organization-beyond-x509", _with(SINGLE, "  mqtt-estate:pki: {organization: '" + "o" * 65 + "'}"),
     "pki.organization", "64"),
    ("queue-bytes-below-one-packet", _with(SINGLE, "    limits: {maxQueuedBytes: 1024}"),
     "broker.limits.maxQueuedBytes", "maxPacketSize"),
    ("autoscaling-with-fixed-replicas", _with(SINGLE, "    replicas: 2\n    ha: {maxReplicas: 4}"),
     "broker.replicas", "minReplicas"),
    # 9. anonymous access on one listener (tests/test_anonymous_listener.py runs some through the CLI too)
    ("anonymous-on-a-load-balancer",
     _with(_without_ranges(ANONYMOUS), "    service: {type: LoadBalancer, loadBalancerSourceRanges: [10.20.0.0/16]}"),
     "broker.listeners[1].allowAnonymous", "exposed outside the cluster (broker.service.type: LoadBalancer)"),
    ("anonymous-behind-a-load-balancer-frontend", ANONYMOUS_CLUSTER,
     "broker.listeners[1].allowAnonymous", "exposed outside the cluster (frontend.service.type: LoadBalancer)"),
    ("anonymous-without-topics", ANONYMOUS.replace("        anonymousTopics: [{access: readwrite, "
                                                   "topic: \"legacy/#\"}]\n", ""),
     "broker.listeners[1].allowAnonymous", "granted nothing"),
    ("topics-without-anonymous", ANONYMOUS.replace("        allowAnonymous: true\n", ""),
     "broker.listeners[1].anonymousTopics", "no effect without allowAnonymous"),
    ("anonymous-on-an-mtls-listener",
     ANONYMOUS.replace("        port: 1885\n", "        port: 8884\n        tls: true\n"
                                                "        requireCertificate: true\n"),
     "broker.listeners[1].allowAnonymous", "requireCertificate"),
    ("anonymous-topics-rooted-in-a-wildcard",
     ANONYMOUS.replace('[{access: readwrite, topic: "legacy/#"}]', '[{access: readwrite, topic: "+/+/+"}]'),
     "broker.listeners[1].anonymousTopics[0].topic", "starts with a wildcard"),
    ("anonymous-read-of-sys", ANONYMOUS.replace('[{access: readwrite, topic: "legacy/#"}]',
                                                '[{access: write, topic: "legacy/#"}, {access: read, topic: "$SYS/#"}]'),
     "broker.listeners[1].anonymousTopics[1].topic", "$ topics"),
    ("anonymous-topics-that-only-deny",
     ANONYMOUS.replace('[{access: readwrite, topic: "legacy/#"}]', '[{access: deny, topic: "legacy/#"}]'),
     "broker.listeners[1].allowAnonymous", "granted nothing"),
    ("open-ipv4-source-range", ANONYMOUS.replace("[10.30.0.0/24]", "[0.0.0.0/0]"),
     "broker.listeners[1].sourceRanges[0]", "'0.0.0.0/0' admits every address"),
    ("open-ipv6-source-range", ANONYMOUS.replace("[10.30.0.0/24]", "['10.30.0.0/24', '::/0']"),
     "broker.listeners[1].sourceRanges[1]", "'::/0' admits every address"),
    ("source-ranges-that-add-up-to-everything", ANONYMOUS.replace("[10.30.0.0/24]", "[0.0.0.0/1, 128.0.0.0/1]"),
     "broker.listeners[1].sourceRanges", "together admit every address"),
    ("source-range-twice", ANONYMOUS.replace("[10.30.0.0/24]", "[10.30.0.0/24, 10.31.0.0/24, 10.30.0.0/24]"),
     "broker.listeners[1].sourceRanges[2]", "once"),
    ("catch-all-anonymous-topic", ANONYMOUS.replace('topic: "legacy/#"', 'topic: "#"'),
     "broker.listeners[1].anonymousTopics[0].topic", "every topic"),
    ("anonymous-topic-by-client-id", ANONYMOUS.replace('topic: "legacy/#"', 'topic: "legacy/%c/#"'),
     "broker.listeners[1].anonymousTopics[0].topic", "client id"),
    ("client-id-pattern-next-to-an-anonymous-listener",
     _with(ANONYMOUS, "    acl: {patterns: [{access: readwrite, topic: 'devices/%c/#'}]}"),
     "broker.acl.patterns[0].topic", "anonymous clients of broker.listeners[1]"),
    ("global-and-per-listener-anonymous", _with(ANONYMOUS, "    auth: {allowAnonymous: true}"),
     "broker.auth.allowAnonymous", "per-listener"),
    ("source-ranges-behind-the-broker-load-balancer",
     _with(SINGLE.replace("port: 1883}", "port: 1883, sourceRanges: [10.30.0.0/24]}"),
           "    service: {type: LoadBalancer, loadBalancerSourceRanges: [10.20.0.0/16]}\n"
           "  mqtt-estate:pki: {extraDnsNames: [mqtt.plant.example]}"),
     "broker.listeners[0].sourceRanges", "loadBalancerSourceRanges"),
    ("anonymous-listener-named-health", ANONYMOUS.replace("name: legacy", "name: health"),
     "broker.listeners[1].name", "health.acl"),
    # 10. flood protection at the frontend (tests/test_flood_protection.py boots it)
    ("flood-concurrent-above-maxconn", _with(CLUSTER, "  mqtt-estate:frontend: {maxconn: 5000, floodProtection: "
                                                      "{concurrentConnections: 6000}}"),
     "frontend.floodProtection.concurrentConnections", "frontend.maxconn 5000"),
    ("flood-period-in-milliseconds", _flood("{ratePeriod: 500ms}"),
     "frontend.floodProtection.ratePeriod", "shorter than 1s"),
    ("flood-period-beyond-haproxy-timers", _flood("{ratePeriod: 30d}"),
     "frontend.floodProtection.ratePeriod", "HAProxy's timers"),
    ("flood-period-with-a-space", _flood("{ratePeriod: 10 s}"),
     "frontend.floodProtection.ratePeriod", "not an HAProxy time"),
    ("flood-period-in-mosquitto-months", _flood("{ratePeriod: 1w}"),
     "frontend.floodProtection.ratePeriod", "m (minutes)"),
    ("flood-rate-that-refuses-a-reconnect", _flood("{connectionRate: 1}"),
     "frontend.floodProtection.connectionRate", ">= 2"),
    ("flood-exempt-gateway-twice", _flood("{exemptSources: [10.40.0.1/32, 10.41.0.1/32, 10.40.0.1/32]}"),
     "frontend.floodProtection.exemptSources[2]", "once"),
    ("flood-exempt-everyone", _flood("{exemptSources: ['::/0']}"),
     "frontend.floodProtection.exemptSources[0]", "exempts every address"),
    ("flood-exempt-halves-of-everyone", _flood("{exemptSources: [0.0.0.0/1, 128.0.0.0/1]}"),
     "frontend.floodProtection.exemptSources", "together exempt every address"),
    ("flood-exempt-address-without-prefix", _flood("{exemptSources: [10.40.0.1]}"),
     "frontend.floodProtection.exemptSources[0]", "10.40.0.1/32"),
    ("flood-exemptions-while-off", _flood("{enabled: false, exemptSources: [10.40.0.1/32]}"),
     "frontend.floodProtection.exemptSources", "no effect with enabled: false"),
    ("flood-protection-without-frontend", _with(SINGLE, "  mqtt-estate:frontend: {floodProtection: "
                                                        "{connectionRate: 10}}"),
     "frontend.floodProtection", "no effect without the frontend"),
]

VALID = [
    ("registry-with-port", "    image: registry.plant.local:5000/eclipse-mosquitto:2.0.20"),
    ("tag-and-digest", "    image: eclipse-mosquitto:2.0.20@sha256:" + "a" * 64),
    ("digest-only", "    image: eclipse-mosquitto@sha256:" + "b" * 64),
    ("ipv6-source-range", "    service: {type: LoadBalancer, loadBalancerSourceRanges: ['fd00:10:20::/48']}\n"
                          "  mqtt-estate:pki: {extraDnsNames: ['*.plant.example'], extraIpAddresses: ['10.20.0.5']}"),
    ("long-namespace", "  mqtt-estate:namespace: {name: plant-01-production-line-a-mqtt-estate-eu}"),
    ("decimal-memory", "    resources: {memoryRequest: 1.5Gi, memoryLimit: 2G, cpuRequest: 500m, cpuLimit: '1.5'}"),
    ("storage-class-with-dots", "    persistence: {storageClass: fast.ssd.example.com, size: 50Gi}"),
    ("nfs-by-ip", "    persistence: {nfs: {server: 10.20.0.9, path: /exports/mqtt}}"),
    ("spaces-inside-acl-levels", "    acl: {patterns: [{access: read, topic: 'plant/line a/%u/#'}]}"),
    ("queue-capped-by-bytes", "    limits: {maxQueuedMessages: 100000, maxQueuedBytes: 268435456}"),
    ("longest-namespace", "  mqtt-estate:namespace: {name: " + "n" * 63 + "}"),
    ("longest-organization", "  mqtt-estate:pki: {organization: '" + "o" * 64 + "'}"),
    ("plain-number-quantities", "    resources: {memoryLimit: 2147483648, memoryRequest: 1073741824}"),
    ("yaml-anchors-and-merge", "    limits: &limits {maxQueuedMessages: 500}\n    resources: {cpuLimit: '2'}"),
]


def _key_line(path: str) -> str:
    return f"bad.yaml: mqtt-estate:{path}: " if path[0].islower() or "." in path or "[" in path else f"bad.yaml: {path}"


def test_the_corpus_covers_every_class():
    assert len(MISTAKES) >= 50 and len({case[0] for case in MISTAKES}) == len(MISTAKES)


@pytest.mark.parametrize("text, path, fragment", [c[1:] for c in MISTAKES], ids=[c[0] for c in MISTAKES])
def test_mistake_is_one_key_path_line(tmp_path, capsys, text, path, fragment):
    assert_one_key_path_line(tmp_path, capsys, text, path, fragment)


def assert_one_key_path_line(tmp_path, capsys, text: str, path: str, fragment: str) -> None:
    """`estate render` of the stack file exits 2 with one line naming the key path, writing nothing."""
    stack_file, out = render_cli(tmp_path, text)
    rc, err_lines, stdout = run_in_process(capsys, stack_file, out)
    assert rc == EXIT_CONFIG, err_lines
    assert len(err_lines) == 1, err_lines
    assert err_lines[0].startswith(f"bad.yaml: mqtt-estate:{path}: "), err_lines
    assert fragment in err_lines[0]
    assert TRACEBACK not in err_lines[0] and stdout == "" and not out.exists()


@pytest.mark.parametrize("extra", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_edge_case_is_accepted(tmp_path, extra):
    path = tmp_path / "ok.yaml"
    path.write_text(_with(SINGLE, extra))
    read_stack_file(path)


def test_refusing_the_secret_mutable_provider_setting(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(_with(SINGLE, "  kubernetes:enableSecretMutable: 'True'"))
    with pytest.raises(StackConfigError) as refused:
        read_stack_file(path)
    assert refused.value.lines == ["bad.yaml: kubernetes:enableSecretMutable: must be true (add "
                                   "`kubernetes:enableSecretMutable: true` to the stack file): without it the "
                                   "provider deletes and recreates the password, ACL and certificate Secrets on "
                                   "every change"]


# --- a brought CA -----------------------------------------------------------------------------------------

def _ca(key=None, *, ca=True, cert_sign=True, days=3650, start_days=-1, hash_=hashes.SHA256(), extra=()):
    key = key or ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plant CA")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now + dt.timedelta(days=start_days))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True))
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(key, hash_)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def _brought(cert_pem: str, key_pem: str) -> str:
    return _with(SINGLE, "  mqtt-estate:pki: {existingCa: true}\n"
                         f"  mqtt-estate:caCertPem: {json.dumps(cert_pem)}\n  mqtt-estate:caKeyPem: {json.dumps(key_pem)}")


def _openssl_sha1_ca() -> tuple[str, str]:
    """cryptography no longer signs with SHA-1; openssl still does, as old plant CAs were made."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha1", "-nodes", "-days", "3650",
                        "-subj", "/CN=old plant CA", "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                        "-keyout", f"{scratch}/ca.key", "-out", f"{scratch}/ca.crt"], check=True, capture_output=True)
        return Path(scratch, "ca.crt").read_text(), Path(scratch, "ca.key").read_text()


def _other_key_pem() -> str:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


BROUGHT = [
    ("key-does-not-match", lambda: (_ca()[0], _other_key_pem()), "caKeyPem", "does not belong"),
    ("not-a-ca", lambda: _ca(ca=False), "caCertPem", "CA:FALSE"),
    ("may-not-sign", lambda: _ca(cert_sign=False), "caCertPem", "keyCertSign"),
    ("expired", lambda: _ca(days=-1, start_days=-30), "caCertPem", "expired"),
    ("expires-before-leaves", lambda: _ca(days=100), "caCertPem", "a leaf issued now"),
    ("weak-rsa", lambda: _ca(rsa.generate_private_key(65537, 1024)), "caCertPem", "RSA 1024"),
    ("sha1-signed", lambda: _openssl_sha1_ca(), "caCertPem", "SHA1"),
    ("purpose-restricted", lambda: _ca(extra=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])]),
     "caCertPem", "lacking clientAuth"),
    ("name-constrained-elsewhere", lambda: _ca(extra=[x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("plant.example")], excluded_subtrees=None)]), "caCertPem", "name constraints"),
    ("not-pem", lambda: ("hello, this is not a certificate", _ca()[1]), "caCertPem", "not a PEM certificate"),
    ("garbage-pem", lambda: ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", _ca()[1]),
     "caCertPem", "not a readable PEM certificate"),
]


@pytest.mark.parametrize("make, key, fragment", [c[1:] for c in BROUGHT], ids=[c[0] for c in BROUGHT])
def test_brought_ca_problems_are_key_path_lines(tmp_path, capsys, make, key, fragment):
    cert_pem, key_pem = make()
    stack_file, out = render_cli(tmp_path, _brought(cert_pem, key_pem))
    rc, err_lines, _ = run_in_process(capsys, stack_file, out)
    assert rc == EXIT_CONFIG
    assert len(err_lines) == 1 and err_lines[0].startswith(f"bad.yaml: mqtt-estate:{key}: "), err_lines
    assert fragment in err_lines[0]
    assert "MII" not in err_lines[0] and len(err_lines[0]) < 400  # no PEM dump


def test_a_good_brought_ca_is_accepted(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(_brought(*_ca()))
    assert read_stack_file(path).estate.pki.existing_ca


# --- under the Pulumi CLI: the program itself sees every key -----------------------------------------------

def _program_refuses(config: dict, secret_keys: list[str]) -> list[str]:
    full = {"kubernetes:enableSecretMutable": "true", **config}
    with pytest.raises(Exception) as refused:
        run_program(PROGRAM, "cli", full, secret_keys, TEST_SEED)
    return [line for line in str(refused.value).splitlines() if line.startswith("Pulumi.cli.yaml")]


def test_program_refuses_a_misspelt_key_as_pulumi_up_would():
    lines = _program_refuses({"mqtt-estate:brokr": json.dumps({"name": "x"})}, [])
    assert lines and lines[0].startswith("Pulumi.cli.yaml: mqtt-estate:brokr: unknown key")


def test_program_refuses_a_password_for_nobody_as_pulumi_up_would():
    lines = _program_refuses({"mqtt-estate:password-ghost": "a-long-passphrase"}, ["mqtt-estate:password-ghost"])
    assert lines == ["Pulumi.cli.yaml: mqtt-estate:password-ghost: names no user in users (known: none)"]


def test_program_refuses_a_password_stored_in_plain_text():
    users = json.dumps([{"name": "scada"}])
    lines = _program_refuses({"mqtt-estate:users": users, "mqtt-estate:password-scada": "a-long-passphrase"}, [])
    assert lines == ["Pulumi.cli.yaml: mqtt-estate:password-scada: is stored in plain text (set it with "
                     "`pulumi config set --secret mqtt-estate:password-scada ...`)"]


def test_program_refuses_without_secret_mutable_provider():
    with pytest.raises(Exception) as refused:
        run_program(PROGRAM, "cli", {}, [], TEST_SEED)
    assert "kubernetes:enableSecretMutable: must be true" in str(refused.value)


@pytest.mark.parametrize("extra", ["  mqtt-estate:namespace: {name: " + "n" * 63 + "}",
                                   "  mqtt-estate:pki: {organization: '" + "o" * 64 + "'}"],
                         ids=["63-character-namespace", "64-character-organization"])
def test_longest_names_render(tmp_path, state_dir, extra):
    """Names at the limits still make certificates (a common name is at most 64 characters)."""
    path = tmp_path / "long.yaml"
    path.write_text(_with(SINGLE, extra))
    _, registry = evaluate("long", path, state_dir)
    assert registry.of_type("tls:index/locallySignedCert")


HOSTILE = [
    ("binary-value", "config:\n  mqtt-estate:broker: {name: !!binary bW9zcXVpdHRv}\n", "binary values are not allowed"),
    ("list-as-key", "config:\n  mqtt-estate:broker:\n    ? [a, b]\n    : 1\n", "a key must be plain text"),
    ("endless-number", "config:\n  mqtt-estate:broker:\n    replicas: " + "9" * 5000 + "\n", "far too long"),
    ("key-forging-a-line", 'config:\n  "mqtt-estate:brokr\\nPulumi.prod.yaml: all good\\e[31m": {}\n', "\\n"),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_yaml_is_one_clean_line(tmp_path, capsys, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    rc, err_lines, _ = run_in_process(capsys, path, tmp_path / "out")
    assert rc == EXIT_CONFIG and len(err_lines) == 1, err_lines
    assert err_lines[0].startswith("bad.yaml: ") and fragment in err_lines[0]
    assert all(ch.isprintable() for ch in err_lines[0])


def test_program_refuses_a_misspelt_namespace_as_pulumi_up_would():
    lines = _program_refuses({"mqtt-estat:broker": json.dumps({"name": "x"})}, [])
    assert lines == ["Pulumi.cli.yaml: config.mqtt-estat:broker: unknown namespace 'mqtt-estat' (use mqtt-estate, "
                     "or one of pulumi, kubernetes, random, tls, aws)"]


def test_a_flood_of_problems_is_summed_up(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("config:\n" + "".join(f"  mqtt-estate:typo{i}: 1\n" for i in range(200)))
    rc, err_lines, _ = run_in_process(capsys, path, tmp_path / "out")
    assert rc == EXIT_CONFIG and len(err_lines) == 51 and err_lines[-1] == "bad.yaml: ... and 150 more problems"


def test_a_brought_ca_constrained_to_the_estate_names_is_accepted(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(_brought(*_ca(extra=[x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("cluster.local"), x509.DNSName("svc"), x509.DNSName("mosquitto"),
                            x509.DNSName("mqtt")], excluded_subtrees=None)])).replace(
        "config:\n", "config:\n  mqtt-estate:namespace: {name: mqtt}\n", 1))
    read_stack_file(path)
