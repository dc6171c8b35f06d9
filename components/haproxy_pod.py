"""The HAProxy frontend's pod: its container and pod template, as plain dicts (Pulumi inputs where names come
from resources).

The container runs haproxy_start.sh, which keeps HAProxy's peers resolved and reads the stats credentials from
the mounted Secret; the only environment variables are the pod's own name and where that Secret is mounted.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi

from .haproxy_cfg import CERT_DIR, CFG_DIR, PEER_PORT, STATS_PORT, FrontendPort
from .kube import RESTRICTED_CONTAINER, ContainerResources, container_resources, restricted_pod

APP = "haproxy"
HAPROXY_UID = 99
"""uid and gid of the `haproxy` user of the official image (docker-library/haproxy 2.8/Dockerfile:18-29 at the
2.8.16 commit 97dd996: `groupadd --gid 99`, `useradd --uid 99`, and `USER haproxy` at line 102)."""
STATS_DIR = "/usr/local/etc/haproxy/stats"
"""Where the stats Secret (keys `username` and `password`) is mounted; the start script reads it."""
STATS_FILE_MODE = 0o440
"""Owner root, group the pod's fsGroup (HAPROXY_UID): readable by HAProxy's user, by nobody else."""
START_SCRIPT_PATH = f"{CFG_DIR}/start.sh"
RESOURCES = {"cpu": ("250m", "1"), "memory": ("256Mi", "512Mi")}
"""The HAProxy container's default requests and limits (ContainerResources fills in each one it names)."""


def frontend_container(image: str, ports: Sequence[FrontendPort], resources: Optional[ContainerResources]) -> dict:
    return {
        "name": APP,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", START_SCRIPT_PATH],
        "env": [
            {"name": "PEER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "STATS_AUTH_DIR", "value": STATS_DIR},
        ],
        "ports": [{"name": p["name"], "containerPort": p["port"], "protocol": "TCP"} for p in ports]
        + [{"name": "stats", "containerPort": STATS_PORT, "protocol": "TCP"},
           {"name": "peers", "containerPort": PEER_PORT, "protocol": "TCP"}],
        "resources": container_resources(resources, RESOURCES),
        "securityContext": RESTRICTED_CONTAINER,
        "readinessProbe": {"tcpSocket": {"port": "stats"}, "periodSeconds": 5, "timeoutSeconds": 2,
                           "failureThreshold": 2},
        "livenessProbe": {"tcpSocket": {"port": "stats"}, "periodSeconds": 10, "timeoutSeconds": 2,
                          "failureThreshold": 3},
        "volumeMounts": [
            {"name": "config", "mountPath": CFG_DIR, "readOnly": True},
            {"name": "certs", "mountPath": CERT_DIR, "readOnly": True},
            {"name": "stats-auth", "mountPath": STATS_DIR, "readOnly": True},
            {"name": "run", "mountPath": "/tmp"},
        ],
    }


def frontend_pod_template(labels: dict, selector: dict, annotations: dict, container: dict,
                          config_map: pulumi.Input[str], check_tls_secret: pulumi.Input[str],
                          stats_secret: pulumi.Input[str]) -> dict:
    return {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": restricted_pod(HAPROXY_UID),
            "terminationGracePeriodSeconds": 30,
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}]}},
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": config_map, "defaultMode": 0o444}},
                {"name": "certs", "secret": {"secretName": check_tls_secret, "defaultMode": 0o440}},
                {"name": "stats-auth", "secret": {"secretName": stats_secret, "defaultMode": STATS_FILE_MODE}},
                {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            ],
        },
    }
