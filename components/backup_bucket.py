"""BackupBucket: the S3 bucket broker backups go to, provisioned with pulumi-aws 7 so that a backup cannot be lost by
accident: versioned (every upload of `<prefix>/<pod>/mosquitto.db` keeps the earlier ones), encrypted at rest,
closed to the public, old versions expired after the retention, and optionally locked (S3 Object Lock: no version
can be deleted before its lock ends).

Plain http is refused by the stack check (components/backup_rules.py endpoint), not by a bucket policy denying
aws:SecureTransport false: the offline proof talks to moto_server over loopback http, and moto evaluates a bucket
policy's statements on S3 requests (moto 5.2.1 moto/iam/access_control.py:500-508, a matching Deny denies; a PutObject
was answered 403 here with that policy), so it would shut the local estate out of its own bucket.

What replaces the bucket (and so would leave every backup behind in the old one): pulumi-aws is generated from
Pulumi's fork of the Terraform AWS provider, whose schema marks `bucket` and `object_lock_enabled` ForceNew
(pulumi/terraform-provider-aws patched-v5.14.0, 122a5810, internal/service/s3/bucket.go:85-89 and 369-373; the
configuration resources are replaced when their `bucket` or `expected_bucket_owner` changes, e.g.
bucket_lifecycle_configuration.go:40-50, and the lock configuration also when its `object_lock_enabled` does,
bucket_object_lock_configuration.go:35-51). pulumi-aws 7.51.1's own snapshot was too large to fetch here, so this
older fork is the closest source read; renaming the bucket or adding a lock later means a new bucket. Therefore the
bucket and its settings are kept when the stack deletes them (`retain_on_delete`): a destroyed or renamed estate
leaves its backups where they are, and `force_destroy` stays off (S3 refuses to delete a bucket that still holds
objects).
"""

from typing import Optional, TypedDict

import pulumi
import pulumi_aws as aws
from typing_extensions import Required

from . import backup_rules
from .arguments import check_arguments
from .backup_sidecar import BackupLock


class BackupBucketArgs(TypedDict, total=False):
    bucket: Required[str]
    """The bucket's name (S3's naming rules; bucket names are global, so include something of your own)."""
    region: Required[str]
    """The AWS region it lives in, e.g. eu-central-1."""
    prefix: str
    """The key prefix the backups use: the lifecycle rule covers only keys below it (absent: the whole bucket)."""
    retention_days: int
    """Days a replaced (noncurrent) backup version is kept, 1 to 36500 (default 30)."""
    keep_versions: int
    """Noncurrent versions kept however old they are, 1 to 100 (default 3): if backups stop, the last ones stay."""
    lock: Optional[BackupLock]
    """Default Object Lock retention of every new version (absent: no lock). This component enables Object Lock on
    the bucket itself (`objectLockEnabled`, which replaces the bucket when it changes), so adding a lock later
    makes a new bucket, although S3 can enable it on an existing versioned bucket too (S3 User Guide, "Configuring
    S3 Object Lock": "Enable Object Lock on an existing S3 bucket")."""
    kms_key_arn: Optional[str]
    """Encrypt with this KMS key (aws:kms); absent: S3-managed keys (AES256)."""


class BackupBucket(pulumi.ComponentResource):
    """A private, versioned, encrypted S3 bucket for broker backups, with noncurrent-version expiration and optional
    Object Lock. Kept when the stack deletes it."""

    bucket_name: str
    """The bucket's name."""
    region: str
    """Its region."""
    arn: pulumi.Output[str]
    """The bucket's ARN (for an IAM policy granting the backup role access)."""

    def __init__(self, name: str, args: BackupBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        check_arguments("BackupBucket", name, args, BackupBucketArgs)
        super().__init__("mqtt-estate:index:BackupBucket", name, None, opts)
        region, lock = args["region"], args.get("lock")
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args["bucket"], region=region, force_destroy=False,
                               object_lock_enabled=True if lock else None, opts=keep)
        # the bucket's name, as an Output: each setting waits for the bucket (its `id` is the name too, but the
        # name is what the real provider and the offline engine both give back)
        target = bucket.bucket

        def setting(kind, suffix: str, depends_on=None, **inputs):
            return kind(f"{name}-{suffix}", bucket=target, region=region, **inputs,
                        opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=depends_on)))

        versioning = setting(aws.s3.BucketVersioning, "versioning", versioning_configuration={"status": "Enabled"})
        kms = args.get("kms_key_arn")
        setting(aws.s3.BucketServerSideEncryptionConfiguration, "encryption", rules=[{
            "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms" if kms else "AES256",
                                                        **({"kms_master_key_id": kms} if kms else {})},
            "bucket_key_enabled": bool(kms)}])
        setting(aws.s3.BucketPublicAccessBlock, "public-access-block", block_public_acls=True,
                block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True)
        prefix = args.get("prefix")
        setting(aws.s3.BucketLifecycleConfiguration, "lifecycle", depends_on=[versioning], rules=[{
            "id": "backup-retention", "status": "Enabled",
            "filter": {"prefix": f"{prefix}/" if prefix else ""},
            "noncurrent_version_expiration": {
                "noncurrent_days": args.get("retention_days", backup_rules.DEFAULT_RETENTION_DAYS),
                "newer_noncurrent_versions": args.get("keep_versions", backup_rules.DEFAULT_KEEP_VERSIONS)},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1}}])
        if lock:
            setting(aws.s3.BucketObjectLockConfiguration, "object-lock", depends_on=[versioning],
                    object_lock_enabled="Enabled",
                    rule={"default_retention": {"mode": lock["mode"], "days": lock["days"]}})

        self.bucket_name = args["bucket"]
        self.region = region
        self.arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "region": region, "arn": self.arn})

