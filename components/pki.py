"""Pki: the estate's CA, the brokers' server certificate and one client certificate per certificate user.

Everything is issued by pulumi-tls so `pulumi up` creates real keys; private keys are secret outputs only.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, TypedDict

import pulumi
import pulumi_tls as tls

CA_USES = ["cert_signing", "crl_signing"]
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "client_auth"]


class KeySpecArgs(TypedDict, total=False):
    algorithm: str
    """ECDSA or RSA."""
    ecdsa_curve: str
    """P256 or P384 (never the provider's P224 default)."""
    rsa_bits: int
    """2048, 3072 or 4096."""


class PkiArgs(TypedDict, total=False):
    organization: str
    """Subject O of every certificate."""
    ca_key: KeySpecArgs
    """Key of the CA (ignored with an existing CA)."""
    leaf_key: KeySpecArgs
    """Key of server and client certificates."""
    ca_validity_hours: int
    leaf_validity_hours: int
    early_renewal_hours: int
    """pulumi-tls replaces a leaf this many hours before it expires (on the next `pulumi up`)."""
    server_common_name: str
    server_dns_names: Sequence[str]
    server_ip_addresses: Sequence[str]
    client_names: Sequence[str]
    """One client certificate per name; the name is the certificate CN and so the MQTT user name."""
    existing_ca_cert_pem: Optional[pulumi.Input[str]]
    """Bring-your-own CA: its certificate (with existing_ca_key_pem)."""
    existing_ca_key_pem: Optional[pulumi.Input[str]]


class ClientCertificate:
    def __init__(self, cert_pem: pulumi.Output[str], key_pem: pulumi.Output[str]):
        self.cert_pem = cert_pem
        self.key_pem = key_pem


def ca_common_name(organization: str) -> str:
    """'<organization> MQTT CA', shortened to X.509's 64 characters (RFC 5280 ub-common-name)."""
    suffix = " MQTT CA"
    return organization[:64 - len(suffix)].rstrip() + suffix


def _key(name: str, spec: KeySpecArgs, opts: pulumi.ResourceOptions) -> tls.PrivateKey:
    if spec.get("algorithm", "ECDSA") == "RSA":
        return tls.PrivateKey(name, algorithm="RSA", rsa_bits=spec.get("rsa_bits", 3072), opts=opts)
    return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve=spec.get("ecdsa_curve", "P256"), opts=opts)


def _leaf_uses(spec: KeySpecArgs, uses: list[str]) -> list[str]:
    """key_encipherment only means something for RSA key transport."""
    return uses if spec.get("algorithm", "ECDSA") == "RSA" else [u for u in uses if u != "key_encipherment"]


class Pki(pulumi.ComponentResource):
    ca_cert_pem: pulumi.Output[str]
    server_cert_pem: pulumi.Output[str]
    server_key_pem: pulumi.Output[str]
    clients: Mapping[str, ClientCertificate]

    def __init__(self, name: str, args: PkiArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mqtt-estate:index:Pki", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        org = args.get("organization", "mqtt-estate")
        leaf_spec = args.get("leaf_key", {})
        validity = args.get("leaf_validity_hours", 8760)
        renewal = args.get("early_renewal_hours", 720)

        if args.get("existing_ca_cert_pem") is not None:
            ca_cert_pem = pulumi.Output.from_input(args["existing_ca_cert_pem"])
            ca_key_pem = pulumi.Output.secret(args["existing_ca_key_pem"])
        else:
            ca_key = _key(f"{name}-ca-key", args.get("ca_key", {"algorithm": "ECDSA", "ecdsa_curve": "P384"}), child)
            ca_cert = tls.SelfSignedCert(
                f"{name}-ca-cert",
                private_key_pem=ca_key.private_key_pem,
                subject=tls.SelfSignedCertSubjectArgs(common_name=ca_common_name(org), organization=org),
                is_ca_certificate=True,
                max_path_length=0,
                set_subject_key_id=True,
                allowed_uses=CA_USES,
                validity_period_hours=args.get("ca_validity_hours", 87600),
                early_renewal_hours=renewal,
                opts=child,
            )
            ca_cert_pem, ca_key_pem = ca_cert.cert_pem, ca_key.private_key_pem

        def leaf(role: str, common_name: str, uses: list[str], dns: Sequence[str] = (), ips: Sequence[str] = ()):
            key = _key(f"{name}-{role}-key", leaf_spec, child)
            csr = tls.CertRequest(
                f"{name}-{role}-csr",
                private_key_pem=key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=org),
                dns_names=list(dns) or None,
                ip_addresses=list(ips) or None,
                opts=child,
            )
            cert = tls.LocallySignedCert(
                f"{name}-{role}-cert",
                cert_request_pem=csr.cert_request_pem,
                ca_cert_pem=ca_cert_pem,
                ca_private_key_pem=ca_key_pem,
                allowed_uses=_leaf_uses(leaf_spec, uses),
                validity_period_hours=validity,
                early_renewal_hours=renewal,
                set_subject_key_id=True,
                opts=child,
            )
            return ClientCertificate(cert.cert_pem, pulumi.Output.secret(key.private_key_pem))

        server = leaf("server", args.get("server_common_name", "mqtt-broker"), SERVER_USES,
                      args.get("server_dns_names", ()), args.get("server_ip_addresses", ()))
        self.ca_cert_pem = ca_cert_pem
        self.server_cert_pem = server.cert_pem
        self.server_key_pem = server.key_pem
        self.clients = {client: leaf(f"client-{client}", client, CLIENT_USES)
                        for client in args.get("client_names", ())}
        self.register_outputs({"ca_cert_pem": self.ca_cert_pem, "server_cert_pem": self.server_cert_pem})
