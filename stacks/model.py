"""Typed estate configuration: what a stack file may say, with secure defaults.

Keys are camelCase in stack files (Pulumi convention) and snake_case in Python. Unknown keys are errors,
and values are taken strictly (no "yes" for true, no "1883" for 1883) so a typo never silently changes meaning.
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError
from pydantic.alias_generators import to_camel

from ..components.haproxy_cfg import (DEFAULT_CONCURRENT_CONNECTIONS, DEFAULT_CONNECTION_RATE, DEFAULT_RATE_PERIOD,
                                   time_problem)
from ..components import backup_rules
from ..components.users import MAX_ROTATION
from . import grammar
from .errors import PATTERN_HINTS
from .presets import PRESETS


def _pattern(pattern: grammar.Pattern) -> StringConstraints:
    PATTERN_HINTS[pattern.regex] = pattern.hint
    return StringConstraints(pattern=pattern.regex)


def _grammar(check: Callable[..., Optional[str]], *args) -> AfterValidator:
    """A pydantic validator from one of stacks.grammar's checks: its message names what is allowed."""

    def validate(value: str) -> str:
        problem = check(value, *args)
        if problem:
            raise PydanticCustomError("grammar", "{problem}", {"problem": problem})
        return value

    return AfterValidator(validate)


Text = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
"""Bounds every string before a grammar looks at it (a hostile 10 MB value is refused by length first)."""
DnsLabel = Annotated[str, _pattern(grammar.SHORT_NAME)]
NamespaceName = Annotated[Text, _grammar(grammar.dns_label)]
PortName = Annotated[Text, _grammar(grammar.port_name)]
UserName = Annotated[str, _pattern(grammar.USER_NAME)]


def _number_as_text(value):
    """Kubernetes takes a plain number for a quantity (2147483648 is 2Gi); so does the stack file."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
        return value
    return str(value)


CpuQuantity = Annotated[Text, BeforeValidator(_number_as_text), _grammar(grammar.quantity, "cpu")]
MemoryQuantity = Annotated[Text, BeforeValidator(_number_as_text), _grammar(grammar.quantity, "memory")]
StorageQuantity = Annotated[Text, BeforeValidator(_number_as_text), _grammar(grammar.quantity, "storage")]
Duration = Annotated[Text, _grammar(grammar.duration)]
Image = Annotated[Text, _grammar(grammar.image_reference)]
Topic = Annotated[Text, _grammar(grammar.topic_filter_for_acl)]
GroupId = Annotated[str, _pattern(grammar.GROUP_ID)]
Cidr = Annotated[Text, _grammar(grammar.cidr)]


HostName = Annotated[Text, _grammar(grammar.host_name)]
NfsPath = Annotated[str, _pattern(grammar.NFS_PATH)]
DnsName = Annotated[Text, _grammar(grammar.san_dns_name)]
IpAddress = Annotated[Text, _grammar(grammar.ip_address)]
Organization = Annotated[str, _pattern(grammar.PRINTABLE_64)]
StorageClassName = Annotated[Text, _grammar(grammar.dns_subdomain)]
Port = Annotated[int, Field(ge=1, le=65535)]
PromDuration = Annotated[Text, _grammar(grammar.prometheus_duration)]
LabelKey = Annotated[Text, _grammar(grammar.label_key)]
LabelValue = Annotated[str, StringConstraints(max_length=63), _grammar(grammar.label_value)]
PresetName = Literal["edge-broker", "standard-broker", "enterprise-broker", "ha-cluster"]


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, strict=True
    )


class AclRule(Model):
    access: Literal["read", "write", "readwrite", "deny"]
    topic: Topic


class Listener(Model):
    """One mosquitto listener; TLS listeners may demand client certificates (mTLS)."""

    name: PortName
    port: Port
    protocol: Literal["mqtt", "websockets"] = "mqtt"
    tls: bool = False
    tls_version: Literal["tlsv1.2", "tlsv1.3"] = "tlsv1.2"
    require_certificate: bool = False
    allow_anonymous: bool = False
    """Let clients without a user name connect on this listener only (legacy sensors on an isolated network); they
    may do what anonymousTopics grants, nothing else. Named users still log in here with their own rights."""
    anonymous_topics: list[AclRule] = []
    """What anonymous clients of this listener may do: ACL rules written for them alone (required with
    allowAnonymous)."""
    source_ranges: list[Cidr] = []
    """Networks that may connect to this listener (a NetworkPolicy rule, or the frontend's source check); empty:
    every address that reaches the Service."""

    @property
    def through_frontend(self) -> bool:
        """Whether the frontend carries this listener: MQTT, and TLS websockets passed through like MQTTS (plain
        websockets stay inside the cluster)."""
        return self.protocol == "mqtt" or self.tls


DEFAULT_LISTENERS = (
    Listener(name="mqtt", port=1883),
    Listener(name="mqtts", port=8883, tls=True),
    Listener(name="ws", port=9001, protocol="websockets"),
    Listener(name="wss", port=9443, protocol="websockets", tls=True),
)


class Auth(Model):
    allow_anonymous: bool = False
    """Anonymous clients on every client-facing listener, granted no topics (the policy pack refuses it); for
    legacy sensors set allowAnonymous and anonymousTopics on the one listener that needs it instead."""
    password_iterations: int = Field(10_000, ge=1_000, le=100_000)
    """PBKDF2 rounds of the hashes of supplied passwords (`password-<user>` secrets), paid by the broker's one
    thread on every CONNECT, right or wrong: 10000 cost ~5.5 ms, 210000 ~110 ms (bench/credential_bench.py).
    Supplied passwords must cost guesses x iterations >= 10^19; generated ones (190 bits) use 101."""


class Nfs(Model):
    """Static NFS volumes, one directory per broker ordinal (the Cedalo layout); never two brokers on one path."""

    server: HostName
    path: NfsPath
    version: Literal["3", "4", "4.1", "4.2"] = "4.1"


BucketName = Annotated[Text, _grammar(backup_rules.bucket_name)]
StoreRegion = Annotated[Text, _grammar(backup_rules.store_region)]
S3Endpoint = Annotated[Text, _grammar(backup_rules.endpoint)]
KeyPrefix = Annotated[Text, _grammar(backup_rules.key_prefix)]
BackupSchedule = Annotated[Text, _grammar(backup_rules.schedule)]
SecretName = Annotated[Text, _grammar(grammar.dns_subdomain)]
SecretKey = Annotated[Text, _grammar(grammar.config_map_key)]
AnnotationKey = Annotated[Text, _grammar(backup_rules.annotation_key)]
AnnotationValue = Annotated[Text, _grammar(backup_rules.annotation_value)]
RestoreRequest = Annotated[Text, _grammar(backup_rules.restore_request)]
RestoreTarget = Annotated[Text, _grammar(backup_rules.restore_target)]
Days = Annotated[int, Field(ge=1, le=backup_rules.MAX_DAYS)]


class S3Bucket(Model):
    """Where the backups go: an S3 bucket on AWS, or on an S3-compatible store (endpoint)."""

    name: BucketName
    """The bucket (S3's naming rules: 3-63 lower-case letters, digits, '.' and '-')."""
    provision: bool = False
    """Create it with pulumi-aws (versioned, encrypted, public access blocked, lifecycle, Object Lock when
    retention.lock is set); give the stack AWS credentials and `aws:region`. False: the bucket is brought; it must
    be versioned (and have Object Lock enabled when retention.lock is set)."""
    region: Optional[StoreRegion] = None
    """The bucket's region (required on AWS, e.g. eu-central-1; with an endpoint default us-east-1)."""
    endpoint: Optional[S3Endpoint] = None
    """An S3-compatible store's URL (https://minio.plant.example:9000); absent: AWS S3. Plain http only to 127.0.0.1
    or localhost. Not with provision."""
    path_style: bool = False
    """Address the bucket in the path (https://host/bucket/key) instead of the host name (most S3-compatible stores
    want it)."""
    prefix: Optional[KeyPrefix] = None
    """Key prefix: each broker pod's backup is <prefix>/<pod>/mosquitto.db (default mqtt-estate/<namespace>)."""


class BackupLock(Model):
    """S3 Object Lock on each backup version: nobody can delete it before `days` have passed."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"]
    """GOVERNANCE: users with s3:BypassGovernanceRetention may still delete; COMPLIANCE: nobody, not even the
    account's root user, until it expires."""
    days: Days
    """How long each version is locked (at most retention.days)."""


class BackupRetention(Model):
    days: Days = 30
    """How long a replaced backup version is kept (a provisioned bucket's lifecycle rule; a brought bucket's own
    rules apply instead)."""
    lock: Optional[BackupLock] = None


class BackupCredentials(Model):
    """Exactly one source: a Secret with access keys, or workload identity through the ServiceAccount."""

    secret_name: Optional[SecretName] = None
    """A Secret in the estate's namespace holding the access key id and secret access key (you create it)."""
    access_key_id_key: SecretKey = "AWS_ACCESS_KEY_ID"
    """The Secret's key holding the access key id."""
    secret_access_key_key: SecretKey = "AWS_SECRET_ACCESS_KEY"
    """The Secret's key holding the secret access key."""
    service_account_annotations: dict[AnnotationKey, AnnotationValue] = Field(default_factory=dict, max_length=16)
    """Annotations of the brokers' ServiceAccount for workload identity, e.g. eks.amazonaws.com/role-arn (IRSA)."""


class BackupRestore(Model):
    on_empty_volume: bool = True
    """A broker that starts without a mosquitto.db (a new or lost volume) restores its newest good backup first."""
    request: Optional[RestoreRequest] = None
    """Ask every broker pod to restore `target` once: a new id rolls the pods, each restores before mosquitto starts
    (an id already done is not repeated)."""
    target: Optional[RestoreTarget] = None
    """latest, an S3 version id (one broker only) or an RFC 3339 time: the newest backup saved at or before it."""


class Backup(Model):
    """Backups of each broker's mosquitto.db to S3, restore and recovery from a corrupt database (README, "Backups")."""

    enabled: bool = True
    schedule: BackupSchedule = "15m"
    """How often each broker is made to save and its database uploaded (1m to 24h; m is minutes here). What changed
    since the last backup is what a lost volume loses."""
    image: Image = "ghcr.io/mqtt-estate/mosquitto-backup:0.1.0"
    """The backup sidecar's and restore init container's image, built from backup/Dockerfile."""
    bucket: S3Bucket
    retention: BackupRetention = BackupRetention()
    credentials: BackupCredentials = BackupCredentials()
    restore: BackupRestore = BackupRestore()


class Persistence(Model):
    enabled: bool = True
    autosave_interval: int = Field(60, ge=1, le=86_400)
    session_expiry: Duration = "7d"
    storage_class: Optional[StorageClassName] = None
    size: Optional[StorageQuantity] = None
    nfs: Optional[Nfs] = None
    backup: Optional[Backup] = None
    """Backups to S3 and restore (README, "Backups")."""


class Limits(Model):
    max_connections: Optional[int] = Field(None, ge=1, le=1_000_000)
    max_queued_messages: int = Field(1000, ge=1, le=10_000_000)
    max_inflight_messages: int = Field(20, ge=1, le=65_535)
    max_packet_size: int = Field(1_048_576, ge=1024, le=268_435_455)
    max_keepalive: int = Field(300, ge=10, le=65_535)
    max_queued_bytes: Optional[int] = Field(None, ge=1024, le=1 << 40)
    """Per-client cap on queued message bytes (mosquitto's max_queued_bytes); unset: only the message count caps it."""


class Resources(Model):
    cpu_request: Optional[CpuQuantity] = None
    cpu_limit: Optional[CpuQuantity] = None
    memory_request: Optional[MemoryQuantity] = None
    memory_limit: Optional[MemoryQuantity] = None


class Service(Model):
    type: Literal["ClusterIP", "LoadBalancer"] = "ClusterIP"
    load_balancer_source_ranges: list[Cidr] = []
    skip_await: bool = False
    """Do not wait for a LoadBalancer address (pulumi.com/skipAwait): for clusters without a load-balancer controller."""


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


class SharedSubscriptionPort(Model):
    """A frontend port for shared-subscription consumers (`$share/<group>/<filter>`).

    Each broker delivers a shared subscription once per group among its own members, so a group whose members
    sit on different brokers would get every message once per broker. Every client of every shared port is
    therefore sent to one broker (the same one for all shared ports and all HAProxy replicas), and all of them
    move together when that broker fails.
    """

    name: PortName
    """Service and container port name of the frontend port (unique among listener names)."""
    port: Port
    """Port consumers connect to on the frontend."""
    listener: PortName
    """The broker listener it forwards to (its TLS, certificates and authentication apply)."""


HaproxyTime = Annotated[Text, _grammar(time_problem)]
"""An HAProxy time with its unit (10s, 1m; m is minutes here, unlike a mosquitto Duration)."""


class FloodProtection(Model):
    """Per-source limits at the frontend: one address opening connections too fast, or holding too many, is
    refused at accept, before it costs a broker a TLS handshake or a password hash. Each device has an address of
    its own, so a plant-wide reconnect storm passes; counted per HAProxy replica (README, "Flood protection")."""

    enabled: bool = True
    """Off, one source could keep the brokers hashing wrong passwords; a warning, and the policy pack refuses it
    (exempt NAT gateways in exemptSources instead)."""
    connection_rate: int = Field(DEFAULT_CONNECTION_RATE, ge=2, le=1_000_000)
    """New connections one source address may open per ratePeriod on one replica; the next is refused until it
    slows down (refused attempts count too). At least 2, so a device can always reconnect once."""
    rate_period: HaproxyTime = DEFAULT_RATE_PERIOD
    """The window connectionRate is averaged over (1s to 24d)."""
    concurrent_connections: int = Field(DEFAULT_CONCURRENT_CONNECTIONS, ge=1, le=1_000_000)
    """Open connections one source address may hold on one replica; its existing ones keep working."""
    exempt_sources: list[Cidr] = []
    """Networks that are never limited: a NAT gateway in front of a whole production cell, whose devices all
    share its address and would otherwise be refused together. They still pass the listeners' sourceRanges."""


class Frontend(Model):
    """The HAProxy tier in front of the brokers (on by default when there is more than one broker)."""

    enabled: Optional[bool] = None
    replicas: int = Field(2, ge=2, le=16)
    image: Image = "haproxy:2.8.16"
    maxconn: int = Field(20_000, ge=100, le=1_000_000)
    service: Service = Service()
    resources: Resources = Resources()
    shared_subscriptions: list[SharedSubscriptionPort] = []
    """Ports for shared-subscription consumers: every member of every group on one broker (see README)."""
    flood_protection: FloodProtection = FloodProtection()
    """Per-source connection-rate and concurrent-connection limits on every client port."""


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
    rotation: int = Field(0, ge=0, le=MAX_ROTATION)
    """How many times the user's generated password and certificate were rotated (`estate users rotate` adds 1):
    raising it makes the next render/`pulumi up` issue a new password (auth password or both) and a new key and
    certificate (auth certificate or both). A supplied `password-<user>` secret is not rotated by it."""


class KeySpec(Model):
    algorithm: Literal["ECDSA", "RSA"] = "ECDSA"
    ecdsa_curve: Literal["P256", "P384"] = "P384"
    rsa_bits: Literal[2048, 3072, 4096] = 3072


class Pki(Model):
    ca_key: KeySpec = KeySpec()
    leaf_key: KeySpec = KeySpec(ecdsa_curve="P256")
    organization: Organization = "mqtt-estate"
    ca_validity_hours: int = Field(87_600, ge=2_880, le=175_200)
    leaf_validity_hours: int = Field(8_760, ge=1_440, le=9_552)
    """At most 398 days (the policy pack's limit), at least twice the renewal window."""
    early_renewal_hours: int = Field(720, ge=720, le=4_776)
    """At least 30 days (the policy pack's minimum), at most half the leaf validity (checked)."""
    existing_ca: bool = False
    extra_dns_names: list[DnsName] = []
    extra_ip_addresses: list[IpAddress] = []
    loopback_sans: bool = False
    """Add localhost/127.0.0.1 to the server certificate (for `kubectl port-forward`); off unless asked."""


BridgeTopic = Annotated[Text, _grammar(grammar.bridge_topic)]
TopicPrefix = Annotated[str, StringConstraints(max_length=1000), _grammar(grammar.topic_prefix)]


class BridgeMapping(Model):
    """One `topic` line of a bridge, as mosquitto reads it: the local topic is localPrefix + topic, the cloud's
    remotePrefix + topic (mosquitto.conf(5), `topic pattern [[[ out | in | both ] qos-level] local-prefix
    remote-prefix]`)."""

    topic: BridgeTopic
    """MQTT topic filter shared by both sides (wildcards allowed; no spaces: mosquitto.conf splits on them)."""
    direction: Literal["out", "in", "both"] = "out"
    """out: from the estate to the cloud; in: from the cloud to every broker of the estate; both: only where it
    cannot loop (a generic MQTT 5 remote, whose no-local subscription never sends a message back)."""
    qos: Literal[0, 1, 2] = 1
    """QoS on the cloud side (AWS IoT Core and Azure IoT Hub take at most 1)."""
    local_prefix: TopicPrefix = ""
    """Prepended to the topic in the estate (a topic name without wildcards or spaces, usually ending in /)."""
    remote_prefix: Optional[TopicPrefix] = None
    """Prepended to the topic in the cloud; Azure IoT Hub defaults to its device topics."""


class BridgeBuffer(Model):
    """What the bridge keeps on its volume while the cloud is away; past these limits new messages are dropped,
    counted ($SYS/broker/publish/messages/dropped) and logged."""

    max_queued_messages: int = Field(100_000, ge=100, le=10_000_000)
    max_queued_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024, le=1 << 40)
    storage: StorageQuantity = "2Gi"
    storage_class: Optional[StorageClassName] = None
    memory_limit: MemoryQuantity = "256Mi"
    """mosquitto holds its whole queue in memory too (the volume is its snapshot): the limit must hold
    maxQueuedBytes with room to spare (checked)."""


class AwsBridge(Model):
    provision: bool = True
    """Create the thing, register its certificate, attach a least-privilege policy and read the data endpoint
    (pulumi-aws; give it credentials and `aws:region` in the stack file)."""


class AzureBridge(Model):
    hub_name: DnsLabel
    """The IoT hub's name: <hubName>.azure-devices.net."""
    auth: Literal["x509", "sas"] = "x509"
    """x509 (preferred: a certificate per bridge, register its thumbprint on the device) or sas (a token from the
    device key in the secret `bridge-key-<name>`, renewed by `pulumi up`)."""
    sas_validity: Duration = "30d"
    """How long each SAS token lives; `pulumi up` issues a new one once half of it has passed."""


class MqttBridge(Model):
    username: Optional[Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[!-~]+$")]] = None
    """Remote user name (printable ASCII, no spaces); its password is the secret `bridge-password-<name>`."""
    tls: bool = True
    """Plain MQTT is only allowed to a host inside the cluster (*.svc / *.svc.cluster.local)."""
    protocol_version: Literal["mqttv311", "mqttv50"] = "mqttv311"
    trust: Literal["system", "estate"] = "system"
    """Which CAs verify the remote: the image's system CAs, or the estate's own CA (another estate's broker)."""


class Bridge(Model):
    """A bridge from the estate to a cloud endpoint: one workload, one connection, whatever the broker count."""

    name: DnsLabel
    provider: Literal["aws-iot-core", "azure-iot-hub", "mqtt"]
    endpoint: Optional[HostName] = None
    """Host name of the cloud's MQTT endpoint (AWS: optional with aws.provision, which reads the data endpoint;
    Azure: <hubName>.azure-devices.net by default)."""
    port: Port = 8883
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9:_.@$()!,=%'*?-]+$")]
    """AWS: the thing name; Azure: the device id; mqtt: the client id (one connection per identity)."""
    keepalive: int = Field(60, ge=5, le=65_535)
    mappings: list[BridgeMapping] = Field(min_length=1)
    buffer: BridgeBuffer = BridgeBuffer()
    aws: Optional[AwsBridge] = None
    azure: Optional[AzureBridge] = None
    mqtt: Optional[MqttBridge] = None


class Monitoring(Model):
    """Prometheus Operator objects, a generated PrometheusRule and Grafana dashboards (README, "Monitoring")."""

    enabled: Optional[bool] = None
    """Default: on for a clustered estate (the prod stack), off for a single broker."""
    exporter_image: Image = "ghcr.io/mqtt-estate/mosquitto-exporter:0.1.0"
    """The exporter sidecar's image, built from exporter/Dockerfile."""
    selector_labels: dict[LabelKey, LabelValue] = {"release": "kube-prometheus-stack"}
    """Labels on the PodMonitors and the PrometheusRule: kube-prometheus-stack selects them by `release: <its Helm
    release name>`."""
    prometheus_namespace: NamespaceName = "monitoring"
    """Where Prometheus runs: the NetworkPolicy admits scrapes from this namespace only."""
    dashboards_namespace: Optional[NamespaceName] = None
    """Where the dashboard ConfigMaps go (default: prometheusNamespace, where Grafana's sidecar looks)."""
    dashboards: bool = True
    scrape_interval: PromDuration = "30s"
    alert_after: PromDuration = "1m"
    """How long a broker, bridge or frontend is down before its alert fires."""
    runbook_url: Text = "https://github.com/mqtt-estate/mqtt-estate/blob/main/README.md"
    """Base of every alert's runbook_url (the README's section of each alert is appended as an anchor)."""


class Namespace(Model):
    name: NamespaceName = "mqtt"
    create: bool = True


class Estate(Model):
    """The whole stack configuration, one attribute per top-level `mqtt-estate:` key."""

    namespace: Namespace = Namespace()
    broker: Broker = Broker()
    pki: Pki = Pki()
    users: list[User] = []
    frontend: Frontend = Frontend()
    bridges: list[Bridge] = []
    """Bridges to AWS IoT Core, Azure IoT Hub or another MQTT broker (README, "Edge to cloud")."""
    monitoring: Monitoring = Monitoring()
    """Exporters, PodMonitors, alert rules and dashboards (README, "Monitoring")."""

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

    @property
    def monitoring_enabled(self) -> bool:
        return self.monitoring.enabled if self.monitoring.enabled is not None else self.clustered

    @property
    def internal_listener(self) -> bool:
        """The brokers' internal mTLS listener: bridges use it between brokers, the frontend for health checks."""
        return self.clustered or self.frontend_enabled or bool(self.bridges)


TOP_LEVEL_KEYS = tuple(to_camel(k) for k in Estate.model_fields)
SECRET_KEY_PREFIX = "password-"
CA_SECRET_KEYS = ("caCertPem", "caKeyPem")
BRIDGE_PASSWORD_PREFIX = "bridge-password-"
BRIDGE_KEY_PREFIX = "bridge-key-"
BRIDGE_SECRET_PREFIXES = (BRIDGE_PASSWORD_PREFIX, BRIDGE_KEY_PREFIX)
