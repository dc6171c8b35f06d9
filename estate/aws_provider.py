"""pulumi-aws's AWS IoT and S3 resources and invokes computed for real against a local moto_server (the control plane).

The offline engine hands these resources and invokes here the way it hands pulumi-tls to tls_provider: the same
type tokens, inputs and output property names as pulumi-aws 7 (camelCase, as the mocks receive and return them),
computed by calling the AWS API of a `moto_server` on 127.0.0.1 with boto3.

Lifetime: one `Session` per engine run (engine.run_function). It starts a `ControlPlane` (a moto_server
subprocess on a free loopback port) on the first aws resource or invoke and stops it when the run ends, unless
the caller supplied a running one (`estate up --local` keeps it up for the stand-in, which reads the things,
certificates and policies back from `ControlPlane.url`). A supplied control plane is reset at the start of each
run, so what it holds is what the last run registered.

Region: a resource's or invoke's own `region` input (pulumi-aws 7 has one on every resource), else the region of
the explicit `aws` provider it is bound to, else the stack's `aws:region` config, else us-east-1 (the AWS SDKs'
usual default; the real provider would refuse to run without one).

Determinism. moto draws from one module-level generator (moto.moto_api._internal.mock_random): the IoT data
endpoint's 14-character prefix (describe_endpoint), thing ids (uuid4, not a pulumi-aws output but seen by boto3)
and request ids. Certificate ids are SHA-256 of the certificate's DER (moto's `iot.use_valid_cert`, as AWS
computes them); account 123456789012 and the ARNs are fixed; creation dates are wall-clock but are no pulumi-aws
output. Pulumi registers resources from several threads, so the order of API calls varies run to run: each call
that draws randomness is made under the control plane's lock right after re-seeding moto (POST
/moto-api/seed?a=N) with N derived from the stack seed and that resource's (or endpoint's) own name. Every output
is therefore a function of the stack seed and the program only, and renders are byte-identical run to run.

moto traps avoided (tests/brief): a certificate is registered with RegisterCertificateWithoutCA from the given
`certificatePem`; a `csr` is refused (moto's CreateCertificateFromCsr discards the CSR's key and issues a
certificate for a key of its own); keys made by moto (no certificatePem) are refused (they do not verify);
describe_endpoint is called once per run and region (moto returns a new prefix on every call).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator, Optional

from .processes import terminate
from .seed import Seed

DEFAULT_REGION = "us-east-1"
START_TIMEOUT = 20.0
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
"""moto accepts any credentials; these never leave the machine (no AWS_* variable from the environment is read)."""


class InputError(ValueError):
    """Inputs the real provider refuses too, or that the offline engine cannot compute: the message says which
    input is wrong and what is allowed (the engine adds the resource's type and name)."""


class ControlPlaneError(RuntimeError):
    """moto_server did not start, or answered an API call with an error (the message is AWS's, on one line)."""


def _free_port() -> int:
    from .ports import free_port  # noqa: PLC0415

    return free_port()


class ControlPlane:
    """A moto_server subprocess on 127.0.0.1 standing in for the AWS API. Usable as a context manager; `stop` is
    idempotent. API calls go through `client(service, region)` (boto3, cached) under `lock`."""

    def __init__(self) -> None:
        self.process: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.lock = threading.RLock()
        """Held around every call that must not interleave with another's seeding."""
        self.started_in: Optional[float] = None
        """Seconds moto_server took to answer its first request."""
        self._clients: dict[tuple[str, str], Any] = {}
        self._log: Optional[Any] = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ControlPlaneError("the AWS control plane (moto_server) is not running")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ControlPlane":
        if self.process is not None:
            return self
        began = time.monotonic()
        self._log = tempfile.TemporaryFile()
        for attempt in range(3):  # the free port may be taken between asking and binding
            self.port = _free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env, start_new_session=True)
            if self._wait_ready(began + START_TIMEOUT):
                break
            self._terminate()
        else:
            self._log.seek(0)
            tail = " ".join(self._log.read().decode(errors="replace").split()[-40:])
            self.port = None
            raise ControlPlaneError(f"moto_server did not start (flask and flask-cors installed?): {tail}")
        self.started_in = time.monotonic() - began
        # certificate ids as AWS computes them: SHA-256 of the DER, not of the PEM text
        self._api("config", json.dumps({"iot": {"use_valid_cert": True}}).encode())
        return self

    def _wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/moto-api/data.json", timeout=1):
                    return True
            except (urllib.error.URLError, OSError):
                time.sleep(0.02)
        return False

    def _api(self, path: str, body: bytes = b"") -> bytes:
        request = urllib.request.Request(f"{self.url}/moto-api/{path}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def seed(self, value: int) -> None:
        """Re-seed moto's random generator (ids, endpoint prefixes)."""
        self._api(f"seed?a={value}")

    def reset(self) -> None:
        """Forget every resource moto holds."""
        self._api("reset")

    def client(self, service: str, region: str = DEFAULT_REGION):
        """A boto3 client for `service` in `region` talking to this control plane."""
        key = (service, region)
        with self.lock:
            if key not in self._clients:
                import boto3  # noqa: PLC0415 - only runs that provision AWS resources pay for importing boto3
                from botocore.config import Config  # noqa: PLC0415

                self._clients[key] = boto3.session.Session().client(
                    service, region_name=region, endpoint_url=self.url,
                    config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30), **CREDENTIALS)
            return self._clients[key]

    def _terminate(self) -> None:
        terminate(self.process)
        self.process = None

    def stop(self) -> None:
        self._terminate()
        self.port = None
        self._clients.clear()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@functools.lru_cache(maxsize=1)
def _partitions() -> list[dict]:
    import botocore.loaders  # noqa: PLC0415

    return botocore.loaders.Loader().load_data("endpoints")["partitions"]


def partition_of(region: str) -> dict:
    """botocore's partition entry naming `region` (its `partition`, `dnsSuffix`, `regions`...), or InputError."""
    import re  # noqa: PLC0415

    for partition in _partitions():
        if region in partition.get("regions", {}) or re.fullmatch(partition.get("regionRegex", "$^"), region):
            return partition
    raise InputError(f"region {region!r} is not an AWS region")


def _one_line(exc: BaseException) -> str:
    """An AWS API error as AWS words it: `<code>: <message>`."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return " ".join(f"{error.get('Code', '')}: {error.get('Message', '')}".split())
    return " ".join(str(exc).split())


class Session:
    """One engine run's view of the control plane (see the module docstring)."""

    def __init__(self, seed: Seed, config: dict[str, str], control_plane: Optional[ControlPlane] = None):
        self.seed = seed
        self.default_region = config.get("aws:region") or DEFAULT_REGION
        self.supplied = control_plane
        self._plane: Optional[ControlPlane] = None
        self.lock = threading.Lock()
        self.lookups = threading.Lock()
        """Held while a cached lookup (endpoint, caller identity) is made, so each is made once per run."""
        self.endpoints: dict[tuple[str, str], str] = {}
        """(region, endpoint type) -> address, described once per run."""
        self.accounts: dict[str, dict] = {}
        self.provider_regions: dict[str, str] = {}
        """explicit `aws` provider name -> its region."""
        self.timings: list[tuple[str, float]] = []
        """(what, seconds) for each API call made, in order (for measuring)."""

    @property
    def plane(self) -> ControlPlane:
        with self.lock:
            if self._plane is None:
                if self.supplied is not None:
                    plane = self.supplied.start()
                    plane.reset()
                else:
                    plane = ControlPlane().start()
                    self.timings.append(("moto_server start", plane.started_in or 0.0))
                self._plane = plane
            return self._plane

    def close(self) -> None:
        if self._plane is not None and self._plane is not self.supplied:
            self._plane.stop()
        self._plane = None

    def region(self, inputs: dict, provider: str = "") -> str:
        region = inputs.get("region") or self._provider_region(provider) or self.default_region
        if not isinstance(region, str):
            raise InputError(f"region: {region!r} is not a string")
        partition_of(region)
        return region

    def _provider_region(self, provider: str) -> Optional[str]:
        # a provider reference is `<urn>::<id>`, the URN ending in `pulumi:providers:aws::<name>`
        urn = provider.rsplit("::", 1)[0] if provider else ""
        if "pulumi:providers:aws::" not in urn:
            return None
        return self.provider_regions.get(urn.rsplit("::", 1)[-1])

    def number(self, *labels: str) -> int:
        return int.from_bytes(self.seed.derive("moto", *labels, size=8), "big")

    def call(self, what: str, service: str, region: str, operation: str, reseed: Optional[tuple] = None,
             **params) -> dict:
        """One API call, timed; when `reseed` is given, made right after seeding moto from those labels."""
        plane = self.plane
        client = plane.client(service, region)
        began = time.monotonic()
        with plane.lock:
            if reseed is not None:
                plane.seed(self.number(*reseed))
            try:
                result = getattr(client, operation)(**params)
            except Exception as exc:
                raise ControlPlaneError(f"{operation} failed: {_one_line(exc)}") from exc
        self.timings.append((what, time.monotonic() - began))
        return result


_active: Optional[Session] = None
_active_lock = threading.Lock()


@contextlib.contextmanager
def session(seed: Seed, config: dict[str, str], control_plane: Optional[ControlPlane] = None) -> Iterator[Session]:
    """The session of one engine run: aws resources and invokes in it use it; a control plane it started is
    stopped when it ends, whatever happened."""
    global _active
    current = Session(seed, config, control_plane)
    with _active_lock:
        previous, _active = _active, current
    try:
        yield current
    finally:
        with _active_lock:
            _active = previous
        current.close()


def _session() -> Session:
    if _active is None:
        raise InputError("AWS resources are computed only inside an engine run (estate.aws_provider.session)")
    return _active


def _text(inputs: dict, key: str, required: bool = True) -> Optional[str]:
    value = inputs.get(key)
    if value is None or value == "":
        if required:
            raise InputError(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise InputError(f"{key}: {value!r} is not a string")
    return value


def _autoname(seed: Seed, name: str) -> str:
    """What Pulumi's auto-naming would give (`<name>-<7 random hex>`), from the stack seed."""
    return f"{name}-{seed.derive('aws-autoname', name).hex()[:7]}"


# -- resources: (seed, name, inputs, provider reference) -> outputs, pulumi-aws 7's property names


def thing(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s = _session()
    region = s.region(inputs, provider)
    thing_name = _text(inputs, "name", required=False) or _autoname(seed, name)
    attributes = inputs.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise InputError(f"attributes: {attributes!r} is not a map of strings")
    params: dict[str, Any] = {"thingName": thing_name}
    if attributes:
        params["attributePayload"] = {"attributes": attributes}
    if _text(inputs, "thingTypeName", required=False):
        params["thingTypeName"] = inputs["thingTypeName"]
    created = s.call(f"Thing {name}", "iot", region, "create_thing", reseed=("thing", region, thing_name), **params)
    return {**inputs, "name": thing_name, "arn": created["thingArn"], "defaultClientId": thing_name,
            "attributes": attributes, "version": 1, "region": region}


def certificate(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s = _session()
    region = s.region(inputs, provider)
    if _text(inputs, "csr", required=False):
        raise InputError("csr cannot be computed offline: moto's CreateCertificateFromCsr discards the CSR's key "
                         "and issues a certificate for a key of its own; give certificatePem (a certificate signed "
                         "by your key, e.g. tls.SelfSignedCert) instead")
    pem = _text(inputs, "certificatePem", required=False)
    if pem is None:
        raise InputError("certificatePem is required offline: without it the provider has AWS make the key pair "
                         "(CreateKeysAndCertificate), and moto's certificates do not verify")
    if _text(inputs, "caPem", required=False):
        raise InputError("caPem cannot be computed offline (the CA would have to be registered first); register "
                         "the certificate without a CA (omit caPem)")
    active = inputs.get("active")
    if not isinstance(active, bool):
        raise InputError(f"active: {active!r} is required and must be true or false")
    try:
        from cryptography import x509  # noqa: PLC0415

        x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise InputError(f"certificatePem is not a PEM certificate ({' '.join(str(exc).split())})") from exc
    registered = s.call(f"Certificate {name}", "iot", region, "register_certificate_without_ca",
                        certificatePem=pem, status="ACTIVE" if active else "INACTIVE")
    return {**inputs, "arn": registered["certificateArn"], "active": active, "region": region}


def policy(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s = _session()
    region = s.region(inputs, provider)
    policy_name = _text(inputs, "name", required=False) or _autoname(seed, name)
    document = _text(inputs, "policy")
    try:
        parsed = json.loads(document)
    except ValueError as exc:
        raise InputError(f"policy is not a JSON document ({exc})") from exc
    if not isinstance(parsed, dict) or "Statement" not in parsed:
        raise InputError("policy is not an IAM-style policy document (no Statement)")
    created = s.call(f"Policy {name}", "iot", region, "create_policy", policyName=policy_name,
                     policyDocument=document)
    return {**inputs, "name": policy_name, "arn": created["policyArn"],
            "defaultVersionId": created.get("policyVersionId", "1"), "region": region}


def policy_attachment(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s = _session()
    region = s.region(inputs, provider)
    s.call(f"PolicyAttachment {name}", "iot", region, "attach_policy", policyName=_text(inputs, "policy"),
           target=_text(inputs, "target"))
    return {**inputs, "region": region}


def thing_principal_attachment(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s = _session()
    region = s.region(inputs, provider)
    kind = inputs.get("thingPrincipalType") or "NON_EXCLUSIVE_THING"
    if kind not in ("EXCLUSIVE_THING", "NON_EXCLUSIVE_THING"):
        raise InputError(f"thingPrincipalType {kind!r} is not EXCLUSIVE_THING or NON_EXCLUSIVE_THING")
    s.call(f"ThingPrincipalAttachment {name}", "iot", region, "attach_thing_principal",
           thingName=_text(inputs, "thing"), principal=_text(inputs, "principal"))
    return {**inputs, "thingPrincipalType": kind, "region": region}


def aws_provider_resource(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    """An explicit aws.Provider: remember its region for the resources and invokes bound to it."""
    region = inputs.get("region")
    if isinstance(region, str) and region:
        partition_of(region)
        _session().provider_regions[name] = region
    return inputs


# -- S3 (the backups' bucket, components/backup_bucket.py). S3 draws no randomness for these calls (bucket ARNs and
# domain names follow from the name and region; version ids appear only with objects, which no resource uploads),
# so they need no re-seeding; they run under the control plane's lock like every call.


def _s3(inputs: dict, provider: str) -> tuple[Session, str, str]:
    s = _session()
    return s, s.region(inputs, provider), _text(inputs, "bucket")


_S3_NAMES = {"id": "ID", "kmsMasterKeyId": "KMSMasterKeyID", "sseAlgorithm": "SSEAlgorithm", "and": "And"}


def _s3_shape(value: Any) -> Any:
    """pulumi-aws's camelCase input (a lifecycle rule, an encryption rule) as the S3 API names it: each key with
    its first letter upper-cased (noncurrentDays -> NoncurrentDays), the few irregular ones from _S3_NAMES."""
    if isinstance(value, dict):
        return {_S3_NAMES.get(k, k[:1].upper() + k[1:]): _s3_shape(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_s3_shape(v) for v in value]
    return value


def bucket(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s = _session()
    region = s.region(inputs, provider)
    bucket_name = _text(inputs, "bucket", required=False) or _autoname(seed, name)
    if _text(inputs, "bucketPrefix", required=False):
        raise InputError("bucketPrefix cannot be computed offline (AWS makes up the rest of the name); give bucket")
    params: dict[str, Any] = {"Bucket": bucket_name}
    if region != DEFAULT_REGION:  # S3's rule: every region but us-east-1 is named as the location constraint
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    if inputs.get("objectLockEnabled") is True:
        params["ObjectLockEnabledForBucket"] = True
    s.call(f"Bucket {name}", "s3", region, "create_bucket", **params)
    partition = partition_of(region)
    suffix = partition["dnsSuffix"]
    return {**inputs, "bucket": bucket_name, "arn": f"arn:{partition['partition']}:s3:::{bucket_name}",
            "bucketDomainName": f"{bucket_name}.s3.{suffix}", "bucketRegion": region,
            "bucketRegionalDomainName": f"{bucket_name}.s3.{region}.{suffix}",
            "forceDestroy": bool(inputs.get("forceDestroy", False)),
            "objectLockEnabled": inputs.get("objectLockEnabled") is True, "region": region}


def bucket_versioning(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s, region, target = _s3(inputs, provider)
    configuration = inputs.get("versioningConfiguration") or {}
    status = configuration.get("status")
    if status not in ("Enabled", "Suspended", "Disabled"):
        raise InputError(f"versioningConfiguration.status: {status!r} is not Enabled, Suspended or Disabled")
    if status != "Disabled":  # Disabled: pulumi-aws leaves a never-versioned bucket as it is
        s.call(f"BucketVersioning {name}", "s3", region, "put_bucket_versioning", Bucket=target,
               VersioningConfiguration={"Status": status})
    return {**inputs, "region": region}


def bucket_encryption(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s, region, target = _s3(inputs, provider)
    rules = inputs.get("rules")
    if not isinstance(rules, list) or not rules:
        raise InputError("rules: at least one server-side encryption rule is required")
    s.call(f"BucketServerSideEncryptionConfiguration {name}", "s3", region, "put_bucket_encryption", Bucket=target,
           ServerSideEncryptionConfiguration={"Rules": _s3_shape(rules)})
    return {**inputs, "region": region}


PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def bucket_public_access_block(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s, region, target = _s3(inputs, provider)
    flags = {flag: bool(inputs.get(flag, False)) for flag in PUBLIC_ACCESS_FLAGS}
    s.call(f"BucketPublicAccessBlock {name}", "s3", region, "put_public_access_block", Bucket=target,
           PublicAccessBlockConfiguration=_s3_shape(flags))
    return {**inputs, **flags, "region": region}


def bucket_lifecycle(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s, region, target = _s3(inputs, provider)
    rules = inputs.get("rules")
    if not isinstance(rules, list) or not rules:
        raise InputError("rules: at least one lifecycle rule is required")
    s.call(f"BucketLifecycleConfiguration {name}", "s3", region, "put_bucket_lifecycle_configuration",
           Bucket=target, LifecycleConfiguration={"Rules": _s3_shape(rules)})
    return {**inputs, "region": region}


def bucket_object_lock(seed: Seed, name: str, inputs: dict, provider: str = "") -> dict:
    s, region, target = _s3(inputs, provider)
    configuration: dict[str, Any] = {"ObjectLockEnabled": inputs.get("objectLockEnabled") or "Enabled"}
    if inputs.get("rule"):
        configuration["Rule"] = _s3_shape(inputs["rule"])
    if _text(inputs, "token", required=False):
        raise InputError("token cannot be computed offline (it enables a lock on an existing bucket; create the "
                         "bucket with objectLockEnabled)")
    s.call(f"BucketObjectLockConfiguration {name}", "s3", region, "put_object_lock_configuration", Bucket=target,
           ObjectLockConfiguration=configuration)
    return {**inputs, "objectLockEnabled": configuration["ObjectLockEnabled"], "region": region}


RESOURCES: dict[str, Callable[..., dict]] = {
    "aws:s3/bucket:Bucket": bucket,
    "aws:s3/bucketVersioning:BucketVersioning": bucket_versioning,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": bucket_encryption,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": bucket_public_access_block,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": bucket_lifecycle,
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": bucket_object_lock,
    "aws:iot/thing:Thing": thing,
    "aws:iot/certificate:Certificate": certificate,
    "aws:iot/policy:Policy": policy,
    "aws:iot/policyAttachment:PolicyAttachment": policy_attachment,
    "aws:iot/thingPrincipalAttachment:ThingPrincipalAttachment": thing_principal_attachment,
    "pulumi:providers:aws": aws_provider_resource,
}
"""type token -> compute(seed, name, inputs, provider reference) -> outputs."""


# -- invokes: (args, provider reference) -> result, pulumi-aws 7's property names


def get_endpoint(args: dict, provider: str = "") -> dict:
    s = _session()
    region = s.region(args, provider)
    kind = args.get("endpointType") or "iot:Data-ATS"
    if kind not in ("iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs"):
        raise InputError(f"endpointType {kind!r} is not iot:Data, iot:Data-ATS, iot:CredentialProvider or iot:Jobs")
    key = (region, kind)
    with s.lookups:
        if key not in s.endpoints:
            described = s.call(f"getEndpoint {kind} {region}", "iot", region, "describe_endpoint",
                               reseed=("endpoint", region, kind), endpointType=kind)
            s.endpoints[key] = described["endpointAddress"]
        cached = s.endpoints[key]
    return {"endpointAddress": cached, "endpointType": kind, "id": cached, "region": region}


def get_caller_identity(args: dict, provider: str = "") -> dict:
    s = _session()
    region = s.region({}, provider)
    with s.lookups:
        if region not in s.accounts:
            identity = s.call("getCallerIdentity", "sts", region, "get_caller_identity")
            s.accounts[region] = {"accountId": identity["Account"], "arn": identity["Arn"],
                                  "userId": identity["UserId"], "id": identity["Account"]}
        return dict(s.accounts[region])


def get_region(args: dict, provider: str = "") -> dict:
    s = _session()
    wanted = args.get("region") or args.get("name") or args.get("id")
    region = s.region({"region": wanted} if wanted else {}, provider)
    partition = partition_of(region)
    description = partition.get("regions", {}).get(region, {}).get("description", region)
    return {"region": region, "name": region, "id": region, "description": description,
            "endpoint": f"ec2.{region}.{partition['dnsSuffix']}"}


def get_partition(args: dict, provider: str = "") -> dict:
    s = _session()
    partition = partition_of(s.region({}, provider))
    suffix = partition["dnsSuffix"]
    return {"partition": partition["partition"], "id": partition["partition"], "dnsSuffix": suffix,
            "reverseDnsPrefix": ".".join(reversed(suffix.split(".")))}


INVOKES: dict[str, Callable[..., dict]] = {
    "aws:iot/getEndpoint:getEndpoint": get_endpoint,
    "aws:index/getCallerIdentity:getCallerIdentity": get_caller_identity,
    "aws:index/getRegion:getRegion": get_region,
    "aws:index/getPartition:getPartition": get_partition,
}
"""invoke token -> compute(args, provider reference) -> result."""


# -- for the local stand-in


def _mqtt_pattern(resource_name: str) -> str:
    """A policy resource name (after `topic/` or `topicfilter/`) as a mosquitto ACL pattern. The policy wildcard
    `*` (and `?`) cannot be said exactly in mosquitto: a level holding one becomes `#` when it is the last level
    and `+` otherwise. For documents written by components.aws_iot (whose `*` always stands for a whole `+` or `#`
    level) this gives back the MQTT filters exactly; for other documents it widens a partial level (`sensor*` ->
    `+`) and narrows an inner `*` (AWS lets it span levels, `+` spans one)."""
    if "${" in resource_name:
        raise ValueError(f"{resource_name!r}: policy variables cannot be expressed in a mosquitto ACL")
    levels = resource_name.split("/")
    out = []
    for index, level in enumerate(levels):
        if "*" in level or "?" in level:
            out.append("#" if index == len(levels) - 1 else "+")
        else:
            out.append(level)
    return "/".join(out)


def standin_acl(policy_json: str, thing_name: str) -> list[tuple[str, str]]:
    """The mosquitto ACL entries, (access, topic), that give a local stand-in for AWS IoT Core the permissions the
    policy gives client `thing_name`: iot:Publish / iot:RetainPublish on `topic/...` -> write; iot:Receive on
    `topic/...` and iot:Subscribe on `topicfilter/...` -> read (mosquitto's read covers both). Empty if the policy
    does not let `thing_name` connect. An entry `p` is dropped when `p/#` has the same access (mosquitto's `p/#`
    matches `p`). Deny statements, NotAction/NotResource and policy variables are refused (ValueError): mosquitto
    ACLs cannot say them."""
    import fnmatch  # noqa: PLC0415

    document = json.loads(policy_json)
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    grants: set[tuple[str, str]] = set()
    connect = False
    for statement in statements:
        if statement.get("Effect") != "Allow" or "NotAction" in statement or "NotResource" in statement:
            raise ValueError(
                f"statement {json.dumps(statement, sort_keys=True)} cannot be expressed in a mosquitto ACL")
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        for action in actions:
            every = action in ("*", "iot:*")
            for resource in resources:
                kind, _, rest = resource.split(":", 5)[-1].partition("/") if resource != "*" else ("*", "", "*")
                if (every or action == "iot:Connect") and kind in ("client", "*") and fnmatch.fnmatchcase(
                        thing_name, rest):
                    connect = True
                if kind in ("topic", "*") and (every or action in ("iot:Publish", "iot:RetainPublish")):
                    grants.add(("write", _mqtt_pattern(rest)))
                if kind in ("topic", "*") and (every or action == "iot:Receive"):
                    grants.add(("read", _mqtt_pattern(rest)))
                if kind in ("topicfilter", "*") and (every or action == "iot:Subscribe"):
                    grants.add(("read", _mqtt_pattern(rest)))
    if not connect:
        return []
    return sorted((access, topic) for access, topic in grants if (access, topic + "/#") not in grants)
