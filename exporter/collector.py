"""The exporter's state: the last `$SYS` values of one broker, and what Prometheus is shown of them.

Nothing stale is shown: when the MQTT connection drops, or no uptime heartbeat has come for `stale_after`
seconds, every broker metric is withdrawn and `mosquitto_up` is 0, until fresh values arrive.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .credentials import CredentialFile, expiry_metric
from .sys_topics import (BRIDGE_STATE, BUILD_INFO, COUNTERS, GAUGES, LOAD_WINDOWS, LOADS, UPTIME_TOPIC,
                         VERSION_TOPIC, load_metric, parse_bridge, parse_load, parse_number)

UP = "mosquitto_up"
LAST_UPDATE = "mosquitto_exporter_last_update_timestamp_seconds"
CONNECTS = "mosquitto_exporter_broker_connects_total"
OWN_METRICS = {
    UP: "1 while the exporter is connected to the broker and its $SYS heartbeat is fresh, else 0",
    LAST_UPDATE: "When the broker's uptime heartbeat last arrived (Unix time)",
    CONNECTS: "MQTT connections the exporter has made to the broker",
    "mqtt_estate_credential_expiry_timestamp_seconds": "When a certificate or token the pod uses expires (Unix time)",
}


class SysState(Collector):
    """Thread-safe: paho's network thread feeds it, Prometheus' HTTP thread reads it."""

    def __init__(self, stale_after: float, credentials: list[CredentialFile] = (),
                 clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._stale_after = stale_after
        self._clock = clock
        self._credentials = list(credentials)
        self._connected = False
        self._heartbeat = 0.0
        self._values: dict[str, float] = {}
        self._loads: dict[tuple[str, str], float] = {}
        self._bridges: dict[str, float] = {}
        self._version = ""
        self._connects = 0

    # --- fed by the MQTT side -------------------------------------------------------------------------------
    def connected(self) -> None:
        with self._lock:
            self._connected = True
            self._connects += 1

    def disconnected(self) -> None:
        with self._lock:
            self._connected = False
            self._forget()

    def message(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if topic == VERSION_TOPIC:
                self._version = payload.decode("ascii", "replace").strip().removeprefix("mosquitto version ")
                return
            value = parse_number(topic, payload)
            if value is None:
                return
            bridge = parse_bridge(topic)
            if bridge is not None:
                self._bridges[bridge] = 1.0 if value == 1 else 0.0
                return
            if topic == UPTIME_TOPIC:
                if self._values.get(topic, value) > value:
                    self._forget()           # the broker restarted under a live connection: old totals are gone
                self._heartbeat = self._clock()
            load = parse_load(topic)
            if load is not None:
                self._loads[load] = value
            elif topic in COUNTERS or topic in GAUGES:
                self._values[topic] = value

    def _forget(self) -> None:
        self._values.clear()
        self._loads.clear()
        self._bridges.clear()
        self._version = ""
        self._heartbeat = 0.0

    # --- read by Prometheus ---------------------------------------------------------------------------------
    def _fresh(self) -> bool:
        return self._connected and self._heartbeat > 0 and self._clock() - self._heartbeat <= self._stale_after

    def collect(self) -> Iterator:
        with self._lock:
            fresh = self._fresh()
            yield GaugeMetricFamily(UP, OWN_METRICS[UP], value=1 if fresh else 0)
            yield GaugeMetricFamily(LAST_UPDATE, OWN_METRICS[LAST_UPDATE], value=self._heartbeat)
            yield CounterMetricFamily(CONNECTS.removesuffix("_total"), OWN_METRICS[CONNECTS], value=self._connects)
            yield expiry_metric(self._credentials)
            if not fresh:
                return
            for topic, (name, help_text) in COUNTERS.items():
                if topic in self._values:
                    yield CounterMetricFamily(name, help_text, value=self._values[topic])
            for topic, (name, help_text) in GAUGES.items():
                if topic in self._values:
                    yield GaugeMetricFamily(name, help_text, value=self._values[topic])
            for what in LOADS:
                family = GaugeMetricFamily(load_metric(what), f"mosquitto's moving average of {what} per minute",
                                           labels=["window"])
                for window in LOAD_WINDOWS:
                    if (load_metric(what), window) in self._loads:
                        family.add_metric([window], self._loads[(load_metric(what), window)])
                if family.samples:
                    yield family
            if self._bridges:
                bridges = GaugeMetricFamily(BRIDGE_STATE, "1 while the bridge connection is up, 0 while it is down",
                                            labels=["connection"])
                for connection, up in sorted(self._bridges.items()):
                    bridges.add_metric([connection], up)
                yield bridges
            if self._version:
                info = GaugeMetricFamily(BUILD_INFO, "The broker's version, as it reports it", labels=["version"])
                info.add_metric([self._version], 1)
                yield info
