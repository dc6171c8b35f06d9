"""Typed estate configuration: what a stack file may say, with secure defaults.

Keys are camelCase in stack files (Pulumi convention) and snake_case in Python. Unknown keys are errors,
and values are taken strictly (no "yes" for true, no "1883" for 1883) so a typo never silently changes meaning.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError
from pydantic.alias_generators import to_camel

from stacks.errors import PATTERN_HINTS
from stacks.presets import PRESETS


def _pattern(regex: str, hint: str) -> StringConstraints:
    PATTERN_HINTS[regex] = hint
    return StringConstraints(pattern=regex)


DnsLabel = Annotated[str, _pattern(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$",
                                   "use lower-case letters, digits and '-', starting with a letter, at most 32")]
PortName = Annotated[str, _pattern(r"^[a-z]([a-z0-9-]{0,13}[a-z0-9])?$",
                                   "use lower-case letters, digits and '-', starting with a letter, at most 15")]
UserName = Annotated[str, _pattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                   "use letters, digits, '_', '.' and '-', at most 64, no spaces")]
Quantity = Annotated[str, _pattern(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$",
                                   "use a Kubernetes quantity such as 500m, 2, 512Mi or 20Gi")]
Duration = Annotated[str, _pattern(r"^[1-9][0-9]*[hdwmy]$", "use a duration such as 12h, 7d, 4w, 6m or 1y")]
def _pinned(image: str) -> str:
    if image.endswith(":latest"):
        raise PydanticCustomError("unpinned_image", "'{image}' is not allowed (pin a version tag or digest, not latest)",
                                  {"image": image})
    return image


Image = Annotated[str, _pattern(r"^[a-z0-9./_-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$",
                                "use name:tag or name@sha256:digest"), AfterValidator(_pinned)]
Topic = Annotated[str, _pattern(r"^[^\s]{1,512}$", "use an MQTT topic filter without spaces")]
GroupId = Annotated[str, _pattern(r"^[A-Za-z0-9_.-]{1,64}$", "use letters, digits, '_', '.' and '-', at most 64")]
Cidr = Annotated[str, _pattern(r"^[0-9a-f.:]+/[0-9]{1,3}$", "use a CIDR such as 10.20.0.0/16")]
HostName = Annotated[str, _pattern(r"^[A-Za-z0-9.:-]{1,253}$", "use a host name or IP address")]
NfsPath = Annotated[str, _pattern(r"^/[A-Za-z0-9._/-]*$", "use an absolute export path such as /exports/mqtt")]
DnsName = Annotated[str, _pattern(r"^[A-Za-z0-9*.-]{1,253}$", "use a DNS name such as mqtt.example.com")]
Port = Annotated[int, Field(ge=1, le=65535)]
PresetName = Literal["edge-broker", "standard-broker", "enterprise-broker", "ha-cluster"]


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, strict=True
    )


class Listener(Model):
    """One mosquitto listener; TLS listeners may demand client certificates (mTLS)."""

    name: PortName
    port: Port
    protocol: Literal["mqtt", "websockets"] = "mqtt"
    tls: bool = False
    tls_version: Literal["tlsv1.2", "tlsv1.3"] = "tlsv1.2"
    require_certificate: bool = False


DEFAULT_LISTENERS = (
    Listener(name="mqtt", port=1883),
    Listener(name="mqtts", port=8883, tls=True),
    Listener(name="ws", port=9001, protocol="websockets"),
    Listener(name="wss", port=9443, protocol="websockets", tls=True),
)


class Auth(Model):
    allow_anonymous: bool = False
    password_iterations: int = Field(210_000, ge=1_000, le=10_000_000)


class Nfs(Model):
    """Static NFS volumes, one directory per broker ordinal (the Cedalo layout); never two brokers on one path."""

    server: HostName
    path: NfsPath
    version: Literal["3", "4", "4.1", "4.2"] = "4.1"


class Persistence(Model):
    enabled: bool = True
    autosave_interval: int = Field(60, ge=1, le=86_400)
    session_expiry: Duration = "7d"
    storage_class: Optional[DnsLabel] = None
    size: Optional[Quantity] = None
    nfs: Optional[Nfs] = None


class Limits(Model):
    max_connections: Optional[int] = Field(None, ge=1, le=1_000_000)
    max_queued_messages: int = Field(1000, ge=1, le=10_000_000)
    max_inflight_messages: int = Field(20, ge=1, le=65_535)
    max_packet_size: int = Field(1_048_576, ge=1024, le=268_435_455)
    max_keepalive: int = Field(300, ge=10, le=65_535)


class Resources(Model):
    cpu_request: Optional[Quantity] = None
    cpu_limit: Optional[Quantity] = None
    memory_request: Optional[Quantity] = None
    memory_limit: Optional[Quantity] = None


class Service(Model):
    type: Literal["ClusterIP", "LoadBalancer"] = "ClusterIP"
    load_balancer_source_ranges: list[Cidr] = []


class AclRule(Model):
    access: Literal["read", "write", "readwrite", "deny"]
    topic: Topic


class FactoryAcl(Model):
    """Factory-zone template: devices write their own telemetry under factory/<zone>/<user>/."""

    zones: list[DnsLabel] = ["production", "quality", "maintenance"]


class SparkplugAcl(Model):
    """Sparkplug B template (spBv1.0): edge nodes own their node/device topics, hosts read all and command."""

    groups: list[GroupId] = []


class Acl(Model):
    patterns: list[AclRule] = []
    factory: Optional[FactoryAcl] = None
    sparkplug: Optional[SparkplugAcl] = None


class HighAvailability(Model):
    """How several brokers behave as one: bridged into a star around the lowest live ordinal."""

    topology: Literal["active-active", "active-standby"] = "active-active"
    min_replicas: Optional[int] = Field(None, ge=1, le=64)
    max_replicas: Optional[int] = Field(None, ge=1, le=64)
    target_cpu_percent: int = Field(60, ge=10, le=95)
    internal_port: Port = 1884


class Frontend(Model):
    """The HAProxy tier in front of the brokers (on by default when there is more than one broker)."""

    enabled: Optional[bool] = None
    replicas: int = Field(2, ge=2, le=16)
    image: Image = "haproxy:2.8.16"
    maxconn: int = Field(20_000, ge=100, le=1_000_000)
    service: Service = Service()
    resources: Resources = Resources()


class Broker(Model):
    name: DnsLabel = "mosquitto"
    preset: PresetName = "standard-broker"
    replicas: Optional[int] = Field(None, ge=1, le=64)
    image: Image = "eclipse-mosquitto:2.0.20"
    listeners: list[Listener] = Field(default_factory=lambda: list(DEFAULT_LISTENERS), min_length=1)
    auth: Auth = Auth()
    persistence: Persistence = Persistence()
    limits: Limits = Limits()
    resources: Resources = Resources()
    service: Service = Service()
    acl: Acl = Acl()
    ha: HighAvailability = HighAvailability()


class User(Model):
    """A person, device or application that logs in; `auth` says whether by password, certificate or either."""

    name: UserName
    role: Literal["admin", "device", "edge-node", "host-application", "dashboard", "service"] = "device"
    auth: Literal["password", "certificate", "both"] = "password"
    zone: Optional[DnsLabel] = None
    groups: list[GroupId] = []
    topics: list[AclRule] = []


class KeySpec(Model):
    algorithm: Literal["ECDSA", "RSA"] = "ECDSA"
    ecdsa_curve: Literal["P256", "P384"] = "P384"
    rsa_bits: Literal[2048, 3072, 4096] = 3072


class Pki(Model):
    ca_key: KeySpec = KeySpec()
    leaf_key: KeySpec = KeySpec(ecdsa_curve="P256")
    organization: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "mqtt-estate"
    ca_validity_hours: int = Field(87_600, ge=720, le=175_200)
    leaf_validity_hours: int = Field(8_760, ge=24, le=9_552)
    early_renewal_hours: int = Field(720, ge=0, le=8_760)
    existing_ca: bool = False
    extra_dns_names: list[DnsName] = []
    loopback_sans: bool = True


class Namespace(Model):
    name: DnsLabel = "mqtt"
    create: bool = True


class Estate(Model):
    """The whole stack configuration, one attribute per top-level `mqtt-estate:` key."""

    namespace: Namespace = Namespace()
    broker: Broker = Broker()
    pki: Pki = Pki()
    users: list[User] = []
    frontend: Frontend = Frontend()

    @property
    def preset(self):
        return PRESETS[self.broker.preset]

    @property
    def replicas(self) -> int:
        return self.broker.replicas or self.broker.ha.min_replicas or self.preset.replicas

    @property
    def max_replicas(self) -> int:
        """Autoscaling maximum: every per-pod name (certificate SANs, HAProxy servers) is made for this many."""
        return max(self.broker.ha.max_replicas or 0, self.replicas)

    @property
    def clustered(self) -> bool:
        return self.max_replicas > 1

    @property
    def frontend_enabled(self) -> bool:
        return self.frontend.enabled if self.frontend.enabled is not None else self.clustered


TOP_LEVEL_KEYS = tuple(to_camel(k) for k in Estate.model_fields)
SECRET_KEY_PREFIX = "password-"
CA_SECRET_KEYS = ("caCertPem", "caKeyPem")
