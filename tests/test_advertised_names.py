"""Every name the estate tells clients to use is one their TLS stack can verify.

The stack output `endpoints` advertises in-cluster Service URLs (the frontend's when there is one: TLS passes
through it, so the broker's certificate answers there); the local connection file names each listener's server
name; `pki.extraDnsNames` are the LoadBalancer names. For each, a TLS handshake is made to the local process
that serves it, verifying the certificate against the estate CA *by that host name*, as an in-cluster client
would. Loopback addresses are not in the production certificates (pki.loopbackSans is off), so nothing here can
pass by accident on 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import urlparse

import pytest
from cryptography import x509


def _handshake(ca_file: str, port: int, hostname: str) -> None:
    """A verified handshake; a frontend that has no healthy broker yet (it has just started) closes the connection,
    so that is retried for a while, but a certificate that does not verify fails at once."""
    context = ssl.create_default_context(cafile=ca_file)  # verifies the chain and the host name
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname=hostname) as tls:
                    assert tls.version() in ("TLSv1.2", "TLSv1.3")
                    return
        except (ssl.SSLEOFError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def _entry_ports(conn: dict) -> dict[str, int]:
    return {lst["name"]: lst["port"] for lst in conn["listeners"]}


def _tls_endpoints(rendered) -> list[tuple[str, str, int]]:
    """(listener name, host, pod port) of every TLS URL in the stack output `endpoints`."""
    found = []
    for name, url in sorted(rendered.registry.stack_outputs["endpoints"].items()):
        parsed = urlparse(url)
        if parsed.scheme in ("mqtts", "wss"):
            found.append((name, parsed.hostname, parsed.port))
    return found


@pytest.mark.parametrize("stack, fixture", [("dev", "local_dev"), ("prod", "local_prod")])
def test_every_advertised_url_verifies_by_host_name(rendered, request, stack, fixture):
    conn = request.getfixturevalue(fixture)
    endpoints = _tls_endpoints(rendered(stack))
    assert endpoints, "the stack advertises no TLS endpoint"
    ports = _entry_ports(conn)
    for name, host, _ in endpoints:
        _handshake(conn["ca_file"], ports[name], host)


@pytest.mark.parametrize("fixture", ["local_dev", "local_prod"])
def test_every_listener_in_the_connection_file_verifies_by_its_server_name(request, fixture):
    conn = request.getfixturevalue(fixture)
    checked = 0
    for proc in conn["brokers"] + conn["frontends"]:
        for lst in proc["listeners"]:
            if lst["tls"]:
                assert lst["server_name"] and lst["server_name"] != "127.0.0.1"
                _handshake(conn["ca_file"], lst["port"], lst["server_name"])
                checked += 1
    assert checked >= 2


def test_load_balancer_names_verify(rendered, local_prod):
    extra = rendered("prod").stack_file.estate.pki.extra_dns_names
    assert extra
    ports = _entry_ports(local_prod)
    for host in extra:
        _handshake(local_prod["ca_file"], ports["mqtts"], host)


def test_production_certificate_has_no_loopback_names(rendered):
    files = rendered("prod").out / "files" / "mosquitto" / "mosquitto" / "certs"
    cert = x509.load_pem_x509_certificate((files / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" not in sans.get_values_for_type(x509.DNSName)
    assert not sans.get_values_for_type(x509.IPAddress)


def test_a_name_the_estate_never_advertised_is_refused(local_prod):
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(local_prod["ca_file"], _entry_ports(local_prod)["mqtts"], "mqtt.elsewhere.example")
