"""MQTT 3.1.1 packets as bytes (OASIS MQTT 3.1.1, sections 2.2.3, 1.5.3 and 3): the frontend's health check sends
a CONNECT written here, and the benchmarks and tests that speak to brokers without a client library use the same
encoder."""

from __future__ import annotations


def remaining_length(n: int) -> bytes:
    """The variable-length "remaining length" of a fixed header (section 2.2.3)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(text: str | bytes) -> bytes:
    """A UTF-8 string or binary field: two-byte length, then the bytes (section 1.5.3)."""
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def connect_packet(client_id: str, username: str | None = None, password: str | None = None,
                   keepalive: int = 60) -> bytes:
    """CONNECT with a clean session; user name and password only when given (a certificate client sends none)."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = string("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + string(client_id)
    body += (string(username) if username is not None else b"") + (string(password) if password is not None else b"")
    return packet(0x10, body)


def subscribe_packet(packet_id: int, topics: list[str], qos: int) -> bytes:
    return packet(0x82, packet_id.to_bytes(2, "big") + b"".join(string(t) + bytes([qos]) for t in topics))


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int = 0) -> bytes:
    return packet(0x30 | (qos << 1), string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload)
