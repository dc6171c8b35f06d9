"""Every name and port the estate makes for itself, in one registry, so a user's choice can never collide with them.

The config check (stacks/checks.py) refuses a listener, user or port that takes one of these; the components
use the same functions to make them, so the registry and the rendered objects cannot drift apart.
"""

from __future__ import annotations

from .haproxy_cfg import FLOOD_TABLE, HEALTH_BACKEND, PEER_PORT, SHARED_TABLE, STATS_PORT
from .mosquitto_conf import HEALTH_PORT

INTERNAL_PORT_NAME = "internal"
"""Container port name of the brokers' internal mTLS listener (bridges and frontend health checks)."""
HEALTH_ACL_NAME = "health"
"""An anonymous listener's ACL file is <name>.acl, next to the health listener's health.acl in the run directory
(components/mosquitto_conf.py), so no anonymous listener may take this name."""

FRONTEND_SECTIONS = {
    "stats": "HAProxy's stats/metrics frontend and container port",
    "peers": "HAProxy's peer-sync container port",
    "replicas": "HAProxy's peers section",
    "cluster": "HAProxy's resolvers section",
    HEALTH_BACKEND: "the HAProxy backend that health-checks the brokers",
    SHARED_TABLE: "the HAProxy stick table of the shared-subscription ports",
    FLOOD_TABLE: "the HAProxy stick table of the per-source flood limits",
}
"""Names HAProxy sections and the frontend pod's container ports already use; listener names become frontend and
backend sections and container port names there."""


def reserved_listener_names(frontend: bool) -> dict[str, str]:
    """Listener names the estate uses itself -> what uses them."""
    names = {INTERNAL_PORT_NAME: "the brokers' internal mTLS listener"}
    if frontend:
        names.update(FRONTEND_SECTIONS)
    return names


def reserved_ports(frontend: bool) -> dict[int, str]:
    """Ports the broker pods (and, with a frontend, the HAProxy pods, which bind every listener port) use."""
    ports = {HEALTH_PORT: "the in-pod health listener"}
    if frontend:
        ports[STATS_PORT] = "HAProxy's stats and metrics port"
        ports[PEER_PORT] = "HAProxy's peer-sync port"
    return ports


def bridge_user(broker: str) -> str:
    """Identity (certificate CN) of the brokers' bridges; its ACL block grants `readwrite #`."""
    return f"{broker}-bridge"


def frontend_check_user(broker: str) -> str:
    """Identity (certificate CN) of HAProxy's MQTT health checks."""
    return f"{broker}-frontend-check"


def cloud_bridge_name(broker: str, bridge: str) -> str:
    """A cloud bridge's workload name and its identity (certificate CN) in the estate."""
    return f"{broker}-cloud-{bridge}"


def frontend_name(broker: str) -> str:
    return f"{broker}-frontend"


def internal_users(broker: str) -> dict[str, str]:
    """Internal identity -> what it is for. A user of the same name would share its ACL block (mosquitto merges
    `user` blocks of one name), so no user may take one."""
    return {bridge_user(broker): "the brokers' bridges (readwrite #)",
            frontend_check_user(broker): "the frontend's health checks"}


def pod_dns_name(name: str, namespace: str, ordinal: int) -> str:
    """A broker pod's stable DNS name (StatefulSet `name`, headless Service `<name>-headless`)."""
    return f"{name}-{ordinal}.{name}-headless.{namespace}.svc.cluster.local"


def service_dns_names(service: str, namespace: str) -> list[str]:
    """Every form of a Service's in-cluster name that a client may use."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def pod_dns_names(name: str, namespace: str, replicas: int) -> list[str]:
    """Every name a client may use for the brokers: the Service's forms and each pod's stable DNS name."""
    return service_dns_names(name, namespace) + [pod_dns_name(name, namespace, i) for i in range(replicas)]


def estate_secret(broker: str, secret: str) -> str | None:
    """What the estate's own Secret `secret` holds, when the estate (broker `broker`) makes a Secret of that name;
    else None. Every Secret the components make starts with the broker's name: the broker's `-auth`, `-tls`,
    `-bridge` and `-client-certs-<n>` (components/broker.py, client_bundles.bundle_name), the frontend's
    `-frontend-stats` and `-frontend-check-tls` (components/haproxy.py) and each cloud bridge's `-cloud-<bridge>-cloud`
    and `-cloud-<bridge>-estate-tls` (components/cloud_bridge.py)."""
    if not secret.startswith(f"{broker}-"):
        return None
    rest = secret[len(broker) + 1:]
    fixed = {"auth": "the password file and ACLs", "tls": "the brokers' private key",
             "bridge": "the bridges' private key", "frontend-stats": "HAProxy's stats password",
             "frontend-check-tls": "the frontend's health-check private key"}
    if rest in fixed:
        return fixed[rest]
    if rest.startswith("client-certs-") and rest[len("client-certs-"):].isdigit():
        return "devices' private keys"
    if rest.startswith("cloud-") and rest.endswith(("-cloud", "-estate-tls")):
        return "a cloud bridge's credentials"
    return None
