"""Small Kubernetes helpers shared by the components: labels, object names, content hashes, security contexts."""

from __future__ import annotations

import hashlib
import re

PART_OF = "mqtt-estate"


def labels(app: str, instance: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(app: str, instance: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": instance}


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def dns_name(text: str) -> str:
    """A DNS-1123 label for any user name; a short hash keeps distinct names distinct after folding."""
    folded = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40] or "x"
    return folded if folded == text else f"{folded}-{content_hash(text)[:6]}"


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def restricted_pod(uid: int) -> dict:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def namespace_labels() -> dict[str, str]:
    return {"pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
            "app.kubernetes.io/part-of": PART_OF}


SKIP_AWAIT = "pulumi.com/skipAwait"
"""Skips the provider's wait for a LoadBalancer address (pulumi-kubernetes metadata/overrides.go:100-110)."""


def client_service(service_type: str, pod_selector: dict, ports: list[dict], source_ranges, skip_await: bool
                   ) -> tuple[dict, dict]:
    """(extra metadata, spec) of the Service clients connect to: ports by name, source ranges for a LoadBalancer,
    and the skip-await annotation when asked."""
    spec: dict = {"type": service_type, "selector": pod_selector, "ports": ports}
    if source_ranges:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    return ({"annotations": {SKIP_AWAIT: "true"}} if skip_await else {}), spec
