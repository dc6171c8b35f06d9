"""CloudBridge: one dedicated mosquitto that joins the estate as an mTLS client and holds the single connection to
AWS IoT Core, Azure IoT Hub or another MQTT broker.

Why a workload of its own and not a `connection` on every broker: with a bridge per broker pod every message would
reach the cloud once per broker, and the cloud drops a connection when another one arrives with the same client id,
so replicas sharing an identity knock each other off for ever. Here one pod, one identity, one connection; the
estate's brokers already deliver every message to every broker (the star, components/mosquitto_conf.py), so the
bridge sees each message once whichever broker it was published on, and what comes from the cloud reaches every
broker the same way.

Rollout: the cloud block (it may carry a credential) and the cloud identity's key live in a Secret, the rest in a
content-named ConfigMap; their hashes sit in the pod template, so a renewed SAS token or a new certificate rolls the
pod (mosquitto cannot reload a bridge, components/bridge_conf.py).
"""

import datetime as dt
import hashlib
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls
from typing_extensions import Required

from . import azure_sas
from .arguments import check_arguments
from .bridge_conf import (CLOUD_CONF, CLOUD_DIR, CONFIG_DIR, ESTATE_CERT_DIR, HEALTH_ACL_FILE,
                          BridgeMapping,
                          BufferLimits, CloudConnection, local_filter, remote_filter, render_cloud_conf,
                          render_main_conf)
from .cloud_profiles import AWS, AWS_PROFILE, AZURE, BRIDGE_APP, MQTT, PROVIDER_LABEL, azure_host
from .kube import (RESTRICTED_CONTAINER, ContainerResources, container_resources, content_hash, labels,
                   restricted_pod, selector)
from .broker import health_probes
from .exporter_sidecar import ExporterSidecar, sidecar_parts
from .mosquitto_conf import DATA_DIR, HEALTH_ACL
from .pki import ClientCertificate

APP = BRIDGE_APP
MOSQUITTO_UID = 1883
"""The eclipse-mosquitto image's own user and group (eclipse/mosquitto v2.0.20 docker/2.0/Dockerfile:75-76)."""
SECRET_FILE_MODE = 0o440
RESOURCES = {"cpu": ("100m", "1"), "memory": ("128Mi", "256Mi")}
CLOUD_CA = {AWS: "AmazonRootCA1.pem", AZURE: "AzureIoTHubRoots.pem"}
"""Root CAs of the clouds' MQTT endpoints, shipped as files (copied from Debian's ca-certificates): Amazon Root CA 1
signs the ATS data endpoints; Azure IoT Hub moved to DigiCert Global Root G2 (Microsoft RSA Root 2017 kept for
hubs not yet migrated)."""
CLOUD_IDENTITY_DAYS = 365
"""Lifetime of a bridge's self-signed cloud certificate (renewed 30 days early by pulumi-tls)."""


class AwsIotArgs(TypedDict, total=False):
    """AWS IoT Core: the thing, its certificate and policy."""

    provision: bool
    """Create the thing, register the bridge's certificate, attach a least-privilege policy and read the data
    endpoint with pulumi-aws (default True); otherwise register the certificate output yourself."""


class AzureIotArgs(TypedDict, total=False):
    """Azure IoT Hub: the hub and how the device authenticates."""

    hub_name: Required[str]
    """The hub's name (<hub_name>.azure-devices.net)."""
    auth: str
    """x509 (default: register the certificate_thumbprint output on the device) or sas."""
    device_key: Optional[pulumi.Input[str]]
    """The device's primary key, base64 (secret); required with auth sas."""
    sas_validity_seconds: int
    """Lifetime of each SAS token (default 30 days); `pulumi up` issues a new one after half of it."""


class MqttRemoteArgs(TypedDict, total=False):
    """A generic MQTT broker."""

    username: Optional[str]
    """Remote user name."""
    password: Optional[pulumi.Input[str]]
    """Remote password (secret)."""
    tls: bool
    """Connect with TLS, verifying the server (default True)."""
    trust: str
    """system (the image's CA certificates, default) or estate (the estate's own CA)."""
    protocol_version: str
    """mqttv311 (default) or mqttv50."""


class CloudBridgeArgs(TypedDict, total=False):
    namespace: str
    """Kubernetes namespace (the estate's, default mqtt)."""
    provider: Required[str]
    """aws-iot-core, azure-iot-hub or mqtt."""
    endpoint: Optional[pulumi.Input[str]]
    """The cloud's MQTT host name (AWS with provisioning: the data endpoint when absent; Azure: the hub's)."""
    port: int
    """The cloud's MQTT port (default 8883; AWS on 443 uses ALPN x-amzn-mqtt-ca)."""
    client_id: Required[str]
    """AWS thing name, Azure device id, or the remote client id."""
    keepalive: int
    """Keepalive towards the cloud in seconds (default 60)."""
    mappings: Required[Sequence[BridgeMapping]]
    """Topic mappings (mosquitto `topic` lines)."""
    estate_addresses: Required[Sequence[str]]
    """host:port of the estate brokers' internal mTLS listener, preferred first."""
    estate_selector: Required[Mapping[str, str]]
    """Pod labels of the estate's brokers (the bridge's NetworkPolicy egress)."""
    estate_port: Required[int]
    """The brokers' internal listener port."""
    ca_cert_pem: Required[pulumi.Input[str]]
    """The estate's CA certificate, PEM."""
    estate_certificate: Required[ClientCertificate]
    """The bridge's client certificate in the estate (its CN is the ACL identity)."""
    buffer: BufferLimits
    """Queue limits while the cloud is away."""
    storage_size: str
    """Size of the queue's volume (default 2Gi)."""
    storage_class: Optional[str]
    """StorageClass of the volume (absent: the cluster default)."""
    resources: ContainerResources
    """CPU and memory of the bridge container."""
    image: str
    """eclipse-mosquitto image (default eclipse-mosquitto:2.0.20)."""
    aws: Optional[AwsIotArgs]
    """AWS IoT Core settings."""
    azure: Optional[AzureIotArgs]
    """Azure IoT Hub settings."""
    mqtt: Optional[MqttRemoteArgs]
    """Generic MQTT settings."""
    exporter: Optional[ExporterSidecar]
    """A mosquitto-exporter sidecar (absent: none); MonitoringStack scrapes it."""


class CloudBridge(pulumi.ComponentResource):
    """One mosquitto pod bridging the estate to a cloud MQTT endpoint over a single connection."""

    endpoint: pulumi.Output[str]
    """The cloud host the bridge connects to."""
    cloud_certificate_pem: pulumi.Output[str]
    """The bridge's certificate towards the cloud (AWS and Azure x509), to register there."""
    certificate_thumbprint: pulumi.Output[str]
    """SHA-256 thumbprint of that certificate (Azure: the device's X.509 thumbprint)."""
    sas_token_expires_at: pulumi.Output[str]
    """When the current Azure SAS token lapses (ISO 8601, UTC); run `pulumi up` before then."""

    def __init__(self, name: str, args: CloudBridgeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        check_arguments("CloudBridge", name, args, CloudBridgeArgs)
        super().__init__("mqtt-estate:index:CloudBridge", name, None, opts)
        ns = args.get("namespace", "mqtt")
        provider = args["provider"]
        mappings = list(args["mappings"])
        child = pulumi.ResourceOptions(parent=self)
        sel = selector(APP, name)

        def meta(obj_name: str, **extra) -> dict:
            return {"name": obj_name, "namespace": ns,
                    "labels": {**labels(APP, name, "cloud-bridge"), PROVIDER_LABEL: provider}, **extra}

        identity_cert = self._cloud_identity(name, args, child)
        endpoint = self._endpoint(name, args, identity_cert, mappings, child)
        username, password, self.sas_token_expires_at = self._credentials(name, args)

        main_conf = render_main_conf(name, args["estate_addresses"], mappings, args.get("buffer", {}), provider)
        config_hash = content_hash(main_conf, HEALTH_ACL)
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=meta(f"{name}-config-{config_hash[:10]}"),
            data={"mosquitto.conf": main_conf, HEALTH_ACL_FILE: HEALTH_ACL}, opts=child)

        port = args.get("port", 8883)
        remote = args.get("mqtt") or {}

        def cloud_block(host: str, user: Optional[str], secret: Optional[str]) -> str:
            return render_cloud_conf(CloudConnection(
                provider=provider, address=f"{host}:{port}", port=port, client_id=args["client_id"], identity=name,
                keepalive=args.get("keepalive", 60), certificate=identity_cert is not None, username=user,
                password=secret, tls=remote.get("tls", True), ca=provider != MQTT or remote.get("trust") == "estate",
                protocol_version=remote.get("protocol_version")), mappings)

        cloud_conf = pulumi.Output.all(endpoint, username, password).apply(lambda parts: cloud_block(*parts))
        # the block as the pod reads it, with the credential replaced by a slow hash of it: any change rolls the pod
        shown_conf = pulumi.Output.all(endpoint, username, _slow_hash(password, name)).apply(
            lambda parts: cloud_block(*parts))
        cloud_ca = self._cloud_ca(provider, args)
        cloud_data = {CLOUD_CONF: pulumi.Output.secret(cloud_conf)}
        if cloud_ca is not None:
            cloud_data["ca.crt"] = cloud_ca
        if identity_cert is not None:
            cloud_data["tls.crt"] = identity_cert["cert_pem"]
            cloud_data["tls.key"] = pulumi.Output.secret(identity_cert["key_pem"])
        cloud_secret = k8s.core.v1.Secret(f"{name}-cloud", metadata=meta(f"{name}-cloud"), type="Opaque",
                                          string_data=cloud_data, opts=child)
        estate_secret = k8s.core.v1.Secret(
            f"{name}-estate-tls", metadata=meta(f"{name}-estate-tls"), type="kubernetes.io/tls",
            string_data={"ca.crt": args["ca_cert_pem"], "tls.crt": args["estate_certificate"]["cert_pem"],
                         "tls.key": pulumi.Output.secret(args["estate_certificate"]["key_pem"])}, opts=child)
        # what rolls the pod: the cloud block (its password as a slow hash), the token's expiry and the certificates
        # (never the keys, never anything a guess could be checked against quickly)
        rollout_hash = pulumi.Output.unsecret(pulumi.Output.all(
            shown_conf, self.sas_token_expires_at,
            identity_cert["cert_pem"] if identity_cert else "", args["estate_certificate"]["cert_pem"],
            args["ca_cert_pem"]).apply(lambda parts: content_hash(*[str(p) for p in parts])))

        sources = [(estate_secret.metadata["name"], {"estate-certificate": "tls.crt", "ca-certificate": "ca.crt"})]
        if identity_cert is not None:
            sources.append((cloud_secret.metadata["name"], {"cloud-certificate": "tls.crt"}))
        sas = (args.get("azure") or {}).get("auth") == "sas"
        sidecar = sidecar_parts(args.get("exporter"), sources, SECRET_FILE_MODE,
                                [("sas-token", self.sas_token_expires_at)] if sas else [])
        self._workload(name, ns, args, meta, sel, config_map, cloud_secret, estate_secret, config_hash,
                       rollout_hash, sidecar, child)
        self._network_policy(name, args, meta, sel, port, child)

        self.endpoint = pulumi.Output.from_input(endpoint)
        self.cloud_certificate_pem = identity_cert["cert_pem"] if identity_cert else pulumi.Output.from_input("")
        self.certificate_thumbprint = (pulumi.Output.from_input(identity_cert["cert_pem"]).apply(
            azure_sas.thumbprint) if identity_cert else pulumi.Output.from_input(""))
        self.register_outputs({"endpoint": self.endpoint, "cloud_certificate_pem": self.cloud_certificate_pem,
                               "certificate_thumbprint": self.certificate_thumbprint,
                               "sas_token_expires_at": self.sas_token_expires_at})

    # --- the cloud side -----------------------------------------------------------------------------------------

    @staticmethod
    def _cloud_identity(name: str, args: CloudBridgeArgs, child) -> Optional[ClientCertificate]:
        """A self-signed certificate per bridge for AWS and Azure x509: not issued by the estate CA, so it can never
        log into the estate, and registered with the cloud as exactly this device."""
        provider = args["provider"]
        if provider == MQTT or (provider == AZURE and (args.get("azure") or {}).get("auth", "x509") == "sas"):
            return None
        key = tls.PrivateKey(f"{name}-cloud-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        cert = tls.SelfSignedCert(
            f"{name}-cloud-cert", private_key_pem=key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=args["client_id"], organization="mqtt-estate cloud bridge"),
            validity_period_hours=CLOUD_IDENTITY_DAYS * 24, early_renewal_hours=30 * 24,
            allowed_uses=["digital_signature", "client_auth"], opts=child)
        return {"cert_pem": cert.cert_pem, "key_pem": key.private_key_pem}

    @staticmethod
    def _endpoint(name: str, args: CloudBridgeArgs, identity: Optional[ClientCertificate],
                  mappings: Sequence[BridgeMapping], child) -> pulumi.Input[str]:
        provider = args["provider"]
        given = args.get("endpoint")
        if provider == AWS and (args.get("aws") or {}).get("provision", True):
            from .aws_iot import provision_thing  # pulumi-aws is imported only by estates that provision AWS

            out = [remote_filter(m) for m in mappings if m.get("direction", "out") in ("out", "both")]
            into = [remote_filter(m) for m in mappings if m.get("direction", "out") in ("in", "both")]
            thing = provision_thing(f"{name}-aws", args["client_id"], identity["cert_pem"], out, into, child,
                                   retain=AWS_PROFILE.retain)
            return given or thing.endpoint
        if provider == AZURE and not given:
            return azure_host(args["azure"]["hub_name"])
        return given

    @staticmethod
    def _credentials(name: str, args: CloudBridgeArgs):
        """(username, password, SAS expiry): Azure's documented user name and SAS token, or a remote's login."""
        provider = args["provider"]
        if provider == AZURE:
            azure = args["azure"]
            host = args.get("endpoint") or azure_host(azure["hub_name"])
            user = azure_sas.username(host, args["client_id"])
            if azure.get("auth", "x509") != "sas":
                return user, None, pulumi.Output.from_input("")
            validity = azure.get("sas_validity_seconds", 30 * 86400)
            expiry = azure_sas.renewal_expiry(int(time.time()), validity)
            uri = azure_sas.resource_uri(host, args["client_id"])
            token = pulumi.Output.secret(azure["device_key"]).apply(lambda key: azure_sas.sas_token(uri, key, expiry))
            expires = dt.datetime.fromtimestamp(expiry, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return user, token, pulumi.Output.from_input(expires)
        if provider == MQTT:
            remote = args.get("mqtt") or {}
            password = remote.get("password")
            return remote.get("username"), (pulumi.Output.secret(password) if password is not None else None), \
                pulumi.Output.from_input("")
        return None, None, pulumi.Output.from_input("")

    @staticmethod
    def _cloud_ca(provider: str, args: CloudBridgeArgs) -> Optional[pulumi.Input[str]]:
        if provider in CLOUD_CA:
            return (Path(__file__).parent / "cloud_ca" / CLOUD_CA[provider]).read_text()
        remote = args.get("mqtt") or {}
        if remote.get("tls", True) and remote.get("trust") == "estate":
            return args["ca_cert_pem"]
        return None

    # --- Kubernetes -------------------------------------------------------------------------------------------

    @staticmethod
    def _workload(name, ns, args, meta, sel, config_map, cloud_secret, estate_secret, config_hash, rollout_hash,
                  sidecar, child) -> None:
        resources = dict(args.get("resources") or {})
        container = {
            "name": "mosquitto",
            "image": args.get("image", "eclipse-mosquitto:2.0.20"),
            "imagePullPolicy": "IfNotPresent",
            "command": ["mosquitto", "-c", f"{CONFIG_DIR}/mosquitto.conf"],
            "resources": container_resources(resources, RESOURCES),
            "securityContext": RESTRICTED_CONTAINER,
            **health_probes(),
            "volumeMounts": [
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "estate-tls", "mountPath": ESTATE_CERT_DIR, "readOnly": True},
                {"name": "cloud", "mountPath": CLOUD_DIR, "readOnly": True},
                {"name": "data", "mountPath": DATA_DIR},
            ],
        }
        claim_spec: dict = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": args.get("storage_size", "2Gi")}}}
        if args.get("storage_class"):
            claim_spec["storageClassName"] = args["storage_class"]
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset", metadata=meta(name),
            spec={
                "serviceName": name,
                # one pod, one cloud connection: never two at once, so no surge and OrderedReady
                "replicas": 1,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate"},
                "selector": {"matchLabels": sel},
                "template": {
                    "metadata": {"labels": labels(APP, name, "cloud-bridge"),
                                 "annotations": {"mqtt-estate.io/config-hash": config_hash,
                                                 "mqtt-estate.io/cloud-hash": rollout_hash}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": restricted_pod(MOSQUITTO_UID),
                        "terminationGracePeriodSeconds": 30,
                        "containers": [container, *sidecar[0]],
                        "volumes": sidecar[1] + [
                            {"name": "config", "configMap": {"name": config_map.metadata["name"],
                                                             "defaultMode": SECRET_FILE_MODE}},
                            {"name": "estate-tls", "secret": {"secretName": estate_secret.metadata["name"],
                                                              "defaultMode": SECRET_FILE_MODE}},
                            {"name": "cloud", "secret": {"secretName": cloud_secret.metadata["name"],
                                                         "defaultMode": SECRET_FILE_MODE}},
                        ],
                    },
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": sel}, "spec": claim_spec}],
            }, opts=child)

    @staticmethod
    def _network_policy(name, args, meta, sel, port, child) -> None:
        """No ingress at all (the probes are exec); egress to DNS, the estate's internal listener and the cloud."""
        egress = [
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"to": [{"podSelector": {"matchLabels": dict(args["estate_selector"])}}],
             "ports": [{"port": args["estate_port"], "protocol": "TCP"}]},
            {"ports": [{"port": port, "protocol": "TCP"}]},
        ]
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=meta(name),
            spec={"podSelector": {"matchLabels": sel}, "policyTypes": ["Ingress", "Egress"], "ingress": [],
                  "egress": egress}, opts=child)


def estate_rules(mappings: Sequence[BridgeMapping]) -> list[dict]:
    """The bridge identity's ACL in the estate: read what goes out, write what comes in, nothing else."""
    access = {"out": "read", "in": "write", "both": "readwrite"}
    rules = [{"access": access[m.get("direction", "out")], "topic": local_filter(m)} for m in mappings]
    return [dict(t) for t in dict.fromkeys(tuple(sorted(r.items())) for r in rules)]


def _slow_hash(password: Optional[pulumi.Input[str]], salt: str) -> pulumi.Input[str]:
    """A PBKDF2 digest of a remote password for the pod's rollout hash: it changes when the password does, and
    checking a guess against it costs 200000 rounds."""
    if password is None:
        return ""
    return pulumi.Output.from_input(password).apply(
        lambda text: hashlib.pbkdf2_hmac("sha256", (text or "").encode(), salt.encode(), 200_000).hex())
