"""Component arguments, checked before a component registers anything.

Why: the components are a public API. Python programs construct them directly and, through the component
provider (components/provider.py), TypeScript, Go, C# and YAML programs hand them whatever JSON they like. The
typed stack config (stacks/) validates what a stack file says, but a component trusted its args: a user name,
topic, listener name or zone with a line break wrote extra lines into mosquitto.conf, the ACL, the password file
or haproxy.cfg (a user "x\\ntopic readwrite #" granted everything), and a namespace, quantity, CIDR or image the
API server refuses failed at `pulumi up`, long after preview.

What: each component calls check_arguments() first thing in its constructor, before even the component itself is
registered. It walks the args along the component's argument TypedDicts (their annotations say each field's type,
whether it is required, and which keys exist), applies to every value the grammar of whoever consumes it (RULES:
the validators of stacks/grammar.py that the stack config uses too, so there is one grammar), and, when every
value is well-formed, the cross-field rules of the component (collisions of names, ports and identities; values
that only work together). Every problem becomes one line,

    MosquittoBroker b: args.users[2].topics[0].topic: 'a/#/b' is not allowed ('#' may only be the last level; ...)

with the path in the Python field names, and all of them are raised at once as one ComponentArgumentsError.

Outputs (and other awaitables) are unknown at construct time: they are skipped, never refused. Secret values
(passwords, private keys) are never shown in a message. The walk is O(size of the args), with the walkers built
once per TypedDict and every regular expression compiled at import, so the typed stack path, which passes its
already-validated values through here too, pays little: about 11 ms per 1,000 users (~3% of constructing them).
"""

from __future__ import annotations

import collections.abc
from typing import Any, Callable, ForwardRef, Iterator, Mapping, Optional, Union

import pulumi
from typing_extensions import NotRequired, Required, get_args, get_origin  # they know Required on 3.10 too

from ..stacks import grammar
from . import backup_rules
from ..stacks.errors import MAX_LINES, ConfigIssue, already_used, key_path, listed_twice, name_taken, safe_text
from .credentials import MAXIMUM_ITERATIONS, SUPPLIED_ITERATIONS, supplied_password_problem
from .haproxy_cfg import MAX_RATE_PERIOD_MS, PEER_PORT, STATS_PORT
from .kube import requests_above_limits
from .names import FRONTEND_SECTIONS, HEALTH_ACL_NAME, reserved_listener_names, reserved_ports
from .password_logins import MINIMUM_SUPPLIED_ITERATIONS, password_context
from .users import MAX_ROTATION

Check = Callable[[Any], Optional[str]]
"""A grammar: None for a valid value, else one sentence that starts with the quoted value."""
Loc = tuple
Walk = Callable[[Any, Loc, list], None]

C_INT_MAX = 2**31 - 1
"""mosquitto and HAProxy read their integers with atoi into a C int."""
STATEFULSET_NAME_MAX = 52
"""A StatefulSet's pods carry the label controller-revision-hash: <name>-<10-character hash>, and a label value is
at most 63 characters (kubernetes/kubernetes#64023): a longer name makes a StatefulSet that never gets pods."""


class ComponentArgumentsError(ValueError, pulumi.RunError):
    """A component's args are invalid: one line per problem, `<Component> <name>: args.<path>: <problem>`.

    A pulumi.RunError too, so `pulumi up` prints the lines without a Python traceback."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        shown = lines if len(lines) <= MAX_LINES else lines[:MAX_LINES] + [
            f"... and {len(lines) - MAX_LINES} more problems"]
        super().__init__("\n".join(shown))


# --- grammars of single values ------------------------------------------------------------------------------------

def between(low: int, high: int, why: str = "") -> Check:
    """A whole number from low to high."""
    allowed = f"allowed: {low}-{high}{'; ' + why if why else ''}"

    def check(value: int) -> Optional[str]:
        return None if low <= value <= high else f"{value} is out of range ({allowed})"
    return check


def one_of(*choices) -> Check:
    allowed = f"allowed: {', '.join(map(str, choices))}"

    def check(value) -> Optional[str]:
        return None if value in choices else f"{grammar.quoted(value)} is not allowed ({allowed})"
    return check


def pattern(which: grammar.Pattern) -> Check:
    return lambda value: grammar.matches(value, which)


def certificates(value: str) -> Optional[str]:
    """One or more PEM certificates, each readable (mosquitto, HAProxy and pulumi-tls read them with OpenSSL)."""
    from ..stacks.ca_check import pem_certificates  # cryptography: only when a PEM is given as text
    return pem_certificates(value)


def private_key(value: str) -> Optional[str]:
    """A readable, unencrypted PEM private key; the message never shows it."""
    from ..stacks.ca_check import pem_private_key
    return pem_private_key(value)


PORT = between(1, 65535)
POSITIVE = between(1, C_INT_MAX)
ACCESS = one_of("read", "write", "readwrite", "deny")
SERVICE_TYPE = one_of("ClusterIP", "LoadBalancer")


def quantity(kind: str) -> Check:
    """A positive Kubernetes quantity of cpu, memory or storage (stacks/grammar.py quantity)."""
    return lambda value: grammar.quantity(value, kind)


CPU, MEMORY, STORAGE = quantity("cpu"), quantity("memory"), quantity("storage")


def _host_port(value: str) -> Optional[str]:
    """host:port, as a mosquitto bridge `address` takes it."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"{value!r} is not host:port (as in mosquitto-0.mosquitto-headless.mqtt.svc.cluster.local:1884)"
    return grammar.host_name(host)

RULES: dict[str, dict[str, Check]] = {
    # MosquittoBroker
    "MosquittoBrokerArgs": {
        "namespace": grammar.dns_label,
        "image": grammar.image_reference,
        "replicas": POSITIVE,
        "storage_size": STORAGE,
        "storage_class": grammar.dns_subdomain,
        "password_iterations": between(MINIMUM_SUPPLIED_ITERATIONS, MAXIMUM_ITERATIONS,
                                       "every password CONNECT, right or wrong, costs the broker's thread that "
                                       "many PBKDF2 rounds"),
        "factory_zones": pattern(grammar.SHORT_NAME),
        "ca_cert_pem": certificates,
        "server_cert_pem": certificates,
        "server_key_pem": private_key,
        "service_type": SERVICE_TYPE,
        "load_balancer_source_ranges": grammar.cidr,
        "max_replicas": POSITIVE,
        "internal_clients": grammar.label_value,
    },
    "Autoscaling": {
        "min_replicas": POSITIVE,
        "max_replicas": POSITIVE,
        "target_cpu_percent": POSITIVE,
    },
    "BrokerSettings": {
        "internal_port": PORT,
        "autosave_interval": between(0, C_INT_MAX),
        "session_expiry": grammar.duration,
        "max_connections": POSITIVE,
        "max_queued_messages": between(0, C_INT_MAX, "0: no maximum"),
        "max_inflight_messages": between(0, 65535, "0: no maximum"),
        "max_packet_size": between(20, 268_435_455, "mosquitto's least and MQTT's largest"),
        "max_keepalive": between(0, 65535),
        "max_queued_bytes": between(0, C_INT_MAX, "0: no maximum"),
    },
    "ListenerSpec": {
        "name": grammar.port_name,
        "port": PORT,
        "protocol": one_of("mqtt", "websockets"),
        "tls_version": one_of("tlsv1.2", "tlsv1.3"),
        "source_ranges": grammar.cidr,
    },
    "BrokerUser": {
        "name": pattern(grammar.USER_NAME),
        "role": one_of("admin", "device", "edge-node", "host-application", "dashboard", "service", "bridge"),
        "zone": pattern(grammar.SHORT_NAME),
        "groups": pattern(grammar.GROUP_ID),
        "rotation": between(0, MAX_ROTATION),
    },
    "AclRule": {
        "access": ACCESS,
        "topic": grammar.topic_filter_for_acl,
    },
    "ClientCertificate": {
        "cert_pem": certificates,
        "key_pem": private_key,
    },
    "ContainerResources": {
        "cpu_request": CPU,
        "cpu_limit": CPU,
        "memory_request": MEMORY,
        "memory_limit": MEMORY,
    },
    # HaProxyFrontend
    "HaProxyFrontendArgs": {
        "namespace": grammar.dns_label,
        "image": grammar.image_reference,
        "replicas": POSITIVE,
        "broker_servers": grammar.dns_subdomain,
        "broker_selector": grammar.label_value,
        "internal_port": PORT,
        "check_name": grammar.dns_subdomain,
        "ca_cert_pem": certificates,
        "topology": one_of("active-active", "active-standby"),
        "timeout_seconds": between(1, C_INT_MAX // 1000, "HAProxy counts milliseconds in a C int"),
        "stick_expiry_seconds": POSITIVE,
        "maxconn": POSITIVE,
        "server_maxconn": POSITIVE,
        "service_type": SERVICE_TYPE,
        "load_balancer_source_ranges": grammar.cidr,
    },
    "FrontendPort": {
        "name": grammar.port_name,
        "port": PORT,
        "broker_port": PORT,
        "scheme": one_of("mqtt", "mqtts", "ws", "wss"),
        "source_ranges": grammar.cidr,
    },
    "FloodLimits": {
        "connection_rate": POSITIVE,
        "rate_period_ms": between(1, MAX_RATE_PERIOD_MS, "HAProxy's longest timer"),
        "concurrent_connections": POSITIVE,
        "exempt_sources": grammar.cidr,
    },
    # NfsStorage
    "NfsStorageArgs": {
        "server": grammar.host_name,
        "path": pattern(grammar.NFS_PATH),
        "version": one_of("3", "4", "4.1", "4.2"),
        "namespace": grammar.dns_label,
        "statefulset": lambda value: grammar.dns_1035_label(value, STATEFULSET_NAME_MAX),
        "claim_template": grammar.dns_label,
        "count": POSITIVE,
        "size": STORAGE,
    },
    # Pki
    "PkiArgs": {
        "organization": pattern(grammar.PRINTABLE_64),
        "ca_validity_hours": POSITIVE,
        "leaf_validity_hours": POSITIVE,
        "early_renewal_hours": between(0, C_INT_MAX),
        "server_common_name": pattern(grammar.PRINTABLE_64),
        "server_dns_names": lambda value: grammar.san_dns_name(value, ip_key="server_ip_addresses"),
        "server_ip_addresses": grammar.ip_address,
        "client_names": pattern(grammar.USER_NAME),
        "client_rotations": between(0, MAX_ROTATION),
        "existing_ca_cert_pem": certificates,
        "existing_ca_key_pem": private_key,
    },
    # CloudBridge
    "CloudBridgeArgs": {
        "namespace": grammar.dns_label,
        "provider": one_of("aws-iot-core", "azure-iot-hub", "mqtt"),
        "endpoint": grammar.host_name,
        "port": PORT,
        "keepalive": between(5, 65535),
        "estate_addresses": _host_port,
        "estate_selector": grammar.label_value,
        "estate_port": PORT,
        "ca_cert_pem": certificates,
        "storage_size": STORAGE,
        "storage_class": grammar.dns_subdomain,
        "image": grammar.image_reference,
    },
    "BridgeMapping": {
        "topic": grammar.bridge_topic,
        "direction": one_of("out", "in", "both"),
        "qos": one_of(0, 1, 2),
        "local_prefix": grammar.topic_prefix,
        "remote_prefix": grammar.topic_prefix,
    },
    "BufferLimits": {
        "max_queued_messages": between(1, C_INT_MAX),
        "max_queued_bytes": between(1024, C_INT_MAX),
        "max_packet_size": between(20, 268_435_455, "mosquitto's least and MQTT's largest"),
    },
    "AzureIotArgs": {
        "hub_name": grammar.dns_label,
        "auth": one_of("x509", "sas"),
        "sas_validity_seconds": between(3600, 365 * 86400),
    },
    "MqttRemoteArgs": {
        "trust": one_of("system", "estate"),
        "protocol_version": one_of("mqttv311", "mqttv50"),
    },
    "KeySpec": {
        "algorithm": one_of("ECDSA", "RSA"),
        "ecdsa_curve": one_of("P256", "P384"),
        "rsa_bits": one_of(2048, 3072, 4096),
    },
    # MosquittoBroker's backup and BackupBucket (components/backup_rules.py)
    "BrokerBackup": {
        "image": grammar.image_reference,
        "interval_seconds": between(backup_rules.MIN_INTERVAL_SECONDS, backup_rules.MAX_INTERVAL_SECONDS,
                                    "each backup makes mosquitto write its whole database"),
    },
    "BackupStore": {
        "name": backup_rules.bucket_name,
        "region": backup_rules.store_region,
        "endpoint": backup_rules.endpoint,
        "prefix": backup_rules.key_prefix,
    },
    "BackupLock": {
        "mode": one_of(*backup_rules.LOCK_MODES),
        "days": between(1, backup_rules.MAX_DAYS),
    },
    "BackupCredentials": {
        "secret_name": grammar.dns_subdomain,
        "access_key_id_key": grammar.config_map_key,
        "secret_access_key_key": grammar.config_map_key,
        "service_account_annotations": backup_rules.annotation_value,
    },
    "BackupRestore": {
        "request": backup_rules.restore_request,
        "target": backup_rules.restore_target,
    },
    "BackupBucketArgs": {
        "bucket": backup_rules.bucket_name,
        "region": backup_rules.aws_region,
        "prefix": backup_rules.key_prefix,
        "retention_days": between(1, backup_rules.MAX_DAYS),
        "keep_versions": between(1, 100, "S3 keeps at most 100 newer noncurrent versions in a lifecycle rule"),
        "kms_key_arn": backup_rules.kms_key_arn,
    },
}
"""TypedDict -> field -> the grammar of each text or number it holds (of each item of a list, each value of a
map)."""

KEY_RULES: dict[str, dict[str, Check]] = {
    "MosquittoBrokerArgs": {"client_certificates": pattern(grammar.USER_NAME), "internal_clients": grammar.label_key},
    "HaProxyFrontendArgs": {"broker_selector": grammar.label_key},
    "CloudBridgeArgs": {"estate_selector": grammar.label_key},
    "PkiArgs": {"client_rotations": pattern(grammar.USER_NAME)},
    "BackupCredentials": {"service_account_annotations": backup_rules.annotation_key},
}
"""TypedDict -> field -> the grammar of the keys of a map."""

SECRET = {("BrokerUser", "password"), ("MosquittoBrokerArgs", "server_key_pem"), ("ClientCertificate", "key_pem"),
          ("PkiArgs", "existing_ca_key_pem"), ("AzureIotArgs", "device_key"), ("MqttRemoteArgs", "password")}
"""Fields whose values a message never shows."""


# --- walking the args along their TypedDicts ---------------------------------------------------------------------

UNKNOWN = (pulumi.Output, collections.abc.Awaitable)
"""Values not known at construct time: skipped."""
_WALKS: dict[type, Walk] = {}


def _problem(out: list, loc: Loc, message: str) -> None:
    out.append(ConfigIssue(loc, message))


def _shown(value: Any, secret: bool) -> str:
    return "the value" if secret else grammar.quoted(value)


def _leaf(kind: type, expected: str, rule: Optional[Check], secret: bool) -> Walk:
    def walk(value: Any, loc: Loc, out: list) -> None:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            if not isinstance(value, UNKNOWN):
                verb = "is not valid" if secret else "is not allowed"
                _problem(out, loc, f"{_shown(value, secret)} {verb} (expected {expected})")
        elif rule is not None:
            problem = rule(value)
            if problem:
                _problem(out, loc, problem)
    return walk


def _mapping_like(value: Any, loc: Loc, out: list, expected: str) -> bool:
    """Whether a value that is not a dict is still a mapping to walk (an unknown one is skipped silently)."""
    if isinstance(value, collections.abc.Mapping):
        return True
    if not isinstance(value, UNKNOWN):
        _problem(out, loc, f"{grammar.quoted(value)} is not allowed (expected {expected})")
    return False


def _sequence(item: Walk) -> Walk:
    def walk(value: Any, loc: Loc, out: list) -> None:
        if not isinstance(value, (list, tuple)):
            if not isinstance(value, UNKNOWN):
                _problem(out, loc, f"{grammar.quoted(value)} is not allowed (expected a list)")
            return
        for index, entry in enumerate(value):
            item(entry, loc + (index,), out)
    return walk


def _mapping(key_rule: Optional[Check], item: Walk) -> Walk:
    def walk(value: Any, loc: Loc, out: list) -> None:
        if not isinstance(value, dict) and not _mapping_like(value, loc, out, "a mapping"):
            return
        for key, entry in value.items():
            if not isinstance(key, str):
                _problem(out, loc, f"the key {grammar.quoted(key)} is not allowed (keys are text)")
                continue
            problem = key_rule(key) if key_rule else None
            if problem:
                _problem(out, loc, f"the key {problem}")
            item(entry, loc + (key,), out)
    return walk


def _optional(inner: Walk, optional: bool) -> Walk:
    def walk(value: Any, loc: Loc, out: list) -> None:
        if value is None:
            if not optional:
                _problem(out, loc, "None is not allowed (expected a value)")
            return
        inner(value, loc, out)
    return walk


def _typed_dict(spec: type) -> Walk:
    """The walker of a TypedDict: unknown and missing keys, then each field."""
    found = _WALKS.get(spec)
    if found is not None:
        return found
    fields: dict[str, Walk] = {}
    required = []
    for field, hint in spec.__annotations__.items():
        origin = get_origin(hint)
        if origin is Required or (spec.__total__ and origin is not NotRequired):
            required.append(field)
        if origin in (Required, NotRequired):
            hint = get_args(hint)[0]
        fields[field] = _compile(hint, spec.__name__, field)
    allowed = ", ".join(fields)

    def walk(value: Any, loc: Loc, out: list) -> None:
        if not isinstance(value, dict) and not _mapping_like(value, loc, out, f"a mapping of {allowed}"):
            return
        for key in value:
            if key not in fields:
                _problem(out, loc + (key,), f"unknown key (allowed: {allowed})")
        for key in required:
            if key not in value:
                _problem(out, loc + (key,), "is required")
        for key, entry in value.items():
            field_walk = fields.get(key)
            if field_walk is not None:
                field_walk(entry, loc + (key,), out)

    _WALKS[spec] = walk
    return walk


def _compile(hint: Any, owner: str, field: str) -> Walk:
    """The walker of one annotation: str, int, bool, a TypedDict, Sequence[...], Mapping[str, ...], Optional[...]
    and pulumi.Input[...] (whose Output and awaitable forms are skipped like any unknown value)."""
    origin, parts = get_origin(hint), get_args(hint)
    if origin is Union:
        plain = [p for p in parts if p is not type(None) and get_origin(p) is not collections.abc.Awaitable
                 and not isinstance(p, (str, ForwardRef))]  # pulumi.Input[T]: T, Awaitable[T], 'Output[T]'
        return _optional(_compile(plain[0], owner, field), type(None) in parts)
    if origin is collections.abc.Sequence:
        return _sequence(_compile(parts[0], owner, field))
    if origin is collections.abc.Mapping:
        return _mapping(KEY_RULES.get(owner, {}).get(field), _compile(parts[1], owner, field))
    if isinstance(hint, type) and hasattr(hint, "__annotations__") and hasattr(hint, "__total__"):
        return _typed_dict(hint)
    expected = {str: "text", int: "a whole number", bool: "True or False"}[hint]
    return _leaf(hint, expected, RULES.get(owner, {}).get(field), (owner, field) in SECRET)


# --- cross-field rules ------------------------------------------------------------------------------------------
#
# They run once every value has its type and grammar, so they may index what the TypedDicts require; a value that
# is an Output is taken as absent (it cannot collide with anything we can see).

Issues = Iterator[ConfigIssue]


def _get(mapping: Any, key: str, default: Any = None) -> Any:
    """mapping[key], or `default` when it is absent or not known yet."""
    if mapping is None or isinstance(mapping, UNKNOWN):
        return default
    value = mapping.get(key, default)
    return default if isinstance(value, UNKNOWN) else value


def _known(values: Any) -> list:
    """The entries of a list that are known now (all of them for a list given as one Output: none)."""
    return [] if isinstance(values, UNKNOWN) or values is None else [v for v in values if not isinstance(v, UNKNOWN)]


def _requests_within_limits(loc: Loc, resources: Any, defaults) -> Issues:
    given = {f"{what}_{part}": _get(resources, f"{what}_{part}") for what in defaults for part in ("request", "limit")}
    for field, message in requests_above_limits(given, defaults):
        yield ConfigIssue(loc + (field,), message)


def _ranges_need_a_load_balancer(args: Mapping) -> Issues:
    """The API server refuses loadBalancerSourceRanges on any other Service type."""
    if _known(_get(args, "load_balancer_source_ranges")) and _get(args, "service_type", "ClusterIP") != "LoadBalancer":
        yield ConfigIssue(("load_balancer_source_ranges",), "is only allowed with service_type LoadBalancer (the "
                                                            "API server refuses it on a ClusterIP Service)")


def _broker(name: str, args: Mapping) -> Issues:
    from .broker import RESOURCES
    replicas = _get(args, "replicas", 1)
    brokers = max(_get(args, "max_replicas", replicas), replicas)
    internal = brokers > 1 or _get(args, "internal_listener", False)
    yield from _listeners(args["settings"], internal)
    if brokers > 1 and args.get("bridge_certificate") is None:
        yield ConfigIssue(("bridge_certificate",), f"is required with more than one broker ({brokers}: the pods "
                                                   "bridge to each other with it)")
    scaling = _get(args, "autoscaling")
    lowest, highest = _get(scaling, "min_replicas"), _get(scaling, "max_replicas")
    if lowest is not None and highest is not None and highest < lowest:
        yield ConfigIssue(("autoscaling", "max_replicas"), f"{highest} is below min_replicas {lowest}")
    elif highest is not None and highest > brokers:
        yield ConfigIssue(("autoscaling", "max_replicas"), f"{highest} is above max_replicas {brokers} "
                                                           "(mosquitto.conf and the certificates are made for that "
                                                           "many pods; raise max_replicas)")
    yield from _users(name, args)
    yield from listed_twice(("factory_zones",), _known(_get(args, "factory_zones")))
    yield from _requests_within_limits(("resources",), _get(args, "resources"), RESOURCES)
    yield from _ranges_need_a_load_balancer(args)
    yield from _backup(name, args, brokers, _get(_get(args, "resources"), "memory_limit", RESOURCES["memory"][1]))


def _backup(name: str, args: Mapping, brokers: int, memory_limit: str) -> Issues:
    """The backup's shared rules (components/backup_rules.py), and the database it needs."""
    from .backup_sidecar import CPU, MEMORY_REQUEST
    backup = _known_tree(_get(args, "backup"))
    if not backup:
        return
    if not _get(args["settings"], "persistence", True):
        yield ConfigIssue(("backup",), "needs settings.persistence True (without it mosquitto keeps no database to "
                                       "back up)")
    for path, message in backup_rules.problems(backup, name, brokers):
        yield ConfigIssue(("backup", *path), message)
    yield from _requests_within_limits(("backup", "resources"), backup.get("resources"),
                                       {"cpu": CPU, "memory": (MEMORY_REQUEST, memory_limit)})


def _known_tree(value: Any) -> Any:
    """A mapping with every value not known yet (an Output) left out, at any depth: taken as absent."""
    if isinstance(value, collections.abc.Mapping):
        return {key: _known_tree(item) for key, item in value.items() if not isinstance(item, UNKNOWN)}
    return None if isinstance(value, UNKNOWN) else value


def _listeners(settings: Any, internal: bool) -> Issues:
    """Names and ports are unique and not the estate's own; the internal listener's port is given and free."""
    loc = ("settings",)
    taken_ports = dict(reserved_ports(False))
    if internal and not isinstance(settings, UNKNOWN) and not isinstance(settings.get("internal_port"), UNKNOWN):
        port = settings.get("internal_port")
        if port is None:
            yield ConfigIssue(loc + ("internal_port",), "is required with more than one broker or internal_listener "
                                                        "True (the bridges and the frontend's health checks use it)")
        elif port in taken_ports:
            yield ConfigIssue(loc + ("internal_port",), f"{port} is reserved for {taken_ports[port]} (use another "
                                                        "port)")
        else:
            taken_ports[port] = "settings.internal_port"
    if _get(settings, "persistence"):
        for key in ("autosave_interval", "session_expiry"):
            if key not in settings:
                yield ConfigIssue(loc + (key,), "is required with persistence")
    listeners = _known(_get(settings, "listeners"))
    yield from _names_and_ports(loc + ("listeners",), listeners, reserved_listener_names(False), taken_ports,
                                "listener ")
    for i, lst in enumerate(listeners):
        at, listener = loc + ("listeners", i), _get(lst, "name")
        mtls = _get(lst, "require_certificate")
        if mtls and lst.get("tls", False) is False:
            yield ConfigIssue(at + ("require_certificate",), "True needs tls True on the same listener")
        elif mtls and _get(lst, "protocol") == "websockets":
            yield ConfigIssue(at + ("require_certificate",), "is not supported on websockets listeners (mosquitto "
                                                             "2.0 takes no user name from a certificate there)")
        if _get(lst, "allow_anonymous") and not mtls and listener == HEALTH_ACL_NAME:
            yield ConfigIssue(at + ("name",), f"{listener!r} is not allowed for an anonymous listener: its ACL file "
                                              f"would be the health listener's {HEALTH_ACL_NAME}.acl")


def _names_and_ports(loc: Loc, entries: list, reserved: Mapping[str, str], taken: Mapping[int, str],
                     what: str) -> Issues:
    """Each entry's name and port (listeners, frontend ports): unique, and not one the estate uses itself."""
    names: dict = {}
    ports: dict = {}
    for i, entry in enumerate(entries):
        at, label = loc + (i,), f"{key_path(loc)}[{i}]"
        entry_name, port = _get(entry, "name"), _get(entry, "port")
        if entry_name is not None:
            yield from name_taken(at + ("name",), entry_name, names, label, reserved, f"{what}names")
        repeated = already_used(at + ("port",), port, ports, label, f"{what}ports") if port is not None else None
        if repeated:
            yield repeated
        elif port in taken:
            yield ConfigIssue(at + ("port",), f"{port} is reserved for {taken[port]} (use another port)")


def _users(name: str, args: Mapping) -> Issues:
    """A user name once (mosquitto merges the ACL blocks of one name); zones from factory_zones; supplied
    passwords strong enough for the iteration count."""
    zones = _get(args, "factory_zones")
    iterations = _get(args, "password_iterations", SUPPLIED_ITERATIONS)
    context = _known(password_context(_get(args, "namespace", "mqtt"), name, _known(zones)))
    first: dict[str, int] = {}
    for i, user in enumerate(_known(_get(args, "users", ()))):
        loc, login = ("users", i), _get(user, "name")
        if login in first:
            yield ConfigIssue(loc + ("name",), f"{login!r} is given twice (as users[{first[login]}] too; mosquitto "
                                               "merges the ACL blocks of one name, so the second would share the "
                                               "first's rights)")
        elif login is not None:
            first[login] = i
        zone = _get(user, "zone")
        if zone is not None and zones is not None and zone not in _known(zones):
            yield ConfigIssue(loc + ("zone",), f"{zone!r} is not one of factory_zones ({', '.join(_known(zones))})")
        password = _get(user, "password")
        if isinstance(password, str) and login is not None and _get(user, "password_login", True):
            problem = supplied_password_problem(login, password, iterations, context)
            if problem:
                yield ConfigIssue(loc + ("password",), problem)


def _frontend(name: str, args: Mapping) -> Issues:
    from .haproxy_pod import RESOURCES
    taken = {STATS_PORT: "HAProxy's stats and metrics port", PEER_PORT: "HAProxy's peer-sync port"}
    yield from _names_and_ports(("ports",), _known(_get(args, "ports")), FRONTEND_SECTIONS, taken, "")
    yield from _requests_within_limits(("resources",), _get(args, "resources"), RESOURCES)
    yield from _ranges_need_a_load_balancer(args)


def _nfs(name: str, args: Mapping) -> Issues:
    path = _get(args, "path", "")
    if ".." in path.split("/"):
        yield ConfigIssue(("path",), f"{path!r} is not allowed (no '..' in export paths)")


def _pki(name: str, args: Mapping) -> Issues:
    yield from listed_twice(("client_names",), _known(_get(args, "client_names")))
    cert, key = args.get("existing_ca_cert_pem"), args.get("existing_ca_key_pem")
    if (cert is None) != (key is None):
        given, missing = ("existing_ca_cert_pem", "existing_ca_key_pem") if key is None else \
            ("existing_ca_key_pem", "existing_ca_cert_pem")
        yield ConfigIssue((missing,), f"is required with {given} (a brought CA is its certificate and key)")
    leaf, renewal = _get(args, "leaf_validity_hours", 8760), _get(args, "early_renewal_hours", 720)
    ca = _get(args, "ca_validity_hours", 87600)
    if renewal >= leaf:
        yield ConfigIssue(("early_renewal_hours",), f"{renewal} is not below leaf_validity_hours {leaf} (pulumi-tls "
                                                    "would re-issue the certificates on every `pulumi up`)")
    elif cert is None and renewal >= ca:
        yield ConfigIssue(("early_renewal_hours",), f"{renewal} is not below ca_validity_hours {ca} (pulumi-tls "
                                                    "would re-issue the CA on every `pulumi up`)")
    if isinstance(cert, str) and isinstance(key, str):
        from ..stacks.ca_check import check_existing_ca
        fields = {"caCertPem": "existing_ca_cert_pem", "caKeyPem": "existing_ca_key_pem"}
        for which, message in check_existing_ca(cert, key, leaf, _known(_get(args, "server_dns_names"))):
            yield ConfigIssue((fields[which],), message)


def _cloud_bridge(name: str, args: Mapping) -> Issues:
    """The provider profile (components/bridge_rules.py, shared with the stack-file check)."""
    from .bridge_rules import problems as profile_problems
    provider = _get(args, "provider")
    if provider in ("aws-iot-core", "azure-iot-hub", "mqtt"):
        for path, message in profile_problems(args):
            yield ConfigIssue(tuple(path), message)
    if provider == "azure-iot-hub" and not _get(args, "azure"):
        yield ConfigIssue(("azure",), "is required with provider azure-iot-hub (at least hub_name)")
    elif provider == "azure-iot-hub" and _get(args, "azure").get("auth") == "sas" and not _get(args, "azure").get("device_key"):
        yield ConfigIssue(("azure", "device_key"), "is required with auth sas (the device's primary key, base64)")


def _monitoring(name: str, args: Mapping) -> Issues:
    from .monitoring_rules import problems as monitoring_problems
    for key, message in monitoring_problems(_get(args, "scrape_interval", "30s"), _get(args, "alert_after", "1m"),
                                            _get(args, "selector_labels", {}) or {},
                                            _get(args, "runbook_url", "https://")):
        yield ConfigIssue((key,), message)
    if _get(args, "broker_replicas", 1) < 1:
        yield ConfigIssue(("broker_replicas",), "must be at least 1")


def _backup_bucket(name: str, args: Mapping) -> Issues:
    lock = _get(args, "lock")
    if lock and isinstance(_get(lock, "days"), int):
        retention = _get(args, "retention_days", backup_rules.DEFAULT_RETENTION_DAYS)
        problem = backup_rules.lock_problem(lock["days"], retention, "retention_days")
        if problem:
            yield ConfigIssue(("lock", "days"), problem)


CROSS: dict[str, Callable[[str, Mapping], Issues]] = {
    "MosquittoBroker": _broker, "HaProxyFrontend": _frontend, "NfsStorage": _nfs, "Pki": _pki,
    "CloudBridge": _cloud_bridge, "MonitoringStack": _monitoring, "BackupBucket": _backup_bucket}
"""Each component's cross-field rules; they run once every value has its type and grammar."""
NAMES: dict[str, Check] = {
    "MosquittoBroker": lambda name: grammar.dns_1035_label(name, STATEFULSET_NAME_MAX),
    "HaProxyFrontend": lambda name: grammar.dns_1035_label(name, STATEFULSET_NAME_MAX),
    "CloudBridge": lambda name: grammar.dns_1035_label(name, STATEFULSET_NAME_MAX),
}
"""The components whose resource name is also the name of their Kubernetes objects (StatefulSet, Services)."""


def check_arguments(component: str, name: str, args: Any, spec: type) -> None:
    """Raise ComponentArgumentsError listing every problem of `args` (a `spec` TypedDict) and of `name`."""
    out: list[ConfigIssue] = []
    naming = NAMES.get(component)
    name_problem = naming(name) if naming else None
    _typed_dict(spec)(args, (), out)
    if not out and not name_problem:
        out = list(CROSS[component](name, args))
    if not out and not name_problem:
        return
    head = f"{component} {safe_text(name)}:"
    lines = [f"{head} name: {name_problem}"] if name_problem else []
    lines += [f"{head} args{'.' + issue.path if issue.path else ''}: {issue.message}" for issue in out]
    raise ComponentArgumentsError(lines)


def problems(component: str, name: str, args: Any, spec: type) -> list[str]:
    """The lines check_arguments would raise, [] for valid args (for tests and tools)."""
    try:
        check_arguments(component, name, args, spec)
    except ComponentArgumentsError as error:
        return error.lines
    return []


__all__ = ["ComponentArgumentsError", "check_arguments", "problems", "RULES", "KEY_RULES", "CROSS"]
