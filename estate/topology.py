"""A picture of the estate: a Graphviz graph of the rendered Kubernetes objects, drawn as SVG and PNG by `dot`.

Why from the objects and not from the stack config: the picture then shows what `kubectl apply` would create (the
broker pods and the bridges their mosquitto.conf files configure, the frontend's backends as its haproxy.cfg says,
the cloud endpoints, the Prometheus that the PodMonitors feed, the storage the claims get, the Services clients
enter by), whatever program produced them. Nothing is imported from the components: labels
(app.kubernetes.io/*), kinds and specs are read, and the configuration files are parsed for their `listener`,
`connection` and `address` lines only. Secrets are read for one thing, the `address` line of a cloud bridge's
included `*.conf` (the cloud endpoint, also a public stack output), never for a credential.

Iteration is sorted everywhere and `dot` embeds nothing variable, so the same objects give the same bytes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from .manifests import object_data
from .output import write_file

DOT_TIMEOUT_SECONDS = 60
"""Per format; a few hundred milliseconds are normal for an estate of a few dozen pods."""
FORMATS = ("svg", "png")
INSTALL_HINT = "apt-get install graphviz"

CLOUD_PROVIDERS = {"aws-iot-core": "AWS IoT Core", "azure-iot-hub": "Azure IoT Hub", "mqtt": "MQTT broker"}
PROVIDER_LABEL = "mqtt-estate.io/cloud-provider"
DASHBOARD_LABEL = "grafana_dashboard"
ROLE_COLOURS = {"broker": "#dbe9f6", "frontend": "#e4f4dc", "cloud-bridge": "#fdebd3"}
_ADDRESS = re.compile(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}")


# --- DOT text ----------------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(*lines: str, left: bool = False) -> str:
    """A multi-line label, each line centred (DOT's `\\n` escape) or left-justified (`\\l`)."""
    end = "\\l" if left else "\\n"
    shown = end.join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines if line)
    return shown + end if left else shown


def _value(key: str, value) -> str:
    """An attribute value; labels arrive escaped already (_label)."""
    return f'"{value}"' if key in ("label", "xlabel", "taillabel", "headlabel") else _quote(str(value))


def _attrs(attrs: dict) -> str:
    parts = [f"{key}={_value(key, value)}" for key, value in attrs.items() if value is not None]
    return f" [{', '.join(parts)}]" if parts else ""


@dataclass
class _Cluster:
    name: str
    attrs: dict
    nodes: list = field(default_factory=list)
    children: list = field(default_factory=list)
    same_rank: list = field(default_factory=list)


class Graph:
    """Clusters, nodes and edges in the order they were added (callers add them in sorted order)."""

    def __init__(self):
        self.root = _Cluster("", {})
        self.clusters: dict[tuple, _Cluster] = {(): self.root}
        self.nodes: set[str] = set()
        self.edges: list[tuple[str, str, dict]] = []

    def cluster(self, path: tuple, label: str, **attrs) -> str:
        """The cluster at `path` (its parent must exist); returns its DOT name, for lhead/ltail."""
        if path not in self.clusters:
            name = "cluster_" + "/".join(path)
            cluster = _Cluster(name, {"label": label, **attrs})
            self.clusters[path[:-1]].children.append(cluster)
            self.clusters[path] = cluster
        return self.clusters[path].name

    def node(self, path: tuple, node_id: str, label: str, **attrs) -> str:
        if node_id not in self.nodes:
            self.nodes.add(node_id)
            self.clusters[path].nodes.append((node_id, {"label": label, **attrs}))
        return node_id

    def same_rank(self, path: tuple, nodes: list[str]) -> None:
        """Draw `nodes` (of the cluster at `path`) side by side, in the order given."""
        self.clusters[path].same_rank.append(list(nodes))

    def edge(self, tail: str, head: str, **attrs) -> None:
        self.edges.append((tail, head, attrs))

    def text(self) -> str:
        lines = ["// The estate's topology: `estate render` draws it from the rendered objects (estate/topology.py).",
                 "digraph estate {",
                 '  graph [rankdir="LR", compound="true", newrank="true", nodesep="0.3", ranksep="0.9", '
                 'fontname="Helvetica", fontsize="12", labelloc="t", labeljust="l"];',
                 '  node [shape="box", style="rounded,filled", fillcolor="white", fontname="Helvetica", '
                 'fontsize="10"];',
                 '  edge [fontname="Helvetica", fontsize="9", color="#555555", fontcolor="#333333"];']

        def emit(cluster: _Cluster, indent: str) -> None:
            for node_id, attrs in cluster.nodes:
                lines.append(f"{indent}{_quote(node_id)}{_attrs(attrs)};")
            for group in cluster.same_rank:
                if len(group) > 1:
                    # an edge inside a rank orders it; left to right, the rank runs bottom to top
                    chain = " -> ".join(_quote(node_id) for node_id in reversed(group))
                    lines.append(f'{indent}{{rank="same"; {chain} [style="invis"];}}')
            for child in cluster.children:
                lines.append(f"{indent}subgraph {_quote(child.name)} {{")
                lines.extend(f"{indent}  {key}={_value(key, value)};"
                             for key, value in child.attrs.items() if value is not None)
                emit(child, indent + "  ")
                lines.append(f"{indent}}}")

        emit(self.root, "  ")
        for tail, head, attrs in self.edges:
            lines.append(f"  {_quote(tail)} -> {_quote(head)}{_attrs(attrs)};")
        lines.append("}")
        return "\n".join(lines) + "\n"


# --- reading the objects -----------------------------------------------------------------------------------


def _meta(obj: dict) -> tuple[str, str]:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def _labels(obj: dict) -> dict:
    return obj["metadata"].get("labels") or {}


def _sorted(objects: Iterable[dict], *kinds: str) -> list[dict]:
    return sorted((o for o in objects if o.get("kind") in kinds), key=lambda o: (o["kind"], *_meta(o)))


def _selects(selector: Optional[dict], labels: dict) -> bool:
    """A label selector (matchLabels and matchExpressions, or a Service's plain map) against labels."""
    if not selector:
        return False
    plain = {k: v for k, v in selector.items() if k not in ("matchLabels", "matchExpressions")}
    wanted = {**plain, **(selector.get("matchLabels") or {})}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, values = labels.get(expr["key"]), expr.get("values") or []
        if {"In": value in values, "NotIn": value not in values, "Exists": expr["key"] in labels,
                "DoesNotExist": expr["key"] not in labels}.get(expr["operator"]) is False:
            return False
    return bool(wanted or selector.get("matchExpressions"))


def _text_data(obj: dict) -> dict[str, str]:
    """A ConfigMap's files (a Secret's are read for their bridges' addresses only: _Estate.included_bridges)."""
    return {k: v for k, v in (obj.get("data") or {}).items() if isinstance(v, str)}


def _conf_lines(text: str) -> list[tuple[str, list[str]]]:
    rows = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, *values = line.split()
            rows.append((key, values))
    return rows


@dataclass
class Bridge:
    connection: str
    addresses: list[str]
    mtls: bool
    tls: bool


def mosquitto_listeners(text: str) -> dict[int, str]:
    """port -> protocol (`mqtt`, `mqtt+TLS`, `mqtt+mTLS`, `websockets+TLS`) of every listener not bound to the
    loopback (the health listener)."""
    listeners: dict[int, dict] = {}
    current: Optional[dict] = None
    for key, values in _conf_lines(text):
        if key == "listener" and values:
            current = None
            if not values[0].isdigit() or (len(values) > 1 and values[1].startswith("127.")):
                continue
            current = listeners.setdefault(int(values[0]), {"protocol": "mqtt", "tls": False, "mtls": False})
        elif current is not None and key == "protocol" and values:
            current["protocol"] = values[0]
        elif current is not None and key in ("cafile", "certfile"):
            current["tls"] = True
        elif current is not None and key == "require_certificate" and values:
            current["mtls"] = values[0] == "true"
    return {port: spec["protocol"] + ("+mTLS" if spec["mtls"] else "+TLS" if spec["tls"] else "")
            for port, spec in sorted(listeners.items())}


def mosquitto_bridges(text: str) -> list[Bridge]:
    """Every `connection` block: its addresses in order (the first alive is used, `round_robin false`)."""
    bridges: list[Bridge] = []
    for key, values in _conf_lines(text):
        if key == "connection" and values:
            bridges.append(Bridge(values[0], [], False, False))
        elif bridges and key in ("address", "addresses"):
            bridges[-1].addresses += [v for v in values if _ADDRESS.fullmatch(v)]
        elif bridges and key == "bridge_certfile":
            bridges[-1].mtls = True
        elif bridges and key in ("bridge_cafile", "bridge_capath"):
            bridges[-1].tls = True
    return bridges


@dataclass
class HaproxyRoute:
    frontend: str
    port: int
    backend: str
    servers: list[str]
    balance: str


def haproxy_routes(cfg: str) -> tuple[list[HaproxyRoute], list[str], bool]:
    """(client routes, the `health` backend's servers, whether those checks use a client certificate)."""
    sections: dict[tuple[str, str], list[tuple[str, list[str]]]] = {}
    current = None
    for key, values in _conf_lines(cfg):
        if key in ("frontend", "backend", "listen", "global", "defaults", "peers", "userlist", "resolvers"):
            current = (key, values[0] if values else "")
            sections[current] = []
        elif current is not None:
            sections[current].append((key, values))

    def servers(name: str) -> list[str]:
        return [values[1] for key, values in sections.get(("backend", name), ())
                if key == "server" and len(values) > 1 and _ADDRESS.fullmatch(values[1])]

    routes = []
    for (kind, name), rows in sections.items():
        if kind != "frontend":
            continue
        binds = [int(v[0].rsplit(":", 1)[1]) for k, v in rows
                 if k == "bind" and v and ":" in v[0] and v[0].rsplit(":", 1)[1].isdigit()]
        backend = next((v[0] for k, v in rows if k == "default_backend" and v), None)
        if backend is None or not binds:
            continue
        balance = next((v[0] for k, v in sections.get(("backend", backend), ()) if k == "balance" and v), "")
        routes.extend(HaproxyRoute(name, port, backend, servers(backend), balance) for port in binds)
    check_rows = sections.get(("backend", "health"), ())
    mtls = any(k == "default-server" and "crt" in v for k, v in check_rows)
    return sorted(routes, key=lambda r: (r.port, r.frontend)), servers("health"), mtls


# --- the estate as nodes and edges -------------------------------------------------------------------------


@dataclass
class Workload:
    obj: dict
    namespace: str
    name: str
    role: str
    cluster: str
    path: tuple
    pods: list[str]
    listeners: dict[int, str] = field(default_factory=dict)
    confs: dict[str, str] = field(default_factory=dict)
    """pod node -> the mosquitto.conf it reads (ConfigMap files only)."""


def _pod_spec(obj: dict) -> dict:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def _config_maps(obj: dict, index: dict) -> list[dict]:
    namespace = _meta(obj)[0]
    refs = sorted(v["configMap"]["name"] for v in _pod_spec(obj).get("volumes") or [] if "configMap" in v)
    return [index[("ConfigMap", namespace, ref)] for ref in refs if ("ConfigMap", namespace, ref) in index]


def _container_ports(obj: dict) -> list[tuple[str, int]]:
    return [(p.get("name") or "", p["containerPort"]) for c in _pod_spec(obj).get("containers") or []
            for p in c.get("ports") or [] if "containerPort" in p]


def _images(obj: dict) -> list[str]:
    return sorted({c.get("image", "") for c in _pod_spec(obj).get("containers") or []} - {""})


class _Estate:
    def __init__(self, objects: list[dict]):
        self.objects = sorted(objects, key=lambda o: (o["kind"], *_meta(o)))
        self.index = {(o["kind"], *_meta(o)): o for o in self.objects}
        self.graph = Graph()
        self.workloads: list[Workload] = []
        self.hosts: dict[str, str] = {}
        """A pod's DNS names (`<pod>.<service>.<ns>.svc.cluster.local` and shorter) -> its node."""
        self.pod_workload: dict[str, Workload] = {}

    # clusters ---------------------------------------------------------------------------------------------

    def namespace_path(self, namespace: str) -> tuple:
        path = (f"namespace/{namespace}",)
        self.graph.cluster(path, f"namespace {namespace}", style="dashed", color="#888888")
        return path

    def external_path(self, what: str) -> tuple:
        self.graph.cluster((what,), f"outside the cluster: {what}", style="dashed", color="#bbbbbb")
        return (what,)

    # pieces -----------------------------------------------------------------------------------------------

    def add_workloads(self) -> None:
        autoscalers = {(_meta(h)[0], (h.get("spec") or {}).get("scaleTargetRef", {}).get("kind"),
                        (h.get("spec") or {}).get("scaleTargetRef", {}).get("name")): h
                       for h in _sorted(self.objects, "HorizontalPodAutoscaler")}
        for obj in _sorted(self.objects, "StatefulSet", "Deployment"):
            namespace, name = _meta(obj)
            labels = _labels(obj)
            role = labels.get("app.kubernetes.io/component", "workload")
            replicas = (obj.get("spec") or {}).get("replicas", 1)
            hpa = autoscalers.get((namespace, obj["kind"], name))
            confs = {k: v for cm in _config_maps(obj, self.index) for k, v in sorted(_text_data(cm).items())
                     if k.endswith(".conf")}
            pods: list[tuple[str, bool]] = []
            """(pod name, whether it runs only once scaled up)"""
            if obj["kind"] == "StatefulSet":
                # the pods that run, and those a scale-up adds: the autoscaler's maximum, or the per-pod conf files
                # a clustered broker gets up to its maximum (`<name>-<ordinal>.conf`)
                ordinals = set(range(replicas))
                ordinals |= {int(k[len(name) + 1:-5]) for k in confs
                             if re.fullmatch(re.escape(name) + r"-[0-9]+\.conf", k)}
                if hpa:
                    ordinals |= set(range(hpa["spec"].get("maxReplicas", 0)))
                pods = [(f"{name}-{i}", i >= replicas) for i in sorted(ordinals)]
            if not pods:
                pods = [(f"{name} (x{replicas})", False)]
            scaling = (f"{replicas} replicas, autoscaled {hpa['spec'].get('minReplicas', 1)}-"
                       f"{hpa['spec'].get('maxReplicas', '?')}" if hpa else
                       f"{replicas} replica{'s' * (replicas != 1)}")
            ports = ", ".join(f"{n} {p}" if n else str(p) for n, p in _container_ports(obj))
            head = {"broker": "MQTT brokers", "frontend": "HAProxy frontend",
                    "cloud-bridge": f"cloud bridge ({labels.get(PROVIDER_LABEL, '?')})"}.get(role, role)
            path = (*self.namespace_path(namespace), f"{obj['kind']}/{name}")
            cluster = self.graph.cluster(
                path, _label(f"{head}: {obj['kind']} {name}", scaling, ", ".join(_images(obj)),
                             f"ports: {ports}" if ports else "", left=True),
                style="rounded,filled", fillcolor=ROLE_COLOURS.get(role, "#eeeeee"), color="#666666")
            workload = Workload(obj, namespace, name, role, cluster, path, [])
            service = (obj.get("spec") or {}).get("serviceName")
            for pod, planned in pods:
                node = f"pod/{namespace}/{pod}"
                self.graph.node(path, node, _label(pod, "(when scaled up)" if planned else ""),
                                style="rounded,dashed,filled" if planned else None)
                workload.pods.append(node)
                self.pod_workload[node] = workload
                conf = confs.get(f"{pod}.conf") or confs.get("mosquitto.conf")
                if conf is not None:
                    workload.confs[node] = conf
                if service:
                    for host in (f"{pod}.{service}.{namespace}.svc.cluster.local", f"{pod}.{service}.{namespace}.svc",
                                 f"{pod}.{service}.{namespace}", f"{pod}.{service}"):
                        self.hosts.setdefault(host, node)
            for conf in workload.confs.values():
                workload.listeners.update(mosquitto_listeners(conf))
            self.workloads.append(workload)

    def add_storage(self) -> None:
        volumes: dict[str, dict[str, dict]] = {}
        for pv in _sorted(self.objects, "PersistentVolume"):
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            volumes.setdefault(ref.get("namespace", ""), {})[ref.get("name", "")] = pv
        bound = set()
        for workload in self.workloads:
            for template in (workload.obj.get("spec") or {}).get("volumeClaimTemplates") or []:
                claim = (template.get("metadata") or {}).get("name", "data")
                spec = template.get("spec") or {}
                size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "?")
                storage_class = spec.get("storageClassName")
                shown_class = ("pre-provisioned volumes" if storage_class == "" else
                               f"class {storage_class}" if storage_class else "default storage class")
                node = f"pvc/{workload.namespace}/{workload.name}/{claim}"
                self.graph.node(
                    self.namespace_path(workload.namespace), node,
                    _label(f"PVC template {claim}", f"{size} {' '.join(spec.get('accessModes') or [])} per pod",
                           shown_class), shape="cylinder", fillcolor="#f3efe0")
                self.graph.edge(workload.pods[0], node, ltail=workload.cluster, label=_label(claim), style="dashed")
                for pod in workload.pods:
                    pv = volumes.get(workload.namespace, {}).get(f"{claim}-{pod.rsplit('/', 1)[1]}")
                    if pv is not None:
                        bound.add(_meta(pv))
                        self.graph.edge(node, self.persistent_volume(pv),
                                        label=_label(f"binds {claim}-{pod.rsplit('/', 1)[1]}"), style="dashed")
        for pv in _sorted(self.objects, "PersistentVolume"):
            if _meta(pv) not in bound:
                self.persistent_volume(pv)

    def persistent_volume(self, pv: dict) -> str:
        self.graph.cluster(("volumes",), "PersistentVolumes (cluster-scoped)", style="dashed", color="#888888")
        spec = pv.get("spec") or {}
        nfs = spec.get("nfs")
        where = f"NFS {nfs.get('server')}:{nfs.get('path')}" if nfs else ""
        return self.graph.node(
            ("volumes",), f"pv/{_meta(pv)[1]}",
            _label(f"PersistentVolume {_meta(pv)[1]}", f"{(spec.get('capacity') or {}).get('storage', '?')} "
                                                       f"{spec.get('persistentVolumeReclaimPolicy', '')}", where),
            shape="cylinder", fillcolor="#f3efe0")

    def add_services(self) -> None:
        clients = None
        for service in _sorted(self.objects, "Service"):
            namespace, name = _meta(service)
            spec = service.get("spec") or {}
            if spec.get("clusterIP") == "None":
                continue  # headless: names the pods (the bridges and backends use those names)
            targets = [w for w in self.workloads if w.namespace == namespace
                       and _selects(spec.get("selector"), _labels_of_template(w.obj))]
            protocols = {}
            for target in targets:
                protocols.update(self.port_protocols(target))
            ports = [f"{p.get('name', '')} :{p['port']}"
                     + (f" {protocols[p['port']]}" if p.get("port") in protocols else "")
                     for p in spec.get("ports") or []]
            kind = spec.get("type", "ClusterIP")
            node = self.graph.node(self.namespace_path(namespace), f"svc/{namespace}/{name}",
                                   _label(f"Service {name}", kind, *ports), shape="component",
                                   fillcolor="#fff7c2" if kind == "LoadBalancer" else "#fffbe6")
            for target in targets:
                self.graph.edge(node, target.pods[0], lhead=target.cluster,
                                label=_label(", ".join(str(p["port"]) for p in spec.get("ports") or [])))
            if clients is None:
                clients = self.graph.node(self.external_path("clients"), "clients", "MQTT clients", shape="oval",
                                          fillcolor="#eeeeee")
            ranges = spec.get("loadBalancerSourceRanges") or []
            how = ("load balancer" if kind == "LoadBalancer" else "node ports" if kind == "NodePort"
                   else "in-cluster")
            self.graph.edge(clients, node, label=_label(how, f"from {', '.join(ranges)}" if ranges else ""))

    def port_protocols(self, workload: Workload) -> dict[int, str]:
        """What each port of a workload carries: a broker's listeners, or for a frontend the listener its
        backend forwards to."""
        if workload.listeners:
            return dict(workload.listeners)
        shown = {}
        for route in self.frontend_routes(workload)[0]:
            target = self.host_node(route.servers[0]) if route.servers else None
            listeners = self.pod_workload[target].listeners if target in self.pod_workload else {}
            port = int(route.servers[0].rsplit(":", 1)[1]) if route.servers else None
            if port in listeners:
                shown[route.port] = listeners[port]
        return shown

    def host_node(self, address: str) -> Optional[str]:
        return self.hosts.get(address.rsplit(":", 1)[0])

    def frontend_routes(self, workload: Workload) -> tuple[list[HaproxyRoute], list[str], bool]:
        for cm in _config_maps(workload.obj, self.index):
            for key, text in sorted(_text_data(cm).items()):
                if key.endswith(".cfg"):
                    return haproxy_routes(text)
        return [], [], False

    def add_frontends(self) -> None:
        for workload in self.workloads:
            routes, health, mtls = self.frontend_routes(workload)
            by_target: dict[str, list[str]] = {}
            for route in routes:
                nodes = [self.host_node(s) for s in route.servers]
                targets = sorted({self.pod_workload[n].cluster for n in nodes if n in self.pod_workload})
                listeners = {}
                for target in targets:
                    listeners.update(next(w.listeners for w in self.workloads if w.cluster == target))
                ports = sorted({int(s.rsplit(":", 1)[1]) for s in route.servers})
                shown = "/".join(f":{p}" for p in ports)
                protocol = "/".join(sorted({listeners[p] for p in ports if p in listeners}))
                line = (f"{route.frontend} :{route.port} -> {shown} {protocol}".rstrip()
                        + (f", {route.balance}" if route.balance else "")
                        + f" ({len(route.servers)} servers)")
                for target in targets:
                    by_target.setdefault(target, []).append(line)
            if health:
                nodes = [self.host_node(s) for s in health]
                ports = sorted({int(s.rsplit(":", 1)[1]) for s in health})
                for target in sorted({self.pod_workload[n].cluster for n in nodes if n in self.pod_workload}):
                    by_target.setdefault(target, []).append(
                        f"health checks -> {'/'.join(f':{p}' for p in ports)} MQTT CONNECT"
                        + (" over mTLS" if mtls else ""))
            for target, lines in sorted(by_target.items()):
                head = next(w for w in self.workloads if w.cluster == target)
                self.graph.edge(workload.pods[0], head.pods[0], ltail=workload.cluster, lhead=target,
                                label=_label(*lines), color="#2e7d32", fontcolor="#1b5e20", penwidth="1.5")

    def add_bridges(self) -> None:
        """Every `connection` of every pod's mosquitto.conf: a solid edge to its first address (the one used while
        it is alive), a dotted one to each fallback. A bridge to another pod is written from the pod it joins, with
        the arrow turned back (`dir=back`; the id keeps the bridge's own direction): so the hub is drawn before its
        spokes instead of a star stretched into a chain, and the brokers before the cloud bridges, as messages
        flow from the clients to the cloud."""
        for workload in self.workloads:
            spokes = []
            for pod, conf in sorted(workload.confs.items(), key=lambda item: workload.pods.index(item[0])):
                for bridge in mosquitto_bridges(conf) + self.included_bridges(workload, conf):
                    for rank, address in enumerate(bridge.addresses):
                        head = self.host_node(address) or self.cloud_node(workload, address)
                        to_pod = head in self.pod_workload
                        security = "mTLS" if bridge.mtls else "TLS" if bridge.tls else "plain"
                        if rank == 0:
                            if self.pod_workload.get(head) is workload:
                                spokes.append(pod)
                            ends = (head, pod) if to_pod else (pod, head)
                            self.graph.edge(*ends, id=f"bridge:{pod}->{head}:{bridge.connection}",
                                            label=_label(f"{bridge.connection} :{address.rsplit(':', 1)[1]} "
                                                         f"{security}"),
                                            dir="back" if to_pod else None,
                                            color="#1565c0", fontcolor="#0d47a1", penwidth="1.5")
                        else:
                            self.graph.edge(pod, head, id=f"failover:{pod}->{head}:{bridge.connection}",
                                            style="dotted", color="#90a4ae", arrowsize="0.6", constraint="false",
                                            tooltip="failover: used while the addresses before it are down")
            self.graph.same_rank(workload.path, list(dict.fromkeys(spokes)) or workload.pods)

    def included_bridges(self, workload: Workload, conf: str) -> list[Bridge]:
        """The `connection` blocks of the files a conf's `include_dir` reads from a mounted volume. In a Secret (a
        cloud bridge's cloud.conf, which may hold a credential) only the connection's name, its host:port
        addresses and whether it uses TLS are read (mosquitto_bridges), nothing else."""
        mounts = {m["mountPath"].rstrip("/"): m["name"] for c in _pod_spec(workload.obj).get("containers") or []
                  for m in c.get("volumeMounts") or []}
        volumes = {v["name"]: v for v in _pod_spec(workload.obj).get("volumes") or []}
        bridges = []
        for directory in sorted({v[0] for k, v in _conf_lines(conf) if k == "include_dir" and v}):
            volume = volumes.get(mounts.get(directory.rstrip("/"), ""), {})
            ref = (("Secret", volume["secret"].get("secretName")) if "secret" in volume else
                   ("ConfigMap", volume["configMap"].get("name")) if "configMap" in volume else None)
            source = self.index.get((ref[0], workload.namespace, ref[1])) if ref else None
            if source is None:
                continue
            files = object_data(source)
            for key, text in sorted(files.items()):
                if key.endswith(".conf") and isinstance(text, str):
                    bridges += mosquitto_bridges(text)
        return bridges

    def cloud_node(self, workload: Workload, address: str) -> str:
        provider = _labels(workload.obj).get(PROVIDER_LABEL)
        host = address.rsplit(":", 1)[0]
        return self.graph.node(self.external_path("remote endpoints"), f"remote/{address}",
                               _label(CLOUD_PROVIDERS.get(provider, provider or "remote MQTT broker"), host),
                               shape="doubleoctagon" if provider in ("aws-iot-core", "azure-iot-hub") else "oval",
                               fillcolor="#fde0c5")

    def add_monitoring(self) -> None:
        monitors = _sorted(self.objects, "PodMonitor")
        rules = _sorted(self.objects, "PrometheusRule")
        dashboards = [cm for cm in _sorted(self.objects, "ConfigMap") if DASHBOARD_LABEL in _labels(cm)]
        if not (monitors or rules):
            return
        namespaces = set()  # Prometheus's: the one the scrape NetworkPolicies admit to the monitored pods
        for monitor in monitors:
            for policy in _sorted(self.objects, "NetworkPolicy"):
                spec = policy.get("spec") or {}
                if _meta(policy)[0] != _meta(monitor)[0] or spec.get("podSelector") != (monitor.get("spec") or {}).get(
                        "selector"):
                    continue
                namespaces |= {name for rule in spec.get("ingress") or [] for peer in rule.get("from") or []
                               for name in [((peer.get("namespaceSelector") or {}).get("matchLabels") or {}).get(
                                   "kubernetes.io/metadata.name")] if name}
        namespace = sorted(namespaces)[0] if namespaces else None
        path = ("prometheus",)
        self.graph.cluster(path, f"namespace {namespace} (Prometheus Operator)" if namespace
                           else "Prometheus Operator", style="dashed", color="#888888")
        selectors = sorted({f"{k}={v}" for o in monitors + rules for k, v in _labels(o).items()
                            if not k.startswith("app.kubernetes.io/")})
        prometheus = self.graph.node(path, "prometheus", _label("Prometheus", f"selects {', '.join(selectors)}"
                                                                if selectors else ""),
                                     shape="box3d", fillcolor="#fbe3e3")
        for monitor in monitors:
            spec = monitor.get("spec") or {}
            for workload in self.workloads:
                if workload.namespace != _meta(monitor)[0] or not _selects(spec.get("selector"),
                                                                           _labels_of_template(workload.obj)):
                    continue
                ports = dict(_container_ports(workload.obj))
                lines = [f"PodMonitor {_meta(monitor)[1]}"]
                for endpoint in spec.get("podMetricsEndpoints") or []:
                    port = endpoint.get("port", "")
                    lines.append(f"scrape {port} :{ports.get(port, '?')}{endpoint.get('path', '/metrics')} every "
                                 f"{endpoint.get('interval', 'default')}"
                                 + (" (basic auth)" if endpoint.get("basicAuth") else ""))
                self.graph.edge(prometheus, workload.pods[0], lhead=workload.cluster, label=_label(*lines),
                                color="#c62828", fontcolor="#b71c1c", style="dashed")
        for rule in rules:
            groups = (rule.get("spec") or {}).get("groups") or []
            alerts = sum(1 for g in groups for r in g.get("rules") or [] if "alert" in r)
            node = self.graph.node(
                self.namespace_path(_meta(rule)[0]), f"rule/{'/'.join(_meta(rule))}",
                _label(f"PrometheusRule {_meta(rule)[1]}", f"{alerts} alerts in {len(groups)} groups"),
                shape="note", fillcolor="#fbe3e3")
            self.graph.edge(node, prometheus, label="alert rules", color="#c62828", style="dashed")
        if dashboards:
            names = sorted({key.removesuffix(".json") for cm in dashboards for key in _text_data(cm)})
            where = ", ".join(sorted({_meta(cm)[0] for cm in dashboards}))
            node = self.graph.node(path, "grafana", _label("Grafana dashboards", *names, f"(ConfigMaps in {where})"),
                                   shape="note", fillcolor="#fbe3e3")
            self.graph.edge(node, prometheus, label="queries", color="#c62828", style="dashed")


def _labels_of_template(obj: dict) -> dict:
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def topology_dot(objects: list[dict]) -> str:
    """The estate's DOT text: the same objects give the same bytes."""
    estate = _Estate(objects)
    estate.add_workloads()
    estate.add_services()
    estate.add_frontends()
    estate.add_bridges()
    estate.add_storage()
    estate.add_monitoring()
    return estate.graph.text()


# --- drawing -----------------------------------------------------------------------------------------------


def write_topology(objects: list[dict], directory: Path, name: str = "topology") -> list[Path]:
    """Write `<name>.dot` and, when `dot` is installed, `<name>.svg` and `<name>.png` into `directory`.

    Without `dot` (or when it fails) only the .dot is written and one warning line goes to stderr: the render
    itself never fails for the picture."""
    text = topology_dot(objects)
    written = [directory / f"{name}.dot"]
    write_file(written[0], text)
    dot = shutil.which("dot")
    if dot is None:
        print(f"warning: `dot` (graphviz) is not installed: wrote {name}.dot only, no {name}.svg/.png "
              f"({INSTALL_HINT})", file=sys.stderr)
        return written
    for fmt in FORMATS:
        target = directory / f"{name}.{fmt}"
        try:
            result = subprocess.run([dot, f"-T{fmt}", "-o", str(target)], input=text.encode(),
                                    capture_output=True, timeout=DOT_TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = f"timed out after {DOT_TIMEOUT_SECONDS} s" if isinstance(exc, subprocess.TimeoutExpired) \
                else str(exc)
        else:
            first = (result.stderr.decode(errors="replace").strip().splitlines() or [""])[0]
            problem = f"exit {result.returncode}: {first}" if result.returncode else None
        if problem is not None:
            target.unlink(missing_ok=True)
            print(f"warning: `dot -T{fmt}` failed ({problem}): no {name}.{fmt}", file=sys.stderr)
            continue
        target.chmod(0o644)
        written.append(target)
    return written
