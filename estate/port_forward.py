"""`estate connection --port-forward`: a connection file for a deployed estate reached through `kubectl port-forward`.

From the rendered stack (nothing is deployed or contacted): one `kubectl port-forward svc/<client Service>` for the
listeners clients use (the frontend's Service when there is one, else the brokers'), and one
`kubectl port-forward pod/<pod>` per broker, cloud-bridge and frontend pod for `estate health` (each broker's own
listeners and its loopback health listener, 1880; each frontend's listeners and its stats port, 8404). Local ports
are handed out in order from `first_port`. The connection file names its other files by relative paths (the CA, the
credentials, client certificates, the frontend's stats password), all written beside it.

How a port forward arrives in the pod: the kubelet's runtime dials localhost:<port> inside the pod's network
namespace (containerd pkg/cri/server/sandbox_portforward_linux.go, `net.Dial("tcp4", "localhost:%d")`, then tcp6),
so a listener bound to 127.0.0.1 in the pod is reachable, and the connection comes from 127.0.0.1: a frontend
listener whose source ranges leave out 127.0.0.1 refuses it (the smoke suite expects exactly that), the brokers'
NetworkPolicies do not apply, and the frontend's per-source limits count every forwarded connection as one source.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Optional

from ..components.client_bundles import bundle_users, cert_key, key_key
from ..components.cloud_bridge import APP as BRIDGE_APP
from ..components.haproxy_cfg import STATS_PORT
from ..components.haproxy_pod import STATS_DIR
from ..components.mosquitto_conf import parse_listeners
from .haproxy_files import frontend_ports
from .local import (_broker_conf_arg, _container, _expand, _frontend_sources, _pod_dns, _replicas,
                    _scheme, _service_dns, local_workloads)
from .manifests import object_data, object_index, pod_files

LOOPBACK = ("127.0.0.1", "localhost")


@dataclass
class Plan:
    connection: dict
    files: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """path relative to the connection file's directory -> (content, secret)"""
    commands: list[str] = field(default_factory=list)
    secrets: list[tuple[str, str]] = field(default_factory=list)
    """(file, command that writes the deployed value): what to replace after a `pulumi up` deployment."""


class _Ports:
    def __init__(self, first: int):
        self.next = first

    def take(self) -> int:
        port, self.next = self.next, self.next + 1
        if port > 65535:
            raise ValueError("--first-port leaves too few ports below 65536 for every forward")
        return port


def _listener(name: str, host: str, port: int, pod_port: int, protocol: str, tls: bool, mtls: bool,
              anonymous: bool, server_name: str, source_ranges=()) -> dict:
    return {"name": name, "url": f"{_scheme(protocol, tls)}://{host}:{port}", "host": host, "port": port,
            "pod_port": pod_port, "transport": "websockets" if protocol == "websockets" else "tcp", "tls": tls,
            "mtls": mtls, "allow_anonymous": anonymous, "source_ranges": list(source_ranges),
            "server_name": server_name}


def _client_service(workload: dict, objects: list[dict]) -> Optional[dict]:
    """The Service clients use for a workload's pods (not its headless one)."""
    namespace = workload["metadata"].get("namespace")
    labels = workload["spec"]["template"]["metadata"].get("labels") or {}
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] == "Service" and spec.get("clusterIP") != "None" and spec.get("selector") \
                and obj["metadata"].get("namespace") == namespace \
                and all(labels.get(k) == v for k, v in spec["selector"].items()):
            return obj
    return None


def _command(namespace: str, target: str, pairs: list[tuple[int, int]], host: str) -> str:
    address = [] if host in LOOPBACK else ["--address", host]
    return " ".join(shlex.quote(part) for part in
                    ["kubectl", "-n", namespace, "port-forward", *address, target,
                     *[f"{local}:{remote}" for local, remote in pairs]]) + " &"


def plan(registry, objects: list[dict], stack: str, host: str = "127.0.0.1", first_port: int = 20000) -> Plan:
    index = object_index(objects)
    ports = _Ports(first_port)
    out = Plan(connection={})
    brokers, bridges, frontends, broker_listeners = [], [], [], {}
    found = []
    for workload in local_workloads(objects):
        files = pod_files(index, workload)
        is_frontend = any(path.endswith("/haproxy.cfg") for path in files)
        is_bridge = (workload["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == BRIDGE_APP
        found.append((workload, files, "frontend" if is_frontend else "bridge" if is_bridge else "broker"))
    # clients use the frontend when there is one, else the (first) brokers: its Service's forward comes first
    entry_workload = next((w for w, _, kind in found if kind == "frontend"),
                          next((w for w, _, kind in found if kind == "broker"), None))
    service = _client_service(entry_workload, objects) if entry_workload is not None else None
    service_ports = [(port.get("name", ""), port["port"], ports.take()) for port in service["spec"]["ports"]] \
        if service is not None else []
    for workload, files, kind in (item for item in found if item[2] != "frontend"):
        namespace = workload["metadata"].get("namespace", "default")
        for ordinal in range(_replicas(workload, objects)):
            pod = f"{workload['metadata']['name']}-{ordinal}"
            conf = files[_expand(_broker_conf_arg(_container(workload)), {"POD_NAME": pod})][0]
            entry, pairs = {"pod": pod, "listeners": []}, []
            for lst in parse_listeners(conf):
                local = ports.take()
                pairs.append((local, lst.port))
                if lst.bind == "127.0.0.1":
                    entry["health_port"], entry["health_host"] = local, host
                    continue
                described = _listener(lst.name, host, local, lst.port, lst.protocol, lst.tls, lst.mtls,
                                      lst.settings.get("allow_anonymous") == "true", _pod_dns(workload, ordinal))
                entry["listeners"].append(described)
                broker_listeners.setdefault(lst.port, described)
            out.commands.append(_command(namespace, f"pod/{pod}", pairs, host))
            (brokers if kind == "broker" else bridges).append(entry)
    frontend_listeners = {}
    for workload, files, _ in (item for item in found if item[2] == "frontend"):
        namespace = workload["metadata"].get("namespace", "default")
        cfg = next(content for path, (content, _) in files.items() if path.endswith("/haproxy.cfg"))
        sources = _frontend_sources(cfg)
        name = workload["metadata"]["name"]
        password = files.get(f"{STATS_DIR}/password", ("", True))[0]
        username = files.get(f"{STATS_DIR}/username", ("stats", True))[0].strip() or "stats"
        password_file = f"{name}-stats.password"
        out.files[password_file] = (password, True)
        stats_secret = _stats_secret(workload)
        if stats_secret:
            out.secrets.append((password_file, f"kubectl -n {namespace} get secret {stats_secret} "
                                               "-o jsonpath='{.data.password}' | base64 -d"))
        for ordinal in range(_replicas(workload, objects)):
            pod = f"{name}-{ordinal}"
            entry, pairs = {"pod": pod, "listeners": []}, []
            for port_name, (port, tls, broker_port) in frontend_ports(cfg).items():
                local = ports.take()
                pairs.append((local, port))
                behind = broker_listeners.get(broker_port, {})
                protocol = "websockets" if behind.get("transport") == "websockets" else "mqtt"
                described = _listener(port_name, host, local, port, protocol, tls, behind.get("mtls", False),
                                      behind.get("allow_anonymous", False), _service_dns(workload, objects),
                                      sources.get(port_name, []))
                entry["listeners"].append(described)
                frontend_listeners.setdefault(port_name, described)
            stats = ports.take()
            pairs.append((stats, STATS_PORT))
            entry.update({"stats_url": f"http://{host}:{stats}/stats", "stats_username": username,
                          "stats_password_file": password_file})
            out.commands.append(_command(namespace, f"pod/{pod}", pairs, host))
            frontends.append(entry)
    entry_listeners = []
    if service is not None:
        by_name = frontend_listeners if frontends else {lst["name"]: lst for b in brokers[:1] for lst in b["listeners"]}
        pairs = []
        for port_name, remote, local in service_ports:
            known = by_name.get(port_name)
            if known is None:
                continue
            pairs.append((local, remote))
            entry_listeners.append({**known, "port": local, "url": f"{known['url'].split('://')[0]}://{host}:{local}",
                                    "server_name": _service_dns(entry_workload, objects)})
        namespace = service["metadata"].get("namespace", "default")
        out.commands.insert(0, _command(namespace, f"svc/{service['metadata']['name']}", pairs, host))
    out.connection = _connection(registry, objects, stack, out, entry_listeners, brokers, bridges, frontends,
                                 service)
    return out


def _stats_secret(workload: dict) -> Optional[str]:
    for volume in workload["spec"]["template"]["spec"].get("volumes", []):
        if volume.get("name") == "stats-auth":
            return (volume.get("secret") or {}).get("secretName")
    return None


def _connection(registry, objects, stack, out: Plan, listeners, brokers, bridges, frontends, service) -> dict:
    outputs = registry.stack_outputs
    out.files["ca.crt"] = (outputs.get("caCertPem", ""), False)
    out.files["credentials.json"] = (json.dumps(outputs.get("credentials") or {}, indent=2, sort_keys=True) + "\n",
                                     True)
    out.secrets[:0] = [("ca.crt", f"pulumi stack output caCertPem -s {stack}"),
                       ("credentials.json", f"pulumi stack output credentials -s {stack} --show-secrets")]
    # the admins' client certificates only (an mTLS login for check and health), from the grouped client-certificate
    # Secrets (components/client_bundles.py): a device's key has no business on an operator's disk
    admins = {u["name"] for u in outputs.get("users") or [] if u.get("role") == "admin"}
    certs = {}
    for obj in objects:
        users = [user for user in bundle_users(obj) if user in admins]
        data = object_data(obj) if users else {}
        for user in users:
            cert, key = f"clients/{user}.crt", f"clients/{user}.key"
            out.files[cert] = (data[cert_key(user)], False)
            out.files[key] = (data[key_key(user)], True)
            certs[user] = {"cert": cert, "key": key}
            where = f"kubectl -n {obj['metadata'].get('namespace', 'default')} get secret {obj['metadata']['name']}"
            for name, item in ((cert, cert_key(user)), (key, key_key(user))):
                out.secrets.append((name, f"{where} -o jsonpath='{{.data.{item.replace('.', chr(92) + '.')}}}' "
                                          "| base64 -d"))
    return {
        "stack": stack,
        "ca_file": "ca.crt",
        "credentials_file": "credentials.json",
        "users": outputs.get("users") or [],
        "client_certificates": dict(sorted(certs.items())),
        "brokers": brokers,
        "frontends": frontends,
        "bridges": bridges,
        "entry": f"svc/{service['metadata']['name']}" if service is not None else None,
        "listeners": listeners,
    }
