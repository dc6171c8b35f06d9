"""The rules a broker backup follows (bucket, region, endpoint, key prefix, schedule, credentials, restore), written
once for the stack config (stacks/model.py for single values, stacks/checks.py for what one value means for another)
and the components' arguments (components/arguments.py), so a program in any language gets the same answer.

Each grammar returns None for a valid value, else one sentence that starts with the quoted value (the convention of
stacks/grammar.py). Sources, for what AWS decides:
- bucket names: "General purpose bucket naming rules", https://docs.aws.amazon.com/AmazonS3/latest/userguide/
  bucketnamingrules.html (3-63 characters; lower-case letters, digits, '.' and '-'; begin and end with a letter or
  digit; no two adjacent periods; not formatted as an IP address; not starting with xn--, sthree- or amzn-s3-demo-;
  not ending with -s3alias, --ol-s3, .mrap; --x-s3 and --table-s3 are the directory and table buckets' suffixes,
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-tables-buckets-naming.html).
- object keys: "Object key naming guidelines", https://docs.aws.amazon.com/AmazonS3/latest/userguide/
  object-keys.html (the safe characters are letters, digits and ! - _ . * ' ( ), with / as the delimiter). The key
  prefix here is stricter: no `*` (an IAM policy reads it as a wildcard, so a policy written for the prefix would
  grant more), no ! ' ( ) (quoting trouble in shells and URLs), and no empty, `.` or `..` segments (tools that map
  keys to files read them as directory steps).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Iterator, Mapping, Optional
from urllib.parse import urlsplit

from ..stacks import grammar
from .names import estate_secret

LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
DEFAULT_RETENTION_DAYS = 30
DEFAULT_KEEP_VERSIONS = 3
MAX_DAYS = 36_500
"""Retention and lock days, at most 100 years (a typo of an extra digit or two, not a policy)."""
MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS = 60, 86_400
"""A backup at least every day and at most every minute: each forces mosquitto to write its whole database."""
LATEST = "latest"
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
"""IRSA's ServiceAccount annotation (aws/amazon-eks-pod-identity-webhook 3bf80a34 pkg/handler/handler.go:95, the
default annotation domain, and pkg/annotations.go:21; read from the ServiceAccount in pkg/cache/cache.go:218)."""
RESERVED_ANNOTATION_DOMAINS = ("kubernetes.io", "k8s.io", "pulumi.com")
"""Annotation prefixes that steer Kubernetes itself or Pulumi's handling of the object (e.g. pulumi.com/skipAwait,
kubernetes.io/enforce-mountable-secrets): a backup setting has no business there."""

BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+", re.ASCII)
_DOTTED_NUMBERS = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", re.ASCII)


ACCESS_KEY_ID, SECRET_ACCESS_KEY = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
"""The credentials Secret's default keys, and the environment variables boto3 reads."""


def bucket_name(value: str) -> Optional[str]:
    """An S3 general purpose bucket name (AWS's naming rules, module docstring)."""
    allowed = "3-63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit"
    if not isinstance(value, str):
        return f"{grammar.quoted(value)} is not text (expected a bucket name such as plant7-mqtt-backups)"
    if not 3 <= len(value) <= 63:
        return f"{grammar.quoted(value)} is {len(value)} characters long (a bucket name has {allowed})"
    if not _BUCKET_CHARS.fullmatch(value):
        if _BUCKET_CHARS.fullmatch(value.lower()):
            return f"{grammar.quoted(value)} must be lower-case (did you mean {value.lower()!r}?)"
        bad = next(c for c in value if not _BUCKET_CHARS.fullmatch(c.lower()))
        return f"{grammar.quoted(value)} contains {bad!r} (a bucket name has {allowed})"
    if not (value[0].isalnum() and value[-1].isalnum()):
        return f"{grammar.quoted(value)} must start and end with a letter or digit"
    if ".." in value:
        return f"{grammar.quoted(value)} has two adjacent periods (S3 refuses them)"
    if ".-" in value or "-." in value:
        return (f"{grammar.quoted(value)} has a '-' next to a '.': a DNS label cannot start or end with '-', so "
                "the bucket's virtual-hosted name (and its TLS certificate) would not work")
    if _DOTTED_NUMBERS.fullmatch(value):
        return f"{grammar.quoted(value)} is formatted as an IP address (S3 refuses such bucket names)"
    for prefix in BUCKET_PREFIXES:
        if value.startswith(prefix):
            return f"{grammar.quoted(value)} starts with {prefix!r}, which S3 reserves"
    for suffix in BUCKET_SUFFIXES:
        if value.endswith(suffix):
            return (f"{grammar.quoted(value)} ends with {suffix!r}, which S3 reserves for access points and other "
                    "buckets")
    return None


_AWS_REGION = re.compile(r"[a-z]{2,4}(?:-[a-z]+)+-[0-9]{1,2}", re.ASCII)
"""AWS region names: area, one or more words, a number (us-east-1, eu-central-1, us-gov-west-1, eusc-de-east-1)."""
_STORE_REGION = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62})", re.ASCII)
"""What an S3-compatible store calls a region (MinIO's us-east-1, a Ceph zone group such as default)."""


def store_region(value: str) -> Optional[str]:
    """The region an S3-compatible store is told: lower-case letters, digits, '-' and '_' (AWS's own names are
    checked by aws_region when the bucket is on AWS)."""
    if not isinstance(value, str):
        return f"{grammar.quoted(value)} is not text (expected a region such as eu-central-1)"
    if _STORE_REGION.fullmatch(value):
        return None
    if _STORE_REGION.fullmatch(value.lower()):
        return f"{grammar.quoted(value)} must be lower-case (did you mean {value.lower()!r}?)"
    return f"{grammar.quoted(value)} is not a region (lower-case letters, digits and '-', e.g. eu-central-1)"


def aws_region(value: str) -> Optional[str]:
    """An AWS region name, as the bucket's home."""
    problem = store_region(value)
    if problem or _AWS_REGION.fullmatch(value):
        return problem
    if _AWS_REGION.fullmatch(value + "-1"):
        return f"{grammar.quoted(value)} is not an AWS region (regions end in a number: did you mean '{value}-1'?)"
    if re.fullmatch(r"[a-z]{2,4}(?:-[a-z]+)+-[0-9]{1,2}[a-z]", value):
        return (f"{grammar.quoted(value)} is an availability zone (the bucket's region is {value[:-1]!r})")
    return f"{grammar.quoted(value)} is not an AWS region (e.g. eu-central-1 or us-east-1)"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: inside the pod itself."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_parts(value: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a valid endpoint URL."""
    parts = urlsplit(value)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port


def endpoint(value: str) -> Optional[str]:
    """An S3-compatible endpoint URL: https://host[:port], or http only to the pod's own loopback.

    Why http is refused elsewhere: the upload carries the whole database (every retained message, every queued
    message of a persistent session, client ids) and the restore trusts what comes back. Over plain http anyone on
    the path reads the plant's data and can hand a forged backup to a restoring broker (the checksum travels in the
    same response). Loopback never leaves the pod: a gateway sidecar, or the offline tests' moto_server. https does
    not stop a stack author from naming a server of their own; the stack file is trusted (README, "Backups")."""
    example = "https://minio.plant.example:9000"
    if not isinstance(value, str):
        return f"{grammar.quoted(value)} is not text (expected a URL such as {example})"
    if any(c.isspace() or not c.isprintable() for c in value):
        return f"{grammar.quoted(value)} contains whitespace or control characters (write the URL alone)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"{grammar.quoted(value)} is not a URL ({exc}; e.g. {example})"
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return f"{grammar.quoted(value)} is not an http(s) URL (e.g. {example})"
    if parts.username is not None or parts.password is not None:
        return (f"{grammar.quoted(value)} carries credentials in the URL (they would sit in the pod spec in plain "
                "text; put them in the Secret named by credentials.secretName)")
    host = parts.hostname or ""
    problem = grammar.host_name(host)
    if problem:
        return f"{grammar.quoted(value)} has a bad host: {problem}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return (f"{grammar.quoted(value)} has a path, query or fragment (give the service's root URL: the S3 "
                f"client adds the bucket and key itself, e.g. {example})")
    if port == 0:
        return f"{grammar.quoted(value)} has port 0 (use 1-65535)"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None and (address.is_link_local or address.is_unspecified or address.is_multicast):
        return (f"{grammar.quoted(value)} is a link-local, unspecified or multicast address (169.254.169.254 is the "
                "node's instance metadata service, not an object store): the NetworkPolicy would open it to the pods")
    if parts.scheme == "http" and not is_loopback(host):
        return (f"{grammar.quoted(value)} is plain http: the database (retained and queued messages) would cross the "
                "network readable by anyone on the path, who could also hand a forged backup to a restore; use "
                "https (http is allowed only to 127.0.0.1 or localhost, inside the pod)")
    return None


_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
MAX_PREFIX = 512
"""Keys are at most 1024 bytes (S3); `<prefix>/<pod>/mosquitto.db` leaves room for a 63-character pod name."""


def key_prefix(value: str) -> Optional[str]:
    """The key prefix of the backups: `/`-separated segments of letters, digits, '_', '.' and '-'."""
    allowed = "segments of letters, digits, '_', '.' and '-' separated by '/', e.g. mqtt-estate/plant7"
    if not isinstance(value, str):
        return f"{grammar.quoted(value)} is not text ({allowed})"
    if value == "":
        return f"'' is empty ({allowed})"
    if len(value) > MAX_PREFIX:
        return f"{grammar.quoted(value)} is {len(value)} characters long (at most {MAX_PREFIX})"
    if value.startswith("/") or value.endswith("/"):
        return f"{grammar.quoted(value)} starts or ends with '/' (the key is <prefix>/<pod>/mosquitto.db; write " \
               f"{value.strip('/')!r})"
    for segment in value.split("/"):
        if segment == "":
            return f"{grammar.quoted(value)} has an empty segment ('//')"
        if segment in (".", ".."):
            return f"{grammar.quoted(value)} has a {segment!r} segment (tools that map keys to files read it as a " \
                   "directory step)"
        if not _PREFIX_SEGMENT.fullmatch(segment):
            bad = next(c for c in segment if not _PREFIX_SEGMENT.fullmatch(c))
            why = " (an IAM policy reads '*' as a wildcard)" if bad == "*" else ""
            return f"{grammar.quoted(value)} contains {bad!r}{why} ({allowed})"
    return None


def default_prefix(namespace: str) -> str:
    """The key prefix when the stack names none: one per namespace, so estates can share a bucket."""
    return f"mqtt-estate/{namespace}"


def schedule(value: str) -> Optional[str]:
    """How often a backup is taken: a duration as Prometheus writes it (s, m = minutes, h, d), 1m to 24h."""
    allowed = "whole numbers with units d, h, m (minutes) or s, largest first, e.g. 15m or 1h30m"
    if isinstance(value, str) and value.isdigit():
        return f"{grammar.quoted(value)} has no unit (write {value}m for minutes; {allowed})"
    if grammar.prometheus_duration(value):
        return f"{grammar.quoted(value)} is not a duration ({allowed})"
    if not MIN_INTERVAL_SECONDS * 1000 <= grammar.prometheus_duration_ms(value) <= MAX_INTERVAL_SECONDS * 1000:
        return f"{grammar.quoted(value)} is outside 1m to 24h (each backup makes mosquitto write its whole database)"
    return None


def schedule_seconds(value: str) -> int:
    return grammar.prometheus_duration_ms(value) // 1000


_REQUEST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_VERSION_ID = re.compile(r"[A-Za-z0-9._-]{1,1024}", re.ASCII)
"""S3 version ids as S3 and moto make them: URL-safe text (letters, digits, '.', '_', '-')."""


def restore_request(value: str) -> Optional[str]:
    """A restore request's id: recorded one per line on the data volume once done, so one word."""
    if isinstance(value, str) and _REQUEST.fullmatch(value):
        return None
    return (f"{grammar.quoted(value)} is not a request id (1-64 letters, digits, '.', '_' and '-', starting with a "
            "letter or digit, e.g. 2026-08-14-line3)")


def target_kind(value: str) -> str:
    """'latest', 'time' or 'version' for a valid restore target."""
    if value == LATEST:
        return "latest"
    return "time" if grammar.looks_like_a_time(value) else "version"


def restore_target(value: str) -> Optional[str]:
    """What a restore takes: `latest`, an S3 version id of the pod's key, or an RFC 3339 time (the newest backup
    saved at or before it). A time in the future cannot be refused here: the render does not know when the pod will
    start; it then means the newest backup, as `latest` does."""
    if not isinstance(value, str):
        return f"{grammar.quoted(value)} is not text (latest, an S3 version id or an RFC 3339 time)"
    if value == LATEST:
        return None
    if value.lower() == LATEST:
        return f"{grammar.quoted(value)} must be lower-case (write latest)"
    if grammar.looks_like_a_time(value) or ":" in value:
        problem = grammar.rfc3339_time(value)
        if problem is None and not 1970 <= int(value[:4]) <= 9998:  # year 1 or 9999 with an offset overflows
            return f"{grammar.quoted(value)} is not a time a backup can have been saved at (years 1970 to 9998)"
        return problem
    if _VERSION_ID.fullmatch(value):
        return None
    return (f"{grammar.quoted(value)} is neither latest, an S3 version id (letters, digits, '.', '_', '-') nor an "
            "RFC 3339 time such as 2026-08-14T06:30:00Z")


def annotation_key(value: str) -> Optional[str]:
    """A ServiceAccount annotation key: a qualified name (apimachinery IsQualifiedName, as a label key), not in a
    domain that steers Kubernetes or Pulumi."""
    problem = grammar.label_key(value)
    if problem:
        return problem.replace("label", "annotation")
    domain = value.rpartition("/")[0].lower()
    for reserved in RESERVED_ANNOTATION_DOMAINS:
        if domain == reserved or domain.endswith("." + reserved):
            return (f"{grammar.quoted(value)} is in {reserved}, whose annotations steer Kubernetes or Pulumi (only "
                    f"workload-identity annotations belong here, e.g. {ROLE_ARN_ANNOTATION})")
    return None


def annotation_value(value: str) -> Optional[str]:
    if not isinstance(value, str):
        return f"{grammar.quoted(value)} is not text"
    if any(not c.isprintable() for c in value):
        return f"{grammar.quoted(value)} contains control characters"
    return None


_ROLE_ARN = re.compile(r"arn:aws(?:-cn|-us-gov|-iso|-iso-[a-z]|-eusc)?:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}",
                       re.ASCII)
"""An IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<path/name> (IAM role names: letters, digits and
+=,.@_-)."""


def role_arn(value: str) -> Optional[str]:
    if _ROLE_ARN.fullmatch(value):
        return None
    return (f"{grammar.quoted(value)} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>, e.g. "
            "arn:aws:iam::123456789012:role/mqtt-backup)")


_KMS_KEY_ARN = re.compile(r"arn:aws(?:-cn|-us-gov|-iso|-iso-[a-z]|-eusc)?:kms:[a-z0-9-]+:[0-9]{12}:"
                          r"(?:key/[A-Za-z0-9-]{1,128}|alias/[A-Za-z0-9/_-]{1,250})", re.ASCII)


def kms_key_arn(value: str) -> Optional[str]:
    """A KMS key's or alias's ARN, for the bucket's default encryption."""
    if isinstance(value, str) and _KMS_KEY_ARN.fullmatch(value):
        return None
    return (f"{grammar.quoted(value)} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id> or "
            ":alias/<name>)")


def lock_problem(lock_days: int, retention_days: int, retention_key: str) -> Optional[str]:
    """A lock must not outlast the retention: the lifecycle rule could not delete a locked version, so the
    retention would silently become the lock's."""
    if lock_days > retention_days:
        return (f"{lock_days} is longer than {retention_key} {retention_days}: versions would live as long as the "
                f"lock, not the retention (lock at most {retention_days} days, or keep them longer)")
    return None


def problems(backup: Mapping[str, Any], broker: str, brokers: int,
             key_name: Callable[[str], str] = str) -> Iterator[tuple[tuple, str]]:
    """(path, message) for what one backup value means for another. `backup` is the BrokerBackup shape
    (components/backup_sidecar.py) with snake_case keys and only the keys given; `brokers` the most broker pods;
    paths are snake_case too, and a message names another key as `key_name` spells it."""
    bucket = backup.get("bucket") or {}
    if not bucket.get("endpoint"):
        region = bucket.get("region")
        if region is None:
            yield ("bucket", "region"), (f"is required without {key_name('bucket.endpoint')} (the bucket's AWS "
                                         "region, e.g. eu-central-1)")
        elif aws_region(region):
            yield ("bucket", "region"), aws_region(region)
    yield from _credentials(backup.get("credentials") or {}, broker, key_name)
    restore = backup.get("restore") or {}
    request, target = restore.get("request"), restore.get("target")
    if request is not None and target is None:
        yield ("restore", "target"), (f"is required with {key_name('restore.request')} (latest, an S3 version id "
                                      "or an RFC 3339 time)")
    elif target is not None and request is None:
        yield ("restore", "target"), (f"has no effect without {key_name('restore.request')} (a new request id is "
                                      "what makes the pods restore)")
    elif target is not None and target_kind(target) == "version" and brokers > 1:
        yield ("restore", "target"), (f"{target!r} is an S3 version id, which names one object: each of the "
                                      f"{brokers} brokers keeps its own key (<prefix>/<pod>/mosquitto.db), so use "
                                      "latest or a time")


def _credentials(credentials: Mapping[str, Any], broker: str, key_name) -> Iterator[tuple[tuple, str]]:
    secret_name = credentials.get("secret_name")
    annotations = credentials.get("service_account_annotations") or {}
    if secret_name and annotations:
        yield ("credentials", "service_account_annotations"), (
            f"cannot be used with {key_name('credentials.secret_name')} (give one credential source: the access "
            "keys' Secret, or workload identity)")
    elif not secret_name and not annotations:
        yield ("credentials",), (f"are required: name the Secret with the access keys "
                                 f"({key_name('credentials.secret_name')}) or annotate the ServiceAccount for workload "
                                 f"identity ({key_name('credentials.service_account_annotations')}, e.g. "
                                 f"{ROLE_ARN_ANNOTATION}); without either the pods have no credentials")
    for key in ("access_key_id_key", "secret_access_key_key"):
        if key in credentials and not secret_name:
            yield ("credentials", key), f"has no effect without {key_name('credentials.secret_name')}"
    # compared with the defaults filled in: naming only the secret key's key as AWS_ACCESS_KEY_ID is the same mistake
    if secret_name and (credentials.get("access_key_id_key") or ACCESS_KEY_ID) == \
            (credentials.get("secret_access_key_key") or SECRET_ACCESS_KEY):
        yield ("credentials", "secret_access_key_key"), (f"is the same Secret key as "
                                                         f"{key_name('credentials.access_key_id_key')}")
    held = estate_secret(broker, secret_name) if secret_name else None
    if held:
        yield ("credentials", "secret_name"), (f"{secret_name!r} is the estate's own Secret ({held}): its keys would "
                                               "go into the backup containers' environment, and the access key id "
                                               "is sent to the endpoint (name a Secret of your own)")
    for key, value in annotations.items():
        if key == ROLE_ARN_ANNOTATION and isinstance(value, str) and role_arn(value):
            yield ("credentials", "service_account_annotations", key), role_arn(value)
