"""Cloud bridge rules: the provider profile of the connection to AWS IoT Core, Azure IoT Hub or another MQTT broker,
a verified TLS peer, credentials only in Secrets, and one connection per cloud identity.

A CloudBridge workload (components/cloud_bridge.py) is one mosquitto whose objects all carry
`app.kubernetes.io/name: mosquitto-cloud-bridge` and the provider in `mqtt-estate.io/cloud-provider`. Its ConfigMap
holds mosquitto.conf (global settings, the loopback health listener, `connection estate` to the estate's brokers)
and its `<name>-cloud` Secret holds `cloud.conf`, the `connection cloud` block read through `include_dir`. The
provider's limits are read from components/cloud_profiles.py, the one place they are written down; a bridge that
breaks one does not fail loudly: the cloud closes the connection and mosquitto reconnects, for ever.

mosquitto 2.0 (eclipse/mosquitto v2.0.11 src/conf.c) defaults that matter when an option is missing: try_private
true, notifications true, bridge_outgoing_retain true, keepalive_interval 60, bridge_protocol_version mqttv311; a
`topic` line without direction and QoS is `out` at QoS 0; an address without a port is port 1883.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Iterator, Optional

from .policy_kit import (CONFIG_MAP, MANDATORY, SECRET, TLS_ORDER, WORKLOADS, as_int, as_map, as_text, labels_of,
                        name_of, namespace_of, object_data, resource_policy, stack_policy)
from ..components.bridge_rules import IN_CLUSTER
from ..components.cloud_profiles import AWS, AWS_ALPN, AWS_ALPN_PORT, AZURE, BRIDGE_APP, PROFILES, PROVIDER_LABEL
from ..components.mosquitto_conf import parse_mosquitto_conf

APP = BRIDGE_APP
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
CLOUD_SECRET_SUFFIX = "-cloud"
CLOUDS = (AWS, AZURE)
"""Providers whose broker is not mosquitto: no bridge flag, no `$SYS` will, no echo suppression."""
PUBLIC_ROOT_PROVIDERS = CLOUDS
"""Providers whose cloud Secret carries a public root CA as ca.crt (components.cloud_bridge.CLOUD_CA)."""
DEFAULT_PORT = 1883
ALIASES = {"clientid": "remote_clientid", "username": "remote_username", "password": "remote_password"}
"""mosquitto's older spellings of bridge options (src/conf.c reads both)."""
BRIDGE_CREDENTIALS = ("remote_password", "password", "local_password", "bridge_psk")
USERNAMES = ("remote_username", "username", "local_username")
SAS = re.compile(r"SharedAccessSignature|SharedAccessKey\s*=|\bsig=", re.I)
AZURE_USERNAME = re.compile(r"^(?P<host>[^/\s]+)/(?P<device>[^/\s]+)/\?api-version=[^&\s]+(?:&\S*)?$")
"""`{iotHub-hostname}/{device-id}/?api-version=2021-04-12` (https://learn.microsoft.com/azure/iot/
iot-mqtt-connect-to-iot-hub, "Using the MQTT protocol directly (as a device)"); more properties may follow."""


# --- reading a bridge workload's objects ---------------------------------------------------------------------

def provider_of(props: Mapping[str, Any]) -> Optional[str]:
    value = labels_of(props).get(PROVIDER_LABEL)
    return value if isinstance(value, str) else None


def is_bridge_object(props: Mapping[str, Any]) -> bool:
    labels = labels_of(props)
    return labels.get(NAME_LABEL) == APP or PROVIDER_LABEL in labels


def is_cloud_secret(props: Mapping[str, Any]) -> bool:
    """The Secret a CloudBridge keeps its cloud block, the cloud's CA and its cloud identity in."""
    return provider_of(props) is not None and name_of(props).endswith(CLOUD_SECRET_SUFFIX)


def _value(bridge: Mapping[str, list], option: str) -> Optional[str]:
    values = list(bridge.get(option) or [])
    for alias, canonical in ALIASES.items():
        if canonical == option:
            values += list(bridge.get(alias) or [])
    return values[-1].strip() if values else None


def _flag(bridge: Mapping[str, list], option: str, default: bool) -> Optional[bool]:
    """A boolean option as mosquitto reads it (true/false, 1/0); None when it is neither."""
    value = _value(bridge, option)
    if value is None:
        return default
    return {"true": True, "1": True, "false": False, "0": False}.get(value.lower())


def _addresses(bridge: Mapping[str, list]) -> list[tuple[str, int]]:
    """(host, port) of every address of the bridge (`address host[:port] ...`, default port 1883)."""
    found = []
    for word in " ".join(bridge.get("address") or bridge.get("addresses") or []).split():
        host, sep, port = word.rpartition(":")
        if not sep or not port.isdigit():
            host, port = word, str(DEFAULT_PORT)
        found.append((host, int(port)))
    return found


def in_cluster(bridge: Mapping[str, list]) -> bool:
    addresses = _addresses(bridge)
    return bool(addresses) and all(host.endswith(IN_CLUSTER) for host, _ in addresses)


def topic_lines(bridge: Mapping[str, list]) -> Iterator[tuple[str, str, int, str]]:
    """(pattern, direction, qos, the line) of each `topic` line (conf.c: topic pattern [dir [qos [local remote]]])."""
    for text in bridge.get("topic") or []:
        parts = text.split()
        if not parts:
            continue
        direction = parts[1].lower() if len(parts) > 1 else "out"
        qos = as_int(parts[2], -1) if len(parts) > 2 else 0
        yield parts[0], direction, -1 if qos is None else qos, f"topic {text.strip()}"


class BridgeWorkload:
    """The objects of one CloudBridge (one namespace and app.kubernetes.io/instance)."""

    def __init__(self, namespace: Optional[str], instance: str):
        self.namespace, self.instance = namespace, instance
        self.providers: set[str] = set()
        self.config_maps: list = []
        self.secrets: list = []

    @property
    def provider(self) -> Optional[str]:
        return next(iter(self.providers)) if len(self.providers) == 1 else None

    def connections(self) -> Iterator[tuple[Any, str, dict]]:
        """(resource, key, bridge) of each connection towards the provider: every bridge in the cloud Secret's .conf
        files, and every bridge in the ConfigMaps that does not stay inside the cluster (the estate leg does)."""
        for resource in self.secrets:
            if is_cloud_secret(resource.props):
                for key, text in sorted(object_data(resource.props).items()):
                    if key.endswith(".conf"):
                        for bridge in parse_mosquitto_conf(text).bridges:
                            yield resource, key, bridge
        for resource in self.config_maps:
            for key, text in sorted(object_data(resource.props).items()):
                if key.endswith(".conf"):
                    for bridge in parse_mosquitto_conf(text).bridges:
                        if not in_cluster(bridge):
                            yield resource, key, bridge


def bridge_workloads(resources) -> list[BridgeWorkload]:
    found: dict[tuple, BridgeWorkload] = {}
    for r in resources:
        if r.resource_type not in (CONFIG_MAP, SECRET) or not is_bridge_object(r.props):
            continue
        instance = as_text(labels_of(r.props).get(INSTANCE_LABEL)) or name_of(r.props)
        workload = found.setdefault((namespace_of(r.props), instance), BridgeWorkload(namespace_of(r.props), instance))
        provider = provider_of(r.props)
        if provider is not None:
            workload.providers.add(provider)
        (workload.config_maps if r.resource_type == CONFIG_MAP else workload.secrets).append(r)
    return list(found.values())


def _where(key: str, bridge: Mapping[str, list]) -> str:
    return f"{key}: bridge {_value(bridge, 'connection') or '?'}"


# --- bridge-cloud-profile -----------------------------------------------------------------------------------

def profile_problems(provider: str, bridge: Mapping[str, list]) -> Iterator[str]:
    """What the `connection` block does that the provider's profile (components/cloud_profiles.py) forbids."""
    profile = PROFILES[provider]
    cloud = provider in CLOUDS
    for pattern, direction, qos, line in topic_lines(bridge):
        if not 0 <= qos <= profile.max_qos:
            yield (f"'{line}' uses QoS {qos}; {profile.label} takes at most QoS {profile.max_qos} and closes the "
                   "connection otherwise (the bridge would reconnect for ever)")
        if direction not in ("out", "in", "both"):
            yield f"'{line}' has direction {direction!r} (out, in or both)"
        elif direction == "both" and cloud:
            yield (f"'{line}' bridges both ways: {profile.label} sends a client's own messages back to it (MQTT 3.1.1 "
                   "has no no-local), so every message would loop; use an out and an in line on different topics")
    if cloud:
        version = _value(bridge, "bridge_protocol_version") or "mqttv311"
        if version != profile.protocol_version:
            yield f"bridge_protocol_version {version}: {profile.label} speaks {profile.protocol_version}"
        if _flag(bridge, "try_private", True) is not False:
            yield (f"try_private is not false: {profile.label} is not mosquitto and does not understand the bridge "
                   "flag in the CONNECT protocol version")
        if _flag(bridge, "notifications", True) is not False \
                and _flag(bridge, "notifications_local_only", False) is not True:
            yield (f"notifications go to the remote: mosquitto 2.0 then publishes $SYS/broker/connection/<client id>/"
                   f"state there and puts it in the CONNECT as a will (src/bridge.c:503-508, lib/send_connect.c:107 "
                   f"at v2.0.11), which {profile.label} refuses; set notifications_local_only true or notifications "
                   "false")
    if not profile.retain and _flag(bridge, "bridge_outgoing_retain", True) is not False:
        yield (f"bridge_outgoing_retain is not false: {profile.label} does not take retained messages from the "
               "bridge")
    low, high = profile.keepalive
    keepalive = as_int(_value(bridge, "keepalive_interval") or "60")
    if keepalive is None or not low <= keepalive <= high:
        yield (f"keepalive_interval {_value(bridge, 'keepalive_interval')} is outside {profile.label}'s range "
               f"({low} to {high} seconds)")
    if provider == AWS and any(port == AWS_ALPN_PORT for _, port in _addresses(bridge)) \
            and _value(bridge, "bridge_alpn") != AWS_ALPN:
        yield (f"connects to AWS IoT Core on port {AWS_ALPN_PORT} without bridge_alpn {AWS_ALPN} (port 443 takes "
               "X.509 client certificates only with that ALPN protocol)")
    if provider == AZURE:
        yield from _azure_identity(bridge)


def _azure_identity(bridge: Mapping[str, list]) -> Iterator[str]:
    username, client_id = _value(bridge, "remote_username"), _value(bridge, "remote_clientid")
    hosts = {host for host, _ in _addresses(bridge)}
    match = AZURE_USERNAME.match(username or "")
    if not match:
        yield (f"remote_username {username or '(none)'} is not Azure IoT Hub's device user name "
               "<hub host>/<device id>/?api-version=<version>")
        return
    if hosts and match.group("host") not in hosts:
        yield f"remote_username names hub {match.group('host')}, but the bridge connects to {', '.join(sorted(hosts))}"
    if client_id != match.group("device"):
        yield (f"remote_clientid {client_id or '(none)'} is not the device id {match.group('device')} of "
               "remote_username (Azure IoT Hub requires the client id to be the device id)")


def cloud_profile(resources, _cfg):
    for workload in bridge_workloads(resources):
        if not workload.config_maps and not workload.secrets:
            continue
        anchor = (workload.secrets + workload.config_maps)[0]
        provider = workload.provider
        if provider is None:
            yield anchor, (f"cloud bridge {workload.instance}: its objects name "
                           f"{', '.join(sorted(workload.providers)) or 'no provider'} in {PROVIDER_LABEL} "
                           "(exactly one provider is needed to judge its connection)")
            continue
        if provider not in PROFILES:
            yield anchor, (f"cloud bridge {workload.instance}: provider {provider!r} has no profile (one of "
                           f"{', '.join(PROFILES)})")
            continue
        connections = list(workload.connections())
        if not connections:
            yield anchor, (f"cloud bridge {workload.instance}: no connection towards {PROFILES[provider].label} "
                           f"found (a `connection` block in the {workload.instance}{CLOUD_SECRET_SUFFIX} Secret's "
                           "cloud.conf)")
        for resource, key, bridge in connections:
            for problem in profile_problems(provider, bridge):
                yield resource, f"{_where(key, bridge)} ({PROFILES[provider].label}): {problem}"


# --- bridge-cloud-tls-verified ------------------------------------------------------------------------------

def tls_problems(bridge: Mapping[str, list]) -> Iterator[str]:
    if in_cluster(bridge):
        return
    if _value(bridge, "bridge_cafile") is None and _value(bridge, "bridge_capath") is None:
        yield ("names neither bridge_cafile nor bridge_capath: the connection leaves the cluster without TLS or "
               "without verifying the peer")
    if _flag(bridge, "bridge_insecure", False) is not False:
        yield "sets bridge_insecure: the peer's host name is not checked against its certificate"
    version = _value(bridge, "bridge_tls_version")
    if version is not None and TLS_ORDER.get(version, -1) < TLS_ORDER["tlsv1.2"]:
        yield f"allows {version} (tlsv1.2 or newer)"


def cloud_tls(resources, _cfg):
    for workload in bridge_workloads(resources):
        for resource, key, bridge in workload.connections():
            hosts = ", ".join(host for host, _ in _addresses(bridge)) or "(no address)"
            for problem in tls_problems(bridge):
                yield resource, f"{_where(key, bridge)} to {hosts} {problem}"


# --- bridge-credentials-in-secrets --------------------------------------------------------------------------

def credentials_in_config_map(props, _cfg):
    """Every bridge credential a ConfigMap carries, in any key: passwords, PSKs, a SAS token as user name."""
    for key, text in sorted(object_data(props).items()):
        bridge = None
        for number, raw in enumerate(text.splitlines(), 1):
            parts = raw.strip().split(None, 1)
            if not parts or parts[0].startswith("#"):
                continue
            option, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            if option == "connection":
                bridge = value or "?"
                continue
            where = f"data {key!r} line {number}: {option}" + (f" (bridge {bridge})" if bridge else "")
            if not value:
                continue
            if option in ("remote_password", "local_password", "bridge_psk") or (option == "password" and bridge):
                yield f"{where} is a bridge credential in a ConfigMap (the connection block belongs in a Secret)"
            elif option in USERNAMES and SAS.search(value):
                yield f"{where} carries an Azure shared access signature (the connection block belongs in a Secret)"


# --- bridge-single-connection -------------------------------------------------------------------------------

def single_connection(props, _cfg):
    if not is_bridge_object(props):
        return
    kind = as_text(as_map(props).get("kind")) or "workload"
    if kind != "StatefulSet":
        yield (f"cloud bridge {name_of(props)} runs as a {kind}: only a StatefulSet of one replica guarantees one pod "
               "at a time (no surge on rollout, no pod per node)")
    replicas = as_map(as_map(props).get("spec")).get("replicas")
    count = 1 if replicas is None else as_int(replicas)
    if count != 1:
        yield (f"cloud bridge {name_of(props)} has replicas {as_text(replicas)}: two pods with one client id knock "
               "each other off the cloud, which drops the older connection whenever the newer arrives (keep 1)")


POLICIES = [
    stack_policy("bridge-cloud-profile",
                 "A cloud bridge's connection keeps its provider's profile (components/cloud_profiles.py): QoS within "
                 "the profile, and towards AWS IoT Core and Azure IoT Hub MQTT 3.1.1, try_private false, "
                 "notifications false, no `both` topics; no retained messages where the profile takes none; "
                 "keepalive within range; ALPN x-amzn-mqtt-ca on AWS port 443; Azure's user name and client id.",
                 MANDATORY, "Use the CloudBridge component, which writes the profile; fix the bridge's mappings "
                 "(qos 0 or 1, out or in) and keepalive in the stack config.", cloud_profile),
    stack_policy("bridge-cloud-tls-verified",
                 "A cloud bridge's connection leaving the cluster verifies its peer: bridge_cafile or bridge_capath, "
                 "no bridge_insecure, TLS 1.2 or newer (a host under *.svc or *.svc.cluster.local is exempt).",
                 MANDATORY, "Keep mqtt.tls true (the default) for a remote outside the cluster; the component sets "
                 "the CA and bridge_insecure false.", cloud_tls),
    resource_policy("bridge-credentials-in-secrets",
                    "No ConfigMap carries a bridge credential: remote_password, local_password, bridge_psk, a "
                    "connection block's password, or a user name holding an Azure SAS token.", MANDATORY,
                    "Put the connection block in a Secret and include it (include_dir), as the CloudBridge "
                    "component does with cloud.conf.", [CONFIG_MAP], credentials_in_config_map),
    resource_policy("bridge-single-connection",
                    "A cloud bridge runs as a StatefulSet of exactly one replica: two pods with one client id knock "
                    "each other off the cloud.", MANDATORY,
                    "Run one CloudBridge per cloud identity; scale the estate's brokers, not the bridge.",
                    list(WORKLOADS), single_connection),
]
