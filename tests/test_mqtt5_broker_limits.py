"""What mosquitto 2.0 itself does not do of MQTT 5, measured on a single plain mosquitto and through the estate in
the same run. Each gap is the same in both: it is the broker's, not the estate's (README, "MQTT 5: what mosquitto
2.0 does not do"). Source reads, eclipse/mosquitto v2.0.11 (the version Debian ships here):
  - topic aliases are only read from clients (src/handle_publish.c:150-191); src/send_publish.c never sets one;
  - of the CONNECT properties only Session Expiry, Receive Maximum and Maximum Packet Size are processed
    (src/property_broker.c:31-55), so Request Response Information gets no Response Information;
  - an Authentication Method without an auth plugin is answered 0x8C (src/handle_connect.c:567 and 848-875);
  - a QoS 1/2 PUBLISH beyond the receive quota and the queue limits is answered with reason 0x97 Quota exceeded
    (src/handle_publish.c:302-313), never with DISCONNECT 0x93;
  - No Local on a shared subscription and retained messages for a new shared member: measured, below.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid

import pytest

from tests.mqtt5_kit import Target, V5Client, booted_estate, plain_mosquitto, wait_for


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    with plain_mosquitto(tmp_path_factory.mktemp("plain-limits")) as broker:
        yield broker


@pytest.fixture(scope="module")
def estate(rendered, tmp_path_factory):
    with booted_estate(rendered("ha"), tmp_path_factory.mktemp("limits-ha")) as booted:
        yield booted


def _topic() -> str:
    return f"ha/limits/{uuid.uuid4().hex[:8]}"


def server_topic_aliases(target: Target) -> bool:
    """A subscriber that allows 10 topic aliases gets 20 messages on one long topic: did the server use one?"""
    name = _topic() + "/a-long-topic-name-that-an-alias-would-save-on-every-message"
    sub = target.client("b2", "alias-sub", connect_properties={"TopicAliasMaximum": 10})
    sub.subscribe(name, 1)
    pub = target.client("b1", "alias-pub")
    time.sleep(target.bridge_delay)
    for i in range(20):
        pub.publish(name, f"{i}".encode(), 1)
    wait_for(lambda: len(sub.received) >= 20, 5)
    sub.stop(), pub.stop()
    assert len(sub.received) == 20
    return any("TopicAlias" in m["properties"] for m in sub.received)


def response_information(target: Target) -> bool:
    """A client asks for Response Information (a prefix for its reply topics): is any given in CONNACK?"""
    client = target.client("b1", "resp-info", connect_properties={"RequestResponseInformation": 1})
    client.stop()
    return "ResponseInformation" in client.connack_properties


def enhanced_authentication(target: Target) -> int:
    """CONNACK reason code for a CONNECT naming an Authentication Method (SCRAM) without an auth plugin."""
    client = V5Client(*target.address, Target.new_id("auth"), target.credentials,
                      connect_properties={"AuthenticationMethod": "SCRAM-SHA-256", "AuthenticationData": b"n,,n=u"})
    return client.refused()


def receive_maximum_exceeded(target: Target) -> dict:
    """A client sends 40 QoS 2 PUBLISH packets without ever releasing them (no PUBREL), twice the server's
    Receive Maximum: MQTT 5 (3.3.4) says the server disconnects it with 0x93. What does it do?"""
    with socket.create_connection(target.address, timeout=5) as sock:
        sock.sendall(_connect_packet(Target.new_id("rm"), target.credentials))
        connack = _read_packet(sock)
        assert connack[0] == 0x20 and connack[1][1] == 0, connack
        receive_maximum = _property(connack[1], 0x21)
        topic = _topic().encode()
        for packet_id in range(1, 41):
            body = struct.pack(">H", len(topic)) + topic + struct.pack(">H", packet_id) + b"\x00" + b"x"
            sock.sendall(_packet(0x34, body))
        answers, disconnect = [], None
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                kind, body = _read_packet(sock, 0.5)
            except (socket.timeout, ConnectionError):
                break
            if kind == 0xE0:
                disconnect = body[0] if body else 0
                break
            if kind == 0x50:
                answers.append(body[2] if len(body) > 2 else 0)
    accepted = sum(1 for code in answers if code < 0x80)
    return {"receive_maximum": receive_maximum, "disconnect": disconnect,
            "accepted_beyond_receive_maximum": accepted > receive_maximum,
            "then_refused_with_quota_exceeded": accepted + answers.count(0x97) == 40 and 0x97 in answers}


def shared_with_no_local(target: Target) -> list[int]:
    """MQTT 5 (3.8.3.1): No Local on a shared subscription is a Protocol Error. SUBACK reason codes given."""
    client = target.shared_client("nolocal-share")
    codes = client.subscribe(f"$share/g/{_topic()}", 1, no_local=True)
    client.stop()
    return codes


def retained_to_shared_members(target: Target) -> int:
    """A retained message exists; a new member joins a shared group: how many retained messages does it get?
    (MQTT 5, 3.3.1.3, sends retained messages when a new non-shared subscription is made.)"""
    name = _topic()
    pub = target.client("b1", "ret-pub")
    pub.publish(name, b"kept", 1, retain=True)
    time.sleep(target.bridge_delay + 0.2)
    member = target.shared_client("ret-member")
    member.subscribe(f"$share/g/{name}", 1)
    time.sleep(0.5)
    member.stop()
    pub.publish(name, b"", 1, retain=True)
    pub.stop()
    return len(member.received)


@pytest.mark.parametrize("gap, expected", [
    (server_topic_aliases, False),
    (response_information, False),
    (enhanced_authentication, 0x8C),
    (receive_maximum_exceeded, {"receive_maximum": 20, "disconnect": None, "accepted_beyond_receive_maximum": True,
                                "then_refused_with_quota_exceeded": True}),
    (shared_with_no_local, [1]),
    (retained_to_shared_members, 1),
], ids=lambda value: getattr(value, "__name__", ""))
def test_mqtt5_gap_is_the_brokers_not_the_estates(single, estate, gap, expected):
    """Each value is what the README table says a single mosquitto 2.0 does; the estate answers the same."""
    on_single = gap(single)
    assert on_single == expected, f"a single mosquitto now answers {on_single!r}: update the README table"
    assert gap(estate) == on_single


# --- raw MQTT 5 packets (paho always releases what it publishes, so the quota test speaks for itself) --------

def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n % 128, n // 128
        out += bytes([byte | 0x80 if n else byte])
        if not n:
            return out


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">H", len(data)) + data


def _connect_packet(client_id: str, credentials) -> bytes:
    flags = 0x02 | (0xC0 if credentials else 0)
    body = b"\x00\x04MQTT\x05" + bytes([flags]) + struct.pack(">H", 30) + b"\x00" + _string(client_id)
    if credentials:
        body += _string(credentials[0]) + _string(credentials[1])
    return _packet(0x10, body)


def _read_packet(sock: socket.socket, timeout: float = 5) -> tuple[int, bytes]:
    sock.settimeout(timeout)
    header = _recv(sock, 1)[0]
    length, shift = 0, 0
    while True:
        byte = _recv(sock, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header & 0xF0, _recv(sock, length)


def _recv(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _property(connack_body: bytes, identifier: int):
    """A two-byte property of a CONNACK body (flags, reason, properties)."""
    props = connack_body[3:]  # property length fits one byte in a CONNACK this small
    i = 0
    while i < len(props):
        ident = props[i]
        if ident == identifier:
            return struct.unpack(">H", props[i + 1:i + 3])[0]
        i += 1 + {0x21: 2, 0x22: 2, 0x24: 1, 0x25: 1, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1, 0x13: 2, 0x11: 4}.get(ident, 0)
        if ident not in (0x21, 0x22, 0x24, 0x25, 0x27, 0x28, 0x29, 0x2A, 0x13, 0x11):
            break
    return None
