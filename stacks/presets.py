"""Resource presets: the seed chart's four sizes, so a stack can say `preset: edge-broker` and get sane numbers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Requests/limits, volume size, connection cap and replica count of one broker size."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    storage: str
    max_connections: int
    replicas: int


PRESETS: dict[str, Preset] = {
    "edge-broker": Preset("500m", "1", "512Mi", "1Gi", "5Gi", 100, 1),
    "standard-broker": Preset("1", "2", "1Gi", "2Gi", "20Gi", 1000, 1),
    "enterprise-broker": Preset("2", "4", "4Gi", "8Gi", "100Gi", 10000, 1),
    "ha-cluster": Preset("2", "4", "4Gi", "8Gi", "100Gi", 10000, 3),
}
