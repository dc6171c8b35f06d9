"""The reloader sidecar of a broker pod: changed users, passwords, ACLs and server certificates reach the running
mosquitto through a SIGHUP instead of a pod restart (mosquitto_reload.sh says what mosquitto re-reads, with the
source it was read in).

What the sidecar relies on outside this repository (read in their source):
- The kubelet rewrites a Secret volume in place by swapping one `..data` symlink to a new timestamped directory
  (kubernetes/kubernetes pkg/volume/util/atomic_writer.go:40-57, 112-115, 215, 233; read in a stored copy whose
  commit was not shown), and never updates a `subPath` mount (kubernetes/website
  content/en/docs/concepts/configuration/secret.md, "does not receive automated Secret updates"; kubernetes#50345).
  Within the kubelet's syncFrequency, "1m" by default, with the Watch change detection (kubernetes/kubelet v0.36.3
  config/v1beta1/types.go:138-142, 699-708).
- `shareProcessNamespace` lets containers "view and signal processes from other containers in the same pod"
  (kubernetes/api v0.36.3 core/v1/types.go:4257-4264), and no Pod Security Standard checks it
  (kubernetes/pod-security-admission v0.36.2: no match in the tree; the host-namespace check is hostNetwork,
  hostPID and hostIPC only, policy/check_hostNamespaces.go:28-36). A process may signal another of the same user
  with no capability (kill(2), man-pages 5.13 man2/kill.2:87-92).
- The eclipse-mosquitto 2.0.20 image (eclipse/mosquitto fb9b1153 docker/2.0-openssl/Dockerfile, FROM alpine:3.20)
  has busybox ash as /bin/sh, and mosquitto's user is uid 1883 (Dockerfile:74-75). The applets the script uses
  (cat, cksum, grep, date, sleep, kill, mv, basename) are enabled in Alpine's busybox configuration as far as it
  could be read (alpinelinux/aports main/busybox/busyboxconfig at f246c371, busybox 1.29.2); the 3.20 file itself
  could not be read here, and no image could be run.

What the pod template must then NOT carry: the hash of the password file, the ACLs and the server certificate and
key (they would roll the pods the reloader spares). What it must still carry: the CA (read only when a listener
starts) and the bridges' client certificate (bridges are never reloaded), so those roll the pods as before.
"""

from pathlib import Path

from .kube import RESTRICTED_CONTAINER, container_resources
from .mosquitto_conf import AUTH_DIR, CERT_DIR, CONFIG_DIR, RUN_DIR

CONTAINER = "reloader"
SCRIPT = "reload.sh"
AUTH_FILES_SCRIPT = "auth-files.sh"
"""Sourced by the start script and the reloader: the copies and the fingerprint of what SIGHUP re-reads."""
RELOAD = (Path(__file__).with_name("mosquitto_reload.sh")).read_text()
AUTH_FILES = (Path(__file__).with_name("mosquitto_auth_files.sh")).read_text()
SCRIPTS = {SCRIPT: RELOAD, AUTH_FILES_SCRIPT: AUTH_FILES}
"""The ConfigMap entries the broker's start script and the reloader run."""
INTERVAL_SECONDS = 5
"""How often the files are compared. The kubelet's own delay dominates: it refreshes a Secret volume on its
periodic pod sync (syncFrequency, 1 minute by default) once the Secret changed."""
HEARTBEAT = f"{RUN_DIR}/reloader-heartbeat"
STALE_AFTER_SECONDS = 60
RESOURCES = {"cpu": ("5m", "50m"), "memory": ("8Mi", "32Mi")}
VOLUMES = (("config", CONFIG_DIR, True), ("auth", AUTH_DIR, True), ("certs", CERT_DIR, True), ("run", RUN_DIR, False))
"""(volume, mount path, read only): the broker container's volumes of the same names."""


def _probe(check: str, period: int) -> dict:
    return {"exec": {"command": ["/bin/sh", "-c", check]}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": 3}


ALIVE = f'[ $(( $(date +%s) - $(cat {HEARTBEAT}) )) -lt {STALE_AFTER_SECONDS} ]'
"""Liveness: the loop writes the time before each wait, so a recent time means it runs (a quiet exec)."""
STARTED = f"[ -f {HEARTBEAT} ]"
"""Readiness: the loop has started. Never more: a stalled reloader must not take the broker out of its Service
(a pod is ready only when every container is); liveness restarts it instead."""


def reloader_container(image: str) -> dict:
    """The sidecar: the broker's own image (its busybox shell runs the script), restricted like the broker."""
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", f"{CONFIG_DIR}/{SCRIPT}"],
        "env": [{"name": "RELOAD_INTERVAL_SECONDS", "value": str(INTERVAL_SECONDS)}],
        "resources": container_resources(None, RESOURCES),
        "securityContext": RESTRICTED_CONTAINER,
        "readinessProbe": _probe(STARTED, 10),
        "livenessProbe": _probe(ALIVE, 20),
        "volumeMounts": [{"name": volume, "mountPath": path, "readOnly": read_only}
                         for volume, path, read_only in VOLUMES],
    }
