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


def client_service(service_type: str, pod_selector: dict, ports: list[dict], source_ranges, skip_await: bool,
                   keep_client_addresses: bool = False) -> tuple[dict, dict]:
    """(extra metadata, spec) of the Service clients connect to: ports by name, source ranges for a LoadBalancer,
    and the skip-await annotation when asked.

    `keep_client_addresses`: a LoadBalancer gets `externalTrafficPolicy: Local`. With the default, Cluster, a node
    that receives load-balanced traffic for a pod on another node forwards it there and replaces the client's
    source address with its own (kubernetes/website 0189ae0f, content/en/docs/tutorials/services/source-ip.md:
    196-204 and 277-285), so everything behind one node looks like one client; Local delivers only to pods on the
    receiving node and keeps the client's address (same file 221-229; nodes without such a pod fail the load
    balancer's health check on healthCheckNodePort and get no traffic, 319-322). A load balancer that is itself
    a proxy still hides clients (402-411). Changing the field on an existing Service is an
    update in place: pulumi-kubernetes replaces a Service only for `.spec.clusterIP` (besides metadata name and
    namespace; provider/pkg/provider/diff.go:158-160 and 25 at v4.32.0)."""
    spec: dict = {"type": service_type, "selector": pod_selector, "ports": ports}
    if source_ranges:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    if keep_client_addresses and service_type == "LoadBalancer":
        spec["externalTrafficPolicy"] = "Local"
    return ({"annotations": {SKIP_AWAIT: "true"}} if skip_await else {}), spec
