"""Turn a validated Estate into components: the one place where stack config meets component arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import pulumi

import math

from ..components import names
from ..components.backup_bucket import BackupBucket
from ..components.backup_rules import default_prefix, schedule_seconds
from ..components.broker import APP as BROKER_APP
from ..components.broker import MosquittoBroker
from ..components.bridge_rules import with_remote_prefixes
from ..components.cloud_bridge import APP as CLOUD_BRIDGE_APP
from ..components.cloud_bridge import CloudBridge, estate_rules
from ..components.haproxy import APP as FRONTEND_APP
from ..components.haproxy import HaProxyFrontend
from ..components.haproxy_cfg import FloodLimits, time_ms
from ..components.kube import selector
from ..components.monitoring import MonitoringStack
from ..components.nfs import NfsStorage
from ..components.pki import Pki
from ..components.users import BrokerUser
from .checks import server_names
from .grammar import duration_seconds
from .model import BRIDGE_KEY_PREFIX, BRIDGE_PASSWORD_PREFIX, SECRET_KEY_PREFIX, Bridge, Estate, MqttBridge

MqttDefaults = MqttBridge()
SecretLookup = Callable[[str], Optional[pulumi.Output[str]]]


@dataclass
class EstateResources:
    pki: Pki
    broker: MosquittoBroker
    frontend: Optional[HaProxyFrontend] = None
    storage: Optional[NfsStorage] = None
    bridges: dict[str, CloudBridge] = field(default_factory=dict)
    monitoring: Optional[MonitoringStack] = None
    backup_bucket: Optional[BackupBucket] = None
    """The bucket the program provisioned for backups (bucket.provision), if any."""

    @property
    def endpoints(self) -> dict[str, str]:
        """Where clients connect: the frontend when there is one, else the broker Service."""
        return self.frontend.endpoints if self.frontend else self.broker.endpoints


def frontend_ports(estate: Estate) -> list[dict]:
    """What the frontend binds: MQTT listeners, TLS websocket listeners (passed through like MQTTS; plain
    websockets stay inside the cluster), then the shared-subscription ports, each forwarding to its listener."""
    carried = {lst.name: lst for lst in estate.broker.listeners if lst.through_frontend}
    ports = [{"name": lst.name, "port": lst.port, "tls": lst.tls,
              "scheme": ("wss" if lst.protocol == "websockets" else "mqtts") if lst.tls else "mqtt",
              "source_ranges": list(lst.source_ranges)}
             for lst in carried.values()]
    by_name = {port["name"]: port for port in ports}
    ports += [{**by_name[shared.listener], "name": shared.name, "port": shared.port,
               "broker_port": carried[shared.listener].port, "shared": True}
              for shared in estate.frontend.shared_subscriptions]
    return ports


def flood_limits(estate: Estate) -> FloodLimits:
    """The frontend's per-source limits, with the period in milliseconds as HAProxy counts it."""
    flood = estate.frontend.flood_protection
    return {"enabled": flood.enabled, "connection_rate": flood.connection_rate,
            "rate_period_ms": time_ms(flood.rate_period), "concurrent_connections": flood.concurrent_connections,
            "exempt_sources": list(flood.exempt_sources)}


def build_estate(estate: Estate, secret: SecretLookup) -> EstateResources:
    """Create the Pki and MosquittoBroker for `estate`; `secret(key)` reads a secret config key (or None)."""
    broker_cfg = estate.broker
    preset = estate.preset
    name = broker_cfg.name
    namespace = estate.namespace.name
    cert_users = [u.name for u in estate.users if u.auth in ("certificate", "both")]
    bridge_user, check_user = names.bridge_user(name), names.frontend_check_user(name)
    cloud_identities = [names.cloud_bridge_name(name, b.name) for b in estate.bridges]
    internal_users = (([bridge_user] if estate.clustered else []) + ([check_user] if estate.frontend_enabled else [])
                      + cloud_identities)
    frontend_name = names.frontend_name(name)

    pki = Pki(f"{name}-pki", {
        "organization": estate.pki.organization,
        "ca_key": estate.pki.ca_key.model_dump(),
        "leaf_key": estate.pki.leaf_key.model_dump(),
        "ca_validity_hours": estate.pki.ca_validity_hours,
        "leaf_validity_hours": estate.pki.leaf_validity_hours,
        "early_renewal_hours": estate.pki.early_renewal_hours,
        # a common name is at most 64 characters (RFC 5280); clients check the SANs, never the CN
        "server_common_name": f"{name}.{namespace}.svc" if len(f"{name}.{namespace}.svc") <= 64 else name,
        "server_dns_names": server_names(estate) + (["localhost"] if estate.pki.loopback_sans else []),
        "server_ip_addresses": list(estate.pki.extra_ip_addresses) + (["127.0.0.1"] if estate.pki.loopback_sans else []),
        "client_names": cert_users + internal_users,
        "client_rotations": {u.name: u.rotation for u in estate.users if u.rotation and u.auth != "password"},
        "existing_ca_cert_pem": secret("caCertPem") if estate.pki.existing_ca else None,
        "existing_ca_key_pem": secret("caKeyPem") if estate.pki.existing_ca else None,
    })

    users: list[BrokerUser] = [{
        "name": u.name, "role": u.role, "zone": u.zone, "groups": u.groups,
        "topics": [r.model_dump() for r in u.topics],
        "password_login": u.auth in ("password", "both"),
        "password": secret(f"{SECRET_KEY_PREFIX}{u.name}"),
        "rotation": u.rotation,
    } for u in estate.users]
    if estate.clustered:
        users.append({"name": bridge_user, "role": "bridge", "password_login": False})
    for bridge, identity in zip(estate.bridges, cloud_identities):
        users.append({"name": identity, "role": "service", "password_login": False,
                      "topics": estate_rules(bridge_mappings(bridge))})

    limits = broker_cfg.limits
    ha = broker_cfg.ha
    nfs = broker_cfg.persistence.nfs
    storage = None
    if nfs is not None and broker_cfg.persistence.enabled:
        storage = NfsStorage(f"{name}-storage", {
            "server": nfs.server, "path": nfs.path, "version": nfs.version, "namespace": namespace,
            "statefulset": name, "count": estate.max_replicas,
            "size": broker_cfg.persistence.size or preset.storage})
    bucket = backup_bucket(estate)
    broker = MosquittoBroker(name, {
        "namespace": namespace,
        "create_namespace": estate.namespace.create,
        "image": broker_cfg.image,
        "replicas": estate.replicas,
        "resources": {
            "cpu_request": broker_cfg.resources.cpu_request or preset.cpu_request,
            "cpu_limit": broker_cfg.resources.cpu_limit or preset.cpu_limit,
            "memory_request": broker_cfg.resources.memory_request or preset.memory_request,
            "memory_limit": broker_cfg.resources.memory_limit or preset.memory_limit,
        },
        "storage_size": broker_cfg.persistence.size or preset.storage,
        "storage_class": broker_cfg.persistence.storage_class,
        "settings": {
            "listeners": [lst.model_dump() for lst in broker_cfg.listeners],
            "allow_anonymous": broker_cfg.auth.allow_anonymous,
            "persistence": broker_cfg.persistence.enabled,
            "autosave_interval": broker_cfg.persistence.autosave_interval,
            "session_expiry": broker_cfg.persistence.session_expiry,
            "max_connections": limits.max_connections or preset.max_connections,
            "max_queued_messages": limits.max_queued_messages,
            "max_inflight_messages": limits.max_inflight_messages,
            "max_packet_size": limits.max_packet_size,
            "max_keepalive": limits.max_keepalive,
            "max_queued_bytes": limits.max_queued_bytes or 0,
            "internal_port": ha.internal_port,
        },
        "max_replicas": estate.max_replicas,
        "autoscaling": {"min_replicas": estate.replicas, "max_replicas": estate.max_replicas,
                        "target_cpu_percent": ha.target_cpu_percent},
        "bridge_certificate": pki.clients.get(bridge_user),
        "internal_clients": ([selector(FRONTEND_APP, frontend_name)] if estate.frontend_enabled else [])
        + [selector(CLOUD_BRIDGE_APP, identity) for identity in cloud_identities],
        "storage_volume_prefix": name if storage else None,
        "internal_listener": estate.internal_listener,
        "skip_await": broker_cfg.service.skip_await and not estate.frontend_enabled,
        "exporter": exporter_sidecar(estate),
        "backup": broker_backup(estate),
        "password_iterations": broker_cfg.auth.password_iterations,
        "users": users,
        "acl_patterns": [r.model_dump() for r in broker_cfg.acl.patterns],
        "factory_zones": broker_cfg.acl.factory.zones if broker_cfg.acl.factory else None,
        "sparkplug": broker_cfg.acl.sparkplug is not None,
        "ca_cert_pem": pki.ca_cert_pem,
        "server_cert_pem": pki.server_cert_pem,
        "server_key_pem": pki.server_key_pem,
        "client_certificates": {user: cert for user, cert in pki.clients.items() if user not in internal_users},
        # with a frontend, only the frontend is exposed
        "service_type": "ClusterIP" if estate.frontend_enabled else broker_cfg.service.type,
        "load_balancer_source_ranges": [] if estate.frontend_enabled else broker_cfg.service.load_balancer_source_ranges,
    }, opts=pulumi.ResourceOptions(depends_on=[r for r in (storage, bucket) if r] or None))

    frontend = None
    if estate.frontend_enabled:
        fe = estate.frontend
        frontend = HaProxyFrontend(frontend_name, {
            "namespace": namespace,
            "image": fe.image,
            "replicas": fe.replicas,
            "ports": frontend_ports(estate),
            "broker_servers": [names.pod_dns_name(name, namespace, i) for i in range(estate.max_replicas)],
            "broker_selector": selector(BROKER_APP, name),
            "internal_port": ha.internal_port,
            "check_name": names.pod_dns_name(name, namespace, 0),
            "check_certificate": pki.clients[check_user],
            "ca_cert_pem": pki.ca_cert_pem,
            "topology": ha.topology,
            # idle MQTT connections send PINGREQ every keepalive; give them 1.5x before HAProxy cuts them
            "timeout_seconds": math.ceil(limits.max_keepalive * 1.5),
            # a client id keeps its broker as long as that broker keeps its session (not 30 min after connecting)
            "stick_expiry_seconds": duration_seconds(broker_cfg.persistence.session_expiry),
            "maxconn": fe.maxconn,
            "server_maxconn": limits.max_connections or preset.max_connections,
            "flood": flood_limits(estate),
            "service_type": fe.service.type,
            "load_balancer_source_ranges": fe.service.load_balancer_source_ranges,
            "resources": {k: v for k, v in fe.resources.model_dump().items() if v},
            "skip_await": fe.service.skip_await,
        }, opts=pulumi.ResourceOptions(depends_on=[broker.namespace_resource] if broker.namespace_resource else None))
    bridges = {bridge.name: cloud_bridge(estate, bridge, pki, broker, secret) for bridge in estate.bridges}
    monitoring = monitoring_stack(estate, broker, frontend) if estate.monitoring_enabled else None
    return EstateResources(pki, broker, frontend, storage, bridges, monitoring, bucket)


def _backup(estate: Estate):
    backup = estate.broker.persistence.backup
    return backup if backup is not None and backup.enabled and estate.broker.persistence.enabled else None


def backup_bucket(estate: Estate) -> Optional[BackupBucket]:
    """The backups' bucket when the stack has the program provision it (bucket.provision)."""
    backup = _backup(estate)
    if backup is None or not backup.bucket.provision:
        return None
    lock = backup.retention.lock
    return BackupBucket(f"{estate.broker.name}-backup", {
        "bucket": backup.bucket.name, "region": backup.bucket.region, "prefix": backup_prefix(estate),
        "retention_days": backup.retention.days, "lock": lock.model_dump() if lock else None})


def backup_prefix(estate: Estate) -> str:
    backup = estate.broker.persistence.backup
    return backup.bucket.prefix or default_prefix(estate.namespace.name)


def broker_backup(estate: Estate) -> Optional[dict]:
    """MosquittoBroker's `backup` argument: the stack's backup section in the component's shape."""
    backup = _backup(estate)
    if backup is None:
        return None
    bucket, credentials, lock = backup.bucket, backup.credentials, backup.retention.lock
    store: dict = {"name": bucket.name, "path_style": bucket.path_style, "prefix": backup_prefix(estate)}
    if bucket.region:
        store["region"] = bucket.region
    if bucket.endpoint:
        store["endpoint"] = bucket.endpoint
    return {
        "image": backup.image,
        "bucket": store,
        "interval_seconds": schedule_seconds(backup.schedule),
        "lock": lock.model_dump() if lock else None,
        # only the source that is given: the component refuses keys of a source that is not there
        "credentials": ({"secret_name": credentials.secret_name, "access_key_id_key": credentials.access_key_id_key,
                         "secret_access_key_key": credentials.secret_access_key_key} if credentials.secret_name else
                        {"service_account_annotations": dict(credentials.service_account_annotations)}),
        "restore": backup.restore.model_dump(),
    }


def exporter_sidecar(estate: Estate) -> Optional[dict]:
    return {"image": estate.monitoring.exporter_image} if estate.monitoring_enabled else None


def monitoring_stack(estate: Estate, broker: MosquittoBroker, frontend: Optional[HaProxyFrontend]) -> MonitoringStack:
    """PodMonitors, alert rules and dashboards for the estate, with thresholds from its configuration."""
    name, monitoring = estate.broker.name, estate.monitoring
    max_connections = estate.broker.limits.max_connections or estate.preset.max_connections
    args: dict = {
        "namespace": estate.namespace.name,
        "broker": name,
        "broker_replicas": estate.replicas,
        # mosquitto's max_connections is per listener (components/mosquitto_conf.py)
        "connection_capacity": max_connections * len(estate.broker.listeners),
        "max_queued_messages": estate.broker.limits.max_queued_messages,
        "leaf_validity_hours": estate.pki.leaf_validity_hours,
        "early_renewal_hours": estate.pki.early_renewal_hours,
        "bridges": [{"name": b.name, "workload": names.cloud_bridge_name(name, b.name), "provider": b.provider,
                     "max_queued_messages": b.buffer.max_queued_messages,
                     "sas_validity_seconds": duration_seconds(b.azure.sas_validity)
                     if b.azure and b.azure.auth == "sas" else None} for b in estate.bridges],
        "selector_labels": dict(monitoring.selector_labels),
        "prometheus_namespace": monitoring.prometheus_namespace,
        "scrape_interval": monitoring.scrape_interval,
        "alert_after": monitoring.alert_after,
        "dashboards": monitoring.dashboards,
        "dashboards_namespace": monitoring.dashboards_namespace,
        "runbook_url": monitoring.runbook_url,
    }
    backup = _backup(estate)
    if backup is not None:
        args["backup_interval_seconds"] = schedule_seconds(backup.schedule)
    if frontend is not None:
        args["frontend"] = {"name": frontend.service_name, "replicas": estate.frontend.replicas,
                            "backends": [port["name"] for port in frontend_ports(estate)],
                            "stats_secret": frontend.stats_secret_name}
    return MonitoringStack(f"{name}-monitoring", args,
                           opts=pulumi.ResourceOptions(depends_on=[broker.namespace_resource]
                                                       if broker.namespace_resource else None))


def bridge_mappings(bridge: Bridge) -> list[dict]:
    """The bridge's mappings as component arguments, remote prefixes filled in (Azure's device topics)."""
    return with_remote_prefixes(bridge.provider, bridge.client_id, [m.model_dump() for m in bridge.mappings])


def cloud_bridge(estate: Estate, bridge: Bridge, pki: Pki, broker: MosquittoBroker, secret: SecretLookup) -> CloudBridge:
    """The bridge workload of one `bridges[]` entry: an mTLS client of the estate's internal listener."""
    name, namespace = estate.broker.name, estate.namespace.name
    identity = names.cloud_bridge_name(name, bridge.name)
    port = estate.broker.ha.internal_port
    args: dict = {
        "namespace": namespace,
        "provider": bridge.provider,
        "port": bridge.port,
        "client_id": bridge.client_id,
        "keepalive": bridge.keepalive,
        "mappings": bridge_mappings(bridge),
        # broker 0 only: the estate keeps one session for the bridge there. A list of brokers would leave a session on
        # each one the bridge ever failed over to, fed by the star for days and replayed (stale, duplicated) on the
        # next failover; with one address a message published while broker 0 is down does not reach the cloud.
        "estate_addresses": [f"{names.pod_dns_name(name, namespace, 0)}:{port}"],
        "estate_selector": selector(BROKER_APP, name),
        "estate_port": port,
        "ca_cert_pem": pki.ca_cert_pem,
        "estate_certificate": pki.clients[identity],
        "buffer": {"max_queued_messages": bridge.buffer.max_queued_messages,
                   "max_queued_bytes": bridge.buffer.max_queued_bytes,
                   "max_packet_size": estate.broker.limits.max_packet_size},
        "storage_size": bridge.buffer.storage,
        "resources": {"memory_limit": bridge.buffer.memory_limit},
        "image": estate.broker.image,
        "exporter": exporter_sidecar(estate),
    }
    if bridge.buffer.storage_class:
        args["storage_class"] = bridge.buffer.storage_class
    if bridge.endpoint:
        args["endpoint"] = bridge.endpoint
    if bridge.provider == "aws-iot-core":
        args["aws"] = {"provision": bridge.aws.provision if bridge.aws else True}
    elif bridge.provider == "azure-iot-hub":
        azure = bridge.azure
        args["azure"] = {"hub_name": azure.hub_name, "auth": azure.auth,
                         "sas_validity_seconds": duration_seconds(azure.sas_validity)}
        if azure.auth == "sas":
            args["azure"]["device_key"] = secret(f"{BRIDGE_KEY_PREFIX}{bridge.name}")
    else:
        remote = bridge.mqtt or MqttDefaults
        args["mqtt"] = {"username": remote.username, "tls": remote.tls, "protocol_version": remote.protocol_version,
                        "trust": remote.trust,
                        "password": secret(f"{BRIDGE_PASSWORD_PREFIX}{bridge.name}") if remote.username else None}
    return CloudBridge(identity, args, opts=pulumi.ResourceOptions(depends_on=[broker]))
