"""Local stand-ins for the clouds a cloud bridge dials (`estate up --local`).

Each cloud-bridge workload gets a real mosquitto on 127.0.0.1 configured the way its provider's endpoint behaves
(components/cloud_profiles.py): a TLS listener whose server certificate is issued by a stand-in CA made for this
run, with the endpoint's host name (and 127.0.0.1) as its SAN; `max_qos 1` for AWS IoT Core and Azure IoT Hub;
`max_packet_size` and `max_keepalive` from the profile; and the provider's way of logging in and of granting
topics:

- AWS IoT Core: `require_certificate true`, `cafile` = the bridge's registered certificate (self-signed, so it is
  its own CA, as a certificate registered without a CA is trusted by AWS), `use_identity_as_username true`, and
  an ACL built from the IoT policy attached to that certificate (estate.aws_provider.standin_acl), read back from
  the moto control plane when it is still running, else from the registered aws:iot/policy:Policy's inputs.
- Azure IoT Hub, SAS: a password file holding the documented user name and the SAS token of the bridge's
  cloud.conf; ACL write devices/<id>/messages/events/#, read devices/<id>/messages/devicebound/#.
- Azure IoT Hub, x509: as AWS (the bridge's certificate is the trust anchor), same device-topic ACL.
- MQTT: a password file with cloud.conf's remote_username / remote_password; an ACL for the remote topics of the
  bridge's `topic` lines.

What the bridge's cloud.conf is changed in: ONLY the address and the trust anchor. `address` points at the
stand-in's port (the host name is kept when the pod resolves names through the local hosts file, else it becomes
127.0.0.1; the stand-in certificate names both), and `bridge_cafile` / `bridge_capath` becomes
`bridge_cafile <stand-in CA>`. Everything else -- credentials, client id, topics, protocol, TLS version -- is the
rendered file's (see `rewrite_cloud_conf`).

TEST TAP: each stand-in has a second listener, plain MQTT on 127.0.0.1 only, anonymous with full access, so tests
and the smoke suite can subscribe and publish "in the cloud". The real clouds have no such thing; it is recorded
as `tap` in the connection file's `cloud` section.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..components.cloud_profiles import AWS, AZURE, PROFILES, azure_devicebound_prefix, azure_events_prefix
from ..components.passwords import hash_password
from .output import write_file
from .processes import terminate

PASSWORD_ITERATIONS = 101
"""mosquitto_passwd's default PBKDF2 count (the stand-in's password file is made fresh each run)."""


# -- cloud.conf ----------------------------------------------------------------------------------------------------

@dataclass
class CloudConf:
    """What a bridge's cloud.conf says, as far as a stand-in needs it."""

    host: str
    port: int
    client_id: str
    username: Optional[str] = None
    password: Optional[str] = None
    certfile: Optional[str] = None
    """Pod path of the bridge's cloud certificate (AWS, Azure x509)."""
    mappings: list[dict] = field(default_factory=list)
    """{topic, direction, qos, local_prefix, remote_prefix} per `topic` line."""


def _unquote(text: str) -> str:
    return "" if text == '""' else text


def parse_cloud_conf(text: str) -> CloudConf:
    values: dict[str, str] = {}
    mappings = []
    for line in text.splitlines():
        key, _, rest = line.strip().partition(" ")
        if not key or key.startswith("#"):
            continue
        if key == "topic":
            parts = rest.split()
            parts += [""] * (5 - len(parts))
            mappings.append({"topic": parts[0], "direction": parts[1] or "out", "qos": int(parts[2] or 0),
                             "local_prefix": _unquote(parts[3]), "remote_prefix": _unquote(parts[4])})
        else:
            values[key] = rest.strip()
    host, _, port = values["address"].split()[0].rpartition(":")
    return CloudConf(host=host, port=int(port), client_id=values.get("remote_clientid", ""),
                     username=values.get("remote_username"), password=values.get("remote_password"),
                     certfile=values.get("bridge_certfile"), mappings=mappings)


def rewrite_cloud_conf(text: str, host: str, port: int, ca_file: str) -> str:
    """The cloud block pointed at a stand-in: only `address` and the trust anchor change (module docstring)."""
    out = []
    for line in text.splitlines():
        key = line.split(" ", 1)[0]
        if key == "address":
            line = f"address {host}:{port}"
        elif key in ("bridge_cafile", "bridge_capath"):
            line = f"bridge_cafile {ca_file}"
        out.append(line)
    return "\n".join(out) + "\n"


# -- certificates --------------------------------------------------------------------------------------------------

def _ca_and_server(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A stand-in CA and a server certificate for `host` (and 127.0.0.1): (ca.crt, server.crt, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mqtt-estate local cloud stand-in CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        names.insert(0, x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.insert(0, x509.DNSName(host))
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(later)
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    write_file(ca_file, ca.public_bytes(pem).decode())
    write_file(cert_file, server.public_bytes(pem).decode())
    write_file(key_file, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode(), secret=True)
    ca_file.chmod(0o644)  # the bridge, running as the broker's user, reads it
    return ca_file, cert_file, key_file


# -- ACLs ----------------------------------------------------------------------------------------------------------

def aws_policy_documents(registry, certificate_pem: str, control_plane=None) -> list[str]:
    """The IoT policy documents attached to the registered certificate `certificate_pem`: read back from the moto
    control plane when it runs, else from the registered Policy resources' inputs."""
    cert = next((r for r in registry.resources if r.type == "aws:iot/certificate:Certificate"
                 and (r.inputs.get("certificatePem") or "").strip() == certificate_pem.strip()), None)
    if cert is None:
        raise ValueError("the bridge's cloud certificate was not registered with aws:iot/certificate:Certificate")
    arn, region = cert.outputs["arn"], cert.outputs.get("region")
    if control_plane is not None and control_plane.port is not None:
        with control_plane.lock:
            iot = control_plane.client("iot", region)
            names = [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]]
            return [iot.get_policy(policyName=name)["policyDocument"] for name in names]
    names = {r.inputs.get("policy") for r in registry.resources
             if r.type == "aws:iot/policyAttachment:PolicyAttachment" and r.inputs.get("target") == arn}
    return [r.inputs["policy"] for r in registry.resources
            if r.type == "aws:iot/policy:Policy" and r.outputs.get("name") in names]


def acl_entries(provider: str, cloud: CloudConf, policies: list[str] = ()) -> list[tuple[str, str]]:
    """(access, topic) the stand-in grants the bridge's identity."""
    if provider == AWS:
        from .aws_provider import standin_acl

        return sorted({entry for document in policies for entry in standin_acl(document, cloud.client_id)})
    if provider == AZURE:
        return [("write", azure_events_prefix(cloud.client_id) + "#"),
                ("read", azure_devicebound_prefix(cloud.client_id) + "#")]
    access = {"out": "write", "in": "read", "both": "readwrite"}
    return sorted({(access[m["direction"]], m["remote_prefix"] + m["topic"]) for m in cloud.mappings})


# -- the stand-in process ------------------------------------------------------------------------------------------

@dataclass
class CloudStandin:
    """One stand-in mosquitto for the cloud of bridge pod `bridge`."""

    bridge: str
    provider: str
    cloud: CloudConf
    directory: Path
    port: int
    tap_port: int
    ca_file: Path = Path()
    conf_file: Path = Path()
    process: Optional[subprocess.Popen] = None
    account: object = None
    """pwd entry to run as (the broker's user when we are root), or None."""

    @property
    def identity(self) -> str:
        """The user name the stand-in knows the bridge by (the certificate's CN, or the remote user name)."""
        return self.cloud.username if self.uses_password else self.cloud.client_id

    @property
    def uses_password(self) -> bool:
        return self.cloud.certfile is None

    def write(self, bridge_certificate: Optional[Path], acl: list[tuple[str, str]]) -> None:
        d = self.directory
        (d / "data").mkdir(parents=True, exist_ok=True)
        self.ca_file, cert, key = _ca_and_server(d, self.cloud.host)
        profile = PROFILES[self.provider]
        lines = [f"# mqtt-estate local stand-in for {profile.label} at {self.cloud.host}:{self.cloud.port}",
                 "per_listener_settings true", "log_dest stdout",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "connection_messages true",
                 # the cloud keeps persistent sessions across its own restarts (and so does the tap's session)
                 "persistence true", f"persistence_location {d / 'data'}/", "autosave_interval 5",
                 # the cloud's own queueing towards its subscribers is not modelled: a test tap that reads
                 # thousands of messages at once must not lose any here (mosquitto's default is 1000 queued)
                 "max_queued_messages 1000000",
                 f"max_keepalive {profile.keepalive[1]}"]
        if profile.max_payload:
            lines.append(f"max_packet_size {profile.max_payload}")
        lines += ["", "# the endpoint, as the provider runs it", f"listener {self.port} 127.0.0.1",
                  f"certfile {cert}", f"keyfile {key}", "tls_version tlsv1.2", "allow_anonymous false"]
        if profile.max_qos < 2:
            lines.append(f"max_qos {profile.max_qos}")
        if self.uses_password:
            passwords = d / "passwords"
            salt = os.urandom(12)
            write_file(passwords, f"{self.cloud.username}:"
                       f"{hash_password(self.cloud.password or '', salt, PASSWORD_ITERATIONS)}\n", secret=True)
            lines.append(f"password_file {passwords}")
        else:
            lines += [f"cafile {bridge_certificate}", "require_certificate true", "use_identity_as_username true"]
        acl_file = d / "acl"
        write_file(acl_file, f"user {self.identity}\n" + "".join(f"topic {a} {t}\n" for a, t in acl))
        lines.append(f"acl_file {acl_file}")
        lines += ["", "# TEST TAP (not in the real cloud): loopback only, anonymous, full access",
                  f"listener {self.tap_port} 127.0.0.1", "allow_anonymous true"]
        self.conf_file = d / "mosquitto.conf"
        write_file(self.conf_file, "\n".join(lines) + "\n")
        if self.account is not None:
            for root, dirs, files in os.walk(d):
                for name in [root, *[os.path.join(root, x) for x in dirs + files]]:
                    os.chown(name, self.account.pw_uid, self.account.pw_gid)

    @property
    def command(self) -> list[str]:
        return ["mosquitto", "-c", str(self.conf_file)]

    @property
    def log(self) -> Path:
        return self.directory / "process.log"

    def start(self, preexec_fn=None, wait=None) -> None:
        """Start (or start again, on the same ports, keeping the persisted sessions)."""
        ids = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []} if self.account else {}
        with open(self.log, "a") as handle:
            self.process = subprocess.Popen(self.command, stdout=handle, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=preexec_fn, **ids)
        if wait is not None:
            wait(self.tap_port, self.process, self.log)

    def stop(self) -> None:
        terminate(self.process)

    def describe(self) -> dict:
        """The connection file's entry for this bridge's cloud."""
        return {"bridge": self.bridge, "provider": self.provider, "endpoint": self.cloud.host,
                "url": f"mqtts://127.0.0.1:{self.port}", "host": "127.0.0.1", "port": self.port,
                "server_name": self.cloud.host, "ca_file": str(self.ca_file), "client_id": self.cloud.client_id,
                "identity": self.identity, "mappings": self.cloud.mappings,
                "pid": self.process.pid if self.process else None, "log": str(self.log),
                "command": " ".join(shlex.quote(c) for c in self.command),
                "tap": {"url": f"mqtt://127.0.0.1:{self.tap_port}", "host": "127.0.0.1", "port": self.tap_port,
                        "note": "test tap of the local stand-in: anonymous, full access, loopback only; the real "
                                "cloud has no such listener"}}


def concrete(topic_filter: str, leaf: str) -> str:
    """A topic name matching `topic_filter`: `+` levels become `x`, a final `#` becomes `leaf`."""
    levels = ["x" if level == "+" else level for level in topic_filter.split("/")]
    if levels[-1] == "#":
        levels[-1] = leaf
    return "/".join(levels)


def endpoint_host(cloud_conf_text: str) -> str:
    return parse_cloud_conf(cloud_conf_text).host

