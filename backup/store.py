"""The bucket side: one S3 object per broker pod, `<prefix>/<pod>/mosquitto.db`, every backup a version of it.

Why versions of one key (not one key per backup): the bucket's versioning, lifecycle (noncurrent-version expiry)
and object lock then do retention for us, and "the latest" is just the current version.

Integrity, end to end: the agent hashes the exact bytes it validated; the SHA-256 travels three ways:
  - as x-amz-checksum-sha256 (ChecksumSHA256 with ChecksumAlgorithm=SHA256), which S3 verifies on upload and
    returns on download (GetObject ChecksumMode=ENABLED; botocore then checks the body against it and raises
    FlexibleChecksumError). moto 5.2.1 stores the value without checking it (moto/s3/responses.py:2309-2310,
    "TODO: AWS computes the provided value and verifies it's the same") and records the algorithm only when
    x-amz-sdk-checksum-algorithm is sent (responses.py:2293-2294), so both are sent;
  - as Content-MD5, which every S3-compatible store checks, and which an upload with object-lock retention
    needs when no checksum algorithm is sent (moto refuses it otherwise: responses.py:2203-2207);
  - as user metadata `sha256` (hex), which `fetch` checks itself: it is the one a restore trusts, because it
    survives copies, MinIO without checksum support, and an object replaced by other bytes under old metadata.
botocore's default since 1.36 adds a CRC32 checksum to every upload ("when_supported"), which several
S3-compatible stores refuse; the client asks only for what is listed above (request_checksum_calculation
"when_required"). An endpoint that refuses the SHA-256 headers gets Content-MD5 only (one stderr line).
"""

import base64
import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from . import dbfile
from .config import Config, Target, parse_time, rfc3339

EMPTY_DB_SIZE = dbfile.HEADER_SIZE + dbfile.CHUNK_HEADER.size + dbfile.PF_CFG
"""47 bytes: what mosquitto saves when it holds nothing (header and cfg chunk; measured)."""
_CHECKSUM_REFUSED = {"NotImplemented", "InvalidArgument", "InvalidRequest", "BadRequest"}
"""Error codes with which an S3-compatible store refuses headers it does not implement."""
_NOT_FOUND = {"NoSuchVersion", "NoSuchKey", "404", "InvalidArgument"}


class StoreError(RuntimeError):
    """One line naming the bucket, the key, the version (when there is one) and what failed."""


class Unreachable(StoreError):
    """The bucket could not be read or written: network, endpoint, credentials, permissions, no such bucket."""


class VersionNotFound(StoreError):
    """No version of the key matches what was asked for."""


class VerificationFailed(StoreError):
    """A version's bytes are not the database that was uploaded, or not a valid one."""


class ChecksumMismatch(VerificationFailed):
    def __init__(self, location: str, version: str, expected: str, got: str, what: str = "sha256"):
        self.expected, self.got, self.version = expected, got, version
        super().__init__(f"{location} version {version}: {what} mismatch: expected {expected}, got {got}")


class DamagedBackup(VerificationFailed):
    """The bytes hash as recorded but are not a database mosquitto would load (or carry no checksum to check)."""


@dataclass
class Version:
    version_id: str
    last_modified: dt.datetime
    size: int
    is_latest: bool = False
    metadata: Optional[dict[str, str]] = None
    """User metadata (head_object), filled in on demand."""

    @property
    def saved_at(self) -> dt.datetime:
        """When the agent read the file (metadata `saved-at`); the upload time for objects without it."""
        moment = parse_time((self.metadata or {}).get("saved-at", ""))
        return moment or self.last_modified.astimezone(dt.timezone.utc)


@dataclass
class Fetched:
    version: Version
    data: bytes
    summary: dbfile.DbSummary
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Uploaded:
    version_id: str
    sha256: str
    checksum: str
    """"SHA256" when the store took x-amz-checksum-sha256, "MD5" when only Content-MD5 was sent."""


def contents(summary: dbfile.DbSummary) -> str:
    """The `contents` metadata: what a version holds, readable without downloading it."""
    return (f"retained={summary.retained} messages={summary.messages} clients={summary.clients} "
            f"subscriptions={summary.subscriptions} queued={summary.client_messages}")


def holds_data(metadata: dict[str, str]) -> Optional[bool]:
    """Whether a version's metadata says it holds anything (None: cannot tell)."""
    text = metadata.get("contents")
    if text:
        try:
            return any(int(part.split("=", 1)[1]) for part in text.split())
        except (IndexError, ValueError):
            return None
    size = metadata.get("size")
    return int(size) > EMPTY_DB_SIZE if size and size.isdigit() else None


def metadata_for(config: Config, data: bytes, summary: dbfile.DbSummary, broker_version: str,
                 saved_at: dt.datetime) -> dict[str, str]:
    """The contract's metadata (issue 15): sha256, broker-version, pod, ordinal, saved-at, db-format, size; plus
    `contents`. S3 user metadata must be ASCII: the broker version is reduced to printable ASCII."""
    version = "".join(ch for ch in broker_version if 32 <= ord(ch) < 127).strip() or "unknown"
    return {"sha256": hashlib.sha256(data).hexdigest(), "broker-version": version, "pod": config.pod,
            "ordinal": config.ordinal, "saved-at": rfc3339(saved_at), "db-format": str(summary.format_version),
            "size": str(len(data)), "contents": contents(summary)}


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "") or response.get("ResponseMetadata", {})
                   .get("HTTPStatusCode", ""))
    return ""


def _one_line(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        line = " ".join(f"{error.get('Code', '')}: {error.get('Message', '')}".split())
        if str(error.get("Code")) in ("403", "AccessDenied", "Forbidden"):
            # S3 answers a missing key with 403 when the caller lacks s3:ListBucket (API reference, HeadObject,
            # "Permissions"): say so, or a least-privilege role reads as a broken bucket
            line += " (the credentials need s3:GetObject, s3:GetObjectVersion, s3:PutObject, s3:ListBucket and " \
                    "s3:ListBucketVersions: README, \"Permissions the credentials need\")"
        return line
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class Store:
    """One pod's key in the bucket. Every method raises StoreError subclasses, never botocore's."""

    def __init__(self, config: Config, client: Any = None, attempts: int = 3):
        """`attempts`: botocore's tries per call (standard retry mode, with backoff) before a call fails."""
        config.require_bucket()
        self.config = config
        self.bucket = config.bucket
        self.key = config.key
        self.location = config.location
        self._client = client
        self._attempts = attempts
        self._checksums = True

    @property
    def client(self):
        if self._client is None:
            import boto3  # noqa: PLC0415 - `init` on a good local db never needs it
            from botocore.config import Config as BotoConfig  # noqa: PLC0415

            self._client = boto3.session.Session().client(
                "s3", region_name=self.config.region, endpoint_url=self.config.endpoint,
                config=BotoConfig(
                    s3={"addressing_style": "path" if self.config.path_style else "auto"},
                    request_checksum_calculation="when_required", response_checksum_validation="when_required",
                    retries={"max_attempts": self._attempts, "mode": "standard"}, connect_timeout=5, read_timeout=20))
        return self._client

    def _call(self, operation: str, version: Optional[str] = None, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        where = f"{self.location}" + (f" version {version}" if version else "")
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = _code(exc)
            if version and code in _NOT_FOUND:
                raise VersionNotFound(f"{where}: no such version ({_one_line(exc)})") from exc
            raise Unreachable(f"{where}: {operation} failed: {_one_line(exc)}") from exc
        except BotoCoreError as exc:
            raise Unreachable(f"{where}: {operation} failed: {_one_line(exc)}") from exc

    # --- writing -------------------------------------------------------------------------------------------
    def put(self, data: bytes, metadata: dict[str, str], now: Optional[dt.datetime] = None) -> Uploaded:
        """Upload one backup as the key's new current version."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        digest = hashlib.sha256(data)
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        kwargs: dict[str, Any] = {"Key": self.key, "Body": data, "Metadata": metadata,
                                  "ContentType": "application/octet-stream",
                                  "ContentMD5": base64.b64encode(md5).decode()}
        if self.config.lock_mode:
            until = (now or dt.datetime.now(dt.timezone.utc)) + dt.timedelta(days=self.config.lock_days or 1)
            kwargs.update(ObjectLockMode=self.config.lock_mode, ObjectLockRetainUntilDate=until)
        if self._checksums:
            try:
                response = self.client.put_object(Bucket=self.bucket, ChecksumAlgorithm="SHA256",
                                                  ChecksumSHA256=base64.b64encode(digest.digest()).decode(), **kwargs)
                return Uploaded(response.get("VersionId") or "null", digest.hexdigest(), "SHA256")
            except ClientError as exc:
                if self.config.lock_mode and "objectlock" in _one_line(exc).lower().replace(" ", ""):
                    raise Unreachable(
                        f"{self.location}: the bucket refuses locked uploads ({_one_line(exc)}): create it with "
                        "Object Lock enabled, or leave out retention.lock") from exc
                if _code(exc) not in _CHECKSUM_REFUSED:
                    raise Unreachable(f"{self.location}: put_object failed: {_one_line(exc)}") from exc
                self._checksums = False
                print(f"mqtt-estate-backup: {self.config.endpoint or 's3'} refused x-amz-checksum-sha256 "
                      f"({_one_line(exc)}); uploads carry Content-MD5 and the sha256 metadata only",
                      file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - botocore's connection errors: one line, not a traceback
                raise Unreachable(f"{self.location}: put_object failed: {_one_line(exc)}") from exc
        response = self._call("put_object", **kwargs)
        return Uploaded(response.get("VersionId") or "null", digest.hexdigest(), "MD5")

    # --- reading -------------------------------------------------------------------------------------------
    def _if_exists(self, operation: str, key: str) -> Optional[dict]:
        """`operation` (head_object or get_object) on the current version of `key`, or None when there is none (no
        object, or a delete marker on top); any other failure is Unreachable, naming the key."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise Unreachable(f"s3://{self.bucket}/{key}: {operation} failed: {_one_line(exc)}") from exc
        except Exception as exc:  # noqa: BLE001 - botocore's connection errors: one line, not a traceback
            raise Unreachable(f"s3://{self.bucket}/{key}: {operation} failed: {_one_line(exc)}") from exc

    def current(self) -> Optional[Version]:
        """The key's current version with its metadata, or None (no object, or a delete marker on top)."""
        head = self._if_exists("head_object", self.key)
        if head is None:
            return None
        return Version(head.get("VersionId") or "null", head["LastModified"], head.get("ContentLength", 0), True,
                       dict(head.get("Metadata") or {}))

    def versions(self) -> list[Version]:
        """Every version of the key, newest first (delete markers left out)."""
        found: list[Version] = []
        marker: dict[str, str] = {}
        while True:
            page = self._call("list_object_versions", Prefix=self.key, **marker)
            for item in page.get("Versions", []):
                if item["Key"] == self.key:
                    found.append(Version(item.get("VersionId") or "null", item["LastModified"], item.get("Size", 0),
                                         bool(item.get("IsLatest"))))
            if not page.get("IsTruncated"):
                break
            marker = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
        # S3 lists a key's versions newest first; LastModified breaks no tie (moto's has whole seconds): stable sort
        return sorted(found, key=lambda v: v.last_modified, reverse=True)

    # --- restore requests, remembered beside the pod's backups --------------------------------------------
    def request_key(self, request: str) -> str:
        """`<prefix>/<pod>/restores/<request id>`: a request is remembered with the backups, not only in the
        volume, because a new pod (a scale-up) or a lost volume knows nothing of the requests already applied."""
        return f"{self.key.rpartition('/')[0]}/restores/{request}"

    def request_applied(self, request: str) -> Optional[str]:
        """The token (`<id>@<target>`) the request was applied with to this pod, or None when it never was."""
        key = self.request_key(request)
        response = self._if_exists("get_object", key)
        if response is None:
            return None
        try:
            body = response["Body"].read()
        except Exception as exc:  # noqa: BLE001 - a connection lost mid-body
            raise Unreachable(f"s3://{self.bucket}/{key}: get_object failed: {_one_line(exc)}") from exc
        try:
            return str(json.loads(body)["token"])
        except (ValueError, KeyError, TypeError):
            return None  # not ours: a request id is applied again rather than skipped on a record it cannot read

    def remember_request(self, request: str, record: dict) -> None:
        """Write the request's marker (a small JSON record of what was done); Content-MD5, which a bucket with
        Object Lock requires of every upload."""
        body = (json.dumps(record, sort_keys=True) + "\n").encode()
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        self._call("put_object", Key=self.request_key(request), Body=body, ContentType="application/json",
                   ContentMD5=base64.b64encode(md5).decode())

    def with_metadata(self, version: Version) -> Version:
        if version.metadata is None:
            head = self._call("head_object", version=version.version_id, Key=self.key,
                              VersionId=version.version_id)
            version.metadata = dict(head.get("Metadata") or {})
        return version

    def find(self, target: Target) -> Version:
        """The version a restore request names (VersionNotFound when none does)."""
        versions = self.versions()
        if not versions:
            raise VersionNotFound(f"{self.location}: the bucket holds no backup of this pod")
        if target.kind == "latest":
            return versions[0]
        if target.kind == "version":
            for version in versions:
                if version.version_id == target.version:
                    return version
            raise VersionNotFound(f"{self.location} version {target.version}: no such version "
                                  f"({len(versions)} versions, newest {versions[0].version_id})")
        for version in versions:  # newest first: the first saved at or before the time is the one
            if self.with_metadata(version).saved_at <= target.time:
                return version
        raise VersionNotFound(f"{self.location}: no backup saved at or before {rfc3339(target.time)} "
                              f"(oldest: {rfc3339(versions[-1].saved_at)})")

    def fetch(self, version: Version) -> Fetched:
        """Download one version and verify it: S3's SHA-256 (when stored), the `sha256` and `size` metadata, then
        the database's structure. Raises VerificationFailed naming bucket, key, version and what failed."""
        from botocore.exceptions import FlexibleChecksumError  # noqa: PLC0415

        vid = version.version_id
        response = self._call("get_object", version=vid, Key=self.key, VersionId=vid, ChecksumMode="ENABLED")
        try:
            data = response["Body"].read()
        except FlexibleChecksumError as exc:
            raise ChecksumMismatch(self.location, vid, "S3's stored checksum", " ".join(str(exc).split()),
                                   "x-amz-checksum-sha256") from exc
        except Exception as exc:  # noqa: BLE001 - a connection lost mid-body
            raise Unreachable(f"{self.location} version {vid}: download failed: {_one_line(exc)}") from exc
        metadata = dict(response.get("Metadata") or {})
        version.metadata = metadata
        expected = metadata.get("sha256", "")
        got = hashlib.sha256(data).hexdigest()
        if not expected:
            raise DamagedBackup(f"{self.location} version {vid}: no sha256 metadata, cannot verify (not written by "
                                f"the backup agent)")
        if expected.lower() != got:
            raise ChecksumMismatch(self.location, vid, expected, got)
        if metadata.get("size", str(len(data))) != str(len(data)):
            raise ChecksumMismatch(self.location, vid, metadata["size"], str(len(data)), "size")
        try:
            summary = dbfile.inspect(data)
        except dbfile.CorruptDatabase as exc:
            raise DamagedBackup(f"{self.location} version {vid}: not a valid mosquitto.db: {exc}") from exc
        return Fetched(version, data, summary, metadata)
