"""`mqtt-estate:broker.persistence.backup`: what a plant engineer gets wrong and what an attacker would try, each
refused at config time with one line naming the key path and nothing written; and the edge cases the real rules allow.

The rules live in components/backup_rules.py (shared with the component's arguments: tests/test_backup_component.py)
and stacks/checks.py (what only the stack knows: persistence, provisioning, the retention's lock).
"""

from __future__ import annotations

import textwrap

import pytest

from mqtt_estate.components import backup_rules
from mqtt_estate.estate.stackfile import read_stack_file
from mqtt_estate.stacks.errors import StackConfigError
from tests.test_config_errors import isolated  # noqa: F401 (fixture)
from tests.test_config_mistakes import assert_one_key_path_line

HEAD = """
config:
  mqtt-estate:broker:
    {broker}
    listeners:
      - {{name: mqtt, port: 1883}}
      - {{name: mqtts, port: 8883, tls: true}}
    persistence:
      enabled: {persistence}
      backup:
"""
SECRET = "        credentials: {secretName: mqtt-backup-s3}\n"
BUCKET = "        bucket: {name: plant7-mqtt-backups, region: eu-central-1}\n"


def stack(body: str, broker: str = "name: mosquitto", persistence: str = "true") -> str:
    """A one-broker stack whose backup section is `body` (lines indented for `backup:`)."""
    return HEAD.format(broker=broker, persistence=persistence) + textwrap.indent(textwrap.dedent(body).strip("\n"),
                                                                                 " " * 8) + "\n"


def ok(*lines: str) -> str:
    """A valid backup section with `lines` added (a key given again replaces the default one)."""
    keys = {line.split(":")[0].strip() for line in lines}
    base = [line for line in (BUCKET.strip(), SECRET.strip()) if line.split(":")[0] not in keys]
    return "\n".join(base + list(lines))


P = "broker.persistence.backup"
CLUSTER = "preset: ha-cluster"

# (id, backup section, broker line, key path, fragment of the message)
MISTAKES = [
    # --- the bucket: S3's naming rules -------------------------------------------------------------------------
    ("bucket-upper-case", ok("bucket: {name: Plant7-Backups, region: eu-central-1}"), None, f"{P}.bucket.name",
     "did you mean 'plant7-backups'"),
    ("bucket-underscore", ok("bucket: {name: plant7_backups, region: eu-central-1}"), None, f"{P}.bucket.name",
     "contains '_'"),
    ("bucket-too-short", ok("bucket: {name: ab, region: eu-central-1}"), None, f"{P}.bucket.name",
     "2 characters long"),
    ("bucket-too-long", ok("bucket: {name: " + "a" * 64 + ", region: eu-central-1}"), None, f"{P}.bucket.name",
     "64 characters long"),
    ("bucket-ip-address", ok("bucket: {name: 192.168.5.4, region: eu-central-1}"), None, f"{P}.bucket.name",
     "IP address"),
    ("bucket-double-dot", ok("bucket: {name: plant7..backups, region: eu-central-1}"), None, f"{P}.bucket.name",
     "adjacent periods"),
    ("bucket-hyphen-next-to-dot", ok("bucket: {name: plant7-.backups, region: eu-central-1}"), None,
     f"{P}.bucket.name", "'-' next to a '.'"),
    ("bucket-hyphen-first", ok("bucket: {name: -plant7, region: eu-central-1}"), None, f"{P}.bucket.name",
     "start and end with a letter or digit"),
    ("bucket-xn-prefix", ok("bucket: {name: xn--plant7, region: eu-central-1}"), None, f"{P}.bucket.name",
     "'xn--'"),
    ("bucket-sthree-prefix", ok("bucket: {name: sthree-plant7, region: eu-central-1}"), None, f"{P}.bucket.name",
     "'sthree-'"),
    ("bucket-s3alias-suffix", ok("bucket: {name: plant7-s3alias, region: eu-central-1}"), None, f"{P}.bucket.name",
     "'-s3alias'"),
    ("bucket-missing", ok("bucket: {region: eu-central-1}"), None, f"{P}.bucket.name", "is required"),
    ("no-bucket-at-all", SECRET, None, f"{P}.bucket", "is required"),
    # --- the region --------------------------------------------------------------------------------------------
    ("region-without-number", ok("bucket: {name: plant7-mqtt-backups, region: eu-central}"), None,
     f"{P}.bucket.region", "did you mean 'eu-central-1'"),
    ("region-availability-zone", ok("bucket: {name: plant7-mqtt-backups, region: eu-central-1a}"), None,
     f"{P}.bucket.region", "availability zone"),
    ("region-upper-case", ok("bucket: {name: plant7-mqtt-backups, region: EU-CENTRAL-1}"), None,
     f"{P}.bucket.region", "lower-case"),
    ("region-missing-on-aws", ok("bucket: {name: plant7-mqtt-backups}"), None, f"{P}.bucket.region",
     "is required without bucket.endpoint"),
    ("region-not-aws-without-endpoint", ok("bucket: {name: plant7-mqtt-backups, region: default}"), None,
     f"{P}.bucket.region", "not an AWS region"),
    # --- the schedule ------------------------------------------------------------------------------------------
    ("schedule-without-unit", ok("schedule: '15'"), None, f"{P}.schedule", "no unit (write 15m"),
    ("schedule-number", ok("schedule: 15"), None, f"{P}.schedule", "use a string"),
    ("schedule-too-often", ok("schedule: 30s"), None, f"{P}.schedule", "outside 1m to 24h"),
    ("schedule-too-rare", ok("schedule: 2d"), None, f"{P}.schedule", "outside 1m to 24h"),
    ("schedule-spelled-out", ok("schedule: 15 min"), None, f"{P}.schedule", "not a duration"),
    ("schedule-months", ok("schedule: 1M"), None, f"{P}.schedule", "not a duration"),
    # --- the endpoint: https, or the pod's own loopback -----------------------------------------------------------
    ("endpoint-plain-http", ok("bucket: {name: plant7-mqtt-backups, endpoint: 'http://minio.plant.example:9000'}"),
     None, f"{P}.bucket.endpoint", "plain http"),
    ("attack-http-exfiltration", ok("bucket: {name: plant7-mqtt-backups, endpoint: 'http://203.0.113.7'}"), None,
     f"{P}.bucket.endpoint", "readable by anyone on the path"),
    ("attack-instance-metadata-endpoint",
     ok("bucket: {name: plant7-mqtt-backups, endpoint: 'https://169.254.169.254'}"), None, f"{P}.bucket.endpoint",
     "instance metadata service"),
    ("endpoint-credentials-in-url",
     ok("bucket: {name: plant7-mqtt-backups, endpoint: 'https://key:secret@minio.plant.example'}"), None,
     f"{P}.bucket.endpoint", "carries credentials in the URL"),
    ("endpoint-with-bucket-path",
     ok("bucket: {name: plant7-mqtt-backups, endpoint: 'https://minio.plant.example/plant7-mqtt-backups'}"), None,
     f"{P}.bucket.endpoint", "path, query or fragment"),
    ("endpoint-host-only", ok("bucket: {name: plant7-mqtt-backups, endpoint: minio.plant.example}"), None,
     f"{P}.bucket.endpoint", "not an http(s) URL"),
    ("endpoint-bad-port", ok("bucket: {name: plant7-mqtt-backups, endpoint: 'https://minio.plant.example:99999'}"),
     None, f"{P}.bucket.endpoint", "not a URL"),
    ("endpoint-with-provision",
     ok("bucket: {name: plant7-mqtt-backups, provision: true, endpoint: 'https://minio.plant.example'}"), None,
     f"{P}.bucket.endpoint", "cannot be used with provision: true"),
    # --- the key prefix --------------------------------------------------------------------------------------
    ("prefix-leading-slash", ok("bucket: {name: plant7-mqtt-backups, region: eu-central-1, prefix: /mqtt}"), None,
     f"{P}.bucket.prefix", "starts or ends with '/'"),
    ("prefix-dot-dot", ok("bucket: {name: plant7-mqtt-backups, region: eu-central-1, prefix: mqtt/../other}"),
     None, f"{P}.bucket.prefix", "'..' segment"),
    ("prefix-iam-wildcard", ok("bucket: {name: plant7-mqtt-backups, region: eu-central-1, prefix: 'mqtt/*'}"),
     None, f"{P}.bucket.prefix", "IAM policy reads '*' as a wildcard"),
    ("prefix-double-slash", ok("bucket: {name: plant7-mqtt-backups, region: eu-central-1, prefix: a//b}"), None,
     f"{P}.bucket.prefix", "empty segment"),
    ("prefix-space", ok("bucket: {name: plant7-mqtt-backups, region: eu-central-1, prefix: plant 7}"), None,
     f"{P}.bucket.prefix", "contains ' '"),
    # --- retention and lock ------------------------------------------------------------------------------------
    ("lock-mode-lower-case", ok("retention: {lock: {mode: governance, days: 7}}"), None,
     f"{P}.retention.lock.mode", "use GOVERNANCE or COMPLIANCE"),
    ("lock-without-days", ok("retention: {lock: {mode: GOVERNANCE}}"), None, f"{P}.retention.lock.days",
     "is required"),
    ("lock-zero-days", ok("retention: {lock: {mode: GOVERNANCE, days: 0}}"), None, f"{P}.retention.lock.days",
     "out of range"),
    ("lock-longer-than-retention", ok("retention: {days: 7, lock: {mode: COMPLIANCE, days: 30}}"), None,
     f"{P}.retention.lock.days", "longer than retention.days 7"),
    ("lock-longer-than-default-retention", ok("retention: {lock: {mode: GOVERNANCE, days: 90}}"), None,
     f"{P}.retention.lock.days", "longer than retention.days 30"),
    ("retention-zero", ok("retention: {days: 0}"), None, f"{P}.retention.days", "out of range"),
    ("retention-as-text", ok("retention: {days: 30d}"), None, f"{P}.retention.days", "whole number"),
    # --- credentials -------------------------------------------------------------------------------------------
    ("both-credential-sources",
     ok("credentials: {secretName: mqtt-backup-s3, serviceAccountAnnotations: "
        "{eks.amazonaws.com/role-arn: 'arn:aws:iam::123456789012:role/mqtt-backup'}}"), None,
     f"{P}.credentials.serviceAccountAnnotations", "give one credential source"),
    ("no-credentials", BUCKET, None, f"{P}.credentials", "without either the pods have no credentials"),
    ("provisioned-bucket-no-credentials", "bucket: {name: plant7-mqtt-backups, region: eu-central-1, provision: true}",
     None, f"{P}.credentials", "no credentials"),
    ("key-names-without-secret",
     ok("credentials: {accessKeyIdKey: id, serviceAccountAnnotations: "
        "{eks.amazonaws.com/role-arn: 'arn:aws:iam::123456789012:role/mqtt-backup'}}"), None,
     f"{P}.credentials.accessKeyIdKey", "has no effect without credentials.secretName"),
    ("secret-name-upper-case", ok("credentials: {secretName: Mqtt-Backup}"), None, f"{P}.credentials.secretName",
     "lower-case"),
    ("secret-key-with-space", ok("credentials: {secretName: mqtt-backup-s3, accessKeyIdKey: access key}"), None,
     f"{P}.credentials.accessKeyIdKey", "contains ' '"),
    ("secret-keys-the-same",
     ok("credentials: {secretName: mqtt-backup-s3, accessKeyIdKey: key, secretAccessKeyKey: key}"), None,
     f"{P}.credentials.secretAccessKeyKey", "same Secret key"),
    ("secret-key-the-default-id-key",
     ok("credentials: {secretName: mqtt-backup-s3, secretAccessKeyKey: AWS_ACCESS_KEY_ID}"), None,
     f"{P}.credentials.secretAccessKeyKey", "same Secret key"),
    ("attack-estate-tls-secret-as-credentials",
     ok("credentials: {secretName: mosquitto-tls, accessKeyIdKey: tls.key, secretAccessKeyKey: ca.crt}"), None,
     f"{P}.credentials.secretName", "the estate's own Secret (the brokers' private key)"),
    ("attack-estate-password-secret", ok("credentials: {secretName: mosquitto-auth}"), None,
     f"{P}.credentials.secretName", "the password file and ACLs"),
    ("attack-kubernetes-annotation",
     ok("credentials: {serviceAccountAnnotations: {kubernetes.io/enforce-mountable-secrets: 'false'}}"), None,
     f"{P}.credentials.serviceAccountAnnotations.kubernetes.io/enforce-mountable-secrets.[key]",
     "steer Kubernetes or Pulumi"),
    ("attack-pulumi-annotation", ok("credentials: {serviceAccountAnnotations: {pulumi.com/patchForce: 'true'}}"),
     None, f"{P}.credentials.serviceAccountAnnotations.pulumi.com/patchForce.[key]", "in pulumi.com"),
    # the key's line break is shown escaped: it cannot forge a second line of the message either
    ("attack-annotation-key-injection",
     ok("credentials: {serviceAccountAnnotations: {\"eks.amazonaws.com/role-arn\\nx\": y}}"), None,
     f"{P}.credentials.serviceAccountAnnotations.eks.amazonaws.com/role-arn\\nx.[key]", "annotation name"),
    ("attack-annotation-value-control-character",
     ok("credentials: {serviceAccountAnnotations: {example.com/role: \"a\\u001b[2Jb\"}}"), None,
     f"{P}.credentials.serviceAccountAnnotations.example.com/role", "control characters"),
    ("role-arn-short-account",
     ok("credentials: {serviceAccountAnnotations: {eks.amazonaws.com/role-arn: 'arn:aws:iam::1234:role/x'}}"), None,
     f"{P}.credentials.serviceAccountAnnotations.eks.amazonaws.com/role-arn", "not an IAM role ARN"),
    # --- restore -----------------------------------------------------------------------------------------------
    ("restore-request-without-target", ok("restore: {request: line3-2026-08-14}"), None, f"{P}.restore.target",
     "is required with restore.request"),
    ("restore-target-without-request", ok("restore: {target: latest}"), None, f"{P}.restore.target",
     "has no effect without restore.request"),
    ("restore-date-without-time", ok("restore: {request: r1, target: '2026-08-14'}"), None, f"{P}.restore.target",
     "date without a time"),
    ("restore-time-without-offset", ok("restore: {request: r1, target: '2026-08-14T06:30:00'}"), None,
     f"{P}.restore.target", "no UTC offset"),
    ("restore-impossible-date", ok("restore: {request: r1, target: '2026-02-30T06:30:00Z'}"), None,
     f"{P}.restore.target", "not a real date"),
    ("restore-year-one", ok("restore: {request: r1, target: '0001-01-01T00:00:00+01:00'}"), None,
     f"{P}.restore.target", "years 1970 to 9998"),
    ("restore-latest-upper-case", ok("restore: {request: r1, target: LATEST}"), None, f"{P}.restore.target",
     "write latest"),
    ("restore-request-with-space", ok("restore: {request: line 3, target: latest}"), None, f"{P}.restore.request",
     "not a request id"),
    ("restore-version-id-with-three-brokers", ok("restore: {request: r1, target: 3HL4kqtJvjVBH40Nrjfkd}"), CLUSTER,
     f"{P}.restore.target", "each of the 3 brokers keeps its own key"),
    # --- the section as a whole --------------------------------------------------------------------------------
    ("backup-without-persistence", ok(), "persistence-off", P, "needs broker.persistence.enabled: true"),
    ("switched-off-backup-without-persistence", "enabled: false\n" + ok(), "persistence-off", P,
     "has no effect with enabled: false"),
    ("misspelt-key", ok("bukcet: {name: x}"), None, f"{P}.bukcet", "unknown key"),
    ("enabled-as-text", ok("enabled: yes please"), None, f"{P}.enabled", "true or false"),
    ("image-unpinned", ok("image: ghcr.io/mqtt-estate/mosquitto-backup"), None, f"{P}.image", "not pinned"),
]


def _text(body: str, broker) -> str:
    if broker == "persistence-off":
        return stack(body, persistence="false")
    return stack(body, broker=broker or "name: mosquitto")


@pytest.mark.parametrize("body, broker, path, fragment", [c[1:] for c in MISTAKES], ids=[c[0] for c in MISTAKES])
def test_backup_mistake_is_one_key_path_line(tmp_path, capsys, body, broker, path, fragment):
    assert_one_key_path_line(tmp_path, capsys, _text(body, broker), path, fragment)


def test_case_ids_are_unique():
    ids = [c[0] for c in MISTAKES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60


VALID = [
    ("secret-credentials", ok()),
    ("irsa", ok("credentials: {serviceAccountAnnotations: "
                "{eks.amazonaws.com/role-arn: 'arn:aws-us-gov:iam::123456789012:role/path/mqtt-backup'}}")),
    ("provisioned-locked", ok("bucket: {name: plant7-mqtt-backups, region: eu-central-1, provision: true}",
                              "retention: {days: 30, lock: {mode: COMPLIANCE, days: 30}}")),
    ("brought-bucket-with-lock", ok("retention: {days: 14, lock: {mode: GOVERNANCE, days: 7}}")),
    ("store-without-region", ok("bucket: {name: plant7-mqtt-backups, endpoint: 'https://minio.plant.example:9000', "
                                "pathStyle: true}")),
    ("store-region-of-its-own", ok("bucket: {name: plant7.mqtt.backups, endpoint: 'https://10.20.0.5:9000', "
                                   "region: default}")),
    ("loopback-http", ok("bucket: {name: plant7-mqtt-backups, endpoint: 'http://127.0.0.1:9000'}")),
    ("localhost-http", ok("bucket: {name: plant7-mqtt-backups, endpoint: 'http://localhost:9000'}")),
    ("ipv6-endpoint", ok("bucket: {name: plant7-mqtt-backups, endpoint: 'https://[fd00::5]:9000'}")),
    ("prefix", ok("bucket: {name: plant7-mqtt-backups, region: eu-central-1, prefix: plant7/line-3_a.b}")),
    ("schedule-compound", ok("schedule: 1h30m")),
    ("schedule-a-day", ok("schedule: 24h")),
    ("restore-latest", ok("restore: {request: r1, target: latest, onEmptyVolume: false}")),
    ("restore-version-one-broker", ok("restore: {request: r1, target: 3HL4kqtJvjVBH40Nrjfkd.x_y-z}")),
    # a time in the future cannot be refused: the render does not know when the pod starts (then it means latest)
    ("restore-time-in-the-future", ok("restore: {request: r1, target: '2099-01-01T00:00:00+01:00'}")),
    ("restore-time-in-a-cluster", ok("restore: {request: r1, target: '2026-08-14T06:30:00.5Z'}")),
]


@pytest.mark.parametrize("body", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_backup_is_accepted(tmp_path, body):
    path = tmp_path / "ok.yaml"
    broker = CLUSTER if "06:30:00.5Z" in body else "name: mosquitto"  # a time is fine with several brokers
    path.write_text(stack(body, broker=broker))
    backup = read_stack_file(path).estate.broker.persistence.backup
    assert backup is not None


def test_defaults():
    """The section's defaults: every 15 minutes, 30 days, no lock, a brought bucket, restore into an empty volume."""
    path_text = stack(ok())
    from mqtt_estate.stacks.model import Backup

    backup = Backup.model_validate({"bucket": {"name": "b12", "region": "eu-central-1"},
                                    "credentials": {"secretName": "s"}}, by_alias=True, by_name=False)
    assert (backup.schedule, backup.retention.days, backup.retention.lock, backup.bucket.provision,
            backup.bucket.path_style, backup.restore.on_empty_volume) == ("15m", 30, None, False, False, True)
    assert (backup.credentials.access_key_id_key, backup.credentials.secret_access_key_key) == (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert backup_rules.schedule_seconds(backup.schedule) == 900
    assert "backup:" in path_text


def test_every_problem_is_reported_at_once(tmp_path):
    """Several cross-field mistakes in one section: one line each, all in one run."""
    path = tmp_path / "bad.yaml"
    path.write_text(stack("""
        bucket: {name: plant7-mqtt-backups, region: eu-central, provision: true, endpoint: 'https://minio.example'}
        retention: {days: 7, lock: {mode: GOVERNANCE, days: 8}}
        restore: {request: r1}
    """))
    with pytest.raises(StackConfigError) as refused:
        read_stack_file(path)
    paths = sorted(issue.path for issue in refused.value.issues)
    assert paths == sorted([f"{P}.bucket.endpoint", f"{P}.retention.lock.days", f"{P}.credentials",
                            f"{P}.restore.target"])
