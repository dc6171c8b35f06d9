"""mosquitto.conf for a broker pod.

`per_listener_settings true` lets each listener carry its own authentication: the client-facing listeners
never allow anonymous clients unless asked, while a loopback-only health listener lets the exec probe read
`$SYS/broker/uptime` without credentials and without touching a TLS listener (no handshake noise in logs).
"""

from dataclasses import dataclass, field
from typing import Sequence, TypedDict

from typing_extensions import Required

from .users import AclRule

CONFIG_DIR = "/mosquitto/config"
AUTH_DIR = "/mosquitto/auth"
CERT_DIR = "/mosquitto/certs"
DATA_DIR = "/mosquitto/data"
HEALTH_PORT = 1880
HEALTH_TOPIC = "$SYS/broker/uptime"
HEALTH_ACL = "topic read $SYS/#\n"
"""The health listener's ACL: the probe reads the uptime, the exporter sidecar the whole `$SYS` tree (read only;
the listener is on the pod's loopback, so only the pod's own containers reach it)."""
BRIDGE_CERT_DIR = "/mosquitto/bridge"
RUN_DIR = "/mosquitto/run"
"""The broker's private copies of its password file and ACLs (mosquitto_auth_files.sh makes them at start and on
every reload), and its pid file: an emptyDir the reloader sidecar shares."""
PID_FILE = f"{RUN_DIR}/mosquitto.pid"
"""Written whether or not mosquitto runs as a daemon (eclipse/mosquitto v2.0.20 src/mosquitto.c:429-444, called
at 516): the reloader signals that process."""
START_SCRIPT = "start.sh"


class ListenerSpec(TypedDict, total=False):
    """A client-facing mosquitto listener, also a port of the broker's Services."""

    name: Required[str]
    """Listener and Service port name (a DNS-1123 label of at most 15 characters)."""
    port: Required[int]
    """TCP port the broker listens on."""
    protocol: str
    """mqtt or websockets (default mqtt)."""
    tls: bool
    """Serve TLS with the broker's server certificate (default False)."""
    tls_version: str
    """Minimum TLS version: tlsv1.2 (default) or tlsv1.3."""
    require_certificate: bool
    """mTLS: clients must present a certificate from our CA; its CN becomes the user name."""
    allow_anonymous: bool
    """Anonymous clients on this listener only, under an ACL file of its own, `<name>.acl` (_listener_block)."""
    anonymous_topics: Sequence[AclRule]
    """ACL rules for this listener's anonymous clients: the anonymous block of its ACL file."""
    source_ranges: Sequence[str]
    """CIDRs that may connect (the broker's NetworkPolicy, or the frontend's source check); empty: any."""


class BridgeSpec(TypedDict, total=False):
    upstreams: Sequence[str]
    """host:port of every lower ordinal, in order: the bridge joins the lowest one alive (a star, loop-free)."""
    client_id: str
    """Unique per pod; the certificate CN (shared by all bridges) is the identity the ACL sees."""


class BrokerSettings(TypedDict, total=False):
    """What mosquitto.conf says: listeners, persistence and per-client limits."""

    listeners: Required[Sequence[ListenerSpec]]
    """Client-facing listeners (the health and internal listeners are added by the component)."""
    internal_port: int
    """mTLS listener for bridges and frontend health checks; required with more than one broker or with the
    component's internal_listener."""
    allow_anonymous: bool
    """Anonymous clients on every listener without mTLS, under the shared ACL (grants them nothing); prefer a
    listener's own allow_anonymous."""
    persistence: Required[bool]
    """Keep sessions, subscriptions and retained messages in mosquitto.db on the data volume; with it,
    autosave_interval and session_expiry are required."""
    autosave_interval: int
    """Seconds between saves of the in-memory database (autosave_interval)."""
    session_expiry: str
    """How long a disconnected client's persistent session is kept (persistent_client_expiration), e.g. 7d."""
    max_connections: Required[int]
    """Client connections per listener (max_connections)."""
    max_queued_messages: Required[int]
    """QoS 1 and 2 messages queued per client beyond those in flight (max_queued_messages)."""
    max_inflight_messages: Required[int]
    """QoS 1 and 2 messages in flight per client (max_inflight_messages)."""
    max_packet_size: Required[int]
    """Largest MQTT packet accepted, in bytes (max_packet_size)."""
    max_keepalive: Required[int]
    """Longest keepalive a client may ask for, in seconds (max_keepalive)."""
    max_queued_bytes: int
    """Per-client cap on queued message bytes; 0 or absent: only max_queued_messages caps the queue."""


def _listener_block(lst: ListenerSpec, settings: BrokerSettings) -> list[str]:
    """One listener. A listener with its own allow_anonymous reads its own ACL file, `<name>.acl` (the auth
    Secret's key of that name, components/broker.py); every other listener reads the shared `acl`.

    With `per_listener_settings true` each listener reads its acl_file into its own security options, and an
    anonymous client's rules are the lines before any `user` line of that file (eclipse/mosquitto v2.0.20
    src/security_default.c: aclfile__parse keeps `user` NULL until the first `user` line, lines 512 and 607-621,
    and add__acl files those rules under the entry without a user name, lines 222-226 and 248-249;
    acl__find_acls gives a client without a user name that entry, lines 727-731). Topic rules are matched as
    written, with no %u/%c substitution (lines 404-424); a `pattern` line applies to anonymous clients too unless
    it names %u (lines 454-457); nothing else is granted (line 504). So the listener's file holds its own
    anonymous rules followed by the same user blocks as the shared file, and named users keep exactly their own
    rights there; the password file still applies, so a wrong password is refused, not downgraded to anonymous.
    """
    lines = [f"# {lst['name']}", f"listener {lst['port']}", f"protocol {lst.get('protocol', 'mqtt')}",
             f"max_connections {settings['max_connections']}"]
    if lst.get("require_certificate"):
        lines += ["allow_anonymous false", "use_identity_as_username true"]
    else:
        anonymous = lst.get("allow_anonymous") or settings.get("allow_anonymous")
        lines += [f"allow_anonymous {'true' if anonymous else 'false'}", f"password_file {RUN_DIR}/passwd"]
    acl = f"{lst['name']}.acl" if lst.get("allow_anonymous") and not lst.get("require_certificate") else "acl"
    lines.append(f"acl_file {RUN_DIR}/{acl}")
    if lst.get("tls"):
        lines += [f"cafile {CERT_DIR}/ca.crt", f"certfile {CERT_DIR}/tls.crt", f"keyfile {CERT_DIR}/tls.key",
                  f"tls_version {lst.get('tls_version', 'tlsv1.2')}",
                  f"require_certificate {'true' if lst.get('require_certificate') else 'false'}"]
    return lines


COMMON_GLOBALS = (
    "per_listener_settings true",
    "log_dest stdout",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    "connection_messages true",
    "sys_interval 10",
)
"""The first settings of every mosquitto.conf the estate writes (brokers and cloud bridges)."""


def health_listener(acl_file: str) -> list[str]:
    """The loopback-only listener the exec probe reads, anonymous under `acl_file` (a blank line first)."""
    return ["", "# health: loopback only, anonymous read of the uptime topic for the exec probe",
            f"listener {HEALTH_PORT} 127.0.0.1", "protocol mqtt", "max_connections 8",
            "allow_anonymous true", f"acl_file {acl_file}"]


def bridge_mtls(cafile: str, cert_dir: str) -> list[str]:
    """A bridge's verified mTLS to another mosquitto of the estate: the estate CA, a client certificate in
    `cert_dir` (tls.crt / tls.key), TLS 1.2 or newer, the server's name checked."""
    return [f"bridge_cafile {cafile}", f"bridge_certfile {cert_dir}/tls.crt", f"bridge_keyfile {cert_dir}/tls.key",
            "bridge_tls_version tlsv1.2", "bridge_insecure false"]


def bridge_notifications(connection: str) -> list[str]:
    """A bridge's state, `1` up and `0` down, as a retained message on this mosquitto only, at
    `$SYS/broker/connection/<connection>/state` (the exporter's mosquitto_bridge_connected).

    eclipse/mosquitto v2.0.11 (same lines a few later at v2.0.20): on connect the `1` is queued locally
    (src/bridge.c:510-526) and sent to the remote only without notifications_local_only (503-508, 518-524); the `0`
    is the bridge's will (218, 236), queued locally when the connection is lost (src/context.c:176-217) and left
    out of the CONNECT sent to the remote when notifications_local_only is true (lib/send_connect.c:107). So the
    remote, a cloud included, never sees a will or a `$SYS` publish. Before 2.0.15 a bridge that times out on
    keepalive left a stale `1` (fixed by lib/util_mosq.c:106-112 at v2.0.20, ChangeLog.txt:154-155): the alert on
    a cloud-bridge pod also reads its sessions left disconnected."""
    return ["notifications true", "notifications_local_only true",
            f"notification_topic $SYS/broker/connection/{connection}/state"]


def render_mosquitto_conf(settings: BrokerSettings) -> str:
    lines = [
        "# Generated by mqtt-estate. Changes here roll the StatefulSet (content hash in the pod template).",
        *COMMON_GLOBALS,
        # Nagle off on client sockets (default false, eclipse/mosquitto v2.0.20 src/conf.c:204, applied to each
        # accepted socket in src/net.c:175-180): a CONNACK or small PUBLISH is sent at once instead of waiting for
        # the ACK of what went before (bench/storm_bench.py saw the last connect of a storm take 51 -> 13 ms)
        "set_tcp_nodelay true",
        f"max_queued_messages {settings['max_queued_messages']}",
        f"max_inflight_messages {settings['max_inflight_messages']}",
        f"max_packet_size {settings['max_packet_size']}",
        f"max_keepalive {settings['max_keepalive']}",
        f"pid_file {PID_FILE}",
    ]
    if settings.get("max_queued_bytes"):
        lines.append(f"max_queued_bytes {settings['max_queued_bytes']}")
    if settings.get("persistence"):
        lines += ["persistence true", f"persistence_location {DATA_DIR}/",
                  f"autosave_interval {settings['autosave_interval']}",
                  f"persistent_client_expiration {settings['session_expiry']}"]
    else:
        lines.append("persistence false")
    lines += health_listener(f"{RUN_DIR}/health.acl")
    listeners = list(settings["listeners"])
    if settings.get("internal_port"):
        listeners.append({"name": "internal", "port": settings["internal_port"], "tls": True,
                          "tls_version": "tlsv1.2", "require_certificate": True})
    for lst in listeners:
        lines.append("")
        lines += _listener_block(lst, settings)
    return "\n".join(lines) + "\n"


def render_bridge(bridge: BridgeSpec) -> str:
    """The bridge of one pod to the brokers below it. Pod 0 has none: it is the hub while it lives.

    Every pod bridges `#` both ways to the lowest live ordinal below it, so the brokers always form a star
    around the lowest live ordinal: each message crosses at most two bridges and never comes back.

    MQTT 5 bridges (eclipse/mosquitto v2.0.20 src/bridge.c; 2.0.11 has the same lines, a few earlier):
      - properties travel: user properties, response topic, correlation data, content type, payload format and
        the remaining message expiry are forwarded as the message carries them, so request/response, expiry from
        offline queues and will properties hold across brokers;
      - no loops: both ends subscribe with no-local and retain-as-published (the local `#` subscription at
        lines 188-200, the remote one at lines 543-547), so a message never goes back over the bridge it came
        from, and retained flags arrive as published;
      - the hub keeps no session for a bridge: mosquitto 2.0 sends the bridge CONNECT without properties
        (send__connect(..., NULL) at lines 326 and 467), so the session expiry interval is 0 and the hub drops the
        bridge's session when it disconnects (src/handle_connect.c:552-558). A broker removed by scale-down, or a
        spoke that moves to a new hub, therefore leaves no queue behind on the old hub. (A bridge session expiry
        option, `bridge_session_expiry_interval`, exists only from mosquitto 2.1.)
      - the spoke keeps its own side: `local_cleansession false` gives the bridge's local session an expiry of
        never (lines 123-136), so what is published on the spoke while the hub is away is forwarded when the
        bridge comes back.
    """
    if not bridge.get("upstreams"):
        return ""
    return "\n".join([
        "",
        "# bridge: join the lowest live broker below this one (star topology, loop-free)",
        "connection estate-star",
        f"address {' '.join(bridge['upstreams'])}",
        "round_robin false",
        "topic # both 2",
        "bridge_protocol_version mqttv50",
        "try_private true",
        "cleansession false",
        "local_cleansession false",
        f"remote_clientid {bridge['client_id']}",
        f"local_clientid {bridge['client_id']}.local",
        *bridge_notifications("estate-star"),
        "keepalive_interval 10",
        "restart_timeout 1 5",
        "start_type automatic",
        *bridge_mtls(f"{CERT_DIR}/ca.crt", BRIDGE_CERT_DIR),
    ]) + "\n"


# --- reading a mosquitto.conf back, by mosquitto's own rules -------------------------------------------------
#
# Where an option takes effect depends on the option, not on where it is written. In eclipse/mosquitto v2.0.20
# src/conf.c, config__read_file_core() (line 723) keeps one `cur_listener` (the default listener until the first
# `listener` line, line 737; each `listener` line replaces it, lines 1384-1485) and one `cur_bridge` (each
# `connection` line replaces it, lines 1241-1288). A listener option always writes to cur_listener, a bridge
# option to cur_bridge (and fails without one: "Invalid bridge configuration"), a global option to the config:
# `persistence true` after a listener block is still global, a `listener` line does not end a bridge block and
# a `connection` line does not end a listener block. Authentication options go through
# conf__set_cur_security_options() (lines 74-81): the current listener's with `per_listener_settings true`,
# the global ones without it; at run time the final per_listener_settings decides which set is consulted
# (security_default.c mosquitto_acl_check_default, lines 385-390). Each value below is the line of src/conf.c
# (tag v2.0.20) where the option is parsed.

GLOBAL_OPTIONS: dict[str, int] = {
    "allow_duplicate_messages": 832, "autosave_interval": 917, "autosave_on_changes": 920,
    "check_retain_source": 1184, "clientid_prefixes": 1234, "connection_messages": 1289, "include_dir": 1327,
    "log_dest": 1519, "log_facility": 1574, "log_timestamp": 1609, "log_timestamp_format": 1611, "log_type": 1613,
    "max_inflight_bytes": 1665, "max_inflight_messages": 1669, "max_keepalive": 1678, "max_packet_size": 1685,
    "max_queued_bytes": 1692, "max_queued_messages": 1696, "memory_limit": 1700, "message_size_limit": 1708,
    "per_listener_settings": 1779, "persistence": 1785, "persistence_file": 1787, "persistence_location": 1789,
    "persistent_client_expiration": 1791, "pid_file": 1823, "queue_qos0_messages": 1880, "retain_available": 1920,
    "retry_interval": 1922, "set_tcp_nodelay": 1935, "sys_interval": 1982, "upgrade_outgoing_qos": 2138,
    "user": 2154, "websockets_log_level": 2172, "websockets_headers_size": 2178,
}
"""Options that always write to the global config, wherever they are written."""

LISTENER_OPTIONS: dict[str, int] = {
    "bind_interface": 930, "cafile": 1155, "capath": 1166, "certfile": 1173, "ciphers": 1187,
    "ciphers_tls1.3": 1194, "crlfile": 1291, "dhparamfile": 1298, "http_dir": 1305, "keyfile": 1377,
    "max_connections": 1648, "maximum_qos": 1657, "mount_point": 1715, "protocol": 1839, "psk_hint": 1873,
    "require_certificate": 1882, "socket_domain": 1966, "tls_engine": 2003, "tls_engine_kpass_sha1": 2010,
    "tls_keyform": 2023, "tls_version": 2034, "max_topic_alias": 2113, "use_identity_as_username": 2140,
    "use_subject_as_username": 2147, "use_username_as_clientid": 2158,
}
"""Options of the current listener (cur_listener): the last `listener` line, or the default listener before one."""

DEFAULT_LISTENER_OPTIONS: dict[str, int] = {"bind_address": 922, "port": 1826}
"""Deprecated options that always set the default listener (config->default_listener), never a `listener` block."""

SECURITY_OPTIONS: dict[str, int] = {
    "acl_file": 767, "allow_anonymous": 829, "allow_zero_length_clientid": 835, "plugin": 886,
    "auto_id_prefix": 909, "password_file": 1772, "psk_file": 1862,
}
"""Authentication options: per listener with per_listener_settings true, else global (conf.c lines 74-81)."""

PLUGIN_OPTION_PREFIXES = ("auth_opt_", "plugin_opt_")
"""auth_opt_* / plugin_opt_* (line 838) and auth_plugin_deny_special_chars (902) belong to the last plugin."""

BRIDGE_OPTIONS: dict[str, int] = {
    "address": 774, "bridge_attempt_unsubscribe": 938, "bridge_cafile": 949, "bridge_alpn": 966,
    "bridge_bind_address": 977, "bridge_capath": 988, "bridge_certfile": 1005, "bridge_identity": 1022,
    "bridge_insecure": 1037, "bridge_require_ocsp": 1051, "bridge_max_packet_size": 1062,
    "bridge_outgoing_retain": 1075, "bridge_keyfile": 1086, "bridge_protocol_version": 1103, "bridge_psk": 1129,
    "bridge_tls_version": 1144, "remote_clientid": 1201, "cleansession": 1212, "local_cleansession": 1223,
    "idle_timeout": 1312, "keepalive_interval": 1357, "local_clientid": 1486, "local_password": 1497,
    "local_username": 1508, "notifications": 1728, "notifications_local_only": 1739, "notification_topic": 1750,
    "remote_password": 1761, "restart_timeout": 1889, "round_robin": 1924, "start_type": 1937, "threshold": 1988,
    "topic": 2041, "try_private": 2127, "remote_username": 2161,
}
"""Options of the current bridge (cur_bridge): the last `connection` line."""

ALIASES = {"addresses": "address", "auth_plugin": "plugin", "clientid": "remote_clientid",
           "max_qos": "maximum_qos", "password": "remote_password", "retained_persistence": "persistence",
           "username": "remote_username"}
"""Second names conf.c accepts for one option (lines 774, 886, 1201, 1657, 1761, 1785, 2161)."""

BOOLEAN_OPTIONS = frozenset({
    "allow_anonymous", "allow_duplicate_messages", "allow_zero_length_clientid", "auth_plugin_deny_special_chars",
    "autosave_on_changes", "bridge_attempt_unsubscribe", "bridge_insecure", "bridge_outgoing_retain",
    "bridge_require_ocsp", "check_retain_source", "cleansession", "connection_messages", "local_cleansession",
    "log_timestamp", "notifications", "notifications_local_only", "per_listener_settings", "persistence",
    "queue_qos0_messages", "require_certificate", "retain_available", "round_robin", "set_tcp_nodelay",
    "try_private", "upgrade_outgoing_qos", "use_identity_as_username", "use_subject_as_username",
    "use_username_as_clientid"})
"""conf__parse_bool (line 2321) reads one token and takes true/1 and false/0: stored here as "true"/"false"."""

ONE_TOKEN_OPTIONS = frozenset({
    "autosave_interval", "bridge_max_packet_size", "idle_timeout", "keepalive_interval", "log_type",
    "max_connections", "max_inflight_bytes", "max_inflight_messages", "max_keepalive", "max_packet_size",
    "max_queued_bytes", "max_queued_messages", "max_topic_alias", "maximum_qos", "message_size_limit",
    "persistent_client_expiration", "port", "protocol", "socket_domain", "start_type", "sys_interval",
    "threshold", "websockets_headers_size", "websockets_log_level"})
"""Options read with one strtok_r token (conf__parse_int and friends): anything after it is ignored."""


def option_scope(key: str) -> str:
    """'global', 'listener', 'default-listener', 'security', 'plugin', 'bridge', 'section' or 'unknown'."""
    key = ALIASES.get(key, key)
    if key in ("listener", "connection"):
        return "section"
    if key in GLOBAL_OPTIONS:
        return "global"
    if key in LISTENER_OPTIONS:
        return "listener"
    if key in DEFAULT_LISTENER_OPTIONS:
        return "default-listener"
    if key in SECURITY_OPTIONS:
        return "security"
    if key.startswith(PLUGIN_OPTION_PREFIXES) or key == "auth_plugin_deny_special_chars":
        return "plugin"
    if key in BRIDGE_OPTIONS:
        return "bridge"
    return "unknown"


def c_atoi(text: str) -> int:
    """C atoi: leading sign and digits, 0 when there are none (how conf.c reads ports)."""
    digits = ""
    for i, ch in enumerate(text.strip()):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


def _value(key: str, rest: str) -> str:
    rest = rest.strip()
    if key in BOOLEAN_OPTIONS or key in ONE_TOKEN_OPTIONS:
        token = rest.split()[0] if rest.split() else ""
        if key in BOOLEAN_OPTIONS:
            return {"1": "true", "0": "false"}.get(token, token)
        return token
    return rest


@dataclass
class ListenerInfo:
    port: int
    bind: str | None
    name: str = ""
    protocol: str = "mqtt"
    tls: bool = False
    mtls: bool = False
    settings: dict = field(default_factory=dict)
    """What applies to this listener (last value of each): its own options, and the authentication options in
    force for it -- its own with per_listener_settings true, the global ones without."""
    line: int = 0
    """Line of its `listener` line (0 for the default listener)."""
    own: dict = field(default_factory=dict)
    """Only the options written for this listener (authentication options included when they were per listener)."""


@dataclass
class MosquittoConf:
    """A mosquitto.conf read back: global settings, listener blocks and bridge connections, in file order."""

    settings: dict[str, list[str]] = field(default_factory=dict)
    """Global options (every value in file order); authentication options too without per_listener_settings."""
    listeners: list[ListenerInfo] = field(default_factory=list)
    bridges: list[dict[str, list[str]]] = field(default_factory=list)
    per_listener_settings: bool = False
    errors: list[str] = field(default_factory=list)
    """What mosquitto itself would refuse (unknown options, bridge options before any `connection`, ...)."""


def _finish_listener(lst: ListenerInfo) -> None:
    own = lst.own
    lst.protocol = own.get("protocol", "mqtt") or "mqtt"
    lst.tls = bool(own.get("certfile") or own.get("psk_hint"))
    lst.mtls = own.get("require_certificate") == "true"


def _sets_default_listener(key: str, value: str) -> bool:
    """Whether an option written before any `listener` line makes mosquitto open the default listener."""
    if key == "max_connections":
        return c_atoi(value) >= 0
    if key == "maximum_qos":
        return value != "2"
    if key == "protocol":
        return value != "mqtt"
    if key == "allow_zero_length_clientid":
        return value != "true"
    return (key in LISTENER_OPTIONS or key in DEFAULT_LISTENER_OPTIONS or key in ("password_file", "psk_file", "plugin")
            or key.startswith(PLUGIN_OPTION_PREFIXES))


def parse_mosquitto_conf(conf: str) -> MosquittoConf:
    """Read a config the way mosquitto 2.0 does (see the option tables above); never raises on odd input."""
    parsed = MosquittoConf()
    text = conf if isinstance(conf, str) else ""
    default = ListenerInfo(0, None, "default")
    current: ListenerInfo = default          # conf.c line 737: cur_listener starts as the default listener
    bridge: dict[str, list[str]] | None = None
    section = "global"                       # only for options conf.c does not know (kept where written)
    global_security: dict[str, str] = {}
    plugin_home: dict[str, str] | None = None
    security_seen = False
    last_comment = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):             # conf.c line 753: a comment starts the line
            last_comment = line[1:].strip()
            continue
        parts = line.split(None, 1)
        key = ALIASES.get(parts[0], parts[0])
        rest = parts[1] if len(parts) > 1 else ""
        value = _value(key, rest)
        scope = option_scope(key)
        if key == "listener":
            tokens = rest.split()
            port = c_atoi(tokens[0]) if tokens else 0
            bind = tokens[1] if len(tokens) > 1 and not tokens[1].startswith("#") else None  # lines 1398-1402
            if not tokens or not 0 <= port <= 65535 or (port == 0 and bind is None):
                parsed.errors.append(f"line {number}: invalid listener {rest!r}")
            current = ListenerInfo(port, bind, last_comment.split(":")[0].strip(), line=number)
            parsed.listeners.append(current)
            section = "listener"
        elif key == "connection":
            name = rest.split()[0] if rest.split() else ""
            if not name:
                parsed.errors.append(f"line {number}: empty connection name")
            elif any(b["connection"][0] == name for b in parsed.bridges):
                parsed.errors.append(f"line {number}: duplicate bridge name {name!r}")  # lines 1246-1252
            bridge = {"connection": [name]}
            parsed.bridges.append(bridge)
            section = "bridge"
        elif scope == "global":
            parsed.settings.setdefault(key, []).append(value)
            if key == "per_listener_settings":
                if value == "true" and security_seen:  # line 1781
                    parsed.errors.append(f"line {number}: per_listener_settings after security settings")
                parsed.per_listener_settings = value == "true"
        elif scope == "listener":
            current.own[key] = value
        elif scope == "default-listener":
            default.own[key] = value
        elif scope == "security":
            security_seen = True
            target = current.own if parsed.per_listener_settings else global_security
            target[key] = value
            if not parsed.per_listener_settings:
                parsed.settings.setdefault(key, []).append(value)
            if key == "plugin":
                plugin_home = target
        elif scope == "plugin":
            if plugin_home is None:             # line 840: auth_opt_ without an auth_plugin
                parsed.errors.append(f"line {number}: {key} without a plugin")
            else:
                plugin_home[key] = value
                if plugin_home is global_security:
                    parsed.settings.setdefault(key, []).append(value)
        elif scope == "bridge":
            if bridge is None:
                parsed.errors.append(f"line {number}: {key} outside a bridge (no `connection` before it)")
            else:
                bridge.setdefault(key, []).append(value)
        else:
            parsed.errors.append(f"line {number}: unknown option {key!r}")
            if section == "bridge" and bridge is not None:
                bridge.setdefault(key, []).append(value)
            elif section == "listener":
                current.own[key] = value
            else:
                parsed.settings.setdefault(key, []).append(value)
        last_comment = ""

    # config__parse_args (conf.c lines 424-506): the default listener exists once any listener option, port,
    # bind_address, password_file, psk_file, plugin or allow_zero_length_clientid was given before any
    # `listener` line; it takes port 1883 unless `port` says otherwise, and comes after the `listener` blocks.
    if any(_sets_default_listener(key, value) for key, value in default.own.items()):
        default.port = c_atoi(default.own.get("port", "1883")) or 1883
        default.bind = default.own.get("bind_address") or None
        parsed.listeners.append(default)
    for lst in parsed.listeners:
        _finish_listener(lst)
        security = {} if parsed.per_listener_settings else global_security
        own = {k: v for k, v in lst.own.items()
               if parsed.per_listener_settings or option_scope(k) not in ("security", "plugin")}
        lst.settings = {**own, **security}
    return parsed


def parse_listeners(conf: str) -> list[ListenerInfo]:
    """Listener blocks in order (then the default listener, if any); a `# name` comment right before `listener`
    names it (as we render it). Each carries port, bind address, protocol, tls/mtls and its settings."""
    return parse_mosquitto_conf(conf).listeners
