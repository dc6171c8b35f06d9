"""PKI rules over pulumi-tls resources: key strength, CA constraints, leaf usages and lifetimes, no key exports."""

from __future__ import annotations

from policy_kit import ADVISORY, MANDATORY, resource_policy, stack_policy

KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"
CSR = "tls:index/certRequest:CertRequest"
AUTH_USES = {"server_auth", "client_auth"}


def key_strength(props, cfg):
    algorithm = props.get("algorithm", "RSA")
    if algorithm == "RSA" and int(props.get("rsaBits", 2048)) < cfg["minimumRsaBits"]:
        yield f"RSA key of {props.get('rsaBits', 2048)} bits (minimum {cfg['minimumRsaBits']})"
    if algorithm == "ECDSA" and props.get("ecdsaCurve", "P224") not in ("P256", "P384", "P521"):
        yield f"ECDSA curve {props.get('ecdsaCurve', 'P224 (the provider default)')} is too weak (use P256 or P384)"


def ca_constraints(props, cfg):
    if not props.get("isCaCertificate"):
        return
    key_pem = props.get("privateKeyPem")
    if isinstance(key_pem, str) and "RSA PRIVATE KEY" in key_pem:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        bits = load_pem_private_key(key_pem.encode(), None).key_size
        if bits < cfg["minimumCaRsaBits"]:
            yield f"CA key is RSA {bits} bits (minimum {cfg['minimumCaRsaBits']} for a CA)"
    uses = set(props.get("allowedUses") or [])
    missing = {"cert_signing", "crl_signing"} - uses
    if missing:
        yield f"CA certificate lacks {', '.join(sorted(missing))}"
    if uses & AUTH_USES:
        yield f"CA certificate also allows {', '.join(sorted(uses & AUTH_USES))}"
    if props.get("maxPathLength") is None or int(props["maxPathLength"]) < 0:
        yield "CA certificate sets no path length constraint"


def leaf_usages(props, _cfg):
    uses = set(props.get("allowedUses") or [])
    if props.get("isCaCertificate"):
        yield "a leaf certificate must not be a CA"
    if not uses & AUTH_USES:
        yield "leaf certificate allows neither server_auth nor client_auth"
    if uses >= AUTH_USES:
        yield "leaf certificate allows both server_auth and client_auth (issue one per role)"
    if {"cert_signing", "crl_signing"} & uses:
        yield "leaf certificate may sign certificates"


def leaf_lifetime(props, cfg):
    hours = int(props.get("validityPeriodHours", 0))
    if hours > cfg["maximumLeafHours"]:
        yield f"leaf valid for {hours} h (maximum {cfg['maximumLeafHours']} h)"
    if int(props.get("earlyRenewalHours") or 0) < cfg["minimumEarlyRenewalHours"]:
        yield f"early renewal {props.get('earlyRenewalHours') or 0} h (minimum {cfg['minimumEarlyRenewalHours']} h)"


def server_sans(props, _cfg):
    subject = props.get("subject") or {}
    if props.get("dnsNames") is None and props.get("ipAddresses") is None and subject.get("commonName", "").count(".") >= 1:
        yield f"certificate request for {subject.get('commonName')} has no subject alternative names"


def no_exported_keys(resources, _cfg):
    for resource in resources:
        if resource.resource_type == "pulumi:pulumi:Stack":
            for key, value in (resource.props or {}).items():
                if "PRIVATE KEY" in str(value):
                    yield resource, f"stack output {key!r} exports a private key in plain text"


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
    stack_policy("pki-no-exported-private-keys", "No stack output carries a private key in plain text.", MANDATORY,
                 "Export keys only as secrets, or better not at all; devices get them from Kubernetes Secrets.",
                 no_exported_keys),
]
