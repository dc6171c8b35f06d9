"""Which mosquitto `$SYS` topics become which Prometheus metrics, typed as mosquitto computes them.

Read from eclipse/mosquitto v2.0.11 src/sys_tree.c (the same topics at v2.0.20):
- totals since the broker started are counters: messages/bytes received and sent, publishes dropped, clients
  expired (lines 100-103, 322-370);
- the rest are gauges of the moment: clients connected, disconnected and known (76-99), store and retained
  counts (287-316), subscriptions, heap (108-126, only with memory tracking), uptime, published as "N seconds"
  (218-221);
- `load/<what>/<window>` are mosquitto's own moving averages per minute (calc_load, 130-148, fed with
  `(now - last) * 60 / interval`, 229-248): gauges, labelled with their window.
A value is published at the first interval and then only when it changes, retained (before 2.0.16 with a 60 s
message expiry, the `1, 60` arguments of db__messages_easy_queue; `1, 0` at v2.0.20). So an exporter that starts
with its broker sees every value, and one that restarts alone on 2.0.11 misses those unchanged for a minute until
they change. The uptime is published at every interval (line 221): it is the heartbeat that tells whether the
rest is current.

Bridges write their state, `1` or `0`, to `$SYS/broker/connection/<connection>/state`
(components/mosquitto_conf.bridge_notifications): mosquitto_bridge_connected{connection="<connection>"}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class SysMetric:
    name: str
    kind: str
    """counter or gauge"""
    help: str


COUNTERS = {
    "$SYS/broker/messages/received": ("mosquitto_messages_received", "MQTT packets of every kind received"),
    "$SYS/broker/messages/sent": ("mosquitto_messages_sent", "MQTT packets of every kind sent"),
    "$SYS/broker/publish/messages/received": ("mosquitto_publish_messages_received", "PUBLISH packets received"),
    "$SYS/broker/publish/messages/sent": ("mosquitto_publish_messages_sent", "PUBLISH packets sent"),
    "$SYS/broker/publish/messages/dropped": (
        "mosquitto_publish_messages_dropped",
        "Messages dropped because a client's queue was full (max_queued_messages / max_queued_bytes)"),
    "$SYS/broker/bytes/received": ("mosquitto_bytes_received", "Bytes received on every socket"),
    "$SYS/broker/bytes/sent": ("mosquitto_bytes_sent", "Bytes sent on every socket"),
    "$SYS/broker/publish/bytes/received": ("mosquitto_publish_bytes_received", "Payload bytes of PUBLISH received"),
    "$SYS/broker/publish/bytes/sent": ("mosquitto_publish_bytes_sent", "Payload bytes of PUBLISH sent"),
    "$SYS/broker/clients/expired": ("mosquitto_clients_expired",
                                    "Persistent sessions removed by persistent_client_expiration"),
}
"""Totals since the broker started: exposed as `<name>_total` counters (they restart at 0 with the broker)."""

GAUGES = {
    "$SYS/broker/clients/connected": ("mosquitto_clients_connected", "Clients connected now (bridges included)"),
    "$SYS/broker/clients/disconnected": (
        "mosquitto_clients_disconnected",
        "Persistent sessions whose client is not connected (in a cloud-bridge pod: its bridge legs that are down)"),
    "$SYS/broker/clients/total": ("mosquitto_clients_known", "Sessions the broker holds, connected or not"),
    "$SYS/broker/clients/maximum": ("mosquitto_clients_maximum", "Most sessions held at once since start"),
    "$SYS/broker/store/messages/count": ("mosquitto_store_messages", "Messages held in the message store"),
    "$SYS/broker/store/messages/bytes": ("mosquitto_store_messages_bytes", "Payload bytes held in the message store"),
    "$SYS/broker/retained messages/count": ("mosquitto_retained_messages", "Retained messages"),
    "$SYS/broker/subscriptions/count": ("mosquitto_subscriptions", "Subscriptions, shared ones included"),
    "$SYS/broker/shared_subscriptions/count": ("mosquitto_shared_subscriptions", "Shared subscriptions"),
    "$SYS/broker/heap/current": ("mosquitto_heap_current_bytes", "Heap in use (brokers built with memory tracking)"),
    "$SYS/broker/heap/maximum": ("mosquitto_heap_maximum_bytes", "Most heap in use since start"),
    "$SYS/broker/uptime": ("mosquitto_uptime_seconds", "Seconds since the broker started"),
}

LOADS = ("messages/received", "messages/sent", "publish/received", "publish/sent", "publish/dropped",
         "bytes/received", "bytes/sent", "sockets", "connections")
"""`$SYS/broker/load/<what>/<window>`: mosquitto's moving averages, per minute."""
LOAD_WINDOWS = ("1min", "5min", "15min")
LOAD_PREFIX = "$SYS/broker/load/"

BRIDGE_STATE = "mosquitto_bridge_connected"
BRIDGE_PREFIX, BRIDGE_SUFFIX = "$SYS/broker/connection/", "/state"

VERSION_TOPIC = "$SYS/broker/version"
BUILD_INFO = "mosquitto_build_info"
UPTIME_TOPIC = "$SYS/broker/uptime"


def load_metric(what: str) -> str:
    return "mosquitto_load_" + what.replace("/", "_") + "_per_minute"


def parse_load(topic: str) -> Optional[tuple[str, str]]:
    """(metric name, window) of a load topic, or None."""
    if not topic.startswith(LOAD_PREFIX):
        return None
    what, _, window = topic[len(LOAD_PREFIX):].rpartition("/")
    if what not in LOADS or window not in LOAD_WINDOWS:
        return None
    return load_metric(what), window


def parse_bridge(topic: str) -> Optional[str]:
    """The connection name of a bridge state topic, or None."""
    if not (topic.startswith(BRIDGE_PREFIX) and topic.endswith(BRIDGE_SUFFIX)):
        return None
    name = topic[len(BRIDGE_PREFIX):-len(BRIDGE_SUFFIX)]
    return name if name and "/" not in name else None


def parse_number(topic: str, payload: bytes) -> Optional[float]:
    """The number a `$SYS` payload carries ("42", "0.98", "12 seconds"), or None if it carries none."""
    text = payload.decode("ascii", "replace").strip()
    if topic == UPTIME_TOPIC:
        text = text.removesuffix(" seconds")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def metric_names() -> set[str]:
    """Every metric name the exporter can emit (counters with their `_total`)."""
    from .collector import OWN_METRICS
    return ({f"{name}_total" for name, _ in COUNTERS.values()} | {name for name, _ in GAUGES.values()}
            | {load_metric(what) for what in LOADS} | {BUILD_INFO, BRIDGE_STATE} | set(OWN_METRICS))
