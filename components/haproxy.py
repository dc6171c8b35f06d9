"""HaProxyFrontend: the MQTT entry point in front of a clustered MosquittoBroker.

A StatefulSet (not a Deployment) because HAProxy peers need stable names to share stick tables; at least two
replicas, a PodDisruptionBudget and anti-affinity. TLS is passed through to the brokers, so client
certificates reach them; health checks are real MQTT CONNECTs over mTLS to the brokers' internal listener
with the frontend's own client certificate. Stats and Prometheus metrics sit on an internal port behind
credentials from a Secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.haproxy_cfg import CERT_DIR, CFG_DIR, PEER_PORT, STATS_PORT, FrontendPort, render_haproxy_cfg
from components.kube import RESTRICTED_CONTAINER, content_hash, labels, restricted_pod, selector
from components.pki import ClientCertificate

APP = "haproxy"
HAPROXY_UID = 99
START_SCRIPT = (Path(__file__).with_name("haproxy_start.sh")).read_text()


class HaProxyFrontendArgs(TypedDict, total=False):
    namespace: str
    image: str
    """haproxy image, 2.6 or newer, pinned."""
    replicas: int
    ports: Sequence[FrontendPort]
    broker_servers: Sequence[str]
    """Broker pod DNS names in ordinal order, up to the autoscaling maximum."""
    broker_selector: dict
    """Labels of the broker pods (NetworkPolicy egress)."""
    internal_port: int
    check_name: str
    """A DNS name in the broker certificate, checked on health-check connections (verifyhost)."""
    check_certificate: ClientCertificate
    ca_cert_pem: pulumi.Input[str]
    topology: str
    timeout_seconds: int
    maxconn: int
    server_maxconn: int
    service_type: str
    load_balancer_source_ranges: Sequence[str]
    resources: dict


class HaProxyFrontend(pulumi.ComponentResource):
    service_name: str
    stats_password: pulumi.Output[str]

    def __init__(self, name: str, args: HaProxyFrontendArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mqtt-estate:index:HaProxyFrontend", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args["namespace"]
        replicas = max(args.get("replicas", 2), 2)
        sel = selector(APP, name)
        pod_labels = labels(APP, name, "frontend")
        headless = f"{name}-headless"

        def meta(obj_name: str, **extra) -> dict:
            return {"name": obj_name, "namespace": ns, "labels": pod_labels, **extra}

        peers = [f"{name}-{i}.{headless}.{ns}.svc.cluster.local" for i in range(replicas)]
        cfg = render_haproxy_cfg({
            "ports": args["ports"], "servers": args["broker_servers"], "check_port": args["internal_port"],
            "check_name": args["check_name"], "topology": args.get("topology", "active-active"), "peers": peers,
            "timeout_seconds": args["timeout_seconds"], "maxconn": args.get("maxconn", 20000),
            "server_maxconn": args.get("server_maxconn", 10000)})
        cfg_hash = content_hash(cfg, START_SCRIPT)
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=meta(f"{name}-config-{cfg_hash[:10]}"),
            data={"haproxy.cfg": cfg, "start.sh": START_SCRIPT}, opts=child)

        password = random.RandomPassword(f"{name}-stats-password", length=32, special=False, opts=child)
        self.stats_password = pulumi.Output.secret(password.result)
        stats = k8s.core.v1.Secret(
            f"{name}-stats", metadata=meta(f"{name}-stats"), type="Opaque",
            string_data={"username": "stats", "password": self.stats_password}, opts=child)
        check = args["check_certificate"]
        check_pem = pulumi.Output.secret(pulumi.Output.all(check.cert_pem, check.key_pem).apply(
            lambda parts: parts[0] + parts[1]))
        certs = k8s.core.v1.Secret(
            f"{name}-check-tls", metadata=meta(f"{name}-check-tls"), type="Opaque",
            string_data={"check.pem": check_pem, "ca.crt": args["ca_cert_pem"]}, opts=child)
        certs_hash = pulumi.Output.unsecret(pulumi.Output.all(check.cert_pem, args["ca_cert_pem"]).apply(
            lambda parts: content_hash(*parts)))

        ports = [{"name": p["name"], "port": p["port"], "targetPort": p["name"], "protocol": "TCP"}
                 for p in args["ports"]]
        k8s.core.v1.Service(
            f"{name}-headless", metadata=meta(headless),
            spec={"clusterIP": "None", "publishNotReadyAddresses": True, "selector": sel,
                  "ports": [{"name": "peers", "port": PEER_PORT, "targetPort": "peers", "protocol": "TCP"}]},
            opts=child)
        service_spec: dict = {"type": args.get("service_type", "ClusterIP"), "selector": sel, "ports": ports}
        if args.get("load_balancer_source_ranges"):
            service_spec["loadBalancerSourceRanges"] = list(args["load_balancer_source_ranges"])
        if service_spec["type"] == "LoadBalancer":
            service_spec["externalTrafficPolicy"] = "Local"  # keep client source addresses for stickiness
        k8s.core.v1.Service(f"{name}-service", metadata=meta(name), spec=service_spec, opts=child)

        res = args.get("resources") or {}
        container = {
            "name": APP,
            "image": args.get("image", "haproxy:2.8.16"),
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", f"{CFG_DIR}/start.sh"],
            "env": [
                {"name": "PEER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "STATS_USER", "valueFrom": {"secretKeyRef": {"name": f"{name}-stats", "key": "username"}}},
                {"name": "STATS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{name}-stats",
                                                                          "key": "password"}}},
            ],
            "ports": [{"name": p["name"], "containerPort": p["port"], "protocol": "TCP"} for p in args["ports"]]
            + [{"name": "stats", "containerPort": STATS_PORT, "protocol": "TCP"},
               {"name": "peers", "containerPort": PEER_PORT, "protocol": "TCP"}],
            "resources": {
                "requests": {"cpu": res.get("cpu_request", "250m"), "memory": res.get("memory_request", "256Mi")},
                "limits": {"cpu": res.get("cpu_limit", "1"), "memory": res.get("memory_limit", "512Mi")},
            },
            "securityContext": RESTRICTED_CONTAINER,
            "readinessProbe": {"tcpSocket": {"port": "stats"}, "periodSeconds": 5, "timeoutSeconds": 2,
                               "failureThreshold": 2},
            "livenessProbe": {"tcpSocket": {"port": "stats"}, "periodSeconds": 10, "timeoutSeconds": 2,
                              "failureThreshold": 3},
            "volumeMounts": [
                {"name": "config", "mountPath": CFG_DIR, "readOnly": True},
                {"name": "certs", "mountPath": CERT_DIR, "readOnly": True},
                {"name": "run", "mountPath": "/tmp"},
            ],
        }
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=meta(name),
            spec={
                "serviceName": headless,
                "replicas": replicas,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": sel},
                "template": {
                    "metadata": {"labels": pod_labels, "annotations": {"mqtt-estate.io/config-hash": cfg_hash,
                                                                       "mqtt-estate.io/tls-hash": certs_hash}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": restricted_pod(HAPROXY_UID),
                        "terminationGracePeriodSeconds": 30,
                        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": sel}}]}},
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": config_map.metadata["name"], "defaultMode": 0o444}},
                            {"name": "certs", "secret": {"secretName": certs.metadata["name"], "defaultMode": 0o440}},
                            {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[stats]))

        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=meta(name), spec={"minAvailable": 1, "selector": {"matchLabels": sel}},
            opts=child)
        same_ns = [{"podSelector": {}}]
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=meta(name),
            spec={
                "podSelector": {"matchLabels": sel},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"ports": [{"port": p["port"], "protocol": "TCP"} for p in args["ports"]]},
                    {"from": same_ns, "ports": [{"port": STATS_PORT, "protocol": "TCP"}]},
                    {"from": [{"podSelector": {"matchLabels": sel}}], "ports": [{"port": PEER_PORT, "protocol": "TCP"}]},
                ],
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": dict(args["broker_selector"])}}],
                     "ports": [{"port": p["port"], "protocol": "TCP"} for p in args["ports"]]
                     + [{"port": args["internal_port"], "protocol": "TCP"}]},
                    {"to": [{"podSelector": {"matchLabels": sel}}], "ports": [{"port": PEER_PORT, "protocol": "TCP"}]},
                    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                ],
            },
            opts=child)
        self.service_name = name
        self.endpoints = {p["name"]: f"{p.get('scheme') or ('mqtts' if p.get('tls') else 'mqtt')}://"
                                     f"{name}.{ns}.svc.cluster.local:{p['port']}" for p in args["ports"]}
        self.register_outputs({"service_name": name, "endpoints": self.endpoints})
