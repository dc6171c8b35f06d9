"""Backup rules: the S3 bucket a broker's backups go to keeps every version, stays private and is encrypted; AWS
keys reach containers only from Secrets; a persistent clustered broker has a backup sidecar (advisory).

A bucket is judged as a backup bucket when a BackupBucket component (components/backup_bucket.py) made it, or when a
workload's container names it in BACKUP_BUCKET (the backup sidecar's environment: a program may make the bucket
itself and hand its name to MosquittoBroker). Its settings are separate pulumi-aws resources tied to it by the
bucket's name in their `bucket` input or, when that name is not known yet (a preview before the bucket exists), by
being children of the same BackupBucket. pulumi-aws 7.51.1 type tokens (site-packages/pulumi_aws/s3/):
`aws:s3/bucket:Bucket` bucket.py:1179, `aws:s3/bucketVersioning:BucketVersioning` bucket_versioning.py:474,
`aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration`
bucket_server_side_encryption_configuration.py:394, `aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock`
bucket_public_access_block.py:415, `aws:s3/bucketAcl:BucketAcl` bucket_acl.py:561; the deprecated V2 types
(bucket_v2.py:1199, bucket_versioning_v2.py:480, bucket_server_side_encryption_configuration_v2.py:400,
bucket_acl_v2.py:567) are still registered by programs written for pulumi-aws 6 and are judged the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from .policy_kit import (ADVISORY, MANDATORY, WORKLOADS, UnknownValueError, as_bool, as_int, as_list, as_map,
                        as_text, container_name, containers, name_of, pod_spec, resource_policy, stack_policy)
from ..components.backup_sidecar import CONTAINER as BACKUP_CONTAINER

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
ENCRYPTION = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
              "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
PUBLIC_ACCESS_BLOCK = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
ACLS = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
BACKUP_BUCKET_COMPONENT = "mqtt-estate:index:BackupBucket"
BUCKET_ENV = "BACKUP_BUCKET"
BROKER_CONTAINER = "mosquitto"
"""components/broker.APP, written out: broker.py needs pulumi-kubernetes, which the pack's environment does not have
(policy/requirements.txt); tests/test_backup_policies.py checks they agree."""

PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
"""Canned ACLs that grant everyone, or every AWS account, access (pulumi-aws bucket.py:51 lists the canned ACLs)."""
SSE_ALGORITHMS = ["AES256", "aws:kms", "aws:kms:dsse"]
"""The valid sseAlgorithm values (pulumi_aws/s3/_inputs.py:7072)."""

AWS_KEY_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""What boto3 and every AWS SDK read from the environment; the backup sidecar's credentials are the first two."""
ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
"""An access key id: AKIA (long-term) or ASIA (temporary, from STS) and 16 more, as AKIAIOSFODNN7EXAMPLE (AWS STS
API reference, GetAccessKeyInfo)."""


# --- which buckets hold backups, and what configures them -----------------------------------------------------

def _known(props: Mapping, key: str) -> Any:
    """props[key], or None while Pulumi does not know it yet (a preview before the value is made)."""
    try:
        return as_map(props).get(key)
    except UnknownValueError:
        return None


def _qualified_type(urn: str) -> list[str]:
    """The URN's type chain, outermost parent first: urn:pulumi:stack::project::A$B$type::name."""
    parts = (urn or "").split("::")
    return parts[2].split("$") if len(parts) >= 4 else []


def _parent(resource) -> Optional[str]:
    return getattr(getattr(resource, "opts", None), "parent", None) or None


@dataclass
class BackupBucket:
    resource: Any
    name: Optional[str]
    """The bucket's name (its `bucket` input), when known."""
    settings: dict[str, list] = field(default_factory=dict)
    """Resource type family ("versioning", "encryption", "public-access-block", "acl") -> the props of each."""
    pending: set = field(default_factory=set)
    """Families with a settings resource whose bucket is not known yet (a preview of a program's own bucket,
    `bucket=bucket.id`): it may be this bucket's, so its absence is not judged until the value is known."""

    def of(self, kind: str) -> list[Mapping]:
        return self.settings.get(kind, [])


KINDS = {**{t: "versioning" for t in VERSIONING}, **{t: "encryption" for t in ENCRYPTION},
         **{t: "public-access-block" for t in PUBLIC_ACCESS_BLOCK}, **{t: "acl" for t in ACLS}}


def _named_in_workloads(resources: list) -> set[str]:
    """Bucket names the stack's workloads hand their backup sidecars (env BACKUP_BUCKET with a literal value)."""
    names = set()
    for resource in resources:
        if not str(resource.resource_type).startswith(WORKLOADS):
            continue
        for c in containers(resource.props):
            for env in as_list(c.get("env")):
                env = as_map(env)
                if as_text(env.get("name")) == BUCKET_ENV and isinstance(_known(env, "value"), str):
                    names.add(env["value"])
    return names


def backup_buckets(resources: list) -> list[BackupBucket]:
    """The backup buckets of the stack, each with the settings resources that apply to it."""
    named = _named_in_workloads(resources)
    buckets = []
    for resource in resources:
        if resource.resource_type not in BUCKETS:
            continue
        name = _known(resource.props, "bucket")
        in_component = BACKUP_BUCKET_COMPONENT in _qualified_type(resource.urn)[:-1]
        if in_component or (isinstance(name, str) and name in named):
            buckets.append(BackupBucket(resource, name if isinstance(name, str) else None))
    by_name = {b.name: b for b in buckets if b.name}
    by_parent: dict[str, list[BackupBucket]] = {}
    for b in buckets:
        if BACKUP_BUCKET_COMPONENT in _qualified_type(b.resource.urn)[:-1] and _parent(b.resource):
            by_parent.setdefault(_parent(b.resource), []).append(b)
    for resource in resources:
        kind = KINDS.get(resource.resource_type)
        if kind is None:
            continue
        target = _known(resource.props, "bucket")
        bucket = by_name.get(target) if isinstance(target, str) else None
        siblings = by_parent.get(_parent(resource) or "", [])
        if bucket is None and not isinstance(target, str) and len(siblings) == 1:
            bucket = siblings[0]
        if bucket is not None:
            bucket.settings.setdefault(kind, []).append(as_map(resource.props))
        elif not isinstance(target, str):
            for candidate in buckets:
                candidate.pending.add(kind)
    return buckets


def _label(bucket: BackupBucket) -> str:
    return f"backup bucket {bucket.name or bucket.resource.name}"


# --- the bucket policies --------------------------------------------------------------------------------------

def _status(props: Mapping) -> str:
    return as_text(as_map(props.get("versioningConfiguration")).get("status"))


def versioned(resources, _cfg) -> Iterator[tuple[Any, str]]:
    """Every backup upload replaces `<prefix>/<pod>/mosquitto.db`: only versioning keeps the earlier ones, which a
    restore falls back to when the newest does not verify. A bucket with Object Lock is versioned for good (AWS
    turns versioning on with it and never lets it be suspended: S3 User Guide, "Object Lock considerations")."""
    for bucket in backup_buckets(resources):
        props = as_map(bucket.resource.props)
        statuses = [_status(v) for v in bucket.of("versioning")]
        inline = as_bool(as_map(props.get("versioning")).get("enabled"))
        locked = as_bool(props.get("objectLockEnabled")) is True
        if any(s != "Enabled" for s in statuses):
            yield bucket.resource, (f"{_label(bucket)}: versioning is {', '.join(sorted(set(statuses)))}; an "
                                    "overwritten or deleted backup is gone")
        elif not statuses and inline is not True and not locked and "versioning" not in bucket.pending:
            yield bucket.resource, (f"{_label(bucket)}: no BucketVersioning with status Enabled: each backup "
                                    "overwrites the last, so a bad one leaves nothing to restore")


def private(resources, _cfg) -> Iterator[tuple[Any, str]]:
    """A backup holds every retained message and queued message of the broker: a public bucket publishes them."""
    for bucket in backup_buckets(resources):
        blocks = bucket.of("public-access-block")
        if not blocks and "public-access-block" not in bucket.pending:
            yield bucket.resource, (f"{_label(bucket)}: no BucketPublicAccessBlock (all four of "
                                    f"{', '.join(PUBLIC_ACCESS_FLAGS)} true)")
        for block in blocks:
            off = [flag for flag in PUBLIC_ACCESS_FLAGS if as_bool(block.get(flag)) is not True]
            if off:
                yield bucket.resource, f"{_label(bucket)}: public access block leaves {', '.join(off)} off"
        acls = [as_text(as_map(bucket.resource.props).get("acl"))] + [as_text(a.get("acl")) for a in bucket.of("acl")]
        for acl in sorted({a for a in acls if a in PUBLIC_ACLS}):
            yield bucket.resource, f"{_label(bucket)}: canned ACL {acl} opens it beyond the owner"


def _algorithms(rules: Any) -> list[str]:
    rules = [rules] if isinstance(rules, Mapping) else as_list(rules)
    return [as_text(as_map(as_map(r).get("applyServerSideEncryptionByDefault")).get("sseAlgorithm")) for r in rules]


def encrypted(resources, cfg) -> Iterator[tuple[Any, str]]:
    """Server-side encryption stated on the bucket, with an allowed algorithm. AWS encrypts new objects with SSE-S3
    when a bucket says nothing (since 5 January 2023: S3 User Guide, "Using server-side encryption with Amazon S3
    managed keys"), S3-compatible stores do not promise it; the explicit setting is what a reviewer and this pack
    can see, and where a KMS key is chosen."""
    allowed = [a for a in as_list(cfg.get("allowedAlgorithms")) if isinstance(a, str)] or SSE_ALGORITHMS
    for bucket in backup_buckets(resources):
        inline = as_map(as_map(bucket.resource.props).get("serverSideEncryptionConfiguration")).get("rule")
        found = [a for props in bucket.of("encryption") for a in _algorithms(props.get("rules"))]
        found += _algorithms(inline) if inline else []
        if not found and "encryption" not in bucket.pending:
            yield bucket.resource, (f"{_label(bucket)}: no BucketServerSideEncryptionConfiguration "
                                    f"({' or '.join(allowed)})")
        for algorithm in sorted({a for a in found if a not in allowed}):
            yield bucket.resource, (f"{_label(bucket)}: server-side encryption {algorithm or '(none)'} is not one of "
                                    f"{', '.join(allowed)}")


# --- workloads ------------------------------------------------------------------------------------------------

def credentials_from_secret(props, _cfg) -> Iterator[str]:
    """AWS keys in a pod spec are readable by everyone who may read the workload (and land in Pulumi's state and
    every render): they belong in a Secret (valueFrom.secretKeyRef), or nowhere with workload identity."""
    for c in containers(props):
        name = container_name(c)
        for env in as_list(c.get("env")):
            env = as_map(env)
            var = as_text(env.get("name"))
            value = env.get("value")
            source = as_map(env.get("valueFrom"))
            if var in AWS_KEY_ENV and value not in (None, ""):
                yield f"container {name}: env {var} carries a literal value; use valueFrom.secretKeyRef"
            elif var in AWS_KEY_ENV and source and "secretKeyRef" not in source:
                yield (f"container {name}: env {var} comes from {', '.join(sorted(source))}, not a Secret; use "
                       "valueFrom.secretKeyRef")
            elif var not in AWS_KEY_ENV and isinstance(value, str) and ACCESS_KEY_ID.search(value):
                yield f"container {name}: env {var} holds an AWS access key id; use valueFrom.secretKeyRef"
        for key in ("command", "args"):
            if any(isinstance(arg, str) and ACCESS_KEY_ID.search(arg) for arg in as_list(c.get(key))):
                yield f"container {name}: {key} holds an AWS access key id; pass it from a Secret"


def backup_in_production(props, cfg) -> Iterator[str]:
    """A broker StatefulSet of minimumReplicas or more that keeps its data on volumes (volumeClaimTemplates) and has
    no backup sidecar: a corrupt or lost volume loses that broker's retained messages and queued sessions."""
    spec = as_map(as_map(props).get("spec"))
    names = [container_name(c) for c in containers(props)]
    replicas = as_int(spec.get("replicas"), 1) or 0
    if BROKER_CONTAINER not in names or BACKUP_CONTAINER in names or not as_list(spec.get("volumeClaimTemplates")):
        return
    if replicas >= (as_int(cfg.get("minimumReplicas"), 2) or 2) and pod_spec(props):
        yield (f"StatefulSet {name_of(props)}: {replicas} brokers keep sessions and retained messages on volumes "
               "without a backup sidecar; a corrupt or lost volume loses them (broker.persistence.backup)")


POLICIES = [
    stack_policy("backup-bucket-versioned",
                 "The S3 bucket of broker backups keeps every version (BucketVersioning Enabled, or Object Lock), "
                 "so a restore can fall back past a bad or deleted backup.", MANDATORY,
                 "Let BackupBucket provision the bucket, or give yours an aws.s3.BucketVersioning with "
                 "versioningConfiguration.status Enabled.", versioned),
    stack_policy("backup-bucket-private",
                 "The S3 bucket of broker backups blocks public access (BucketPublicAccessBlock with all four "
                 "settings true) and has no public canned ACL.", MANDATORY,
                 "Give the bucket an aws.s3.BucketPublicAccessBlock with blockPublicAcls, blockPublicPolicy, "
                 "ignorePublicAcls and restrictPublicBuckets true; drop public-read, public-read-write and "
                 "authenticated-read ACLs.", private),
    stack_policy("backup-bucket-encrypted",
                 "The S3 bucket of broker backups states its server-side encryption with an allowed algorithm.",
                 MANDATORY, "Give the bucket an aws.s3.BucketServerSideEncryptionConfiguration (aws:kms with your "
                 "key, or AES256).", encrypted,
                 {"allowedAlgorithms": {"type": "array", "items": {"type": "string", "enum": SSE_ALGORITHMS},
                                        "default": SSE_ALGORITHMS}}),
    resource_policy("backup-credentials-from-secret",
                    "AWS credentials reach containers only from Secrets: no literal AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN, none from a ConfigMap, and no access key id "
                    "anywhere in env, command or args.", MANDATORY,
                    "Set broker.persistence.backup.credentials.secretName (keys read through secretKeyRef), or use "
                    "workload identity (credentials.serviceAccountAnnotations) and no keys at all.",
                    WORKLOADS, credentials_from_secret),
    resource_policy("broker-backup-in-production",
                    "A persistent clustered broker backs its databases up (a backup sidecar beside mosquitto).",
                    ADVISORY, "Turn on broker.persistence.backup (a versioned S3 bucket and a schedule).",
                    ["kubernetes:apps/v1:StatefulSet"], backup_in_production,
                    {"minimumReplicas": {"type": "integer", "minimum": 1, "default": 2}}),
]
