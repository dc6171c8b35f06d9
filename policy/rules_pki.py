"""PKI rules over pulumi-tls resources: key strength, CA constraints, leaf usages and lifetimes, no key exports."""

from __future__ import annotations

import datetime as dt
import re
from typing import Optional

from .policy_kit import (ADVISORY, MANDATORY, SECRET, as_bool, as_int, as_list, as_map, as_text, object_data,
                        plain, resource_policy, stack_policy)

KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"
CSR = "tls:index/certRequest:CertRequest"
AUTH_USES = {"server_auth", "client_auth"}


def key_strength(props, cfg):
    algorithm = as_text(props.get("algorithm"), "RSA") or "RSA"
    minimum = cfg.get("minimumRsaBits") or 2048
    if algorithm == "RSA":
        bits = as_int(props.get("rsaBits"), 2048)
        if bits is None or bits < minimum:
            yield f"RSA key of {as_text(props.get('rsaBits'), '2048')} bits (minimum {minimum})"
    elif algorithm == "ECDSA":
        curve = props.get("ecdsaCurve")
        if curve not in ("P256", "P384", "P521"):
            yield f"ECDSA curve {as_text(curve, 'P224 (the provider default)')} is too weak (use P256 or P384)"
    elif algorithm != "ED25519":
        yield f"key algorithm {algorithm!r} is not one of RSA, ECDSA or ED25519"


def ca_constraints(props, cfg):
    if not as_bool(props.get("isCaCertificate")):
        return
    key_pem = plain(props.get("privateKeyPem"))
    minimum = cfg.get("minimumCaRsaBits") or 3072
    if isinstance(key_pem, str) and "RSA PRIVATE KEY" in key_pem:
        try:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
            bits = load_pem_private_key(key_pem.encode(), None).key_size
        except Exception as exc:  # noqa: BLE001 - unreadable key: say so
            yield f"CA private key is not a readable PEM key ({_first_line(exc)})"
        else:
            if bits < minimum:
                yield f"CA key is RSA {bits} bits (minimum {minimum} for a CA)"
    uses = {as_text(u) for u in as_list(props.get("allowedUses"))}
    missing = {"cert_signing", "crl_signing"} - uses
    if missing:
        yield f"CA certificate lacks {', '.join(sorted(missing))}"
    if uses & AUTH_USES:
        yield f"CA certificate also allows {', '.join(sorted(uses & AUTH_USES))}"
    path_length = as_int(props.get("maxPathLength"))
    if path_length is None or path_length < 0:
        yield "CA certificate sets no path length constraint"


def leaf_usages(props, _cfg):
    uses = {as_text(u) for u in as_list(props.get("allowedUses"))}
    if as_bool(props.get("isCaCertificate")):
        yield "a leaf certificate must not be a CA"
    if not uses & AUTH_USES:
        yield "leaf certificate allows neither server_auth nor client_auth"
    if uses >= AUTH_USES:
        yield "leaf certificate allows both server_auth and client_auth (issue one per role)"
    if {"cert_signing", "crl_signing"} & uses:
        yield "leaf certificate may sign certificates"


def leaf_lifetime(props, cfg):
    hours = as_int(props.get("validityPeriodHours"))
    maximum = cfg.get("maximumLeafHours") or 9552
    if hours is None:
        yield f"leaf validity {as_text(props.get('validityPeriodHours'), '(none)')} is not a number of hours"
    elif hours > maximum:
        yield f"leaf valid for {hours} h (maximum {maximum} h)"
    renewal = as_int(props.get("earlyRenewalHours"), 0) or 0
    if renewal < (cfg.get("minimumEarlyRenewalHours") or 0):
        yield f"early renewal {renewal} h (minimum {cfg.get('minimumEarlyRenewalHours')} h)"


def server_sans(props, _cfg):
    subject = as_map(props.get("subject"))
    if props.get("dnsNames") is None and props.get("ipAddresses") is None \
            and as_text(subject.get("commonName")).count(".") >= 1:
        yield f"certificate request for {as_text(subject.get('commonName'))} has no subject alternative names"
    loopback = [as_text(n) for n in as_list(props.get("dnsNames")) if as_text(n).lower() == "localhost"]
    loopback += [as_text(a) for a in as_list(props.get("ipAddresses")) if as_text(a).startswith(("127.", "::1"))]
    if loopback:
        yield (f"certificate request for {as_text(subject.get('commonName'))} is valid for {', '.join(loopback)}: "
               "any local process or port-forward can present it (keep pki.loopbackSans to development stacks)")


def no_exported_keys(resources, _cfg):
    for resource in resources:
        if resource.resource_type == "pulumi:pulumi:Stack":
            for key, value in as_map(resource.props).items():
                if "PRIVATE KEY" in str(plain(value)):
                    yield resource, f"stack output {key!r} exports a private key in plain text"


# --- the CA actually in use: ca.crt in the Secrets the pods mount -------------------------------------------
#
# With pki.existingCa there is no SelfSignedCert to look at: the CA is whatever the Secrets carry as ca.crt
# (the brokers' cafile and bridge_cafile, the frontend's health-check CA). Judged here by what it is.

PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def _first_line(exc: Exception) -> str:
    from ..stacks.ca_check import first_line

    return first_line(exc)


def _utc(cert, name: str) -> dt.datetime:
    from ..stacks.ca_check import utc

    return utc(cert, name)


def _load_pem_certificates(text: str):
    """(certificates, problem): every certificate of a PEM text, or why it cannot be read."""
    from cryptography import x509

    blocks = PEM_CERTIFICATE.findall(text)
    if not blocks:
        return [], "is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)"
    certificates = []
    for number, block in enumerate(blocks, 1):
        try:
            certificates.append(x509.load_pem_x509_certificate(block.encode()))
        except Exception as exc:  # noqa: BLE001 - ValueError, UnsupportedAlgorithm, ...: all mean unreadable
            return [], f"certificate {number} is not a readable PEM certificate ({_first_line(exc)})"
    return certificates, None


def _subject(cert) -> str:
    try:
        return cert.subject.rfc4514_string() or "(empty subject)"
    except Exception:  # noqa: BLE001
        return "(unreadable subject)"


def judge_ca(cert, cfg, now: dt.datetime, leaf_hours: int, leaf_until: Optional[dt.datetime], names=()):
    """Problems of one CA certificate, judged as the config check judges a brought CA (stacks/ca_check.py)."""
    from ..stacks.ca_check import ca_certificate_problems

    return ca_certificate_problems(cert, now, leaf_hours, cfg.get("minimumCaRsaBits") or 3072, leaf_until, names)


def _dns_sans(cert) -> list[str]:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        return []


def public_cloud_roots(resource) -> bool:
    """Whether this Secret's ca.crt is a public cloud's root CA, carried by a cloud bridge to verify AWS IoT Core or
    Azure IoT Hub (Amazon Root CA 1, DigiCert Global Root G2: RSA 2048 roots the estate does not own).

    This policy judges the CAs the estate issues with, or brings to issue with (pki.existingCa): key size, CA
    constraints, lifetime against the leaves they sign. A cloud's root signs none of the estate's certificates and
    no one here can re-key it, so holding it to the estate's CA rules would only refuse every AWS and Azure bridge.
    It is recognised by where a CloudBridge puts it: the `ca.crt` key of its `<name>-cloud` Secret, labelled with
    the provider (mqtt-estate.io/cloud-provider) as aws-iot-core or azure-iot-hub. A generic `mqtt` bridge's ca.crt
    is the estate's own CA (trust: estate) and is still judged."""
    from .rules_bridge import PUBLIC_ROOT_PROVIDERS, is_cloud_secret, provider_of

    return is_cloud_secret(resource.props) and provider_of(resource.props) in PUBLIC_ROOT_PROVIDERS


def ca_in_use(resources, cfg):
    try:
        import cryptography  # noqa: F401
    except ImportError:
        yield None, "cannot read certificates: install cryptography with the policy pack"
        return
    now = dt.datetime.now(dt.timezone.utc)
    issued = [as_int(as_map(r.props).get("validityPeriodHours"))
              for r in resources if r.resource_type == LOCALLY_SIGNED]
    issued = [hours for hours in issued if hours is not None and hours > 0]
    seen = set()
    # a Secret with a leaf (tls.crt) first, whatever the order of registration: the grouped client-certificate
    # Secrets carry the CA but no tls.crt, and the leaf's dates and names are what the CA is judged against
    secrets = sorted((r for r in resources if r.resource_type == SECRET),
                     key=lambda r: "tls.crt" not in object_data(r.props))
    for r in secrets:
        data = object_data(r.props)
        text = data.get("ca.crt")
        if text is None or text.strip() in seen:
            continue
        where = "ca.crt"
        if public_cloud_roots(r):  # readable is all we ask of a public root (the bridge cannot verify without it)
            _, problem = _load_pem_certificates(text)
            if problem:
                yield r, f"{where} {problem}"
            continue
        seen.add(text.strip())
        certificates, problem = _load_pem_certificates(text)
        if problem:
            yield r, f"{where} {problem}"
            continue
        leaf_until, leaf_hours = None, max(issued) if issued else None
        leaves, _ = _load_pem_certificates(data.get("tls.crt") or "")
        if leaves:
            leaf_until = _utc(leaves[0], "not_valid_after")
            if leaf_hours is None:
                lifetime = leaf_until - _utc(leaves[0], "not_valid_before")
                leaf_hours = int(lifetime.total_seconds() // 3600)
        if leaf_hours is None:
            leaf_hours = cfg.get("maximumLeafHours") or 9552
        for cert in certificates:
            label = f"{where} ({_subject(cert)})" if len(certificates) > 1 else where
            for message in judge_ca(cert, cfg, now, leaf_hours, leaf_until, _dns_sans(leaves[0]) if leaves else ()):
                yield r, f"{label} {message}"


POLICIES = [
    resource_policy("pki-key-strength", "Keys are ECDSA P-256/P-384 or RSA of sufficient size (never P-224).",
                    MANDATORY, "Set pki.caKey / pki.leafKey to ECDSA P256/P384 or RSA >= 3072.", [KEY], key_strength,
                    {"minimumRsaBits": {"type": "integer", "default": 2048}}),
    resource_policy("pki-ca-constraints", "The CA signs certificates and CRLs only, with a path length limit.",
                    MANDATORY, "Use the Pki component's CA (cert_signing, crl_signing, maxPathLength 0, "
                    "ECDSA P-384 or RSA >= 3072).", [SELF_SIGNED], ca_constraints,
                    {"minimumCaRsaBits": {"type": "integer", "default": 3072}}),
    resource_policy("pki-leaf-usages", "Leaf certificates are for one role: server_auth or client_auth.", MANDATORY,
                    "Issue server and client certificates separately (the Pki component does).",
                    [LOCALLY_SIGNED], leaf_usages),
    resource_policy("pki-leaf-lifetime", "Leaf certificates live at most 398 days and renew early.", MANDATORY,
                    "Set pki.leafValidityHours <= 9552 and pki.earlyRenewalHours >= 720.", [LOCALLY_SIGNED],
                    leaf_lifetime, {"maximumLeafHours": {"type": "integer", "default": 9552},
                                    "minimumEarlyRenewalHours": {"type": "integer", "default": 720}}),
    resource_policy("pki-server-sans", "Server certificate requests carry subject alternative names.", ADVISORY,
                    "List the Service and pod DNS names (the component does).", [CSR], server_sans),
    stack_policy("pki-ca-in-use", "The CA certificate the Secrets actually carry (ca.crt; a brought CA too) is a "
                 "CA (basicConstraints CA:TRUE, keyCertSign) with a strong key (RSA >= minimumCaRsaBits, ECDSA "
                 "P-256/384/521), valid now and for longer than the leaves it signs, and not signed with SHA-1 or "
                 "MD5. Public cloud roots a cloud bridge carries to verify AWS IoT Core or Azure IoT Hub are not the "
                 "estate's CA and are not judged.", MANDATORY,
                 "Bring a CA made for this (pki.existingCa) or let the Pki component make one: ECDSA P-384, CA:TRUE "
                 "with keyCertSign, SHA-256 or better, valid well beyond pki.leafValidityHours.", ca_in_use,
                 {"minimumCaRsaBits": {"type": "integer", "default": 3072},
                  "maximumLeafHours": {"type": "integer", "default": 9552}}),
    stack_policy("pki-no-exported-private-keys", "No stack output carries a private key in plain text.", MANDATORY,
                 "Export keys only as secrets, or better not at all; devices get them from Kubernetes Secrets.",
                 no_exported_keys),
]
