"""A brought CA (`pki.existingCa`), checked before anything is issued with it.

Every leaf of the estate is signed with this key, and every device trusts this certificate: a key that does
not match, a certificate that cannot sign, a weak key or an expired CA would only show up as failed handshakes
on the plant floor. Each problem is one (secret key, message) pair; the PEM text itself is never echoed.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterator

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

MINIMUM_RSA_BITS = 2048
"""Refused below this outright; the policy pack's pki-ca-constraints asks for 3072 (minimumCaRsaBits)."""
MINIMUM_EC_BITS = 256
WEAK_HASHES = (hashes.SHA1, hashes.MD5)


def check_existing_ca(cert_pem: str, key_pem: str, leaf_hours: int,
                      now: dt.datetime | None = None) -> Iterator[tuple[str, str]]:
    now = now or dt.datetime.now(dt.timezone.utc)
    cert = _load_certificate(cert_pem)
    key = _load_key(key_pem)
    if isinstance(cert, str):
        yield "caCertPem", cert
    if isinstance(key, str):
        yield "caKeyPem", key
    if isinstance(cert, str):
        return
    yield from (("caCertPem", message) for message in _certificate_problems(cert, now, leaf_hours))
    if not isinstance(key, str):
        yield from (("caKeyPem", message) for message in _key_problems(key, cert))


def _load_certificate(pem: str) -> x509.Certificate | str:
    if "-----BEGIN CERTIFICATE-----" not in pem:
        return "is not a PEM certificate (expected a block starting -----BEGIN CERTIFICATE-----)"
    if pem.count("-----BEGIN CERTIFICATE-----") > 1:
        return "holds more than one certificate (give only the CA that signs the estate's certificates)"
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"is not a readable PEM certificate ({_first_line(exc)})"


def _load_key(pem: str):
    if "PRIVATE KEY-----" not in pem:
        return "is not a PEM private key (expected a block starting -----BEGIN ... PRIVATE KEY-----)"
    if "ENCRYPTED" in pem:
        return "is encrypted with a passphrase (give the key without one; it is stored as a secret)"
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"is not a readable PEM private key ({_first_line(exc)})"


def _certificate_problems(cert: x509.Certificate, now: dt.datetime, leaf_hours: int) -> Iterator[str]:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            yield "is not a CA certificate (basicConstraints CA:FALSE): it cannot sign the estate's certificates"
        elif constraints.path_length is not None and constraints.path_length < 0:
            yield "has a negative path length"
    except x509.ExtensionNotFound:
        yield "is not a CA certificate (no basicConstraints CA:TRUE): it cannot sign the estate's certificates"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            yield "may not sign certificates (its keyUsage lacks keyCertSign)"
    except x509.ExtensionNotFound:
        pass  # RFC 5280 4.2.1.3: without keyUsage, the key is not restricted
    yield from _strength(cert.public_key(), "its key")
    algorithm = cert.signature_hash_algorithm
    if isinstance(algorithm, WEAK_HASHES):
        yield f"is signed with {algorithm.name.upper()}, which clients refuse (re-issue it with SHA-256 or better)"
    if cert.not_valid_before_utc > now:
        yield f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if cert.not_valid_after_utc <= now:
        yield f"expired on {cert.not_valid_after_utc:%Y-%m-%d} (bring a valid CA)"
    elif cert.not_valid_after_utc < now + dt.timedelta(hours=leaf_hours):
        yield (f"expires on {cert.not_valid_after_utc:%Y-%m-%d}, before certificates issued now "
               f"(pki.leafValidityHours {leaf_hours}) would; renew the CA or shorten leafValidityHours")


def _key_problems(key, cert: x509.Certificate) -> Iterator[str]:
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    if public != expected:
        yield "does not belong to caCertPem (its public key differs from the certificate's)"


def _strength(public_key, what: str) -> Iterator[str]:
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MINIMUM_RSA_BITS:
        yield f"has {what} RSA {public_key.key_size} bits (at least {MINIMUM_RSA_BITS}; 3072 recommended)"
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size < MINIMUM_EC_BITS:
        yield f"has {what} on curve {public_key.curve.name} (use P-256 or P-384)"
    elif not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        yield f"has {what} of a kind pulumi-tls cannot sign with (use RSA or ECDSA)"


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
