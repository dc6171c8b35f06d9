"""pulumi-tls computed for real with `cryptography`: the same inputs and outputs as the provider's resources.

Keys are derived from the stack seed (see seed.py); ECDSA signatures are deterministic (RFC 6979), so
certificates are byte-identical run to run.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from estate.seed import Seed

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
    if algorithm == "RSA":
        key: Any = derive_rsa(int(inputs.get("rsaBits", 2048)), seed.rng("tls-key", name))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    elif algorithm == "ECDSA":
        curve = inputs.get("ecdsaCurve", "P224")
        scalar = int.from_bytes(seed.derive("tls-key", name, size=80), "big") % (CURVE_ORDERS[curve] - 1) + 1
        key = ec.derive_private_key(scalar, CURVES[curve])
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed.derive("tls-key", name, size=32))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    else:
        raise ValueError(f"tls.PrivateKey {name}: unknown algorithm {algorithm!r}")
    public = key.public_key()
    openssh = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    raw = base64.b64decode(openssh.split()[1])
    return {
        **inputs,
        "privateKeyPem": pem.decode(),
        "privateKeyPemPkcs8": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode(),
        "publicKeyPem": public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": openssh.decode() + "\n",
        "publicKeyFingerprintSha256": "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("="),
        "publicKeyFingerprintMd5": ":".join(f"{b:02x}" for b in hashlib.md5(raw).digest()),
    }


def _load_key(pem: str):
    return serialization.load_pem_private_key(pem.encode(), password=None)


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
    attrs = []
    for field, oid in SUBJECT_FIELDS.items():
        value = (subject or {}).get(field)
        for item in (value if isinstance(value, list) else [value] if value else []):
            attrs.append(x509.NameAttribute(oid, item))
    return x509.Name(attrs)


def _sans(inputs: dict) -> list:
    names: list = [x509.DNSName(n) for n in inputs.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in inputs.get("ipAddresses") or []]
    names += [x509.UniformResourceIdentifier(u) for u in inputs.get("uris") or []]
    return names


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
    return start, start + dt.timedelta(hours=int(inputs["validityPeriodHours"]))


def _serial(seed: Seed, name: str) -> int:
    return int.from_bytes(seed.derive("tls-serial", name, size=16), "big") >> 1 | 1


def _cert_outputs(inputs: dict, cert: x509.Certificate, start, end) -> dict:
    return {**inputs, "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "validityStartTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "validityEndTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "readyForRenewal": False}


def self_signed_cert(seed: Seed, name: str, inputs: dict) -> dict:
    key = _load_key(inputs["privateKeyPem"])
    start, end = _times(seed, inputs)
    subject = _subject(inputs.get("subject"))
    is_ca = bool(inputs.get("isCaCertificate"))
    path_len = inputs.get("maxPathLength")
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
    key = _load_key(inputs["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs.get("subject")))
    if _sans(inputs):
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(inputs)), critical=False)
    csr = _sign(builder, key)
    return {**inputs, "certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "keyAlgorithm": "ECDSA" if isinstance(key, ec.EllipticCurvePrivateKey) else "RSA"}


def locally_signed_cert(seed: Seed, name: str, inputs: dict) -> dict:
    csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca_key = _load_key(inputs["caPrivateKeyPem"])
    ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
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
    outputs["caKeyAlgorithm"] = "ECDSA" if isinstance(ca_key, ec.EllipticCurvePrivateKey) else "RSA"
    return outputs


RESOURCES = {
    "tls:index/privateKey:PrivateKey": private_key,
    "tls:index/selfSignedCert:SelfSignedCert": self_signed_cert,
    "tls:index/certRequest:CertRequest": cert_request,
    "tls:index/locallySignedCert:LocallySignedCert": locally_signed_cert,
}
