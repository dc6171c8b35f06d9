"""A cloud bridge's provider profile as rules, written once for the stack-file check (stacks/checks.py) and the
component's argument check (components/arguments.py): both hand over the bridge as snake_case dicts and get back
(path, message) pairs.

What each rule prevents is a bridge that looks fine and then flaps or loses messages in production: a QoS 2
mapping makes AWS IoT Core and Azure IoT Hub close the connection and mosquitto reconnects for ever; a `both`
mapping to a cloud that echoes a client's own messages (MQTT 3.1.1 has no no-local) sends every message round
again; two mappings of one direction that overlap send a message twice; an `in` filter in the cloud that covers
an `out` topic brings every outgoing message back into the estate.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, Optional

from ..stacks.grammar import filters_overlap
from .cloud_profiles import (AWS, AWS_ALPN_PORT, AWS_RESERVED_PREFIX, AZURE, MQTT, PROFILES,
                             azure_devicebound_prefix, azure_events_prefix)

Problem = tuple[tuple, str]
AWS_THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
"""AWS IoT thing names (CreateThing API: thingName pattern [a-zA-Z0-9:_-]+, length 1-128)."""
AZURE_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
"""Azure IoT Hub device ids: up to 128 characters of ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '
(https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry, "Device identity properties")."""
IN_CLUSTER = (".svc", ".svc.cluster.local")


def remote_prefix(provider: str, client_id: str, mapping: Mapping[str, Any]) -> str:
    """The remote prefix as the bridge uses it: Azure IoT Hub's device topics unless one is given."""
    given = mapping.get("remote_prefix")
    if given is not None:
        return given
    if provider == AZURE:
        return (azure_events_prefix(client_id) if mapping.get("direction", "out") == "out"
                else azure_devicebound_prefix(client_id))
    return ""


def with_remote_prefixes(provider: str, client_id: str, mappings) -> list[dict]:
    return [{**m, "remote_prefix": remote_prefix(provider, client_id, m)} for m in mappings]


def problems(bridge: Mapping[str, Any]) -> Iterator[Problem]:
    """Everything the provider profile forbids in `bridge` (snake_case keys, as CloudBridgeArgs)."""
    provider = bridge["provider"]
    profile = PROFILES[provider]
    client_id = bridge["client_id"]
    port = bridge.get("port", 8883)
    low, high = profile.keepalive
    keepalive = bridge.get("keepalive", 60)
    if not low <= keepalive <= high:
        yield ("keepalive",), f"{keepalive} is outside {profile.label}'s range ({low} to {high} seconds)"
    if provider == AWS:
        if ":" in client_id:
            yield ("client_id",), (f"{client_id!r}: ':' is allowed in a thing name but not in the IoT policy name "
                                   "made from it (<thing>-bridge); use '-' or '_'")
        elif not AWS_THING_NAME.fullmatch(client_id):
            yield ("client_id",), (f"{client_id!r} is not an AWS IoT thing name (1-128 of letters, digits, ':', '_', "
                                   "'-'); AWS IoT Core requires the client id to be the thing name")
        if port not in (8883, AWS_ALPN_PORT):
            yield ("port",), f"{port} is not an AWS IoT Core MQTT port (8883, or 443 with ALPN x-amzn-mqtt-ca)"
        if not bridge.get("endpoint") and not (bridge.get("aws") or {}).get("provision", True):
            yield ("endpoint",), ("is required unless aws.provision is true (the data endpoint, as `aws iot "
                                  "describe-endpoint --endpoint-type iot:Data-ATS` prints)")
    if provider == AZURE:
        if not AZURE_DEVICE_ID.fullmatch(client_id):
            yield ("client_id",), (f"{client_id!r} is not an Azure IoT Hub device id (up to 128 of letters, digits "
                                   "and - . % _ * ? ! ( ) , : = @ $ ')")
        if port != 8883:
            yield ("port",), f"{port}: Azure IoT Hub takes MQTT on 8883 (443 is MQTT over WebSockets)"
    if provider == MQTT:
        yield from _generic(bridge)
    yield from _mappings(bridge, provider, client_id)


def _generic(bridge: Mapping[str, Any]) -> Iterator[Problem]:
    remote = bridge.get("mqtt") or {}
    endpoint = bridge.get("endpoint")
    if not endpoint:
        yield ("endpoint",), "is required for an mqtt bridge (the remote broker's host name)"
    elif not remote.get("tls", True) and not (isinstance(endpoint, str) and endpoint.endswith(IN_CLUSTER)):
        yield ("mqtt", "tls"), (f"false is only allowed to a host inside the cluster (*.svc, *.svc.cluster.local); "
                                f"{endpoint} would see the bridge's traffic and password in clear text")


def _mappings(bridge: Mapping[str, Any], provider: str, client_id: str) -> Iterator[Problem]:
    profile = PROFILES[provider]
    mappings = list(bridge.get("mappings") or [])
    remote = bridge.get("mqtt") or {}
    no_local = provider == MQTT and remote.get("protocol_version") == "mqttv50"
    for j, mapping in enumerate(mappings):
        loc = ("mappings", j)
        direction, qos = mapping.get("direction", "out"), mapping.get("qos", 1)
        if qos > profile.max_qos:
            yield loc + ("qos",), (f"{qos} is not accepted by {profile.label} (QoS 0 or 1: it closes the connection "
                                   "on QoS 2, and the bridge would reconnect for ever)")
        if direction == "both" and not no_local:
            yield loc + ("direction",), (f"both would loop: {profile.label} sends a client's own messages back to it "
                                         "(MQTT 3.1.1 has no no-local); use an out and an in mapping on different "
                                         "topics" + ("" if provider != MQTT else ", or mqtt.protocolVersion mqttv50"))
        full = remote_prefix(provider, client_id, mapping) + mapping["topic"]
        if (mapping.get("local_prefix", "") + mapping["topic"]).startswith("$"):
            yield loc + ("local_prefix",), ("a local topic starting with '$' is the broker's own ($SYS): bridge "
                                            "ordinary topics")
        yield from _remote_topic(loc, provider, client_id, direction, full)
    yield from _overlaps(mappings, provider, client_id, no_local)


def _overlaps(mappings: list, provider: str, client_id: str, no_local: bool) -> Iterator[Problem]:
    """Two mappings of one direction that overlap deliver a message once per mapping (mosquitto queues a copy per
    matching subscription). An `in` filter in the cloud that covers an `out` topic brings every outgoing message
    back from a cloud that has no no-local (AWS IoT Core, MQTT 3.1.1 remotes): once more into the estate."""
    def local(m):
        return m.get("local_prefix", "") + m["topic"]

    def remote(m):
        return remote_prefix(provider, client_id, m) + m["topic"]

    for j, mapping in enumerate(mappings):
        for k in range(j):
            other = mappings[k]
            same = mapping.get("direction", "out") == other.get("direction", "out")
            if same and filters_overlap(local(mapping), local(other)):
                yield ("mappings", j, "topic"), (f"{local(mapping)!r} overlaps mappings[{k}] ({local(other)!r}) in "
                                                 "the same direction: every message matching both would be sent "
                                                 "twice (merge them into one filter)")
            elif not same and not no_local:
                into = mapping if mapping.get("direction", "out") == "in" else other
                out = other if into is mapping else mapping
                if filters_overlap(remote(into), remote(out)):
                    yield ("mappings", j, "topic"), (
                        f"the cloud topics of mappings[{mappings.index(into)}] ({remote(into)!r}) cover those of "
                        f"mappings[{mappings.index(out)}] ({remote(out)!r}): the cloud would send every outgoing "
                        "message straight back into the estate (use different remote prefixes)")


def _remote_topic(loc: tuple, provider: str, client_id: str, direction: str, full: str) -> Iterator[Problem]:
    profile = PROFILES[provider]
    where = loc + ("remote_prefix",)
    if provider == AWS:
        if full.startswith("$"):
            yield where, (f"{full!r} is a reserved topic ({AWS_RESERVED_PREFIX}...: AWS IoT Core's own services); "
                          "bridge ordinary topics")
        size = len(full.encode())
        if profile.max_topic_bytes and size > profile.max_topic_bytes:
            yield where, f"the remote topic {full!r} is {size} bytes (AWS IoT Core takes at most {profile.max_topic_bytes})"
        if any(mark in full for mark in ("*", "?", "${")):
            yield where, (f"{full!r} holds an IoT policy wildcard or variable ('*', '?', '${{'): the bridge's "
                          "least-privilege policy could not name it exactly")
        slashes = full.count("/")
        if profile.max_topic_slashes is not None and slashes > profile.max_topic_slashes:
            yield where, (f"the remote topic {full!r} has {slashes} '/' (AWS IoT Core takes at most "
                          f"{profile.max_topic_slashes}; shorten the prefix or the topic)")
    if provider == AZURE:
        events, devicebound = azure_events_prefix(client_id), azure_devicebound_prefix(client_id)
        if direction == "out" and not full.startswith(events):
            yield where, (f"{full!r}: Azure IoT Hub takes device-to-cloud messages only on {events} "
                          "(what follows is the message's property bag)")
        if direction == "in" and full != devicebound + "#":
            yield where, (f"{full!r}: Azure IoT Hub takes one cloud-to-device subscription, {devicebound}# "
                          "(topic '#' with the default remote prefix)")


def max_payload(provider: str) -> Optional[int]:
    return PROFILES[provider].max_payload
