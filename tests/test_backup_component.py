"""Backups in the components, under Pulumi mocks: MosquittoBroker's `backup` (the sidecar, the restore init container,
their environment and volumes, the shared process namespace, the ServiceAccount's workload identity, the egress to S3)
and BackupBucket (its pulumi-aws resources, computed against a real moto_server and read back there with boto3);
the component arguments' refusals; and the renders of the prod stack (provisioned, IRSA, locked) and of
tests/stacks/backup.yaml (a brought bucket on an S3-compatible store, a Secret's keys), twice byte-identical."""

from __future__ import annotations

import filecmp

import boto3
import pulumi
import pytest

from mqtt_estate.components import backup_rules
from mqtt_estate.components.arguments import problems
from mqtt_estate.components.backup_bucket import BackupBucket, BackupBucketArgs
from mqtt_estate.components.backup_sidecar import (CONTAINER, INIT_CONTAINER, METRICS_PORT, METRICS_PORT_NAME,
                                                   PUBLIC, SKIP_CONTAINERS)
from mqtt_estate.components.broker import MosquittoBroker, MosquittoBrokerArgs
from mqtt_estate.components.mosquitto_conf import DATA_DIR, PID_FILE, RUN_DIR
from mqtt_estate.components.pki import Pki
from mqtt_estate.estate import aws_provider
from mqtt_estate.estate.engine import run_function
from mqtt_estate.estate.render import render
from tests.conftest import TEST_STACKS
from tests.harness import TEST_SEED, by_name, run_components
from tests.test_aws_provisioning import plane  # noqa: F401 (fixture: a moto_server for the module)
from tests.test_components import SETTINGS

ROLE = "arn:aws:iam::123456789012:role/mqtt-backup"
SECRET_BACKUP = {"image": "ghcr.io/mqtt-estate/mosquitto-backup:0.1.0",
                 "bucket": {"name": "plant7-mqtt-backups", "region": "eu-central-1", "prefix": "plant7"},
                 "interval_seconds": 300, "lock": {"mode": "GOVERNANCE", "days": 2},
                 "credentials": {"secret_name": "mqtt-backup-s3", "access_key_id_key": "id",
                                 "secret_access_key_key": "secret"},
                 "restore": {"request": "line3-0814", "target": "2026-08-14T06:30:00Z"}}
IRSA_BACKUP = {**SECRET_BACKUP, "lock": None, "restore": {},
               "credentials": {"service_account_annotations": {backup_rules.ROLE_ARN_ANNOTATION: ROLE}}}


def broker(backup, replicas: int = 1, **overrides):
    def body():
        pki = Pki("b-pki", {"server_dns_names": ["b.ns.svc"], "client_names": ["b-bridge"]})
        MosquittoBroker("b", {"namespace": "ns", "replicas": replicas, "settings": SETTINGS,
                              "password_iterations": 1000, "users": [{"name": "admin", "role": "admin"}],
                              "ca_cert_pem": pki.ca_cert_pem, "server_cert_pem": pki.server_cert_pem,
                              "server_key_pem": pki.server_key_pem, "bridge_certificate": pki.clients["b-bridge"],
                              "backup": backup, **overrides})
    return run_components(body)


def pod(registry) -> dict:
    return by_name(registry, "b-statefulset").inputs["spec"]["template"]


def container(template: dict, name: str, kind: str = "containers") -> dict:
    return next(c for c in template["spec"][kind] if c["name"] == name)


def env(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


@pytest.fixture(scope="module")
def with_secret():
    return broker(SECRET_BACKUP)


@pytest.fixture(scope="module")
def with_irsa():
    return broker(IRSA_BACKUP, reloader=False)


def test_sidecar_uploads_from_read_only_mounts_and_serves_metrics(with_secret):
    template = pod(with_secret)
    sidecar = container(template, CONTAINER)
    assert sidecar["command"] == ["python", "-m", "mqtt_estate.backup", "agent"]
    assert sidecar["volumeMounts"] == [{"name": "data", "mountPath": DATA_DIR, "readOnly": True},
                                       {"name": "run", "mountPath": RUN_DIR, "readOnly": True}]
    assert sidecar["ports"] == [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):  # quiet: TCP on the metrics port, no exec, no HTTP log line
        assert sidecar[probe]["tcpSocket"] == {"port": METRICS_PORT_NAME}
    ctx = sidecar["securityContext"]
    assert ctx["readOnlyRootFilesystem"] and ctx["runAsNonRoot"] and not ctx["allowPrivilegeEscalation"]
    assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sidecar["resources"] == {"requests": {"cpu": "10m", "memory": "128Mi"},
                                    "limits": {"cpu": "500m", "memory": "2Gi"}}  # the broker's memory limit
    values = env(sidecar)
    assert {k: values[k] for k in ("BACKUP_BUCKET", "BACKUP_PREFIX", "BACKUP_REGION", "BACKUP_PATH_STYLE",
                                   "BACKUP_DATA_DIR", "BACKUP_PID_FILE", "BACKUP_INTERVAL_SECONDS",
                                   "BACKUP_METRICS_LISTEN", "BACKUP_BROKER", "BACKUP_LOCK_MODE",
                                   "BACKUP_LOCK_DAYS", "AWS_EC2_METADATA_DISABLED")} == {
        "BACKUP_BUCKET": "plant7-mqtt-backups", "BACKUP_PREFIX": "plant7", "BACKUP_REGION": "eu-central-1",
        "BACKUP_PATH_STYLE": "false", "BACKUP_DATA_DIR": DATA_DIR, "BACKUP_PID_FILE": PID_FILE,
        "BACKUP_INTERVAL_SECONDS": "300", "BACKUP_METRICS_LISTEN": "0.0.0.0:9235",
        "BACKUP_BROKER": "127.0.0.1:1880", "BACKUP_LOCK_MODE": "GOVERNANCE", "BACKUP_LOCK_DAYS": "2",
        "AWS_EC2_METADATA_DISABLED": "true"}
    assert values["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "BACKUP_ENDPOINT" not in values and not any(k.startswith("RESTORE_") for k in values)


def test_restore_init_container_writes_the_brokers_own_data_volume(with_secret):
    template = pod(with_secret)
    init = container(template, INIT_CONTAINER, "initContainers")
    assert [c["name"] for c in template["spec"]["initContainers"]] == [INIT_CONTAINER]
    assert init["command"] == ["python", "-m", "mqtt_estate.backup", "init"]
    assert init["volumeMounts"] == [{"name": "data", "mountPath": DATA_DIR}]  # read-write
    assert init["securityContext"]["readOnlyRootFilesystem"]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    values = env(init)
    assert (values["RESTORE_ON_EMPTY"], values["RESTORE_REQUEST"], values["RESTORE_TARGET"]) == (
        "true", "line3-0814", "2026-08-14T06:30:00Z")
    assert "BACKUP_INTERVAL_SECONDS" not in values and values["BACKUP_BUCKET"] == "plant7-mqtt-backups"
    # the volume restored into is the one mosquitto runs on: the claim template's `data` at the same path
    mosquitto = container(template, "mosquitto")
    assert {"name": "data", "mountPath": DATA_DIR} in mosquitto["volumeMounts"]
    claims = by_name(with_secret, "b-statefulset").inputs["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert "data" not in {v["name"] for v in template["spec"]["volumes"]}


def test_credentials_come_by_reference_only(with_secret):
    template = pod(with_secret)
    for c in (container(template, CONTAINER), container(template, INIT_CONTAINER, "initContainers")):
        values = env(c)
        assert values["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "mqtt-backup-s3", "key": "id"}}
        assert values["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "mqtt-backup-s3", "key": "secret"}}
    # nothing of the Secret is copied anywhere: no Secret object of that name, no value in the pod spec
    assert not [r for r in with_secret.resources if r.type == "kubernetes:core/v1:Secret"
                and r.inputs["metadata"]["name"] == "mqtt-backup-s3"]
    literal = {e["name"] for c in template["spec"]["containers"] + template["spec"]["initContainers"]
               for e in c["env"] if e["name"].startswith("AWS_") and "value" in e}
    assert literal == {"AWS_EC2_METADATA_DISABLED"}


def test_restore_request_rolls_the_pods_and_nothing_else_does():
    """A new request id changes the pod template (the StatefulSet rolls its pods, each restores first); the same
    backup without one, or with the same id again, renders the same template."""
    first = pod(broker(SECRET_BACKUP))
    again = pod(broker(SECRET_BACKUP))
    other = pod(broker({**SECRET_BACKUP, "restore": {**SECRET_BACKUP["restore"], "request": "line3-0815"}}))
    assert first == again and first != other
    changed = [c["name"] for c in first["spec"]["initContainers"] + first["spec"]["containers"]
               if c != container(other, c["name"], "initContainers" if c["name"] == INIT_CONTAINER else "containers")]
    assert changed == [INIT_CONTAINER]


def test_signalling_needs_one_process_namespace_with_or_without_the_reloader(with_secret, with_irsa):
    assert pod(with_secret)["spec"]["shareProcessNamespace"] is True
    assert [c["name"] for c in pod(with_irsa)["spec"]["containers"]] == ["mosquitto", CONTAINER]
    assert pod(with_irsa)["spec"]["shareProcessNamespace"] is True  # reloader off, backup on
    assert "shareProcessNamespace" not in pod(broker(None, reloader=False))["spec"]


def test_workload_identity_annotates_the_service_account_and_keeps_the_token_from_other_containers(with_irsa):
    account = by_name(with_irsa, "b-sa").inputs
    assert account["metadata"]["annotations"] == {backup_rules.ROLE_ARN_ANNOTATION: ROLE}
    assert account["automountServiceAccountToken"] is False  # the webhook projects its own token
    template = pod(with_irsa)
    assert template["metadata"]["annotations"][SKIP_CONTAINERS] == "mosquitto"
    for c in template["spec"]["containers"] + template["spec"]["initContainers"]:
        assert not any(e["name"].startswith("AWS_ACCESS") or e["name"].startswith("AWS_SECRET") for e in c["env"])
    with_reloader = pod(broker(IRSA_BACKUP))
    assert with_reloader["metadata"]["annotations"][SKIP_CONTAINERS] == "mosquitto,reloader"
    assert "annotations" not in by_name(broker(SECRET_BACKUP), "b-sa").inputs["metadata"]


def _egress(registry) -> list[dict]:
    return by_name(registry, "b-netpol").inputs["spec"]["egress"]


def test_egress_reaches_s3_and_only_what_it_needs(with_secret, with_irsa):
    base = _egress(broker(None))
    https = {"to": PUBLIC, "ports": [{"port": 443, "protocol": "TCP"}]}
    assert _egress(with_secret) == base + [https]  # AWS S3: public addresses, HTTPS
    assert all(block["ipBlock"]["except"] for block in PUBLIC)  # the cluster's and the plant's networks stay shut
    assert "10.0.0.0/8" in PUBLIC[0]["ipBlock"]["except"] and "169.254.0.0/16" in PUBLIC[0]["ipBlock"]["except"]

    def store(endpoint, **credentials):
        backup = {**SECRET_BACKUP, "bucket": {"name": "plant7-mqtt-backups", "endpoint": endpoint},
                  "credentials": credentials or SECRET_BACKUP["credentials"]}
        return _egress(broker(backup))[len(base):]

    assert store("https://10.20.0.5:9000") == [{"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
                                                "ports": [{"port": 9000, "protocol": "TCP"}]}]
    assert store("https://[fd00::5]") == [{"to": [{"ipBlock": {"cidr": "fd00::5/128"}}],
                                           "ports": [{"port": 443, "protocol": "TCP"}]}]
    by_name_rules = store("https://minio.plant.example:9000")
    assert by_name_rules == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}],
                              "ports": [{"port": 9000, "protocol": "TCP"}]}]
    assert store("http://127.0.0.1:9000") == []  # loopback never leaves the pod
    # workload identity with a store of its own still needs STS
    assert store("https://10.20.0.5:9000", service_account_annotations={backup_rules.ROLE_ARN_ANNOTATION: ROLE})[-1] \
        == https


BAD_BACKUPS = [
    ("both-credentials", {"credentials": {"secret_name": "s3", "service_account_annotations": {"a.b/c": "d"}}},
     "args.backup.credentials.service_account_annotations: cannot be used with credentials.secret_name"),
    ("no-credentials", {"credentials": {}}, "args.backup.credentials: are required"),
    ("estate-secret", {"credentials": {"secret_name": "b-tls"}}, "args.backup.credentials.secret_name: 'b-tls' is "
                                                                 "the estate's own Secret"),
    ("http-endpoint", {"bucket": {"name": "plant7-x", "endpoint": "http://minio.example"}},
     "args.backup.bucket.endpoint: 'http://minio.example' is plain http"),
    ("region-typo", {"bucket": {"name": "plant7-x", "region": "eu-central"}},
     "args.backup.bucket.region: 'eu-central' is not an AWS region"),
    ("bucket-name", {"bucket": {"name": "Plant7", "region": "eu-central-1"}}, "args.backup.bucket.name: 'Plant7' "
                                                                              "must be lower-case"),
    ("interval", {"interval_seconds": 5}, "args.backup.interval_seconds: 5 is out of range (allowed: 60-86400"),
    ("lock-mode", {"lock": {"mode": "governance", "days": 1}}, "args.backup.lock.mode: 'governance' is not allowed"),
    ("annotation-key", {"credentials": {"service_account_annotations": {"kubernetes.io/x": "y"}}},
     "args.backup.credentials.service_account_annotations: the key 'kubernetes.io/x' is in kubernetes.io"),
    ("version-target-many-brokers", {"restore": {"request": "r1", "target": "abc123"}},
     "args.backup.restore.target: 'abc123' is an S3 version id"),
    ("target-without-request", {"restore": {"target": "latest"}},
     "args.backup.restore.target: has no effect without restore.request"),
    ("request-over-limits", {"resources": {"cpu_request": "2", "cpu_limit": "1"}},
     "args.backup.resources.cpu_request: the cpu request 2 is above the limit 1"),
]


@pytest.mark.parametrize("change, line", [c[1:] for c in BAD_BACKUPS], ids=[c[0] for c in BAD_BACKUPS])
def test_broker_refuses_a_bad_backup_with_one_line(change, line):
    args = {"namespace": "ns", "replicas": 2, "max_replicas": 2, "settings": SETTINGS,
            "ca_cert_pem": pulumi.Output.from_input("x"), "server_cert_pem": pulumi.Output.from_input("x"),
            "server_key_pem": pulumi.Output.from_input("x"),
            "bridge_certificate": {"cert_pem": pulumi.Output.from_input("x"), "key_pem": pulumi.Output.from_input("x")},
            "backup": {**SECRET_BACKUP, "restore": {}, **change}}
    found = problems("MosquittoBroker", "b", args, MosquittoBrokerArgs)
    assert len(found) == 1 and found[0].startswith(f"MosquittoBroker b: {line}"), found


def test_broker_refuses_a_backup_without_persistence():
    args = {"settings": {**SETTINGS, "persistence": False}, "ca_cert_pem": pulumi.Output.from_input("x"),
            "server_cert_pem": pulumi.Output.from_input("x"), "server_key_pem": pulumi.Output.from_input("x"),
            "backup": {**SECRET_BACKUP, "restore": {}}}
    assert problems("MosquittoBroker", "b", args, MosquittoBrokerArgs) == [
        "MosquittoBroker b: args.backup: needs settings.persistence True (without it mosquitto keeps no database to "
        "back up)"]


# --- BackupBucket ---------------------------------------------------------------------------------------------

BUCKET_ARGS: BackupBucketArgs = {"bucket": "plant7-mqtt-backups", "region": "eu-central-1", "prefix": "plant7",
                                 "retention_days": 30, "keep_versions": 5, "lock": {"mode": "GOVERNANCE", "days": 7}}
ROLES = ["bucket", "versioning", "encryption", "public-access-block", "lifecycle", "object-lock"]


def bucket_program(args: BackupBucketArgs = BUCKET_ARGS):
    def body():
        bucket = BackupBucket("bk", args)
        pulumi.export("arn", bucket.arn)
        pulumi.export("name", bucket.bucket_name)
    return body


@pytest.fixture(scope="module")
def provisioned(plane):
    return run_function(bucket_program(), "test", {}, [], TEST_SEED, control_plane=plane)


def test_bucket_children_are_named_parented_and_typed(provisioned):
    component = by_name(provisioned, "bk")
    assert component.type == "mqtt-estate:index:BackupBucket" and not component.custom
    children = [r for r in provisioned.resources if r.parent == component.urn]
    assert sorted(r.name for r in children) == sorted(f"bk-{role}" for role in ROLES)
    assert all(r.type.startswith("aws:s3/") and r.inputs.get("region") == "eu-central-1" for r in children)
    assert provisioned.stack_outputs == {"arn": "arn:aws:s3:::plant7-mqtt-backups", "name": "plant7-mqtt-backups"}
    bucket = by_name(provisioned, "bk-bucket").inputs
    assert bucket["bucket"] == "plant7-mqtt-backups" and bucket["objectLockEnabled"] is True
    assert bucket["forceDestroy"] is False
    # every setting names the bucket itself, so the policy pack and the provider tie them together
    assert {by_name(provisioned, f"bk-{role}").inputs["bucket"] for role in ROLES[1:]} == {"plant7-mqtt-backups"}


def test_bucket_settings_as_pulumi_aws_takes_them(provisioned):
    def inputs(role):
        return by_name(provisioned, f"bk-{role}").inputs

    assert inputs("versioning")["versioningConfiguration"] == {"status": "Enabled"}
    assert inputs("encryption")["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"},
                                              "bucketKeyEnabled": False}]
    assert all(inputs("public-access-block")[flag] is True for flag in aws_provider.PUBLIC_ACCESS_FLAGS)
    (rule,) = inputs("lifecycle")["rules"]
    assert rule == {"id": "backup-retention", "status": "Enabled", "filter": {"prefix": "plant7/"},
                    "noncurrentVersionExpiration": {"noncurrentDays": 30, "newerNoncurrentVersions": 5},
                    "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1}}
    assert inputs("object-lock")["rule"] == {"defaultRetention": {"mode": "GOVERNANCE", "days": 7}}
    assert inputs("object-lock")["objectLockEnabled"] == "Enabled"


def test_bucket_exists_in_the_control_plane_as_configured(provisioned, plane):
    s3 = plane.client("s3", "eu-central-1")
    name = "plant7-mqtt-backups"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-central-1"
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"].values())
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    # moto keeps NewerNoncurrentVersions only for transitions (moto/s3/models.py), so only the days are read back
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30 and rule["Filter"] == {"Prefix": "plant7/"}
    lock = s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"].items() >= {"Mode": "GOVERNANCE", "Days": 7}.items()
    # the default retention holds: a backup version cannot be deleted (GOVERNANCE, no bypass asked for)
    version = s3.put_object(Bucket=name, Key="plant7/b-0/mosquitto.db", Body=b"db")["VersionId"]
    with pytest.raises(Exception, match="AccessDenied"):
        s3.delete_object(Bucket=name, Key="plant7/b-0/mosquitto.db", VersionId=version)


def test_bucket_without_lock_or_with_kms(plane):
    registry = run_function(bucket_program({"bucket": "plant8-mqtt-backups", "region": "us-east-1",
                                            "kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/abc-123"}),
                            "test", {}, [], TEST_SEED, control_plane=plane)
    names = {r.name for r in registry.resources}
    assert "bk-object-lock" not in names and "objectLockEnabled" not in by_name(registry, "bk-bucket").inputs
    assert by_name(registry, "bk-encryption").inputs["rules"] == [{"applyServerSideEncryptionByDefault": {
        "sseAlgorithm": "aws:kms", "kmsMasterKeyId": "arn:aws:kms:us-east-1:123456789012:key/abc-123"},
        "bucketKeyEnabled": True}]
    (rule,) = by_name(registry, "bk-lifecycle").inputs["rules"]
    assert rule["filter"] == {"prefix": ""} and rule["noncurrentVersionExpiration"] == {
        "noncurrentDays": 30, "newerNoncurrentVersions": 3}


BAD_BUCKETS = [
    ("lock-longer-than-retention", {"retention_days": 5, "lock": {"mode": "COMPLIANCE", "days": 6}},
     "args.lock.days: 6 is longer than retention_days 5"),
    ("not-an-aws-region", {"region": "default"}, "args.region: 'default' is not an AWS region"),
    ("bucket-name", {"bucket": "xn--plant"}, "args.bucket: 'xn--plant' starts with 'xn--'"),
    ("keep-versions", {"keep_versions": 101}, "args.keep_versions: 101 is out of range"),
    ("kms-key", {"kms_key_arn": "alias/backups"}, "args.kms_key_arn: 'alias/backups' is not a KMS key ARN"),
    ("prefix", {"prefix": "a/../b"}, "args.prefix: 'a/../b' has a '..' segment"),
    ("unknown", {"versioning": False}, "args.versioning: unknown key"),
]


@pytest.mark.parametrize("change, line", [c[1:] for c in BAD_BUCKETS], ids=[c[0] for c in BAD_BUCKETS])
def test_bucket_refuses_bad_args_with_one_line(change, line):
    found = problems("BackupBucket", "bk", {**BUCKET_ARGS, **change}, BackupBucketArgs)
    assert len(found) == 1 and found[0].startswith(f"BackupBucket bk: {line}"), found


# --- the renders ------------------------------------------------------------------------------------------------

def _workload(result, name="mosquitto") -> dict:
    return next(o for o in result.objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == name)


def test_prod_provisions_a_locked_bucket_and_uses_irsa(rendered):
    result = rendered("prod")
    s3 = sorted(r.name for r in result.registry.resources if r.type.startswith("aws:s3/"))
    assert s3 == sorted(f"mosquitto-backup-{role}" for role in ROLES)
    lock = next(r for r in result.registry.resources if r.name == "mosquitto-backup-object-lock")
    assert lock.inputs["rule"] == {"defaultRetention": {"mode": "GOVERNANCE", "days": 7}}
    template = _workload(result)["spec"]["template"]
    sidecar = container(template, CONTAINER)
    assert env(sidecar)["BACKUP_INTERVAL_SECONDS"] == "900" and env(sidecar)["BACKUP_PREFIX"] == "mqtt-estate/mqtt-prod"
    account = next(o for o in result.objects if o["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        backup_rules.ROLE_ARN_ANNOTATION: "arn:aws:iam::123456789012:role/mqtt-prod-backup"}
    assert template["metadata"]["annotations"][SKIP_CONTAINERS] == "mosquitto,exporter,reloader"
    assert not any(e["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                   for c in template["spec"]["containers"] + template["spec"]["initContainers"]
                   for e in c.get("env", []))
    # the frontend and the cloud bridges get no backup
    assert "initContainers" not in _workload(result, "mosquitto-frontend")["spec"]["template"]["spec"]


def test_backup_stack_brings_its_bucket_and_keys(rendered):
    result = rendered("backup")
    assert not [r for r in result.registry.resources if r.type.startswith("aws:")]  # brought: nothing provisioned
    template = _workload(result)["spec"]["template"]
    values = env(container(template, CONTAINER))
    assert (values["BACKUP_ENDPOINT"], values["BACKUP_PATH_STYLE"], values["BACKUP_INTERVAL_SECONDS"],
            values["BACKUP_REGION"]) == ("https://minio.plant.example:9000", "true", "60", "us-east-1")
    assert values["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "mqtt-backup-s3", "key": "AWS_ACCESS_KEY_ID"}}
    text = "".join(p.read_text() for p in result.out.rglob("*") if p.is_file() and p.suffix in (".yaml", ".txt",
                                                                                                ".json"))
    assert "mqtt-backup-s3" in text and "secretAccessKey" not in text


def test_backup_stack_renders_byte_identical_run_to_run(tmp_path, state_dir):
    first = render("backup", TEST_STACKS["backup"], out=tmp_path / "a", state_dir=state_dir)
    second = render("backup", TEST_STACKS["backup"], out=tmp_path / "b", state_dir=state_dir)
    files = sorted(p.relative_to(first.out) for p in first.out.rglob("*") if p.is_file())
    assert len(files) > 10
    assert not filecmp.dircmp(first.out, second.out).diff_files
    for rel in files:
        assert (first.out / rel).read_bytes() == (second.out / rel).read_bytes(), rel


def test_prod_bucket_is_in_a_kept_control_plane(tmp_path, state_dir, plane):
    """`estate up --local` keeps the control plane the render provisioned against: the prod bucket is there."""
    render("prod", out=tmp_path / "prod", state_dir=state_dir, control_plane=plane)
    s3 = boto3.session.Session().client("s3", region_name="eu-central-1", endpoint_url=plane.url,
                                        **aws_provider.CREDENTIALS)
    assert s3.get_bucket_versioning(Bucket="plant-example-mqtt-prod-backups")["Status"] == "Enabled"
    retention = s3.get_object_lock_configuration(Bucket="plant-example-mqtt-prod-backups")[
        "ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("GOVERNANCE", 7)


def _tool_env(c: dict, pod: str) -> dict[str, str]:
    """A container's environment as the tool reads it in the pod (references resolved to stand-in values)."""
    out = {}
    for entry in c.get("env", []):
        if "value" in entry:
            out[entry["name"]] = entry["value"]
        elif entry["valueFrom"].get("fieldRef"):
            out[entry["name"]] = pod
        else:
            out[entry["name"]] = "from-the-secret"
    return out


@pytest.mark.parametrize("stack", ["prod", "backup", "odd-but-valid"])
def test_whatever_the_stack_check_accepts_the_tool_accepts(stack, rendered, tmp_path, state_dir):
    """The stack check and the tool read the same values with different parsers: every backup and restore
    container the render writes must start. `odd-but-valid`: an upper-case URL scheme and a lower-case RFC 3339
    time (both legal, RFC 3986 section 3.1 and RFC 3339 section 5.6), which the tool once refused at every start
    (found by review)."""
    from mqtt_estate.backup.config import Config

    if stack == "odd-but-valid":
        text = TEST_STACKS["backup"].read_text().replace("endpoint: https://", "endpoint: HTTPS://").replace(
            "        credentials:\n", "        restore: {request: r-1, target: '2026-11-01t05:00:00z'}\n"
                                     "        credentials:\n")
        assert "HTTPS://" in text and "t05:00:00z" in text
        (tmp_path / "odd.yaml").write_text(text)
        result = render("backup", tmp_path / "odd.yaml", out=tmp_path / "out", state_dir=state_dir)
    else:
        result = rendered(stack)
    template = _workload(result)["spec"]["template"]
    for c in template["spec"]["containers"] + template["spec"].get("initContainers", []):
        if c["name"] in (CONTAINER, INIT_CONTAINER):
            config = Config.from_env(_tool_env(c, "mosquitto-0"))
            assert config.bucket and config.key.endswith("/mosquitto-0/mosquitto.db")
            if stack == "odd-but-valid":
                assert config.endpoint.startswith("https://")
