"""A brought CA (`pki.existingCa`), checked before anything is issued with it.

Every leaf of the estate is signed with this key, and every device trusts this certificate: a key that does
not match, a certificate that cannot sign, a weak key or an expired CA would only show up as failed handshakes
on the plant floor. Each problem is one (secret key, message) pair; the PEM text itself is never echoed.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterator, Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

MINIMUM_RSA_BITS = 2048
"""Refused below this outright; the policy pack's pki-ca-in-use asks for 3072 (minimumCaRsaBits)."""
WEAK_HASHES = (hashes.SHA1, hashes.MD5)


def check_existing_ca(cert_pem: str, key_pem: str, leaf_hours: int, names: Sequence[str] = (),
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
    yield from (("caCertPem", message) for message in ca_certificate_problems(cert, now, leaf_hours,
                                                                              MINIMUM_RSA_BITS, names=names))
    if not isinstance(key, str):
        yield from (("caKeyPem", message) for message in _key_problems(key, cert))


def _load_certificate(pem: str) -> x509.Certificate | str:
    if "-----BEGIN CERTIFICATE-----" in pem and pem.count("-----BEGIN CERTIFICATE-----") > 1:
        return "holds more than one certificate (give only the CA that signs the estate's certificates)"
    certificates = _load_certificates(pem)
    return certificates if isinstance(certificates, str) else certificates[0]


def _load_certificates(pem: str) -> list[x509.Certificate] | str:
    if "-----BEGIN CERTIFICATE-----" not in pem:
        return "is not a PEM certificate (expected a block starting -----BEGIN CERTIFICATE-----)"
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"is not a readable PEM certificate ({first_line(exc)})"


def _load_key(pem: str, check_rsa: bool = True):
    if "PRIVATE KEY-----" not in pem:
        return "is not a PEM private key (expected a block starting -----BEGIN ... PRIVATE KEY-----)"
    if "ENCRYPTED" in pem:
        return "is encrypted with a passphrase (give the key without one; it is stored as a secret)"
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None,
                                                  unsafe_skip_rsa_key_validation=not check_rsa)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"is not a readable PEM private key ({first_line(exc)})"


def pem_certificates(pem: str) -> str | None:
    """Why `pem` is not one or more readable PEM certificates (a chain or CA bundle), or None; never shows it."""
    certificates = _load_certificates(pem)
    return certificates if isinstance(certificates, str) else None


def pem_private_key(pem: str) -> str | None:
    """Why `pem` is not a readable, unencrypted PEM private key, or None; never shows it. RSA keys are not
    re-validated (OpenSSL does that when it loads them; a thousand RSA keys would cost seconds here)."""
    key = _load_key(pem, check_rsa=False)
    return key if isinstance(key, str) else None


def utc(cert: x509.Certificate, name: str) -> dt.datetime:
    """not_valid_before/after as an aware datetime, on any cryptography version."""
    value = getattr(cert, f"{name}_utc", None)
    if value is None:  # cryptography < 42
        value = getattr(cert, name).replace(tzinfo=dt.timezone.utc)
    return value


def ca_certificate_problems(cert: x509.Certificate, now: dt.datetime, leaf_hours: int, minimum_rsa_bits: int,
                            leaf_until: dt.datetime | None = None, names: Sequence[str] = ()) -> Iterator[str]:
    """What keeps a certificate from serving as the estate's CA: constraints, usage, key, lifetime, signature hash.

    Shared by the config check (a brought CA, refused before anything is signed) and the policy pack's
    pki-ca-in-use (the CA actually in the Secrets); each message reads after the certificate's name."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            yield "basicConstraints says CA:FALSE: it cannot sign the estate's certificates"
    except x509.ExtensionNotFound:
        yield "has no basicConstraints extension (a CA needs CA:TRUE)"
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            yield "keyUsage lacks keyCertSign"
    except x509.ExtensionNotFound:
        yield "has no keyUsage extension (a CA needs keyCertSign)"
    yield from _issuance_limits(cert, names)
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        yield f"public key is not readable ({first_line(exc)})"
    else:
        yield from _key_strength(key, minimum_rsa_bits)
    not_before, not_after = utc(cert, "not_valid_before"), utc(cert, "not_valid_after")
    if not_after <= now:
        yield f"expired on {not_after:%Y-%m-%d}"
    else:
        if not_before > now:
            yield f"is not valid before {not_before:%Y-%m-%d}"
        if not_after < now + dt.timedelta(hours=leaf_hours):
            yield f"expires on {not_after:%Y-%m-%d}, within the {leaf_hours} h a leaf issued now is valid for"
        elif leaf_until is not None and not_after < leaf_until:
            yield f"expires on {not_after:%Y-%m-%d}, before the leaf certificate it signed ({leaf_until:%Y-%m-%d})"
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        yield f"signature algorithm is not supported ({first_line(exc)})"
    else:
        if isinstance(algorithm, WEAK_HASHES):
            yield f"is signed with {algorithm.name.upper()} (collisions are practical; sign with SHA-256 or better)"


NEEDED_PURPOSES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


def _issuance_limits(cert: x509.Certificate, names: Sequence[str]) -> Iterator[str]:
    """Limits a CA places on what it signs, which OpenSSL enforces on every chain: an extendedKeyUsage without
    serverAuth/clientAuth fails the broker or the devices ("unsuitable certificate purpose"), and name constraints
    that do not permit the estate's names fail every hostname check ("permitted subtree violation")."""
    try:
        purposes = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        purposes = None
    if purposes is not None and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in purposes:
        missing = [label for oid, label in NEEDED_PURPOSES.items() if oid not in purposes]
        if missing:
            yield (f"restricts what it signs with extendedKeyUsage lacking {' and '.join(missing)} (the estate's "
                   "server and device certificates would not verify)")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return
    for name in names:
        if not _dns_permitted(name, constraints):
            yield f"has name constraints that do not permit {name!r} (clients would refuse the broker's certificate)"
            return


def _dns_permitted(name: str, constraints: x509.NameConstraints) -> bool:
    """RFC 5280 4.2.1.10 for dNSName: a constraint matches the name itself or any name below it."""
    def within(subtree: str) -> bool:
        base = subtree.lstrip(".").lower()
        return name.lower() == base or name.lower().endswith("." + base)

    permitted = [t.value for t in constraints.permitted_subtrees or () if isinstance(t, x509.DNSName)]
    excluded = [t.value for t in constraints.excluded_subtrees or () if isinstance(t, x509.DNSName)]
    return (not permitted or any(within(t) for t in permitted)) and not any(within(t) for t in excluded)


STRONG_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def _key_strength(key, minimum_rsa_bits: int) -> Iterator[str]:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < minimum_rsa_bits:
        yield f"key is RSA {key.key_size} bits (minimum {minimum_rsa_bits} for a CA)"
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in STRONG_CURVES:
        yield f"key is on the curve {key.curve.name} (use P-256, P-384 or P-521)"
    elif isinstance(key, dsa.DSAPublicKey):
        yield "key is DSA (use ECDSA P-384 or RSA >= 3072)"
    elif not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey,
                              ed448.Ed448PublicKey)):
        yield f"key type {type(key).__name__} is not RSA or ECDSA"


def _key_problems(key, cert: x509.Certificate) -> Iterator[str]:
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    if public != expected:
        yield "does not belong to caCertPem (its public key differs from the certificate's)"


def first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
