"""The backup sidecar and the restore init container of a broker pod (the tool itself is backup/: `python -m
mqtt_estate.backup agent|init`, configured only by the environment these builders write).

- The sidecar (`backup`) makes mosquitto save (SIGUSR1, so it shares the pod's process namespace and runs as the
  broker's user), reads the new mosquitto.db from the data volume mounted read-only, and uploads it. It serves its
  metrics on METRICS_PORT (MonitoringStack scrapes `backup-metrics`).
- The init container (`restore`) runs before mosquitto on the data volume mounted read-write: a requested restore,
  a restore into an empty volume, or the recovery of a damaged database (moved aside, never deleted).

Credentials reach both containers from the user's Secret by secretKeyRef (the value is never in the pod spec), or
from workload identity: with IRSA the EKS webhook gives every container and init container of a pod whose
ServiceAccount carries `eks.amazonaws.com/role-arn` the env AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE and a
projected token volume (aws/amazon-eks-pod-identity-webhook 3bf80a34 pkg/handler/handler.go:172-285 addEnvToContainer,
326-345 init containers and containers alike), except the containers the pod's `eks.amazonaws.com/skip-containers`
annotation lists (comma-separated, handler.go:153-170; pkg/annotations.go:27-28): the pod names the broker's other
containers there, so only these two hold the token. boto3's default chain reads those two variables
(botocore 1.43.11 credentials.py:1883-1885). AWS_EC2_METADATA_DISABLED=true (botocore utils.py:418-420) keeps boto3
from falling back to the node's instance role when the pod's own credentials are missing: a misconfigured pod fails
loudly instead of writing with the node's rights.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, TypedDict

from typing_extensions import Required

from . import backup_rules
from .kube import RESTRICTED_CONTAINER, ContainerResources, container_resources, tcp_probes
from .mosquitto_conf import DATA_DIR, HEALTH_PORT, PID_FILE, RUN_DIR

CONTAINER = "backup"
INIT_CONTAINER = "restore"
METRICS_PORT = 9235
METRICS_PORT_NAME = "backup-metrics"
"""The container port MonitoringStack's PodMonitor scrapes (mosquitto_backup_* metrics)."""
DEFAULT_INTERVAL_SECONDS = 900
DEFAULT_STORE_REGION = "us-east-1"
"""The region an S3-compatible store is told when none is given (what MinIO and most others answer to)."""
ACCESS_KEY_ID, SECRET_ACCESS_KEY = backup_rules.ACCESS_KEY_ID, backup_rules.SECRET_ACCESS_KEY
RUN_MODULE = ["python", "-m", "mqtt_estate.backup"]
SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"
CPU = ("10m", "500m")
MEMORY_REQUEST = "128Mi"
"""What Python, boto3 and paho hold before any work, about 92 MiB (bench/backup_bench.py). The memory limit is the
broker's: the sidecar holds one copy of the database while it checks and uploads it,
and the init container one while it verifies a download; the database is at most what mosquitto held in memory."""


class BackupLock(TypedDict):
    """S3 Object Lock on every uploaded version: nobody may delete it before `days` have passed."""

    mode: str
    """GOVERNANCE (users with s3:BypassGovernanceRetention may still delete) or COMPLIANCE (nobody may)."""
    days: int
    """Days each version stays locked."""


class BackupStore(TypedDict, total=False):
    """The bucket the backups go to."""

    name: Required[str]
    """The bucket's name."""
    region: str
    """Its region (required on AWS; with an endpoint default us-east-1)."""
    endpoint: Optional[str]
    """An S3-compatible store's https URL (absent: AWS S3); plain http only to 127.0.0.1 or localhost."""
    path_style: bool
    """Address the bucket in the URL's path instead of its host name (default False)."""
    prefix: str
    """Key prefix: each pod's backup is <prefix>/<pod>/mosquitto.db (default mqtt-estate/<namespace>)."""


class BackupCredentials(TypedDict, total=False):
    """Exactly one source: a Secret with access keys, or workload identity."""

    secret_name: Optional[str]
    """A Secret in the namespace with the access key id and secret access key (referenced, never copied)."""
    access_key_id_key: str
    """Its key holding the access key id (default AWS_ACCESS_KEY_ID)."""
    secret_access_key_key: str
    """Its key holding the secret access key (default AWS_SECRET_ACCESS_KEY)."""
    service_account_annotations: Mapping[str, str]
    """Annotations of the brokers' ServiceAccount for workload identity, e.g. eks.amazonaws.com/role-arn."""


class BackupRestore(TypedDict, total=False):
    """What the init container restores before mosquitto starts."""

    on_empty_volume: bool
    """Restore the newest good backup into a volume without a database (default True)."""
    request: Optional[str]
    """A restore request's id: a new id makes every pod restore `target` once (the pod template changes, so the
    pods roll one by one)."""
    target: Optional[str]
    """latest, an S3 version id (one broker only) or an RFC 3339 time (the newest backup saved at or before it)."""


class BrokerBackup(TypedDict, total=False):
    """Backups of each broker's mosquitto.db to S3 by a sidecar, and restore and recovery by an init container."""

    image: Required[str]
    """The backup image (backup/Dockerfile), pinned."""
    bucket: Required[BackupStore]
    """Where the backups go."""
    interval_seconds: int
    """Seconds between backups, 60 to 86400 (default 900)."""
    lock: Optional[BackupLock]
    """Object Lock on each upload (the bucket must have Object Lock enabled)."""
    credentials: Required[BackupCredentials]
    """How the containers authenticate to S3."""
    restore: BackupRestore
    """Restore settings."""
    resources: ContainerResources
    """CPU and memory of both containers (default requests 10m and 128Mi, limits 500m and the broker's memory
    limit)."""


def _env(name: str, value: str) -> dict:
    return {"name": name, "value": value}


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _flag(value: bool) -> str:
    return "true" if value else "false"


def store_env(backup: BrokerBackup, namespace: str) -> list[dict]:
    """What both containers need to reach the pod's backups: bucket, key prefix, region, endpoint, the pod's name
    (its key) and the credentials' references."""
    bucket = backup["bucket"]
    env = [_env("BACKUP_BUCKET", bucket["name"]),
           _env("BACKUP_PREFIX", bucket.get("prefix") or backup_rules.default_prefix(namespace)),
           _env("BACKUP_REGION", bucket.get("region") or DEFAULT_STORE_REGION)]
    if bucket.get("endpoint"):
        env.append(_env("BACKUP_ENDPOINT", bucket["endpoint"]))
    env += [_env("BACKUP_PATH_STYLE", _flag(bucket.get("path_style", False))),
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            _env("BACKUP_DATA_DIR", DATA_DIR),
            _env("AWS_EC2_METADATA_DISABLED", "true")]
    credentials = backup["credentials"]
    if credentials.get("secret_name"):
        secret = credentials["secret_name"]
        env += [_secret_env(ACCESS_KEY_ID, secret, credentials.get("access_key_id_key") or ACCESS_KEY_ID),
                _secret_env(SECRET_ACCESS_KEY, secret, credentials.get("secret_access_key_key") or SECRET_ACCESS_KEY)]
    return env


def _container(name: str, backup: BrokerBackup, subcommand: str, env: list[dict], memory_limit: str,
               mounts: list[dict]) -> dict:
    """What both containers share: the backup image running `python -m mqtt_estate.backup <subcommand>`, restricted
    like the broker, their one-line reason for failing in the termination message (kubectl describe pod)."""
    return {
        "name": name,
        "image": backup["image"],
        "imagePullPolicy": "IfNotPresent",
        "command": [*RUN_MODULE, subcommand],
        "env": env,
        "resources": container_resources(backup.get("resources"), {"cpu": CPU,
                                                                   "memory": (MEMORY_REQUEST, memory_limit)}),
        "securityContext": RESTRICTED_CONTAINER,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }


def backup_container(backup: BrokerBackup, namespace: str, memory_limit: str) -> dict:
    """The sidecar: data and run mounted read-only (it reads the database and mosquitto's pid file, writes
    nothing there), metrics on METRICS_PORT, quiet TCP probes on it (the metrics answer while a backup fails: that
    is the alert's business, mosquitto_backup_failures_total, so only a dead agent is restarted)."""
    env = store_env(backup, namespace) + [
        _env("BACKUP_PID_FILE", PID_FILE),
        _env("BACKUP_INTERVAL_SECONDS", str(backup.get("interval_seconds", DEFAULT_INTERVAL_SECONDS))),
        _env("BACKUP_METRICS_LISTEN", f"0.0.0.0:{METRICS_PORT}"),
        _env("BACKUP_BROKER", f"127.0.0.1:{HEALTH_PORT}")]
    lock = backup.get("lock")
    if lock:
        env += [_env("BACKUP_LOCK_MODE", lock["mode"]), _env("BACKUP_LOCK_DAYS", str(lock["days"]))]
    mounts = [{"name": "data", "mountPath": DATA_DIR, "readOnly": True},
              {"name": "run", "mountPath": RUN_DIR, "readOnly": True}]
    # readiness is "the agent serves": the metrics answer while S3 is away or a backup fails (the alerts' business),
    # so the broker leaves its Service only while the agent itself is not running (the k8s-probes policy wants one)
    return {**_container(CONTAINER, backup, "agent", env, memory_limit, mounts),
            "ports": [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}],
            **tcp_probes(METRICS_PORT_NAME)}


def restore_init_container(backup: BrokerBackup, namespace: str, memory_limit: str) -> dict:
    """The init container: the broker's data volume read-write (it restores into it and moves a damaged database
    aside)."""
    restore = backup.get("restore") or {}
    env = store_env(backup, namespace) + [_env("RESTORE_ON_EMPTY", _flag(restore.get("on_empty_volume", True)))]
    if restore.get("request"):
        # a new id changes the pod template: the StatefulSet rolls its pods one by one and each restores first
        env += [_env("RESTORE_REQUEST", restore["request"]), _env("RESTORE_TARGET", restore.get("target") or "")]
    return _container(INIT_CONTAINER, backup, "init", env, memory_limit, [{"name": "data", "mountPath": DATA_DIR}])


PRIVATE_V4 = ("10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16")
PRIVATE_V6 = ("::1/128", "fc00::/7", "fe80::/10")
PUBLIC = [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_V4)}},
          {"ipBlock": {"cidr": "::/0", "except": list(PRIVATE_V6)}}]
"""Public addresses only: AWS S3's and STS's regional endpoints (and a VPC gateway endpoint, which keeps the
public addresses) are public, while the cluster's, the plant's private and the link-local networks stay closed."""
ANYWHERE = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]


def egress(backup: BrokerBackup) -> list[dict]:
    """NetworkPolicy egress rules the containers need (a NetworkPolicy names addresses, never host names):
    - AWS S3 (no endpoint): HTTPS 443 to public addresses;
    - an endpoint at an IP address: that address on its port;
    - an endpoint by name: every address on its port (the pod resolves the name at run time; an in-cluster
      Service whose pods listen on another port than the Service needs a policy of its own);
    - a loopback endpoint: nothing (loopback never leaves the pod);
    - workload identity with an endpoint: also HTTPS 443 to public addresses, for STS's web-identity exchange."""
    endpoint = backup["bucket"].get("endpoint")
    rules: list[dict] = []
    if endpoint:
        _, host, port = backup_rules.endpoint_parts(endpoint)
        if not backup_rules.is_loopback(host):
            try:
                address = ipaddress.ip_address(host)
                peers = [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]
            except ValueError:
                peers = ANYWHERE
            rules.append({"to": peers, "ports": [{"port": port, "protocol": "TCP"}]})
    if not endpoint or backup["credentials"].get("service_account_annotations"):
        rules.append({"to": PUBLIC, "ports": [{"port": 443, "protocol": "TCP"}]})
    return rules


@dataclass
class PodBackup:
    """What a backup adds to the broker pod (all empty without one)."""

    containers: list[dict] = field(default_factory=list)
    init_containers: list[dict] = field(default_factory=list)
    account_annotations: dict[str, str] = field(default_factory=dict)
    """The ServiceAccount's workload-identity annotations."""
    egress: list[dict] = field(default_factory=list)

    def pod_annotations(self, containers: Sequence[Mapping]) -> dict[str, str]:
        """With IRSA, the pod's other containers are left without the web-identity token (module docstring)."""
        if backup_rules.ROLE_ARN_ANNOTATION not in self.account_annotations:
            return {}
        others = [c["name"] for c in containers if c["name"] != CONTAINER]
        return {SKIP_CONTAINERS: ",".join(others)} if others else {}


def pod_backup(backup: Optional[BrokerBackup], namespace: str, memory_limit: str) -> PodBackup:
    """The sidecar, the init container, the ServiceAccount's annotations and the egress rules of `backup`."""
    if not backup:
        return PodBackup()
    return PodBackup([backup_container(backup, namespace, memory_limit)],
                     [restore_init_container(backup, namespace, memory_limit)],
                     dict(backup["credentials"].get("service_account_annotations") or {}), egress(backup))
