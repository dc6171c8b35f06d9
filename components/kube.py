"""Small Kubernetes helpers shared by the components: labels, object names, content hashes, security contexts,
and the container resources argument."""

import hashlib
import re
from typing import Iterator, Mapping, Optional, TypedDict

from ..stacks.grammar import parse_quantity

PART_OF = "mqtt-estate"


class ContainerResources(TypedDict, total=False):
    """CPU and memory of a component's container; each absent field keeps the component's default."""

    cpu_request: str
    """CPU request, a Kubernetes quantity such as 500m (broker default 1, frontend 250m)."""
    cpu_limit: str
    """CPU limit (broker default 2, frontend 1)."""
    memory_request: str
    """Memory request, a Kubernetes quantity such as 1Gi (broker default 1Gi, frontend 256Mi)."""
    memory_limit: str
    """Memory limit (broker default 2Gi, frontend 512Mi)."""


Defaults = Mapping[str, tuple[str, str]]
"""A component's default resources: "cpu" and "memory" -> (request, limit)."""


def container_resources(res: Optional[ContainerResources], defaults: Defaults) -> dict:
    """A container's `resources`: each field given in `res`, else the component's default."""
    res = res or {}
    return {"requests": {what: res.get(f"{what}_request", request) for what, (request, _) in defaults.items()},
            "limits": {what: res.get(f"{what}_limit", limit) for what, (_, limit) in defaults.items()}}


def requests_above_limits(res: Mapping[str, Optional[str]], defaults: Defaults) -> Iterator[tuple[str, str]]:
    """(field, message) for each request above its limit once the defaults fill in what is not given: the API
    server refuses such a container (a request must not exceed its limit)."""
    for what, (default_request, default_limit) in defaults.items():
        request = res.get(f"{what}_request") or default_request
        limit = res.get(f"{what}_limit") or default_limit
        if parse_quantity(request) > parse_quantity(limit):
            field = f"{what}_request" if res.get(f"{what}_request") else f"{what}_limit"
            yield field, (f"the {what} request {request} is above the limit {limit} (a request must not exceed "
                          "its limit)")


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


def tcp_probes(port: str) -> dict:
    """Readiness and liveness of a sidecar that serves metrics: TCP connects to its named port, quiet (no exec, no
    request in its log), and true while its HTTP answers even when what it watches is down."""
    return {"readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10, "timeoutSeconds": 2,
                               "failureThreshold": 3},
            "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 20, "timeoutSeconds": 2,
                              "failureThreshold": 3}}


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
