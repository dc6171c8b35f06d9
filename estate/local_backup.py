"""The backup sidecar and the restore initContainer of a local broker pod: the same program the pods run
(mqtt_estate.backup), with the pod's own environment, only its paths, addresses and S3 endpoint made local.

S3 here is the moto_server of the run (estate.aws_provider.ControlPlane): the bucket the program provisioned is
already in it; a bucket the stack brings (`bucket.provision: false`) is made there as the owner would have made it
(versioned, with Object Lock when the stack asks for locked backups), so the same restore and recovery paths run.
The credentials Secret a stack names is not part of the render (its owner creates it in the cluster); moto accepts
any keys, so the local processes get moto's test keys instead of reading it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .aws_provider import CREDENTIALS, DEFAULT_REGION, ControlPlane
from .local_exporters import package_path
from .mounts import rewrite_paths

RUN_MODULE = "mqtt_estate.backup"


def local_environment(container: dict, pod: str, mounts: dict[str, str], plane: ControlPlane,
                      **overrides: str) -> dict[str, str]:
    """The container's environment as the pod would see it, with the mounted paths mapped into the pod's directory
    here and S3 pointed at the control plane. `overrides`: addresses only this machine knows (metrics port,
    health listener)."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = rewrite_paths(f" {entry['value']}", mounts)[1:]
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[name] = pod
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            env[name] = ""  # filled below with moto's keys: the Secret is the owner's, outside the render
    env.update({"AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
                "AWS_EC2_METADATA_DISABLED": "true",  # no instance metadata service to wait for here
                "BACKUP_ENDPOINT": plane.url, "BACKUP_PATH_STYLE": "true", **overrides})
    env.setdefault("BACKUP_REGION", DEFAULT_REGION)
    return package_path(env)


def command(subcommand: str) -> list[str]:
    """`python -m mqtt_estate.backup <subcommand>` with this interpreter (the image's entrypoint runs the same)."""
    return [sys.executable, "-m", RUN_MODULE, subcommand]


def ensure_bucket(plane: ControlPlane, env: dict[str, str]) -> None:
    """Make the stack's bucket in moto if the render did not (a brought bucket), versioned, and with Object Lock
    when the sidecar is told to lock its uploads (S3 refuses a locked upload to a bucket without Object Lock)."""
    client = plane.client("s3", env.get("BACKUP_REGION") or DEFAULT_REGION)
    bucket = env["BACKUP_BUCKET"]
    with plane.lock:
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket in existing:
            return
        create: dict = {"Bucket": bucket}
        region = env.get("BACKUP_REGION") or DEFAULT_REGION
        if region != DEFAULT_REGION:
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if env.get("BACKUP_LOCK_MODE"):
            create["ObjectLockEnabledForBucket"] = True
        client.create_bucket(**create)
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def log_tail(log: Path, lines: int = 3) -> str:
    """The last lines a process wrote, on one line (an init container's reason for failing)."""
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    return " | ".join(text[-lines:]) or "(no output)"
