"""pulumi-tls computed for real with `cryptography`: the same inputs and outputs as the provider's resources.

Keys are derived from the stack seed (see seed.py); ECDSA signatures are deterministic (RFC 6979), so
certificates are byte-identical run to run.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .seed import Seed


class InputError(ValueError):
    """Inputs the real provider refuses too, or that the offline engine cannot compute: the message says which
    input is wrong and what is allowed (the engine adds the resource's type and name)."""


ALGORITHMS = ("RSA", "ECDSA", "ED25519")
RSA_BITS = (1024, 8192)
"""Go's crypto/rsa (which pulumi-tls uses) refuses keys under 1024 bits since Go 1.24. Keys here are derived in
pure Python: 4096 bits take ~15 s, 8192 bits ~1 min, each doubling ~4x more, so larger keys are refused offline."""
CURVES = {"P224": ec.SECP224R1(), "P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P521": ec.SECP521R1()}
CURVE_ORDERS = {
    "P224": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFF16A2E0B8F03E13DD29455C5C2A3D,
    "P256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "P384": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16),
    "P521": int("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D0"
                "3BB5C9B8899C47AEBB6FB71E91386409", 16),
}
KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
              "key_agreement", "cert_signing", "crl_signing", "encipher_only", "decipher_only")
KEY_USAGE_ARGS = {"cert_signing": "key_cert_sign", "crl_signing": "crl_sign"}
EXT_USAGES = {
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE, "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH, "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION, "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}
SUBJECT_FIELDS = {
    "commonName": NameOID.COMMON_NAME, "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME, "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME, "locality": NameOID.LOCALITY_NAME,
    "postalCode": NameOID.POSTAL_CODE, "serialNumber": NameOID.SERIAL_NUMBER,
}
_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % q for q in range(2, int(p ** 0.5) + 1))]


def _probable_prime(n: int, rng) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(40):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, rng, e: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if (candidate - 1) % e and _probable_prime(candidate, rng):
            return candidate


def _reason(exc: BaseException) -> str:
    """cryptography's message on one line, without its FAQ link."""
    text = re.sub(r"\.?\s*See https?://\S+ for more details\.?\s*", ": ", " ".join(str(exc).split()))
    return text.strip().rstrip(":") or type(exc).__name__


def _int(inputs: dict, key: str, default: Any = None, minimum: int | None = None, maximum: int | None = None,
         hint: str = "") -> int:
    value = inputs.get(key, default)
    if value is None:
        raise InputError(f"{key} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{key}: {value!r} is not a whole number")
    if minimum is not None and value < minimum:
        raise InputError(f"{key}: {value} is out of range (must be >= {minimum}{hint})")
    if maximum is not None and value > maximum:
        raise InputError(f"{key}: {value} is out of range (must be <= {maximum}{hint})")
    return value


def derive_rsa(bits: int, rng) -> rsa.RSAPrivateKey:
    e = 65537
    p, q = _prime(bits // 2, rng, e), _prime(bits // 2, rng, e)
    if p < q:
        p, q = q, p
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                    rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key()


def private_key(seed: Seed, name: str, inputs: dict) -> dict:
    algorithm = inputs.get("algorithm", "RSA")
    if algorithm not in ALGORITHMS:
        raise InputError(f"algorithm {algorithm!r} is not supported (use RSA, ECDSA or ED25519)")
    if algorithm == "RSA":
        bits = _int(inputs, "rsaBits", 2048, *RSA_BITS)
        key: Any = derive_rsa(bits, seed.rng("tls-key", name))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    elif algorithm == "ECDSA":
        curve = inputs.get("ecdsaCurve", "P224")  # the provider's default
        if curve not in CURVES:
            raise InputError(f"ecdsaCurve {curve!r} is not supported (use P224, P256, P384 or P521)")
        scalar = int.from_bytes(seed.derive("tls-key", name, size=80), "big") % (CURVE_ORDERS[curve] - 1) + 1
        key = ec.derive_private_key(scalar, CURVES[curve])
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed.derive("tls-key", name, size=32))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key()
    try:
        openssh = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    except ValueError:
        # P-224 has no OpenSSH encoding. The provider leaves the OpenSSH key and its fingerprints empty then
        # (terraform-provider-tls internal/provider/common_key.go, setPublicKeyAttributes: "ECDSA keys with
        # elliptic curve P-224 are not supported by `x/crypto/ssh` ... we set the below fields to empty strings").
        openssh = None
    raw = base64.b64decode(openssh.split()[1]) if openssh else b""
    return {
        **inputs,
        "privateKeyPem": pem.decode(),
        "privateKeyPemPkcs8": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode(),
        "publicKeyPem": public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": openssh.decode() + "\n" if openssh else "",
        "publicKeyFingerprintSha256":
            "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=") if openssh else "",
        "publicKeyFingerprintMd5": ":".join(f"{b:02x}" for b in hashlib.md5(raw).digest()) if openssh else "",
    }


def _pem_text(inputs: dict, key: str, what: str) -> bytes:
    value = inputs.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{key} is required ({what})")
    if not isinstance(value, str):
        raise InputError(f"{key}: expected {what}, got {type(value).__name__}")
    return value.encode()


def _load_key(inputs: dict, key: str):
    pem = _pem_text(inputs, key, "a PEM-encoded private key")
    try:
        loaded = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{key} is not a usable PEM private key ({_reason(exc)})") from exc
    if not isinstance(loaded, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise InputError(f"{key} holds a {type(loaded).__name__.lstrip('_')} (use an RSA, ECDSA or ED25519 key)")
    return loaded


def _load_cert(inputs: dict, key: str) -> x509.Certificate:
    pem = _pem_text(inputs, key, "a PEM-encoded certificate")
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{key} is not a usable PEM certificate ({_reason(exc)})") from exc


def _load_csr(inputs: dict, key: str) -> x509.CertificateSigningRequest:
    pem = _pem_text(inputs, key, "a PEM-encoded certificate request")
    try:
        return x509.load_pem_x509_csr(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{key} is not a usable PEM certificate request ({_reason(exc)})") from exc


def _public_der(public) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_algorithm(key) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ED25519"
    return "ECDSA" if isinstance(key, ec.EllipticCurvePrivateKey) else "RSA"


def _hash_for(key) -> Any:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size, hashes.SHA256())
    return hashes.SHA256()


def _sign(builder, key):
    kwargs = {"ecdsa_deterministic": True} if isinstance(key, ec.EllipticCurvePrivateKey) else {}
    return builder.sign(key, _hash_for(key), **kwargs)


def _subject(subject: dict | None) -> x509.Name:
    if subject is not None and not isinstance(subject, dict):
        raise InputError(f"subject: expected a mapping of {', '.join(SUBJECT_FIELDS)}")
    attrs = []
    for field, oid in SUBJECT_FIELDS.items():
        value = (subject or {}).get(field)
        for item in (value if isinstance(value, list) else [value] if value else []):
            try:
                attrs.append(x509.NameAttribute(oid, item))
            except (TypeError, ValueError) as exc:
                raise InputError(f"subject.{field}: {item!r} is not allowed ({_reason(exc)})") from exc
    return x509.Name(attrs)


def _names(inputs: dict, key: str, make) -> list:
    values = inputs.get(key) or []
    if not isinstance(values, list):
        raise InputError(f"{key}: expected a list, got {values!r}")
    out = []
    for value in values:
        try:
            out.append(make(value))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{key}: {value!r} is not allowed ({_reason(exc)})") from exc
    return out


def _sans(inputs: dict) -> list:
    return (_names(inputs, "dnsNames", x509.DNSName)
            + _names(inputs, "ipAddresses", lambda ip: x509.IPAddress(ipaddress.ip_address(ip)))
            + _names(inputs, "uris", x509.UniformResourceIdentifier))


def _usage_extensions(builder, uses: list[str]):
    flags = {KEY_USAGE_ARGS.get(use, use): use in uses for use in KEY_USAGES}
    if any(flags.values()):
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    ext = [EXT_USAGES[u] for u in uses if u in EXT_USAGES]
    if ext:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
    return builder


def _times(seed: Seed, inputs: dict) -> tuple[dt.datetime, dt.datetime]:
    start = seed.epoch
    hours = _int(inputs, "validityPeriodHours", minimum=0)
    try:
        end = start + dt.timedelta(hours=hours)
        if end.year > 9999:
            raise OverflowError
    except OverflowError:
        raise InputError(f"validityPeriodHours: {hours} is out of range (the certificate would end after "
                         "the year 9999)") from None
    return start, end


def _serial(seed: Seed, name: str) -> int:
    return int.from_bytes(seed.derive("tls-serial", name, size=16), "big") >> 1 | 1


def _cert_outputs(inputs: dict, cert: x509.Certificate, start, end) -> dict:
    return {**inputs, "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "validityStartTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "validityEndTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "readyForRenewal": False}


def self_signed_cert(seed: Seed, name: str, inputs: dict) -> dict:
    key = _load_key(inputs, "privateKeyPem")
    start, end = _times(seed, inputs)
    subject = _subject(inputs.get("subject"))
    is_ca = bool(inputs.get("isCaCertificate"))
    path_len = _int(inputs, "maxPathLength", 0) if inputs.get("maxPathLength") is not None else None
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(_serial(seed, name))
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=int(path_len) if is_ca and path_len is not None and path_len >= 0 else None), critical=True))
    builder = _usage_extensions(builder, inputs.get("allowedUses") or [])
    if _sans(inputs):
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(inputs)), critical=False)
    if inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if inputs.get("setAuthorityKeyId"):
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    return _cert_outputs(inputs, _sign(builder, key), start, end)


def cert_request(seed: Seed, name: str, inputs: dict) -> dict:
    key = _load_key(inputs, "privateKeyPem")
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs.get("subject")))
    if _sans(inputs):
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(inputs)), critical=False)
    csr = _sign(builder, key)
    return {**inputs, "certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "keyAlgorithm": _key_algorithm(key)}


def locally_signed_cert(seed: Seed, name: str, inputs: dict) -> dict:
    csr = _load_csr(inputs, "certRequestPem")
    ca_key = _load_key(inputs, "caPrivateKeyPem")
    ca_cert = _load_cert(inputs, "caCertPem")
    if _public_der(ca_key.public_key()) != _public_der(ca_cert.public_key()):
        # What Go's x509.CreateCertificate says to the provider: "x509: provided PrivateKey doesn't match
        # parent's PublicKey".
        raise InputError("caPrivateKeyPem does not match caCertPem (the key is not the certificate's key)")
    start, end = _times(seed, inputs)
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
               .public_key(csr.public_key()).serial_number(_serial(seed, name))
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    builder = _usage_extensions(builder, inputs.get("allowedUses") or [])
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=False)
    except x509.ExtensionNotFound:
        pass
    if inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                    critical=False)
    outputs = _cert_outputs(inputs, _sign(builder, ca_key), start, end)
    outputs["caKeyAlgorithm"] = _key_algorithm(ca_key)
    return outputs


RESOURCES = {
    "tls:index/privateKey:PrivateKey": private_key,
    "tls:index/selfSignedCert:SelfSignedCert": self_signed_cert,
    "tls:index/certRequest:CertRequest": cert_request,
    "tls:index/locallySignedCert:LocallySignedCert": locally_signed_cert,
}
