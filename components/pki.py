"""Pki: the estate's CA, the brokers' server certificate and one client certificate per certificate user.

Everything is issued by pulumi-tls so `pulumi up` creates real keys; private keys are secret outputs only.
"""

from typing import Mapping, Optional, Sequence, TypedDict

import pulumi
import pulumi_tls as tls

from .arguments import check_arguments

CA_USES = ["cert_signing", "crl_signing"]
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "client_auth"]


class KeySpec(TypedDict, total=False):
    """A private key's algorithm and size."""

    algorithm: str
    """ECDSA (default) or RSA."""
    ecdsa_curve: str
    """P256 or P384 (never the provider's P224 default); default P256 for leaves, P384 for the CA."""
    rsa_bits: int
    """2048, 3072 (default) or 4096."""


class ClientCertificate(TypedDict):
    """A client certificate and its private key, both PEM."""

    cert_pem: pulumi.Input[str]
    """The certificate (its CN is the MQTT user name)."""
    key_pem: pulumi.Input[str]
    """Its private key (secret)."""


class PkiArgs(TypedDict, total=False):
    organization: str
    """Subject O of every certificate (default mqtt-estate)."""
    ca_key: KeySpec
    """Key of the CA (ignored with an existing CA; default ECDSA P384)."""
    leaf_key: KeySpec
    """Key of server and client certificates (default ECDSA P256)."""
    ca_validity_hours: int
    """Lifetime of the generated CA (default 87600, ten years)."""
    leaf_validity_hours: int
    """Lifetime of server and client certificates (default 8760, one year)."""
    early_renewal_hours: int
    """pulumi-tls replaces a certificate this many hours before it expires, on the next `pulumi up` (default 720)."""
    server_common_name: str
    """CN of the brokers' server certificate (at most 64 characters; clients check the SANs; default
    mqtt-broker)."""
    server_dns_names: Sequence[str]
    """DNS SANs of the server certificate: every name clients and bridges connect to."""
    server_ip_addresses: Sequence[str]
    """IP SANs of the server certificate."""
    client_names: Sequence[str]
    """One client certificate per name; the name is the certificate CN and so the MQTT user name."""
    client_rotations: Mapping[str, int]
    """Client name -> how many times its key was rotated (absent or 0: never); each increase issues a new key and
    certificate."""
    existing_ca_cert_pem: Optional[pulumi.Input[str]]
    """Bring-your-own CA: its certificate, PEM (with existing_ca_key_pem); no CA is generated."""
    existing_ca_key_pem: Optional[pulumi.Input[str]]
    """Bring-your-own CA: its private key, PEM (secret); required with existing_ca_cert_pem."""


def ca_common_name(organization: str) -> str:
    """'<organization> MQTT CA', shortened to X.509's 64 characters (RFC 5280 ub-common-name)."""
    suffix = " MQTT CA"
    return organization[:64 - len(suffix)].rstrip() + suffix


def _key(name: str, spec: KeySpec, opts: pulumi.ResourceOptions) -> tls.PrivateKey:
    if spec.get("algorithm", "ECDSA") == "RSA":
        return tls.PrivateKey(name, algorithm="RSA", rsa_bits=spec.get("rsa_bits", 3072), opts=opts)
    return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve=spec.get("ecdsa_curve", "P256"), opts=opts)


def _leaf_uses(spec: KeySpec, uses: list[str]) -> list[str]:
    """key_encipherment only means something for RSA key transport."""
    return uses if spec.get("algorithm", "ECDSA") == "RSA" else [u for u in uses if u != "key_encipherment"]


class Pki(pulumi.ComponentResource):
    """The estate's CA, the brokers' server certificate and one client certificate per client name, issued by
    pulumi-tls; private keys are secret outputs only."""

    ca_cert_pem: pulumi.Output[str]
    """The CA certificate, PEM: what clients trust."""
    server_cert_pem: pulumi.Output[str]
    """The brokers' server certificate, PEM."""
    server_key_pem: pulumi.Output[str]
    """The server certificate's private key, PEM (secret)."""
    client_cert_pems: Mapping[str, pulumi.Output[str]]
    """Each client name's certificate, PEM."""
    client_key_pems: Mapping[str, pulumi.Output[str]]
    """Each client name's private key, PEM (secret)."""
    # `clients` (name -> ClientCertificate, the same PEMs paired) is set in __init__ for Python callers. It is not
    # annotated here on purpose: the analyzer would make it a schema output, and the Python provider host passes a
    # map of objects through with its Python key names (cert_pem), which other languages would not find
    # (pulumi/provider/experimental/component.py get_state maps names only for direct object outputs).

    def __init__(self, name: str, args: PkiArgs, opts: Optional[pulumi.ResourceOptions] = None):
        check_arguments("Pki", name, args, PkiArgs)
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

        def leaf(role: str, common_name: str, uses: list[str], dns: Sequence[str] = (), ips: Sequence[str] = (),
                 rotation: int = 0):
            # A rotated leaf gets new resource names (`-r<n>` after key/csr/cert, none before the first rotation, so
            # nothing else changes): a tls PrivateKey has no keepers, only algorithm/rsa_bits/ecdsa_curve force a
            # new key (hashicorp/terraform-provider-tls internal/provider/resource_private_key.go:55-92), so a new
            # name is the way to a new key. The CSR and certificate are renamed with it: the real provider would
            # replace them anyway (a changed PEM input forces it: resource_cert_request.go:43-47,
            # resource_locally_signed_cert.go:68-72, common.go:53-65), with a new random serial
            # (common_cert.go:128-130), and the offline engine derives a serial from the certificate's name
            # (estate/tls_provider.py _serial). `-r<n>` after the suffix never collides: no unrotated name ends in
            # a digit.
            suffix = f"-r{rotation}" if rotation else ""
            key = _key(f"{name}-{role}-key{suffix}", leaf_spec, child)
            csr = tls.CertRequest(
                f"{name}-{role}-csr{suffix}",
                private_key_pem=key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=org),
                dns_names=list(dns) or None,
                ip_addresses=list(ips) or None,
                opts=child,
            )
            cert = tls.LocallySignedCert(
                f"{name}-{role}-cert{suffix}",
                cert_request_pem=csr.cert_request_pem,
                ca_cert_pem=ca_cert_pem,
                ca_private_key_pem=ca_key_pem,
                allowed_uses=_leaf_uses(leaf_spec, uses),
                validity_period_hours=validity,
                early_renewal_hours=renewal,
                set_subject_key_id=True,
                opts=child,
            )
            return ClientCertificate(cert_pem=cert.cert_pem, key_pem=pulumi.Output.secret(key.private_key_pem))

        server = leaf("server", args.get("server_common_name", "mqtt-broker"), SERVER_USES,
                      args.get("server_dns_names", ()), args.get("server_ip_addresses", ()))
        self.ca_cert_pem = ca_cert_pem
        self.server_cert_pem = server["cert_pem"]
        self.server_key_pem = server["key_pem"]
        rotations = args.get("client_rotations", {})
        self.clients: dict[str, ClientCertificate] = {
            client: leaf(f"client-{client}", client, CLIENT_USES, rotation=rotations.get(client, 0))
            for client in args.get("client_names", ())}
        self.client_cert_pems = {client: cert["cert_pem"] for client, cert in self.clients.items()}
        self.client_key_pems = {client: cert["key_pem"] for client, cert in self.clients.items()}
        self.register_outputs({"ca_cert_pem": self.ca_cert_pem, "server_cert_pem": self.server_cert_pem})
