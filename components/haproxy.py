"""HaProxyFrontend: the MQTT entry point in front of a clustered MosquittoBroker.

A StatefulSet (not a Deployment) because HAProxy peers need stable names to share stick tables; at least two
replicas, a PodDisruptionBudget and anti-affinity. TLS is passed through to the brokers, so client
certificates reach them; health checks are real MQTT CONNECTs over mTLS to the brokers' internal listener
with the frontend's own client certificate, one per broker per replica (haproxy_cfg.py). Stats and Prometheus
metrics sit on an internal port behind credentials from a Secret, mounted as files (haproxy_pod.py).

Every child is parented to the component. A caller's `depends_on` (e.g. the namespace) therefore holds back
every child too. In the Python SDK (github.com/pulumi/pulumi, commit 1b59498, sdk/python/lib/pulumi/):
runtime/resource.py:190-195 registers the component only once the URNs of its dependencies are known; a URN is
known when RegisterResource has answered (runtime/resource.py:1223), and the engine answers only when the
resource's step is done, i.e. the namespace is created (pkg/resource/deploy/source_eval.go:3039-3045); a child
is registered only once its parent's URN is known (runtime/resource.py:222-225). The children's own dependency
lists do not name the namespace: they hold their own depends_on and inputs only (runtime/resource.py:254-260).
"""

from pathlib import Path
from typing import Mapping, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from typing_extensions import Required

from .arguments import check_arguments
from .haproxy_cfg import (DEFAULT_STICK_EXPIRY_SECONDS, PEER_PORT, STATS_PORT, FloodLimits, FrontendPort,
                                   render_haproxy_cfg)
from .haproxy_pod import APP, frontend_container, frontend_pod_template
from .kube import ContainerResources, client_service, content_hash, labels, selector
from .pki import ClientCertificate

START_SCRIPT = (Path(__file__).with_name("haproxy_start.sh")).read_text()


class HaProxyFrontendArgs(TypedDict, total=False):
    namespace: Required[str]
    """Kubernetes namespace of every object (the brokers' namespace)."""
    image: str
    """haproxy image, 2.6 or newer, pinned (default haproxy:2.8.16)."""
    replicas: int
    """HAProxy pods; at least 2 (default 2)."""
    ports: Required[Sequence[FrontendPort]]
    """The ports clients connect to, each forwarding to a broker listener."""
    broker_servers: Required[Sequence[str]]
    """Broker pod DNS names in ordinal order, up to the autoscaling maximum."""
    broker_selector: Required[Mapping[str, str]]
    """Labels of the broker pods (NetworkPolicy egress)."""
    internal_port: Required[int]
    """The brokers' internal mTLS listener, which the health checks connect to."""
    check_name: Required[str]
    """A DNS name in the broker certificate, checked on health-check connections (verifyhost)."""
    check_certificate: Required[ClientCertificate]
    """The health checks' client certificate (its CN must be a broker user)."""
    ca_cert_pem: Required[pulumi.Input[str]]
    """The CA certificate, PEM: the brokers' server certificate is checked against it."""
    topology: str
    """active-active (default: clients spread over the brokers) or active-standby (every client on the first
    healthy broker)."""
    timeout_seconds: Required[int]
    """Client and server inactivity timeout: longer than the clients' keepalive (e.g. 1.5x max_keepalive)."""
    stick_expiry_seconds: int
    """How long a client keeps its broker after its last connection: the brokers' session expiry (default 7
    days)."""
    maxconn: int
    """Connections one HAProxy replica accepts in all (default 20000)."""
    server_maxconn: int
    """Connections one replica sends to one broker (default 10000)."""
    flood: FloodLimits
    """Per-source connection-rate and concurrent-connection limits in every client frontend (default: on, 20 new
    connections per 10 s and 100 open ones per source and replica; see haproxy_cfg._flood_rules). The limits count
    the source address HAProxy sees, so a LoadBalancer Service keeps client addresses (externalTrafficPolicy
    Local, components/kube.py client_service)."""
    service_type: str
    """ClusterIP (default) or LoadBalancer."""
    load_balancer_source_ranges: Sequence[str]
    """CIDRs a LoadBalancer Service admits (empty: every source)."""
    resources: ContainerResources
    """CPU and memory of the HAProxy container."""
    skip_await: bool
    """Do not wait for the frontend Service to become ready (default False). pulumi-kubernetes waits for a
    LoadBalancer Service until `status.loadBalancer.ingress` has an entry, for up to 10 minutes, and fails the
    update if none comes (provider/pkg/await/service.go:80, 158 and 299-309, github.com/pulumi/pulumi-kubernetes
    v4.32.0 and commit 9497796); a cluster without a load-balancer controller never fills it in. True sets the
    annotation `pulumi.com/skipAwait: "true"` on the Service, which skips that wait
    (provider/pkg/await/await.go:1096-1103, provider/pkg/metadata/overrides.go:39-42)."""


class HaProxyFrontend(pulumi.ComponentResource):
    """HAProxy in front of a clustered MosquittoBroker: TLS passed through, clients kept on one broker, MQTT
    health checks over mTLS, per-source flood limits, stats behind a generated password."""

    service_name: str
    """The Service clients connect to."""
    stats_password: pulumi.Output[str]
    """Password of the `stats` user of the stats and Prometheus page (secret)."""
    stats_secret_name: pulumi.Output[str]
    """The Secret holding that user's `username` and `password` (a PodMonitor's basicAuth reads it)."""
    endpoints: Mapping[str, str]
    """Each port's in-cluster URL, by port name."""

    def __init__(self, name: str, args: HaProxyFrontendArgs, opts: Optional[pulumi.ResourceOptions] = None):
        check_arguments("HaProxyFrontend", name, args, HaProxyFrontendArgs)
        super().__init__("mqtt-estate:index:HaProxyFrontend", name, None, opts)
        self._name, self._ns = name, args["namespace"]
        self._child = pulumi.ResourceOptions(parent=self)
        self._selector = selector(APP, name)
        self._labels = labels(APP, name, "frontend")
        self._headless = f"{name}-headless"
        replicas = max(args.get("replicas", 2), 2)

        config_map, cfg_hash = self._config(args, replicas)
        stats = self._stats_credentials()
        self.stats_secret_name = stats.metadata["name"]
        check_tls, certs_hash = self._check_tls(args)
        self._services(args)
        container = frontend_container(args.get("image", "haproxy:2.8.16"), args["ports"], args.get("resources"))
        template = frontend_pod_template(
            self._labels, self._selector,
            {"mqtt-estate.io/config-hash": cfg_hash, "mqtt-estate.io/tls-hash": certs_hash}, container,
            config_map=config_map.metadata["name"], check_tls_secret=check_tls.metadata["name"],
            stats_secret=stats.metadata["name"])
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset", metadata=self._meta(name),
            spec={"serviceName": self._headless, "replicas": replicas, "podManagementPolicy": "Parallel",
                  "selector": {"matchLabels": self._selector}, "template": template},
            opts=self._child)
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=self._meta(name),
            spec={"minAvailable": 1, "selector": {"matchLabels": self._selector}}, opts=self._child)
        self._network_policy(args)

        self.service_name = name
        self.endpoints = {p["name"]: f"{p.get('scheme') or ('mqtts' if p.get('tls') else 'mqtt')}://"
                                     f"{name}.{self._ns}.svc.cluster.local:{p['port']}" for p in args["ports"]}
        self.register_outputs({"service_name": name, "endpoints": self.endpoints})

    def _meta(self, obj_name: str, **extra) -> dict:
        return {"name": obj_name, "namespace": self._ns, "labels": self._labels, **extra}

    def _config(self, args: HaProxyFrontendArgs, replicas: int) -> tuple[k8s.core.v1.ConfigMap, str]:
        """haproxy.cfg and the start script, in a ConfigMap named by their content (a change rolls the pods)."""
        peers = [f"{self._name}-{i}.{self._headless}.{self._ns}.svc.cluster.local" for i in range(replicas)]
        cfg = render_haproxy_cfg({
            "ports": args["ports"], "servers": args["broker_servers"], "check_port": args["internal_port"],
            "check_name": args["check_name"], "topology": args.get("topology", "active-active"), "peers": peers,
            "timeout_seconds": args["timeout_seconds"], "maxconn": args.get("maxconn", 20000),
            "stick_expiry_seconds": args.get("stick_expiry_seconds", DEFAULT_STICK_EXPIRY_SECONDS),
            "server_maxconn": args.get("server_maxconn", 10000), "flood": args.get("flood") or {}})
        cfg_hash = content_hash(cfg, START_SCRIPT)
        config_map = k8s.core.v1.ConfigMap(
            f"{self._name}-config", metadata=self._meta(f"{self._name}-config-{cfg_hash[:10]}"),
            data={"haproxy.cfg": cfg, "start.sh": START_SCRIPT}, opts=self._child)
        return config_map, cfg_hash

    def _stats_credentials(self) -> k8s.core.v1.Secret:
        """A generated password for the stats page, in a Secret the pods mount as files."""
        password = random.RandomPassword(f"{self._name}-stats-password", length=32, special=False, opts=self._child)
        self.stats_password = pulumi.Output.secret(password.result)
        return k8s.core.v1.Secret(
            f"{self._name}-stats", metadata=self._meta(f"{self._name}-stats"), type="Opaque",
            string_data={"username": "stats", "password": self.stats_password}, opts=self._child)

    def _check_tls(self, args: HaProxyFrontendArgs) -> tuple[k8s.core.v1.Secret, pulumi.Output[str]]:
        """The health checks' client certificate and the CA, and a hash of their public parts for the pods."""
        check = args["check_certificate"]
        check_pem = pulumi.Output.secret(pulumi.Output.all(check["cert_pem"], check["key_pem"]).apply(
            lambda parts: parts[0] + parts[1]))
        certs = k8s.core.v1.Secret(
            f"{self._name}-check-tls", metadata=self._meta(f"{self._name}-check-tls"), type="Opaque",
            string_data={"check.pem": check_pem, "ca.crt": args["ca_cert_pem"]}, opts=self._child)
        certs_hash = pulumi.Output.unsecret(pulumi.Output.all(check["cert_pem"], args["ca_cert_pem"]).apply(
            lambda parts: content_hash(*parts)))
        return certs, certs_hash

    def _services(self, args: HaProxyFrontendArgs) -> None:
        """The headless Service that names the peers, and the Service clients connect to."""
        k8s.core.v1.Service(
            f"{self._name}-headless", metadata=self._meta(self._headless),
            spec={"clusterIP": "None", "publishNotReadyAddresses": True, "selector": self._selector,
                  "ports": [{"name": "peers", "port": PEER_PORT, "targetPort": "peers", "protocol": "TCP"}]},
            opts=self._child)
        ports = [{"name": p["name"], "port": p["port"], "targetPort": p["name"], "protocol": "TCP"}
                 for p in args["ports"]]
        # HAProxy decides by the client's source address (stickiness of TLS clients, flood limits): keep it
        extra, spec = client_service(args.get("service_type", "ClusterIP"), self._selector, ports,
                                     args.get("load_balancer_source_ranges"), args.get("skip_await", False),
                                     keep_client_addresses=True)
        k8s.core.v1.Service(f"{self._name}-service", metadata=self._meta(self._name, **extra), spec=spec,
                            opts=self._child)

    def _network_policy(self, args: HaProxyFrontendArgs) -> None:
        own_pods = [{"podSelector": {"matchLabels": self._selector}}]
        k8s.networking.v1.NetworkPolicy(
            f"{self._name}-netpol", metadata=self._meta(self._name),
            spec={
                "podSelector": {"matchLabels": self._selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"ports": [{"port": p["port"], "protocol": "TCP"} for p in args["ports"]]},
                    {"from": [{"podSelector": {}}], "ports": [{"port": STATS_PORT, "protocol": "TCP"}]},
                    {"from": own_pods, "ports": [{"port": PEER_PORT, "protocol": "TCP"}]},
                ],
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": dict(args["broker_selector"])}}],
                     "ports": [{"port": port, "protocol": "TCP"} for port in dict.fromkeys(
                         p.get("broker_port", p["port"]) for p in args["ports"])]
                     + [{"port": args["internal_port"], "protocol": "TCP"}]},
                    {"to": own_pods, "ports": [{"port": PEER_PORT, "protocol": "TCP"}]},
                    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                ],
            },
            opts=self._child)
