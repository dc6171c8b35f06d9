"""Real mosquitto booted from the rendered prod/dev files, driven with paho-mqtt on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mqtt_estate.estate.mqtt_client import V5, V311, connect, make_client, round_trip
from mqtt_estate.estate.smoke import run_smoke


def listener(conn: dict, name: str) -> dict:
    return next(lst for lst in conn["listeners"] if lst["name"] == name)


def creds(conn: dict) -> dict:
    return json.loads(Path(conn["credentials_file"]).read_text())


def login(conn: dict, user: str, name: str = "mqtts", protocol=V311):
    result = connect(listener(conn, name), username=user, password=creds(conn)[user], ca_file=conn["ca_file"],
                     protocol=protocol)
    assert result.accepted, result.error or result.reason
    return result


def collect(client, topic: str, qos: int = 1) -> list:
    received, subscribed = [], threading.Event()
    client.on_message = lambda _c, _u, msg: received.append((msg.topic, msg.payload))
    client.on_subscribe = lambda *a: subscribed.set()
    client.subscribe(topic, qos)
    assert subscribed.wait(5)
    return received


def assert_only_own_topic_arrives(device, observer, observed: str, own: str, foreign: list[str]) -> None:
    """The device publishes to its own topic and to others'; the observer sees only its own."""
    received = collect(observer.client, observed)
    device.client.publish(own, b"own", qos=1).wait_for_publish(5)
    for topic in foreign:
        device.client.publish(topic, b"spoof", qos=1).wait_for_publish(5)
    threading.Event().wait(0.5)
    assert received == [(own, b"own")]
    device.close()
    observer.close()


def test_smoke_suite_passes_on_prod(local_prod):
    checks = run_smoke(local_prod)
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_smoke_suite_passes_on_dev(local_dev):
    checks = run_smoke(local_dev)
    assert len(checks) == 18 and all(c.ok for c in checks), [c for c in checks if not c.ok]


@pytest.mark.parametrize("protocol", [V311, V5])
def test_valid_user_connects(local_prod, protocol):
    login(local_prod, "scada-host", protocol=protocol).close()


def test_wrong_password_refused_v311_return_code(local_prod):
    result = connect(listener(local_prod, "mqtts"), username="scada-host", password="not-it",
                     ca_file=local_prod["ca_file"], protocol=V311)
    assert not result.accepted
    assert result.v3_return_code in (4, 5)  # mosquitto 2.0 answers 5 (not authorised)


def test_wrong_password_refused_v5_reason_code(local_prod):
    result = connect(listener(local_prod, "mqtts"), username="scada-host", password="not-it",
                     ca_file=local_prod["ca_file"], protocol=V5)
    assert not result.accepted and result.reason in (134, 135)


@pytest.mark.parametrize("protocol,expected", [(V311, 5), (V5, 135)])
def test_anonymous_refused(local_prod, protocol, expected):
    result = connect(listener(local_prod, "mqtts"), ca_file=local_prod["ca_file"], protocol=protocol)
    assert not result.accepted
    code = result.v3_return_code if protocol == V311 else result.reason
    assert code == expected


def test_anonymous_allowed_only_when_stack_says_so(local_dev):
    assert listener(local_dev, "mqtt")["allow_anonymous"] is False
    result = connect(listener(local_dev, "mqtt"))
    assert not result.accepted and result.v3_return_code == 5


def test_acl_publish_denied_with_v5_puback_reason(local_prod):
    admin = login(local_prod, "ops-admin")
    host = login(local_prod, "scada-host", protocol=V5)
    topic = f"factory/forbidden/{uuid.uuid4().hex[:6]}"
    received = collect(admin.client, topic)
    acked = threading.Event()
    codes = []

    def on_publish(_c, _u, _mid, reason, _props):
        codes.append(reason.value)
        acked.set()

    host.client.on_publish = on_publish
    host.client.publish(topic, b"x", qos=1)
    assert acked.wait(5)
    assert codes == [135]  # Not authorized
    threading.Event().wait(0.5)
    assert received == []
    host.close()
    admin.close()


def test_acl_read_denied_no_delivery(local_prod):
    admin = login(local_prod, "ops-admin")
    host = login(local_prod, "scada-host")
    topic = f"plant/private/{uuid.uuid4().hex[:6]}"
    denied = collect(host.client, topic)
    allowed = collect(admin.client, topic)
    admin.client.publish(topic, b"secret", qos=1).wait_for_publish(5)
    threading.Event().wait(0.5)
    assert allowed == [(topic, b"secret")]
    assert denied == []
    host.close()
    admin.close()


def test_sparkplug_edge_node_owns_only_its_topics(local_prod):
    conn = local_prod
    certs = conn["client_certificates"]
    edge = connect(listener(conn, "mqtts-devices"), ca_file=conn["ca_file"],
                   cert=certs["edge-gw-01"]["cert"], key=certs["edge-gw-01"]["key"])
    assert edge.accepted, edge.error
    host = login(conn, "scada-host")
    assert_only_own_topic_arrives(edge, host, "spBv1.0/#", "spBv1.0/Factory/NDATA/edge-gw-01",
                                  ["spBv1.0/Warehouse/NDATA/edge-gw-02", "spBv1.0/Factory/NDATA/edge-gw-02"])


def test_dev_factory_device_writes_only_its_zone(local_dev):
    dashboard = login(local_dev, "dashboard", name="mqtt")
    sensor = login(local_dev, "sensor-01", name="mqtt")
    assert_only_own_topic_arrives(sensor, dashboard, "factory/#", "factory/production/sensor-01/data/temp",
                                  ["factory/quality/sensor-02/data/temp"])


def test_mtls_accepts_issued_client_certificate(local_prod):
    cert = local_prod["client_certificates"]["ops-admin"]
    result = connect(listener(local_prod, "mqtts-devices"), ca_file=local_prod["ca_file"], **cert)
    assert result.accepted
    peer = x509.load_pem_x509_certificate(Path(cert["cert"]).read_bytes())
    assert peer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ops-admin"
    result.close()


def test_mtls_refuses_client_without_certificate(local_prod):
    result = connect(listener(local_prod, "mqtts-devices"), ca_file=local_prod["ca_file"], username="ops-admin",
                     password=creds(local_prod)["ops-admin"])
    assert not result.accepted


def _foreign_client_cert(tmp_path: Path) -> dict:
    """A client certificate with the right CN and usages, issued by a CA the estate does not trust."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ops-admin")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "rogue.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "rogue.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return {"cert": str(tmp_path / "rogue.crt"), "key": str(tmp_path / "rogue.key")}


def test_mtls_refuses_certificate_from_another_ca(local_prod, tmp_path):
    result = connect(listener(local_prod, "mqtts-devices"), ca_file=local_prod["ca_file"],
                     **_foreign_client_cert(tmp_path))
    assert not result.accepted


def _handshake(lst: dict, ca_file: str, version: ssl.TLSVersion) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca_file)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions, so the server decides
    context.minimum_version = context.maximum_version = version
    import socket
    try:
        with socket.create_connection((lst["host"], lst["port"]), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=lst["server_name"]):
                return True
    except (ssl.SSLError, OSError):
        return False


def test_tls_1_1_refused_and_1_2_accepted(local_prod):
    lst = listener(local_prod, "mqtts")
    assert _handshake(lst, local_prod["ca_file"], ssl.TLSVersion.TLSv1_2)
    assert not _handshake(lst, local_prod["ca_file"], ssl.TLSVersion.TLSv1_1)


def test_server_certificate_verifies_hostname(local_prod):
    lst = listener(local_prod, "mqtts")
    client = make_client(lst, ca_file=local_prod["ca_file"])
    assert client is not None
    result = connect(lst, username="scada-host", password=creds(local_prod)["scada-host"], ca_file=local_prod["ca_file"])
    assert result.accepted  # hostname 127.0.0.1 is in the SANs (loopbackSans), CA verification on
    result.close()


def test_retained_and_persistent_round_trip_qos2(local_prod):
    admin = login(local_prod, "ops-admin")
    peer = login(local_prod, "ops-admin")
    assert round_trip(admin.client, peer.client, f"ops/{uuid.uuid4().hex[:6]}", qos=2)
    admin.close()
    peer.close()


def test_exec_probe_command_succeeds_against_the_broker(rendered, local_prod):
    """The StatefulSet's own probe command (port mapped to the local health listener) really passes."""
    import subprocess
    import yaml
    sts = yaml.safe_load((rendered("prod").out / "k8s" / "40-statefulset-mosquitto.yaml").read_text())
    command = sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    health_port = local_prod["brokers"][0]["health_port"]
    local = [str(health_port) if part == "1880" else part for part in command]
    assert subprocess.run(local, capture_output=True, timeout=10).returncode == 0
    denied = [part if part != "$SYS/broker/uptime" else "plant/line-1/temperature" for part in local]
    denied[denied.index("-W") + 1] = "1"
    assert subprocess.run(denied, capture_output=True, timeout=10).returncode != 0  # health ACL grants $SYS only
