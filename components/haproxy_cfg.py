"""haproxy.cfg for the MQTT frontend.

TLS is passed through (mode tcp), so brokers see client certificates and mTLS identities. Plain MQTT
frontends are inspected: non-MQTT traffic is rejected (`mqtt_is_valid`) and clients stick to a broker by
MQTT client id. TLS frontends can only be told apart from garbage by their ClientHello and stick by source.
Servers are the broker pods' stable DNS names up to the autoscaling maximum; pods that do not exist yet stay
unresolved (down) until they appear, so scaling never needs a config edit.

Health: one backend, `health`, checks every broker with a real MQTT CONNECT over mTLS; the servers of the client
backends `track` those servers instead of checking on their own. Each replica therefore opens one check
connection per broker per interval, whatever the number of listeners (it used to be one per listener).

Flood protection: every client frontend counts each source address's new and open connections in one table and
refuses a source above either limit at accept, before any byte is read (see _flood_rules).
"""

import re
from typing import Optional, Sequence, TypedDict

from typing_extensions import Required

from .mqtt_wire import connect_packet

CFG_DIR = "/usr/local/etc/haproxy"
CERT_DIR = "/usr/local/etc/haproxy/certs"
STATS_PORT = 8404
STATS_USERS = "stats_users"
"""The userlist of the stats page and the Prometheus endpoint: one user, from the stats Secret."""
PEER_PORT = 10000
CHECK_CLIENT_ID = ""
"""Empty: the broker assigns a fresh id, so checks from several replicas never take over each other's session."""
HEALTH_BACKEND = "health"
"""The one backend whose servers run the MQTT checks (a reserved listener name, see components/names.py)."""
SHARED_TABLE = "shared-subs"
"""The stick table every shared-subscription port follows: one entry, the broker all their consumers use."""
FLOOD_TABLE = "flood-limits"
"""The stick table of per-source connection counters that every client frontend of a replica tracks."""
CHECK_TIMING = "inter 2s downinter 1s fastinter 250ms fall 2 rise 2"
"""A check is three lines in a broker's log (connection, client connected, client disconnected, with
connection_messages true): every 2 s that is 1.5 lines/s per broker per HAProxy replica. A broker that fails one
check is checked again after 250 ms (fall 2: down within about 2.3 s of dying if no client notices first); a down
broker is probed every second and is back in rotation about 1.3 s after it answers again (rise 2 at fastinter)."""


STICK_EXPIRY_MAX = 24 * 86400
"""An entry expires this long after it was created or last matched by `stick on`, however long its client stays
connected; the maximum is "slightly above 24 days"; without `expire` an entry is only dropped when the table is
full (HAProxy v2.8.0 doc/configuration.txt:12395-12402)."""


DEFAULT_STICK_EXPIRY_SECONDS = 7 * 86400
"""mosquitto's session expiry in the shipped stacks (persistence.sessionExpiry 7d)."""


DEFAULT_CONNECTION_RATE = 20
DEFAULT_RATE_PERIOD = "10s"
"""20 new connections per 10 s per source: above a legitimate client whose every connection is closed at once and
that reconnects as fast as the estate's own tests let paho (0.1-1 s back-off: 13 connections in 10 s; paho's
default 1-120 s: 4), while a 50/s wrong-password flood gets 20 of its 500 CONNECTs to a broker; measured by
`python3 -m bench.flood_bench` (README, "Flood protection")."""
DEFAULT_CONCURRENT_CONNECTIONS = 100
"""Open connections per source: a device holds one, a gateway or host application a handful; 100 leaves room for
an edge PC with dozens of clients while one address can hold at most 100 of a replica's maxconn."""
MIN_RATE_PERIOD_MS = 1000
"""Shorter windows would count a burst of a few reconnects (one failover) as a flood."""
MAX_RATE_PERIOD_MS = STICK_EXPIRY_MAX * 1000
"""HAProxy takes times up to 2147483647 ms (~24.8 days): src/stick_table.c:955-965 at v2.8.0 refuses a longer
`expire` with "timer overflow", and a longer conn_rate period overflows the same parser (src/stick_table.c:866-871)."""
_TIME_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_TIME = re.compile(r"([0-9]{1,9})(ms|s|m|h|d)")


def time_problem(value: str) -> Optional[str]:
    """What is wrong with an HAProxy time (None when fine): a whole number and a unit, ms, s, m (minutes), h or d
    (HAProxy v2.8.0 doc/configuration.txt:967-981). The unit is required here: HAProxy reads a bare number as
    milliseconds, which "10" would hardly mean."""
    allowed = "a whole number followed by ms, s, m (minutes), h or d, as in 10s"
    if not isinstance(value, str):
        return f"{value!r} is not allowed (use {allowed})"
    found = _TIME.fullmatch(value)
    if found is None:
        return f"{value!r} is not an HAProxy time ({allowed})"
    if int(found[1]) == 0:
        return f"{value!r} is zero (use {allowed})"
    return None


def time_ms(value: str) -> int:
    """Milliseconds of a valid HAProxy time (see time_problem)."""
    found = _TIME.fullmatch(value)
    return int(found[1]) * _TIME_UNITS_MS[found[2]]


def _time(ms: int) -> str:
    """HAProxy time text for a number of milliseconds (whole seconds when it is one)."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def stick_expiry(seconds: int) -> str:
    """HAProxy time format for a stick-table `expire` (days when whole, else seconds), capped at the maximum."""
    seconds = max(1, min(seconds, STICK_EXPIRY_MAX))
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else f"{seconds}s"


def server_id(ordinal: int) -> str:
    """HAProxy's name for the server of broker ordinal N, the same in every backend (`track` pairs them by it)."""
    return f"b{ordinal}"


def mqtt_connect_hex(client_id: str, keepalive: int = 10) -> str:
    """An MQTT 3.1.1 CONNECT (clean session, no credentials: the check's identity is its certificate).

    A zero-length client id is allowed with a clean session (MQTT 3.1.1, 3.1.3-7)."""
    return connect_packet(client_id, keepalive=keepalive).hex()


CONNACK_ACCEPTED_HEX = "20020000"
DISCONNECT_HEX = "e000"


class FrontendPort(TypedDict, total=False):
    """A port the frontend accepts clients on, forwarding to one broker listener."""

    name: Required[str]
    """Port name in the frontend's Service and pods (at most 15 characters); a client port reuses its broker
    listener's name."""
    port: Required[int]
    """Port clients connect to."""
    broker_port: int
    """The broker listener it forwards to (default: the same port)."""
    shared: bool
    """A shared-subscription port: every client of every such port goes to one broker (see _shared_backend)."""
    tls: bool
    """The broker listener speaks TLS: passed through untouched, clients stick to a broker by source address."""
    scheme: str
    """URL scheme clients use (mqtt, mqtts, wss); only for the endpoints output."""
    source_ranges: Sequence[str]
    """CIDRs that may connect (the listener's sourceRanges); empty: every source."""


class FloodLimits(TypedDict, total=False):
    """Per-source connection limits of every client frontend (defaults: the DEFAULT_* constants above)."""

    enabled: bool
    """False renders no tracking and no limits (default True)."""
    connection_rate: int
    """New connections one source may open per rate period on one replica; the next one is refused (default 20)."""
    rate_period_ms: int
    """The window conn_rate averages over, in milliseconds (1 s to 24 days; default 10 s)."""
    concurrent_connections: int
    """Open connections one source may hold on one replica; the next one is refused (default 100)."""
    exempt_sources: Sequence[str]
    """CIDRs never counted (a NAT gateway in front of a whole cell); they still pass the listener's sourceRanges."""


class HaProxySettings(TypedDict, total=False):
    ports: Sequence[FrontendPort]
    servers: Sequence[str]
    """Broker pod DNS names in ordinal order, as many as the autoscaling maximum."""
    check_port: int
    """The brokers' internal mTLS listener, used for MQTT-level health checks."""
    check_name: str
    """SNI/verifyhost for checks: a name in the broker server certificate."""
    topology: str
    """active-standby: every client on the first healthy broker, non-preemptive; active-active: spread."""
    peers: Sequence[str]
    """HAProxy replica DNS names (stick tables are shared between them)."""
    timeout_seconds: int
    stick_expiry_seconds: int
    """How long a client id (or source) keeps its broker after its last connection: the brokers' session
    expiry, so a client that comes back finds its session (at most HAProxy's limit, STICK_EXPIRY_MAX)."""
    maxconn: int
    server_maxconn: int
    flood: FloodLimits
    """Per-source limits (absent: on, with the defaults)."""


def render_haproxy_cfg(s: HaProxySettings) -> str:
    timeout = s["timeout_seconds"]
    lines = [
        "# Generated by mqtt-estate.",
        "global",
        "    log stdout format raw local0 notice",
        f"    maxconn {s['maxconn']}",
        "    stats socket /tmp/haproxy.sock mode 600 level admin",
        "",
        "defaults",
        "    log global",
        "    mode tcp",
        "    option tcplog",
        "    option dontlognull",
        "    timeout connect 2s",
        f"    timeout client {timeout}s",
        f"    timeout server {timeout}s",
        "    timeout check 2s",
        "    retries 2",
        "    option redispatch 1",
        "",
        "resolvers cluster",
        "    parse-resolv-conf",
        "    resolve_retries 3",
        "    timeout resolve 1s",
        "    timeout retry 1s",
        "    hold valid 5s",
        "    hold nx 2s",
        "    hold obsolete 5s",
        "",
        "peers replicas",
    ]
    lines += [f"    peer {peer.split('.')[0]} {peer}:{PEER_PORT}" for peer in s["peers"]]
    lines += [
        "",
        f"userlist {STATS_USERS}",
        # the credentials come from the mounted Secret through the environment (haproxy_start.sh); HAProxy
        # expands "$VAR" inside double quotes on every configuration line (HAProxy v2.8.0 src/cfgparse.c:1844-1846,
        # src/tools.c:5651; doc/configuration.txt:738-740, whose example is `user "$HAPROXY_USER"`, line 757)
        '    user "$STATS_USER" insecure-password "$STATS_PASSWORD"',
        "",
        "frontend stats",
        "    mode http",
        f"    bind :{STATS_PORT}",
        # Every request needs the credentials, the Prometheus endpoint's too: `use-service` answers during the
        # http-request rules (HAProxy v2.8.0 src/http_ana.c:385-414, src/stream.c:1007-1031,
        # doc/configuration.txt:8007-8020), before `stats auth` would be looked at, so with `stats auth` alone /metrics was
        # open to anyone who reached the port (measured with HAProxy 2.6: 200 without credentials). The auth
        # rule comes first, so it runs first (rules run in the order written).
        f"    http-request auth realm stats unless {{ http_auth({STATS_USERS}) }}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 10s",
    ]
    lines += _health_backend(s)
    flood = s.get("flood") or {}
    active_standby = s.get("topology", "active-standby") == "active-standby"
    expire = stick_expiry(s.get("stick_expiry_seconds", DEFAULT_STICK_EXPIRY_SECONDS))
    for port in s["ports"]:
        name, tls = port["name"], port.get("tls", False)
        lines += ["", f"frontend {name}", f"    bind :{port['port']}", f"    maxconn {s['maxconn']}"]
        if port.get("source_ranges"):
            # HAProxy 2.8 doc/configuration.txt (tag v2.8.0): `tcp-request connection reject` drops a connection
            # right after accept, before any content rule (13124-13137, 13231-13236); `src` is the client's TCP
            # source address (20285-20290), matched against IPv4 and IPv6 networks (17485-17515)
            lines += [f"    tcp-request connection reject unless {{ src {' '.join(port['source_ranges'])} }}"]
        lines += _flood_rules(flood)
        lines += ["    tcp-request inspect-delay 5s"]
        if tls:
            lines += ["    tcp-request content reject unless { req.ssl_hello_type 1 }"]
        else:
            lines += ["    tcp-request content reject unless { req.payload(0,0),mqtt_is_valid }"]
        lines += [f"    default_backend {name}"]
        lines += ["", f"backend {name}"]
        if port.get("shared"):
            lines += _shared_backend()
        elif active_standby:
            lines += ["    # one broker serves everyone; it keeps serving after the others come back (non-preemptive);",
                      "    # one entry that never expires (a table without expire only drops entries when full)",
                      "    balance first",
                      "    stick-table type integer size 1 peers replicas",
                      "    stick on int(1)"]
        elif tls:
            lines += ["    # a source keeps its broker as long as the brokers keep its session; consistent hashing so a",
                      "    # connection redispatched from a dead broker is sent to another one (see _source_balance)",
                      *_source_balance(),
                      f"    stick-table type ipv6 size 1m expire {expire} peers replicas",
                      "    stick on src"]
        else:
            lines += ["    # a client id keeps its broker as long as the brokers keep its session",
                      "    balance roundrobin",
                      f"    stick-table type string len 128 size 1m expire {expire} peers replicas",
                      "    stick on req.payload(0,0),mqtt_field_value(connect,client_identifier)"]
        lines += [
            f"    # health: each server follows {HEALTH_BACKEND}/<same name>; a connection a broker refuses is retried",
            "    # on another one (retries, option redispatch), and a broker marked down loses its sessions",
            f"    default-server init-addr none resolvers cluster on-marked-down shutdown-sessions "
            f"maxconn {s['server_maxconn']}",
        ]
        broker_port = port.get("broker_port", port["port"])
        lines += [f"    server {server_id(i)} {server}:{broker_port} track {HEALTH_BACKEND}/{server_id(i)}"
                  for i, server in enumerate(s["servers"])]
    if any(port.get("shared") for port in s["ports"]):
        lines += ["", f"backend {SHARED_TABLE}",
                  "    # no servers: it holds the one broker that every shared-subscription consumer is sent to;",
                  "    # no expire: the entry stays while the group lives, so a quiet week never splits a group",
                  "    stick-table type integer size 1 peers replicas"]
    lines += _flood_table(flood, s["maxconn"])
    return "\n".join(lines) + "\n"


def _flood_rules(flood: FloodLimits) -> list[str]:
    """A client frontend's per-source limits, right after the listener's source check (HAProxy v2.8.0
    doc/configuration.txt; HAProxy 2.6, run by the local estate, reads them alike):

      - `tcp-request connection` rules run right after accept, before anything is read, in their declaration order
        (13124-13137): the source check first, then these. `accept if { src ... }` ends the connection rules
        (13208-13209), so an exempt source is never tracked and never limited; it still had to pass the source check.
      - `track-sc0 src table <t>` (13311-13316, described at 7956-7997) looks the source up in <t>, creating the
        entry. Tracking itself counts the connection: conn_cur and conn_rate are incremented when tracking starts
        (7989-7992: "connection counters ... are systematically updated"; src/stream.h:193-218 at v2.8.0,
        stream_start_counters, called from the tcp-request connection track action, src/tcp_rules.c:750-756), so
        the rules below compare counts that include the connection being judged, and a refused connection still
        counts: a source that keeps flooding stays refused until it slows down (the doc's own example,
        13191-13196). conn_cur drops when a connection ends (12523-12527).
      - `src` is the TCP source address (20285-20290): on an ipv6 table an IPv4 client is stored as its IPv4-mapped
        IPv6 address, so one table holds both families.
      - `sc0_conn_rate` is the tracked entry's connections per the table's period, `sc0_conn_cur` its open
        connections (20038-20051). `gt N` refuses the (N+1)th.
      - a refused connection never becomes a session, is not logged, and is counted as a denied connection
        (13232-13240; stats field dcon, src/stats.c:246, Prometheus haproxy_frontend_denied_connections_total,
        addons/promex/service-prometheus.c:285), so a flood does not flood the logs.
    """
    if not flood.get("enabled", True):
        return []
    rate = flood.get("connection_rate", DEFAULT_CONNECTION_RATE)
    concurrent = flood.get("concurrent_connections", DEFAULT_CONCURRENT_CONNECTIONS)
    lines = ["    # flood protection: new and open connections per source address, counted on this replica"]
    if flood.get("exempt_sources"):
        lines += [f"    tcp-request connection accept if {{ src {' '.join(flood['exempt_sources'])} }}"]
    return lines + [f"    tcp-request connection track-sc0 src table {FLOOD_TABLE}",
                    f"    tcp-request connection reject if {{ sc0_conn_rate gt {rate} }}",
                    f"    tcp-request connection reject if {{ sc0_conn_cur gt {concurrent} }}"]


def _flood_table(flood: FloodLimits, maxconn: int) -> list[str]:
    """The one table every client frontend of a replica counts sources in (HAProxy v2.8.0 doc/configuration.txt).

    Type ipv6 (12342-12345), so IPv4 and IPv6 clients share it (see _flood_rules). It stores conn_rate over the
    period (12529-12533) and conn_cur (12523-12527). Size: every live connection pins its source's entry, so up to
    maxconn entries are in use, plus as many recently seen sources; when full, HAProxy drops the oldest unused
    entries (12373-12383), about 60 bytes each plus 16 for the counters. Expire: two periods; a frequency counter
    reads zero once two periods have passed without an event (src/freq_ctr.c:128-146 at v2.8.0), and an entry
    with open connections never expires (7994-7996).

    Not shared through `peers`: conn_cur is never learned from peers (3712-3718), so the concurrent limit is per
    process whatever we do, and for conn_rate "the pushed values overwrite remote ones without aggregation"
    (3710-3712): a shared rate would be neither this replica's count nor the sum, only whichever replica wrote
    last. Each replica therefore counts what it sees itself, predictably: a source spread over R replicas may
    open up to R times the limits. A reload (start.sh, when peers change) starts the new process with an empty
    table; the old process keeps its connections and their counts until they close.
    """
    if not flood.get("enabled", True):
        return []
    period = flood.get("rate_period_ms", time_ms(DEFAULT_RATE_PERIOD))
    expire = min(2 * period, STICK_EXPIRY_MAX * 1000)
    return ["", f"backend {FLOOD_TABLE}",
            "    # no servers: connection counters per source address for every client frontend of this replica;",
            "    # no peers: conn_cur is never learned from peers and shared rates overwrite instead of adding up",
            f"    stick-table type ipv6 size {2 * maxconn} expire {_time(expire)} "
            f"store conn_rate({_time(period)}),conn_cur"]


def _source_balance() -> list[str]:
    """TLS clients are spread by source address, and a broker that dies must not take their retries with it.

    With the default map-based hash, a connection that failed on a dead broker and is redispatched (`retries`,
    `option redispatch`) hashes the same source over the same servers and lands on the same broker, which stays
    "up" until its health check fails (up to ~2 s): the lookup ignores the server to avoid, while the consistent
    one skips it (haproxy v2.8.0 src/backend.c:168-192, get_server_sh: chash_get_server_hash(px, h, avoid) against
    map_get_server_hash(px, h); called with the previous server at 736-744). bench/storm_bench.py: devices of a
    killed broker came back after 2-5 s with map-based, on their first retry (max 0.8 s) with consistent.
    Consistent hashing spreads less evenly (doc/configuration.txt:6025-6036), so a bounded load keeps any broker
    under 1.25 x the average of new assignments (hash-balance-factor, 5977-5998; needs `hash-type consistent`).
    The source table is ipv6 so IPv4 and IPv6 clients both stick: `src` on an ipv6 table maps IPv4 addresses
    (20285-20290), while an `ip` table stores IPv4 only (12337-12345)."""
    return ["    balance source", "    hash-type consistent", "    hash-balance-factor 125"]


def _shared_backend() -> list[str]:
    """Shared subscriptions: mosquitto balances a `$share/<group>/...` subscription among the group's members on
    one broker only, so every consumer of every shared port goes to the same broker.

    `balance first` picks the live server with the lowest id (HAProxy v2.8.0 doc/configuration.txt:4668-4673);
    the choice is stored under one key in a table that all shared ports name (`stick on <pattern> table <table>`,
    lines 12205-12213 and 12161-12167: a shared table holds server ids, which are positions in each backend, and
    every backend lists b0..bN in the same order) and that the replicas share through `peers`, so every replica
    sends new consumers where the others are. When that broker is marked down its sessions are shut
    (`on-marked-down shutdown-sessions`), the consumers reconnect, the stuck server is down and `option
    redispatch` sends them to the next live broker, which becomes the stored one; they stay there when the old
    broker comes back (non-preemptive), so a group is never split by a return
    (tests/test_mqtt5_estate.py::test_shared_group_survives_the_loss_of_its_broker).
    """
    return ["    # shared subscriptions: every consumer on one broker (a group is balanced within one broker only)",
            "    balance first",
            f"    stick on int(1) table {SHARED_TABLE}"]


def _health_backend(s: HaProxySettings) -> list[str]:
    """The only servers with checks; every client backend's server bN tracks health/bN.

    HAProxy 2.8 constraints this follows (doc: configuration.txt and src/ of the 2.8 branch, tag v2.8.0 in
    github.com/haproxy/haproxy; 2.8.16 is a bug-fix release of that branch):
      - `track [<proxy>/]<server>` copies another server's state (doc/configuration.txt:16646-16651);
      - a server cannot both check and track ("unable to enable checks and tracking at the same time!",
        src/server.c:2967-2968), and the tracked server must have a check (src/server.c:5293-5297), so the
        client backends' default-server carries no `check` and this one does;
      - `observe layer4` "requires to enable health checks" (doc/configuration.txt:16236-16239) and is ignored on
        a server without a check task (include/haproxy/check.h:115-122), so it would do nothing on the
        tracking servers, while this backend carries no traffic to observe: it is not used. A connection to a
        dead broker is retried elsewhere at once (`retries 2` with `option redispatch 1`), as before;
      - `init-addr none` with `resolvers` works on both sides: every server resolves its own name, a tracking
        server takes the tracked one's up/down/stopping state (src/server.c:1686-1690, 1717-1721) and its
        maintenance (a name that does not resolve puts a server in maintenance, which trackers inherit,
        src/server.c:1762-1793), and leaves maintenance in the tracked server's state (src/server.c:5538-5573);
      - `on-marked-down shutdown-sessions` acts on each tracking server when its state follows the tracked one
        down (src/server.c:5354-5365).
    """
    return [
        "",
        f"backend {HEALTH_BACKEND}",
        "    # health: a real MQTT CONNECT over mTLS to the internal listener; CONNACK 0 means healthy. The only",
        "    # checks: the client backends' servers track these, so each broker sees one check per interval",
        "    option tcp-check",
        "    tcp-check connect ssl",
        f"    tcp-check send-binary {mqtt_connect_hex(CHECK_CLIENT_ID)}",
        f"    tcp-check expect binary {CONNACK_ACCEPTED_HEX}",
        f"    tcp-check send-binary {DISCONNECT_HEX}",
        f"    default-server init-addr none resolvers cluster check check-ssl crt {CERT_DIR}/check.pem "
        f"ca-file {CERT_DIR}/ca.crt verify required verifyhost {s['check_name']} {CHECK_TIMING}",
    ] + [f"    server {server_id(i)} {server}:{s['check_port']}" for i, server in enumerate(s["servers"])]
