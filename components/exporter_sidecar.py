"""The mosquitto-exporter sidecar (exporter/): one per broker and cloud-bridge pod, reading its own mosquitto's
`$SYS` tree over the pod's loopback health listener, so no credentials travel and no TLS listener is touched.

It also reports when the pod's certificates expire: it mounts only their public halves (the `items` of a
second volume of the same Secret; the private key is not in its filesystem).
"""

from typing import Optional, Sequence, TypedDict

import pulumi

from .kube import RESTRICTED_CONTAINER, container_resources, tcp_probes
from .mosquitto_conf import HEALTH_PORT

CONTAINER = "exporter"
PORT = 9234
PORT_NAME = "metrics"
"""The container port a PodMonitor scrapes, and the NetworkPolicy opens to the Prometheus namespace."""
CERT_DIR = "/exporter/certs"
STALE_AFTER_SECONDS = 30
"""Three `sys_interval`s (mosquitto_conf.COMMON_GLOBALS: 10 s): after that the values are withdrawn."""
RESOURCES = {"cpu": ("10m", "100m"), "memory": ("32Mi", "64Mi")}


class ExporterSidecar(TypedDict):
    """The exporter sidecar of a broker or cloud-bridge pod."""

    image: str
    """The mosquitto-exporter image (exporter/Dockerfile)."""


CertificateSource = tuple[pulumi.Input[str], dict[str, str]]
"""(a TLS Secret's name, credential name -> the Secret's key holding that certificate)"""


def exporter_container(image: str, certificates: Sequence[tuple[str, str]], mounts: Sequence[dict],
                       tokens: Sequence[tuple[str, pulumi.Input[str]]] = ()) -> dict:
    """The sidecar. `certificates`: (credential name, path under CERT_DIR) in the `mounts`; `tokens`: (credential
    name, expiry as an RFC 3339 time) for what has no file, such as an Azure SAS token."""
    args = ["--broker", f"127.0.0.1:{HEALTH_PORT}", "--listen", f"0.0.0.0:{PORT}",
            "--stale-after", str(STALE_AFTER_SECONDS)]
    for credential, path in certificates:
        args += ["--credential", f"{credential}={CERT_DIR}/{path}"]
    for credential, expiry in tokens:
        args += ["--credential", pulumi.Output.from_input(expiry).apply(lambda when, c=credential: f"{c}=@{when}")]
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "resources": container_resources(None, RESOURCES),
        "securityContext": RESTRICTED_CONTAINER,
        # TCP checks: quiet, and /metrics answers (mosquitto_up 0) while the broker is down, which is the
        # broker's probes' business, not a reason to restart the exporter
        **tcp_probes(PORT_NAME),
        "volumeMounts": list(mounts),
    }


def sidecar_parts(sidecar: Optional[ExporterSidecar], sources: Sequence[CertificateSource], mode: int,
                  tokens: Sequence[tuple[str, pulumi.Input[str]]] = ()) -> tuple[list[dict], list[dict]]:
    """(containers, volumes) to add to a pod: none without a sidecar. Each source becomes a volume holding only
    the public files it names (`items`), mounted at CERT_DIR/<its index>."""
    if not sidecar:
        return [], []
    certificates, volumes, mounts = [], [], []
    for i, (secret_name, wanted) in enumerate(sources):
        volume = f"exporter-certs-{i}"
        certificates += [(credential, f"{i}/{key}") for credential, key in sorted(wanted.items())]
        volumes.append({"name": volume, "secret": {
            "secretName": secret_name, "defaultMode": mode,
            "items": [{"key": key, "path": key} for key in sorted(set(wanted.values()))]}})
        mounts.append({"name": volume, "mountPath": f"{CERT_DIR}/{i}", "readOnly": True})
    return [exporter_container(sidecar["image"], certificates, mounts, tokens)], volumes
