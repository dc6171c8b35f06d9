"""Malformed stack files: each gives exactly its one-line error, exit code 2, no traceback, nothing written.

Every case is a whole stack file and the exact stderr line(s) `python -m estate render` must print for it:
`<file name>: mqtt-estate:<key path>: <what is wrong and what is allowed>`. Configuration errors are found
before the Pulumi program runs, so these tests call the CLI in-process and stay fast; one test runs the
real `python -m estate` in a subprocess to prove the user sees one clean line and no traceback.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mqtt_estate.estate.render  # noqa: E402
from mqtt_estate.estate.cli import EXIT_CONFIG, main  # noqa: E402
from mqtt_estate.estate.stackfile import read_stack_file  # noqa: E402
from mqtt_estate.stacks.errors import StackConfigError  # noqa: E402

STACK_FILE = "bad.yaml"
TRACEBACK = "Traceback"


def assert_refused(rc: int, stdout: str, out: Path, tmp_path: Path, path: Path) -> None:
    """Exit 2, nothing on stdout, no output directory, nothing else written."""
    assert rc == EXIT_CONFIG
    assert stdout == ""
    assert not out.exists()
    assert_nothing_written(tmp_path, path)


def stack(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# (id, stack file text, the one stderr line expected)
CASES = [
    (
        "listener-tls-version",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: 1883}
              - {name: mqtts, port: 8883, tls: true, tlsVersion: tlsv1.1}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[1].tlsVersion: 'tlsv1.1' is not allowed (use tlsv1.2 or tlsv1.3)",
    ),
    (
        "unknown-top-level-key",
        """
        config:
          mqtt-estate:brokr:
            name: mosquitto
        """,
        "bad.yaml: mqtt-estate:brokr: unknown key "
        "(allowed: namespace, broker, pki, users, frontend, bridges, monitoring, password-<user>, caCertPem, caKeyPem, bridge-password-<bridge>, bridge-key-<bridge>)",
    ),
    (
        "unknown-nested-key-lists-allowed-keys",
        """
        config:
          mqtt-estate:broker:
            listner:
              - {name: mqtt, port: 1883}
        """,
        "bad.yaml: mqtt-estate:broker.listner: unknown key (allowed: name, preset, replicas, image, listeners, "
        "auth, persistence, limits, resources, service, acl, ha)",
    ),
    (
        "unknown-listener-key-lists-allowed-keys",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtts, port: 8883, tls: true, tlsversion: tlsv1.3}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[0].tlsversion: unknown key "
        "(allowed: name, port, protocol, tls, tlsVersion, requireCertificate, allowAnonymous, anonymousTopics, "
        "sourceRanges)",
    ),
    (
        "unknown-user-key-lists-allowed-keys",
        """
        config:
          mqtt-estate:users:
            - {name: admin, rol: admin}
        """,
        "bad.yaml: mqtt-estate:users[0].rol: unknown key (allowed: name, role, auth, zone, groups, topics, rotation)",
    ),
    (
        "port-out-of-range",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: 70000}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[0].port: 70000 is out of range (must be <= 65535)",
    ),
    (
        "port-as-string",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: "1883"}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[0].port: '1883' is not allowed (use a whole number)",
    ),
    (
        "port-reserved-for-health-listener",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: 1880}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[0].port: 1880 is reserved for the in-pod health listener "
        "(use another port)",
    ),
    (
        "duplicate-listener-port",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: 1883}
              - {name: mqtt-two, port: 1883}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[1].port: 1883 is already used by listeners[0] (ports must be unique)",
    ),
    (
        "duplicate-listener-name",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: 1883}
              - {name: mqtt, port: 1884}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[1].name: 'mqtt' is already used by listeners[0] "
        "(names must be unique)",
    ),
    (
        "no-listeners",
        """
        config:
          mqtt-estate:broker:
            listeners: []
        """,
        "bad.yaml: mqtt-estate:broker.listeners: [] is not allowed (use a list with min length 1)",
    ),
    (
        "require-certificate-without-tls",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: 1883, requireCertificate: true}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[0].requireCertificate: true needs tls: true on the same listener",
    ),
    (
        "tls-as-number",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtts, port: 8883, tls: 1}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[0].tls: 1 is not allowed (use true or false)",
    ),
    (
        "bad-preset",
        """
        config:
          mqtt-estate:broker:
            preset: huge-broker
        """,
        "bad.yaml: mqtt-estate:broker.preset: 'huge-broker' is not allowed "
        "(use edge-broker, standard-broker, enterprise-broker or ha-cluster)",
    ),
    (
        "image-without-tag",
        """
        config:
          mqtt-estate:broker:
            image: eclipse-mosquitto
        """,
        "bad.yaml: mqtt-estate:broker.image: 'eclipse-mosquitto' is not pinned "
        "(pin a tag or digest, e.g. eclipse-mosquitto:<version> or eclipse-mosquitto@sha256:...)",
    ),
    (
        "allow-anonymous-as-string-yes",
        """
        config:
          mqtt-estate:broker:
            auth: {allowAnonymous: "yes"}
        """,
        "bad.yaml: mqtt-estate:broker.auth.allowAnonymous: 'yes' is not allowed (use true or false)",
    ),
    (
        "password-iterations-too-low",
        """
        config:
          mqtt-estate:broker:
            auth: {passwordIterations: 500}
        """,
        "bad.yaml: mqtt-estate:broker.auth.passwordIterations: 500 is out of range (must be >= 1000)",
    ),
    (
        "autosave-interval-zero",
        """
        config:
          mqtt-estate:broker:
            persistence: {autosaveInterval: 0}
        """,
        "bad.yaml: mqtt-estate:broker.persistence.autosaveInterval: 0 is out of range (must be >= 1)",
    ),
    (
        "session-expiry-forever",
        """
        config:
          mqtt-estate:broker:
            persistence: {sessionExpiry: forever}
        """,
        "bad.yaml: mqtt-estate:broker.persistence.sessionExpiry: 'forever' is not a mosquitto duration "
        "(a whole number followed by h, d, w, m (months) or y, as in 14d)",
    ),
    (
        "max-packet-size-too-big",
        """
        config:
          mqtt-estate:broker:
            limits: {maxPacketSize: 268435456}
        """,
        "bad.yaml: mqtt-estate:broker.limits.maxPacketSize: 268435456 is out of range (must be <= 268435455)",
    ),
    (
        "load-balancer-source-ranges-with-cluster-ip",
        """
        config:
          mqtt-estate:broker:
            service:
              type: ClusterIP
              loadBalancerSourceRanges: [10.20.0.0/16]
        """,
        "bad.yaml: mqtt-estate:broker.service.loadBalancerSourceRanges: is only allowed with type: LoadBalancer",
    ),
    (
        "acl-pattern-invalid-access",
        """
        config:
          mqtt-estate:broker:
            acl:
              patterns:
                - {access: write-only, topic: "plant/#"}
        """,
        "bad.yaml: mqtt-estate:broker.acl.patterns[0].access: 'write-only' is not allowed "
        "(use read, write, readwrite or deny)",
    ),
    (
        "user-name-with-space",
        """
        config:
          mqtt-estate:users:
            - {name: "sensor 01", role: device}
        """,
        "bad.yaml: mqtt-estate:users[0].name: 'sensor 01' is not allowed (use letters, digits, '_', '.' and '-', at most 64, no spaces)",
    ),
    (
        "duplicate-user",
        """
        config:
          mqtt-estate:users:
            - {name: admin, role: admin}
            - {name: admin, role: dashboard}
        """,
        "bad.yaml: mqtt-estate:users[1].name: 'admin' is already used by users[0] (names must be unique)",
    ),
    (
        "certificate-user-without-mtls-listener",
        """
        config:
          mqtt-estate:users:
            - {name: gw-01, role: device, auth: certificate}
        """,
        "bad.yaml: mqtt-estate:users[0].auth: 'certificate' needs a listener with requireCertificate: true "
        "(or use password)",
    ),
    (
        "user-zone-not-in-factory-zones",
        """
        config:
          mqtt-estate:broker:
            acl:
              factory: {zones: [production, quality]}
          mqtt-estate:users:
            - {name: sensor-01, role: device, zone: packing}
        """,
        "bad.yaml: mqtt-estate:users[0].zone: 'packing' is not allowed "
        "(use one of broker.acl.factory.zones: production, quality)",
    ),
    (
        "user-zone-without-factory-acl",
        """
        config:
          mqtt-estate:users:
            - {name: sensor-01, role: device, zone: production}
        """,
        "bad.yaml: mqtt-estate:users[0].zone: needs broker.acl.factory to be set",
    ),
    (
        "edge-node-without-groups",
        """
        config:
          mqtt-estate:broker:
            acl:
              sparkplug: {groups: [Factory]}
          mqtt-estate:users:
            - {name: edge-gw-01, role: edge-node}
        """,
        "bad.yaml: mqtt-estate:users[0].groups: an edge-node needs at least one Sparkplug group",
    ),
    (
        "user-group-not-in-sparkplug-groups",
        """
        config:
          mqtt-estate:broker:
            acl:
              sparkplug: {groups: [Factory]}
          mqtt-estate:users:
            - {name: scada-host, role: host-application, groups: [Warehouse]}
        """,
        "bad.yaml: mqtt-estate:users[0].groups[0]: 'Warehouse' is not allowed "
        "(use one of broker.acl.sparkplug.groups: Factory)",
    ),
    (
        "password-key-for-unknown-user",
        """
        config:
          mqtt-estate:users:
            - {name: admin, role: admin}
          mqtt-estate:password-bob: s3cret-s3cret
        """,
        "bad.yaml: mqtt-estate:password-bob: names no user in users (known: admin)",
    ),
    (
        "password-key-not-a-string",
        """
        config:
          mqtt-estate:users:
            - {name: admin, role: admin}
          mqtt-estate:password-admin: 123456
        """,
        "bad.yaml: mqtt-estate:password-admin: is not allowed (use a string)",
    ),
    (
        "existing-ca-without-ca-key",
        """
        config:
          mqtt-estate:pki: {existingCa: true}
          mqtt-estate:caCertPem: "-----BEGIN CERTIFICATE-----"
        """,
        "bad.yaml: mqtt-estate:pki.existingCa: true needs the secret key mqtt-estate:caKeyPem",
    ),
    (
        "ecdsa-curve-p224-refused",
        """
        config:
          mqtt-estate:pki:
            caKey: {algorithm: ECDSA, ecdsaCurve: P224}
        """,
        "bad.yaml: mqtt-estate:pki.caKey.ecdsaCurve: 'P224' is not allowed (use P256 or P384)",
    ),
    (
        "rsa-bits-1024",
        """
        config:
          mqtt-estate:pki:
            leafKey: {algorithm: RSA, rsaBits: 1024}
        """,
        "bad.yaml: mqtt-estate:pki.leafKey.rsaBits: 1024 is not allowed (use 2048, 3072 or 4096)",
    ),
    (
        "leaf-validity-too-long",
        """
        config:
          mqtt-estate:pki: {leafValidityHours: 20000}
        """,
        "bad.yaml: mqtt-estate:pki.leafValidityHours: 20000 is out of range (must be <= 9552)",
    ),
    (
        "encrypted-secure-value",
        """
        config:
          mqtt-estate:users:
            - {name: admin, role: admin}
          mqtt-estate:password-admin:
            secure: AAABAMk1p0bq6lYdvH2n3zv8Xqk=
        """,
        "bad.yaml: mqtt-estate:password-admin: encrypted values need the Pulumi CLI to decrypt; for offline runs "
        "give a plain value in a local file passed with --config",
    ),
    (
        "yaml-syntax-error",
        """
        config:
          mqtt-estate:broker:
            name: mosquitto
           preset: edge-broker
        """,
        "bad.yaml: line 4: not valid YAML "
        "(expected <block end>, but found '<block mapping start>')",
    ),
    (
        "config-not-a-mapping",
        """
        config:
          - mqtt-estate:broker
        """,
        "bad.yaml: config: must be a mapping of 'mqtt-estate:<key>' to values",
    ),
    (
        "document-not-a-mapping",
        """
        - config
        - mqtt-estate:broker
        """,
        "bad.yaml: the file must be a mapping with a `config:` section",
    ),
    (
        "load-balancer-without-external-names",
        """
        config:
          mqtt-estate:broker:
            service: {type: LoadBalancer, loadBalancerSourceRanges: [10.0.0.0/8]}
        """,
        "bad.yaml: mqtt-estate:pki.extraDnsNames: is required with a LoadBalancer: list the names clients use to "
        "reach it (TLS goes through to the brokers, whose certificate must carry them; IP addresses go in pki.extraIpAddresses)",
    ),
    (
        "misspelt-namespace",
        """
        config:
          mqtt-estat:broker:
            preset: edge-broker
        """,
        "bad.yaml: config.mqtt-estat:broker: unknown namespace 'mqtt-estat' "
        "(use mqtt-estate, or one of pulumi, kubernetes, random, tls, aws)",
    ),
    (
        "misspelt-document-key",
        """
        confg:
          mqtt-estate:broker:
            preset: edge-broker
        """,
        "bad.yaml: confg: unknown top-level key "
        "(allowed: config, secretsprovider, encryptedkey, encryptionsalt, environment)",
    ),
    (
        "snake-case-key-is-a-typo",
        """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtts, port: 8883, tls: true, tls_version: tlsv1.3}
        """,
        "bad.yaml: mqtt-estate:broker.listeners[0].tls_version: unknown key "
        "(allowed: name, port, protocol, tls, tlsVersion, requireCertificate, allowAnonymous, anonymousTopics, "
        "sourceRanges)",
    ),
    (
        "image-latest",
        """
        config:
          mqtt-estate:broker:
            image: eclipse-mosquitto:latest
        """,
        "bad.yaml: mqtt-estate:broker.image: 'eclipse-mosquitto:latest' uses the moving tag 'latest' "
        "(pin a version tag, e.g. eclipse-mosquitto:<version>, or add @sha256:...)",
    ),
    (
        "nested-encrypted-value",
        """
        config:
          mqtt-estate:broker:
            auth:
              secure: AAABAMk1p0bq6lYdvH2n3zv8Xqk=
        """,
        "bad.yaml: mqtt-estate:broker.auth: encrypted values need the Pulumi CLI to decrypt; for offline runs "
        "give a plain value in a local file passed with --config",
    ),
    (
        "key-without-namespace",
        """
        config:
          broker:
            name: mosquitto
        """,
        "bad.yaml: config.broker: keys must look like 'mqtt-estate:<key>'",
    ),
    (
        "top-level-value-not-a-mapping",
        """
        config:
          mqtt-estate:broker: 5
        """,
        "bad.yaml: mqtt-estate:broker: 5 is not allowed (use a mapping of keys)",
    ),
    (
        "users-not-a-list",
        """
        config:
          mqtt-estate:users:
            name: admin
        """,
        "bad.yaml: mqtt-estate:users: {\"name\": \"admin\"} is not allowed (use a list)",
    ),
    (
        "yaml-alias-bomb",  # ~700 bytes that would expand to 10**9 values: refused while composing
        "config:\n  mqtt-estate:broker:\n    name: mosquitto\n  kubernetes:lol:\n"
        "    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))
        + "  mqtt-estate:users: *a9\n",
        "bad.yaml: line 9: alias *a3 refused (aliases expand to more than 100000 values; "
        "stack files need no such structure)",
    ),
    (
        "yaml-recursive-alias",
        """
        config:
          mqtt-estate:broker: &broker
            name: mosquitto
            acl: {patterns: [*broker]}
        """,
        "bad.yaml: line 4: alias *broker refers to a value that contains it "
        "(recursive structures are not allowed; stack files need no such structure)",
    ),
    (
        "yaml-undefined-alias",
        """
        config:
          mqtt-estate:broker:
            listeners: *listeners
        """,
        "bad.yaml: line 3: not valid YAML (found undefined alias 'listeners')",
    ),
    (
        "flood-concurrent-limit-above-maxconn",
        """
        config:
          mqtt-estate:broker: {preset: ha-cluster, listeners: [{name: mqtts, port: 8883, tls: true}]}
          mqtt-estate:frontend:
            maxconn: 5000
            floodProtection: {concurrentConnections: 6000}
        """,
        "bad.yaml: mqtt-estate:frontend.floodProtection.concurrentConnections: 6000 is above frontend.maxconn 5000, "
        "so it could never be reached (use at most 5000)",
    ),
    (
        "flood-rate-period-without-unit",
        """
        config:
          mqtt-estate:broker: {preset: ha-cluster, listeners: [{name: mqtts, port: 8883, tls: true}]}
          mqtt-estate:frontend:
            floodProtection: {ratePeriod: "10"}
        """,
        "bad.yaml: mqtt-estate:frontend.floodProtection.ratePeriod: '10' is not an HAProxy time (a whole number "
        "followed by ms, s, m (minutes), h or d, as in 10s)",
    ),
]


def render_cli(tmp_path: Path, text: str, name: str = STACK_FILE) -> tuple[Path, Path]:
    """Write the stack file; return (stack file, output dir that render must not create)."""
    path = tmp_path / name
    path.write_text(stack(text))
    return path, tmp_path / "out"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run from tmp_path and keep render's state dir (.estate/<stack>/seed.json) there, so a case that
    unexpectedly passes validation cannot write into the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mqtt_estate.estate.render, "PROJECT_DIR", tmp_path / "project")


def run_in_process(capsys, path: Path, out: Path) -> tuple[int, list[str], str]:
    rc = main(["render", "--stack", "bad", "--config", str(path), "--out", str(out)])
    captured = capsys.readouterr()
    return rc, captured.err.splitlines(), captured.out


def assert_nothing_written(tmp_path: Path, *keep: Path) -> None:
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == sorted(p.relative_to(tmp_path).as_posix() for p in keep), "a failed render wrote files"


def test_case_ids_are_unique_and_enough():
    ids = [case_id for case_id, _, _ in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 24


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_one_line_error_exit_2_nothing_written(tmp_path, capsys, text, expected):
    path, out = render_cli(tmp_path, text)
    rc, err_lines, stdout = run_in_process(capsys, path, out)
    assert err_lines == [expected]
    assert rc == EXIT_CONFIG
    assert stdout == ""
    assert TRACEBACK not in "\n".join(err_lines)
    assert not out.exists()
    assert_nothing_written(tmp_path, path)


def test_every_shape_error_in_one_file_gets_its_own_line(tmp_path, capsys):
    path, out = render_cli(tmp_path, """
        config:
          mqtt-estate:brokr: {}
          mqtt-estate:broker:
            preset: huge-broker
            listeners:
              - {name: mqtt, port: 0}
            auth: {allowAnonymous: "yes"}
          mqtt-estate:pki:
            caKey: {ecdsaCurve: P224}
    """)
    rc, err_lines, stdout = run_in_process(capsys, path, out)
    assert err_lines == [
        "bad.yaml: mqtt-estate:brokr: unknown key "
        "(allowed: namespace, broker, pki, users, frontend, bridges, monitoring, password-<user>, caCertPem, caKeyPem, bridge-password-<bridge>, bridge-key-<bridge>)",
        "bad.yaml: mqtt-estate:broker.preset: 'huge-broker' is not allowed "
        "(use edge-broker, standard-broker, enterprise-broker or ha-cluster)",
        "bad.yaml: mqtt-estate:broker.listeners[0].port: 0 is out of range (must be >= 1)",
        "bad.yaml: mqtt-estate:broker.auth.allowAnonymous: 'yes' is not allowed (use true or false)",
        "bad.yaml: mqtt-estate:pki.caKey.ecdsaCurve: 'P224' is not allowed (use P256 or P384)",
    ]
    assert_refused(rc, stdout, out, tmp_path, path)


def test_every_cross_field_error_in_one_file_gets_its_own_line(tmp_path, capsys):
    path, out = render_cli(tmp_path, """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: 1883}
              - {name: mqtt, port: 1883, requireCertificate: true}
            service: {type: ClusterIP, loadBalancerSourceRanges: [10.0.0.0/8]}
          mqtt-estate:users:
            - {name: sensor-01, zone: production}
            - {name: sensor-01, role: edge-node}
          mqtt-estate:pki: {existingCa: true}
          mqtt-estate:password-bob: s3cret-s3cret
    """)
    rc, err_lines, stdout = run_in_process(capsys, path, out)
    assert err_lines == [
        "bad.yaml: mqtt-estate:broker.listeners[1].name: 'mqtt' is already used by listeners[0] "
        "(names must be unique)",
        "bad.yaml: mqtt-estate:broker.listeners[1].port: 1883 is already used by listeners[0] "
        "(ports must be unique)",
        "bad.yaml: mqtt-estate:broker.listeners[1].requireCertificate: true needs tls: true on the same listener",
        "bad.yaml: mqtt-estate:broker.service.loadBalancerSourceRanges: is only allowed with type: LoadBalancer",
        "bad.yaml: mqtt-estate:users[0].zone: needs broker.acl.factory to be set",
        "bad.yaml: mqtt-estate:users[1].name: 'sensor-01' is already used by users[0] (names must be unique)",
        "bad.yaml: mqtt-estate:users[1].groups: an edge-node needs at least one Sparkplug group",
        "bad.yaml: mqtt-estate:password-bob: names no user in users (known: sensor-01)",
        "bad.yaml: mqtt-estate:pki.existingCa: true needs the secret key mqtt-estate:caCertPem",
        "bad.yaml: mqtt-estate:pki.existingCa: true needs the secret key mqtt-estate:caKeyPem",
    ]
    assert_refused(rc, stdout, out, tmp_path, path)


def test_missing_config_file_is_one_line_exit_2(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    out = tmp_path / "out"
    rc, err_lines, stdout = run_in_process(capsys, missing, out)
    assert err_lines == [f"missing.yaml: no such stack file: {missing}"]
    assert rc == EXIT_CONFIG
    assert stdout == ""
    assert not out.exists()
    assert_nothing_written(tmp_path)


def test_failed_render_leaves_an_existing_out_dir_alone(tmp_path, capsys):
    path, out = render_cli(tmp_path, """
        config:
          mqtt-estate:broker:
            preset: huge-broker
    """)
    out.mkdir()
    keep = out / "resources.txt"
    keep.write_text("previous render\n")
    rc, err_lines, _ = run_in_process(capsys, path, out)
    assert rc == EXIT_CONFIG
    assert len(err_lines) == 1
    assert keep.read_text() == "previous render\n"
    assert_nothing_written(tmp_path, path, out, keep)


def test_subprocess_prints_one_line_and_no_traceback(tmp_path):
    path, out = render_cli(tmp_path, """
        config:
          mqtt-estate:broker:
            listeners:
              - {name: mqtt, port: 1883}
              - {name: mqtts, port: 8883, tls: true, tlsVersion: tlsv1.1}
    """)
    proc = subprocess.run(
        [sys.executable, "-m", "estate", "render", "--stack", "bad", "--config", str(path), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == EXIT_CONFIG
    assert proc.stderr.splitlines() == [
        "bad.yaml: mqtt-estate:broker.listeners[1].tlsVersion: 'tlsv1.1' is not allowed (use tlsv1.2 or tlsv1.3)"
    ]
    assert proc.stdout == ""
    assert TRACEBACK not in proc.stdout + proc.stderr
    assert not out.exists()
    assert_nothing_written(tmp_path, path)


# File-level problems found while writing these cases, now refused with one line.

def test_non_utf8_stack_file_is_a_config_error(tmp_path, capsys):
    path = tmp_path / STACK_FILE
    path.write_bytes(b"config:\n  mqtt-estate:broker: {name: \xff\xfe}\n")
    out = tmp_path / "out"
    rc, err_lines, _ = run_in_process(capsys, path, out)
    assert rc == EXIT_CONFIG
    assert err_lines == ["bad.yaml: not UTF-8 text (byte 37)"]
    assert not out.exists()


def test_duplicate_yaml_key_is_a_config_error(tmp_path):
    path, _ = render_cli(tmp_path, """
        config:
          mqtt-estate:broker:
            preset: enterprise-broker
          mqtt-estate:broker:
            name: other
    """)
    with pytest.raises(StackConfigError) as raised:
        read_stack_file(path)
    assert raised.value.lines == ["bad.yaml: line 4: not valid YAML (key 'mqtt-estate:broker' is given twice "
                                  "(first on line 2))"]
