"""Cross-field rules: what one value of a stack means for another.

pydantic checks each value's shape (stacks/model.py, with the real grammars of stacks/grammar.py); these rules
check the estate as a whole: names and ports that collide with each other or with what the estate makes for
itself (components/names.py), settings that would have no effect, limits that cannot fit the pod, certificate
lifetimes that would re-issue on every `pulumi up`. Each rule returns the problems it finds as ConfigIssues;
warnings are for settings that work but are most likely not what was meant.
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from typing import Iterator, Mapping, Optional

from ..components import backup_rules, bridge_rules, monitoring_rules
from ..components.arguments import STATEFULSET_NAME_MAX
from ..components.bridge_conf import conf_value
from ..components.cloud_profiles import azure_host
from ..components.credentials import supplied_password_problem
from ..components.names import (HEALTH_ACL_NAME, cloud_bridge_name, frontend_name, internal_users, pod_dns_names,
                              reserved_listener_names, reserved_ports, service_dns_names)
from ..components.haproxy_cfg import MAX_RATE_PERIOD_MS, MIN_RATE_PERIOD_MS, time_ms
from ..components.haproxy_pod import RESOURCES as FRONTEND_RESOURCES
from ..components.kube import requests_above_limits
from . import grammar
from .ca_check import check_existing_ca
from .errors import PROJECT, ConfigIssue, already_used, listed_twice, name_taken
from .model import (BRIDGE_KEY_PREFIX, BRIDGE_PASSWORD_PREFIX, BRIDGE_SECRET_PREFIXES, CA_SECRET_KEYS,
                    SECRET_KEY_PREFIX, Estate, Listener, Resources)

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
CONNECTION_MEMORY = 64 * 1024
"""Our estimate of what a broker needs per connection, TLS included (not read in OpenSSL's or mosquitto's source,
not measured here: a deliberately generous bound, so only a count that cannot possibly fit is refused)."""
MiB = 1024 * 1024

Issues = Iterator[ConfigIssue]


def cross_checks(estate: Estate, secrets: Mapping[str, Optional[str]]) -> list[ConfigIssue]:
    """Every cross-field error. `secrets` maps secret key -> plain value (None where it cannot be read)."""
    rules = (_namespace(estate), _listeners(estate), _replicas(estate), _autoscaling(estate), _frontend(estate),
             _shared_subscriptions(estate), _flood_protection(estate),
             _exposure(estate), _anonymous(estate), _key_specs(estate), _names(estate),
             _persistence(estate), _lists(estate), _resources(estate), _limits(estate), _users(estate), _secrets(estate, secrets),
             _pki(estate, secrets), _bridges(estate, secrets), _monitoring(estate), _backup(estate))
    return [issue for rule in rules for issue in rule]


def warnings(estate: Estate) -> list[ConfigIssue]:
    """Settings that work but are most likely a mistake."""
    found = []
    certificate_users = [u for u in estate.users if u.auth != "password"]
    for i, lst in enumerate(estate.broker.listeners):
        if lst.require_certificate and not certificate_users:
            found.append(ConfigIssue(["broker", "listeners", i, "requireCertificate"],
                                     "no user has auth: certificate or both, so nobody can log in on this listener yet"))
    for i, user in enumerate(estate.users):
        if user.role == "admin" and user.topics:
            found.append(ConfigIssue(["users", i, "topics"], "has no effect: an admin may already use every topic"))
    found += _anonymous_warnings(estate)
    found += _flood_warnings(estate)
    return found


def _flood_warnings(estate: Estate) -> list[ConfigIssue]:
    """Flood protection switched off: say what it exposes, before the policy pack refuses the render."""
    if not estate.frontend_enabled or estate.frontend.flood_protection.enabled:
        return []
    exposed = ("on a LoadBalancer frontend, any address outside the cluster"
               if estate.frontend.service.type == "LoadBalancer" else "any client address")
    return [ConfigIssue(["frontend", "floodProtection", "enabled"],
                        f"false: {exposed} may open connections as fast as it likes and keep the brokers hashing "
                        "wrong passwords, and the policy pack refuses it (frontend-flood-protection); list NAT "
                        "gateways in exemptSources instead")]


def _anonymous_warnings(estate: Estate) -> list[ConfigIssue]:
    """Anonymous access the policy pack will refuse: say so at the key, before a render is refused for it."""
    if estate.broker.auth.allow_anonymous:
        return [ConfigIssue(["broker", "auth", "allowAnonymous"], "lets anonymous clients connect to every listener "
                                                                  "without granting them a topic, and the policy pack "
                                                                  "refuses it (broker-no-anonymous); set "
                                                                  "allowAnonymous and anonymousTopics on the one "
                                                                  "listener that needs it instead")]
    return [ConfigIssue(["broker", "listeners", i, "sourceRanges"], f"is empty: every address that reaches port "
                                                                    f"{lst.port} connects without a password, and "
                                                                    "the policy pack refuses that "
                                                                    "(broker-anonymous-listener-restricted); name "
                                                                    "the sensors' networks")
            for i, lst in enumerate(estate.broker.listeners) if lst.allow_anonymous and not lst.source_ranges]


def _namespace(estate: Estate) -> Issues:
    name = estate.namespace.name
    if name in SYSTEM_NAMESPACES:
        yield ConfigIssue(["namespace", "name"], f"{name!r} is a Kubernetes system namespace (use a namespace of "
                                                 "the estate's own, e.g. mqtt-prod)")
    elif name == "default" and estate.namespace.create:
        yield ConfigIssue(["namespace", "name"], "'default' always exists and would get restricted pod security and "
                                                 "a default-deny NetworkPolicy (use a namespace of the estate's own)")


def _listeners(estate: Estate) -> Issues:
    broker = estate.broker
    frontend = estate.frontend_enabled
    reserved_names = reserved_listener_names(frontend)
    taken_ports = dict(reserved_ports(frontend))
    if estate.internal_listener:
        internal = broker.ha.internal_port
        if internal in taken_ports:
            yield ConfigIssue(["broker", "ha", "internalPort"], f"{internal} is already used by "
                                                                f"{taken_ports[internal]} (use a free port)")
        elif internal < 1024:
            yield _privileged(["broker", "ha", "internalPort"], internal, "broker")
        else:
            taken_ports[internal] = "broker.ha.internalPort (bridges and health checks)"
    seen_names: dict[str, str] = {}
    seen_ports: dict[int, str] = {}
    for i, lst in enumerate(broker.listeners):
        loc = ["broker", "listeners", i]
        yield from name_taken(loc + ["name"], lst.name, seen_names, f"listeners[{i}]", reserved_names, "names")
        yield from _port_taken(loc + ["port"], lst.port, seen_ports, f"listeners[{i}]", taken_ports,
                               "broker and HAProxy", "ports")
        if lst.require_certificate and not lst.tls:
            yield ConfigIssue(loc + ["requireCertificate"], "true needs tls: true on the same listener")
        elif lst.require_certificate and lst.protocol == "websockets":
            # mosquitto 2.0 takes the identity from the certificate only where it runs TLS itself
            # (v2.0.20 src/handle_connect.c:724 needs listener->ssl_ctx, which websockets listeners never get:
            # src/mosquitto.c:366-368 hands them to libwebsockets instead of net__socket_listen)
            yield ConfigIssue(loc + ["requireCertificate"], "is not supported on websockets listeners (mosquitto "
                                                            "2.0 cannot take the user name from the certificate "
                                                            "there); use an mqtt listener for certificate logins")
        if "tls_version" in lst.model_fields_set and not lst.tls:
            yield ConfigIssue(loc + ["tlsVersion"], "has no effect without tls: true on the same listener")


def _port_taken(loc: list, port: int, seen: dict, label: str, taken: Mapping[int, str], pods: str,
                what: str) -> Issues:
    """A port used by an earlier entry or by the estate itself, or one the unprivileged pods cannot open."""
    repeated = already_used(loc, port, seen, label, what)
    if repeated:
        yield repeated
    elif port in taken:
        yield ConfigIssue(loc, f"{port} is reserved for {taken[port]} (use another port)")
    elif port < 1024:
        yield _privileged(loc, port, pods)


def _privileged(loc: list, port: int, pods: str) -> ConfigIssue:
    return ConfigIssue(loc, f"{port} is a privileged port, which the unprivileged {pods} pods cannot open "
                            "(use 1024-65535)")


def _replicas(estate: Estate) -> Issues:
    ha = estate.broker.ha
    if ha.min_replicas and ha.max_replicas and ha.max_replicas < ha.min_replicas:
        yield ConfigIssue(["broker", "ha", "maxReplicas"], f"{ha.max_replicas} is below minReplicas {ha.min_replicas}")
    if estate.broker.replicas and ha.min_replicas and estate.broker.replicas != ha.min_replicas:
        yield ConfigIssue(["broker", "replicas"], "conflicts with broker.ha.minReplicas (set only one)")
    if ha.max_replicas and estate.broker.replicas and ha.max_replicas > estate.broker.replicas and not ha.min_replicas:
        yield ConfigIssue(["broker", "replicas"], "is fixed while broker.ha.maxReplicas asks for autoscaling "
                                                  "(set broker.ha.minReplicas instead)")


def _lists(estate: Estate) -> Issues:
    """Lists whose entries must be distinct: a repeat is a copy-paste slip that would hide a missing entry."""
    acl = estate.broker.acl
    if acl.factory:
        yield from listed_twice(["broker", "acl", "factory", "zones"], acl.factory.zones)
    if acl.sparkplug:
        yield from listed_twice(["broker", "acl", "sparkplug", "groups"], acl.sparkplug.groups)
    yield from listed_twice(["pki", "extraDnsNames"], [name.lower() for name in estate.pki.extra_dns_names])
    yield from listed_twice(["pki", "extraIpAddresses"], estate.pki.extra_ip_addresses)
    for loc, service in ((["broker", "service"], estate.broker.service), (["frontend", "service"], estate.frontend.service)):
        yield from listed_twice(loc + ["loadBalancerSourceRanges"], service.load_balancer_source_ranges)
    for i, user in enumerate(estate.users):
        yield from listed_twice(["users", i, "groups"], user.groups)


def _autoscaling(estate: Estate) -> Issues:
    ha = estate.broker.ha
    if not estate.clustered:
        for key in sorted(ha.model_fields_set & {"topology", "min_replicas", "max_replicas", "target_cpu_percent"}):
            if key == "min_replicas" and ha.min_replicas == 1:
                continue
            yield ConfigIssue(["broker", "ha", _camel(key)], "has no effect with a single broker (set "
                                                             "broker.ha.maxReplicas above 1 to cluster)")
    elif "target_cpu_percent" in ha.model_fields_set and estate.max_replicas <= estate.replicas:
        yield ConfigIssue(["broker", "ha", "targetCpuPercent"], "has no effect without autoscaling (set "
                                                                "broker.ha.maxReplicas above minReplicas)")


def _key_specs(estate: Estate) -> Issues:
    """rsaBits means nothing to an ECDSA key, ecdsaCurve nothing to an RSA one."""
    for key, spec in (("caKey", estate.pki.ca_key), ("leafKey", estate.pki.leaf_key)):
        unused = "rsa_bits" if spec.algorithm == "ECDSA" else "ecdsa_curve"
        if unused in spec.model_fields_set:
            yield ConfigIssue(["pki", key, _camel(unused)], f"has no effect with algorithm: {spec.algorithm}")


def _names(estate: Estate) -> Issues:
    """Certificate names that would only look like they work."""
    for i, name in enumerate(estate.pki.extra_dns_names):
        labels = name.lower().split(".")
        if labels[0] == "*" and len(labels) == 3 and labels[1] in REGISTRY_LABELS:
            yield ConfigIssue(["pki", "extraDnsNames", i], f"{name!r} covers a public suffix (every domain under "
                                                           f"{'.'.join(labels[1:])}); name your own domain")
        if name.lower() == "localhost":
            yield ConfigIssue(["pki", "extraDnsNames", i], "'localhost' is not allowed here (set pki.loopbackSans: "
                                                           "true, which is meant for kubectl port-forward)")
    for i, address in enumerate(estate.pki.extra_ip_addresses):
        ip = ipaddress.ip_address(address)
        if ip.is_unspecified or ip.is_multicast:
            yield ConfigIssue(["pki", "extraIpAddresses", i], f"{address!r} is not an address a client connects to "
                                                              "(give the LoadBalancer's address)")
        elif ip.is_loopback:
            yield ConfigIssue(["pki", "extraIpAddresses", i], f"{address!r} is a loopback address (set "
                                                              "pki.loopbackSans: true instead)")


REGISTRY_LABELS = ("co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go", "gob", "mil")
"""Second-level labels under which registries sell domains (co.uk, com.au, ac.jp, ...): '*.co.uk' is everyone's."""


def _frontend(estate: Estate) -> Issues:
    listeners = estate.broker.listeners
    if estate.frontend_enabled and not any(lst.through_frontend for lst in listeners):
        yield ConfigIssue(["frontend", "enabled"], "needs a listener with protocol: mqtt or tls: true "
                                                   "(plain websockets stay inside the cluster)")
    if estate.frontend.enabled is False and estate.clustered:
        yield ConfigIssue(["frontend", "enabled"], "false is not allowed with more than one broker "
                                                   "(clients must reach the tier through the frontend)")
    if not estate.frontend_enabled:
        for key in sorted(estate.frontend.model_fields_set - {"enabled"}):
            yield ConfigIssue(["frontend", _camel(key)], "has no effect without the frontend (set frontend.enabled: "
                                                         "true, or remove it)")


def _shared_subscriptions(estate: Estate) -> Issues:
    """Each shared port forwards to a listener the frontend carries, under a name and port of its own."""
    if not estate.frontend_enabled:
        return  # _frontend already says the key has no effect
    broker = estate.broker
    carried = {lst.name for lst in broker.listeners if lst.through_frontend}
    reserved_names = reserved_listener_names(True)
    taken_ports = {**reserved_ports(True), broker.ha.internal_port: "broker.ha.internalPort"}
    seen_names = {lst.name: f"broker.listeners[{i}]" for i, lst in enumerate(broker.listeners)}
    seen_ports = {lst.port: f"broker.listeners[{i}]" for i, lst in enumerate(broker.listeners)}
    seen_listeners: dict[str, int] = {}
    for i, shared in enumerate(estate.frontend.shared_subscriptions):
        loc = ["frontend", "sharedSubscriptions", i]
        if shared.listener not in carried:
            known = ", ".join(sorted(carried)) or "none"
            yield ConfigIssue(loc + ["listener"], f"{shared.listener!r} is not a listener the frontend carries "
                                                  f"(use one of: {known}; plain websockets stay inside the cluster)")
        elif shared.listener in seen_listeners:
            yield ConfigIssue(loc + ["listener"], f"{shared.listener!r} already has a shared-subscription port "
                                                  f"(frontend.sharedSubscriptions[{seen_listeners[shared.listener]}]; "
                                                  "one per listener)")
        else:
            seen_listeners[shared.listener] = i
        label = f"frontend.sharedSubscriptions[{i}]"
        yield from name_taken(loc + ["name"], shared.name, seen_names, label, reserved_names, "frontend port names")
        yield from _port_taken(loc + ["port"], shared.port, seen_ports, label, taken_ports, "HAProxy",
                               "frontend ports")


def _flood_protection(estate: Estate) -> Issues:
    """Per-source limits HAProxy would refuse, that could never be reached, or that would do nothing."""
    if not estate.frontend_enabled:
        return  # _frontend already says the key has no effect
    frontend = estate.frontend
    flood, loc = frontend.flood_protection, ["frontend", "floodProtection"]
    if not flood.enabled:
        for key in sorted(flood.model_fields_set - {"enabled"}):
            yield ConfigIssue(loc + [_camel(key)], "has no effect with enabled: false")
        return
    period = time_ms(flood.rate_period)
    if period < MIN_RATE_PERIOD_MS:
        yield ConfigIssue(loc + ["ratePeriod"], f"{flood.rate_period!r} is shorter than 1s: the few reconnects of "
                                                "one failover would count as a flood (use 1s to 24d)")
    elif period > MAX_RATE_PERIOD_MS:
        yield ConfigIssue(loc + ["ratePeriod"], f"{flood.rate_period!r} is longer than HAProxy's timers allow (use "
                                                "1s to 24d)")
    if flood.concurrent_connections > frontend.maxconn:
        yield ConfigIssue(loc + ["concurrentConnections"], f"{flood.concurrent_connections} is above frontend.maxconn "
                                                           f"{frontend.maxconn}, so it could never be reached (use "
                                                           f"at most {frontend.maxconn})")
    yield from _named_networks(loc + ["exemptSources"], flood.exempt_sources, "exempt",
                               "name the NAT gateways", "e.g. 10.40.0.1/32")


def _exposure(estate: Estate) -> Issues:
    broker = estate.broker
    if estate.frontend_enabled and broker.service.model_fields_set:
        yield ConfigIssue(["broker", "service"], "has no effect with a frontend: only the frontend is exposed "
                                                 "(set frontend.service instead)")
    for loc, service in ((["broker", "service"], broker.service), (["frontend", "service"], estate.frontend.service)):
        if service.load_balancer_source_ranges and service.type != "LoadBalancer":
            yield ConfigIssue(loc + ["loadBalancerSourceRanges"], "is only allowed with type: LoadBalancer")
        if service.skip_await and service.type != "LoadBalancer":
            yield ConfigIssue(loc + ["skipAwait"], "has no effect without type: LoadBalancer")
    service = estate.frontend.service if estate.frontend_enabled else broker.service
    names = estate.pki.extra_dns_names or estate.pki.extra_ip_addresses
    if service.type == "LoadBalancer" and any(lst.tls for lst in broker.listeners) and not names:
        yield ConfigIssue(["pki", "extraDnsNames"], "is required with a LoadBalancer: list the names clients use "
                                                    "to reach it (TLS goes through to the brokers, whose certificate "
                                                    "must carry them; IP addresses go in pki.extraIpAddresses)")


def _load_balancer(estate: Estate, lst: Listener) -> Optional[str]:
    """The key of the LoadBalancer Service that carries the listener outside the cluster, or None."""
    if estate.frontend_enabled:
        carried = lst.through_frontend and estate.frontend.service.type == "LoadBalancer"
        return "frontend.service.type" if carried else None
    return "broker.service.type" if estate.broker.service.type == "LoadBalancer" else None


def _anonymous(estate: Estate) -> Issues:
    """Anonymous access is per listener, for isolated networks only, with rules of its own and named sources."""
    broker = estate.broker
    listeners = broker.listeners
    if broker.auth.allow_anonymous and any(lst.allow_anonymous or lst.anonymous_topics for lst in listeners):
        yield ConfigIssue(["broker", "auth", "allowAnonymous"], "true opens every listener to anonymous clients, "
                                                                "which conflicts with per-listener allowAnonymous "
                                                                "(remove it and keep the listener's own)")
    anonymous = []
    for i, lst in enumerate(listeners):
        loc = ["broker", "listeners", i]
        exposed = _load_balancer(estate, lst)
        if lst.allow_anonymous:
            anonymous.append(i)
            if lst.require_certificate:
                yield ConfigIssue(loc + ["allowAnonymous"], "has no meaning with requireCertificate: true (every "
                                                            "client of an mTLS listener is its certificate); give "
                                                            "anonymous clients a listener of their own")
            elif exposed:
                yield ConfigIssue(loc + ["allowAnonymous"], f"true is not allowed on a listener exposed outside the "
                                                            f"cluster ({exposed}: LoadBalancer); anonymous access is "
                                                            "for isolated networks: serve it inside the cluster and "
                                                            "name the sensors' networks in sourceRanges")
            elif not any(rule.access != "deny" for rule in lst.anonymous_topics):
                yield ConfigIssue(loc + ["allowAnonymous"], "true needs anonymousTopics on the same listener: "
                                                            "anonymous clients would be granted nothing (list what "
                                                            "they may do, e.g. {access: write, topic: legacy/#})")
            elif lst.name == HEALTH_ACL_NAME:
                yield ConfigIssue(loc + ["name"], f"{lst.name!r} is not allowed for an anonymous listener: its ACL "
                                                  f"file would be the health listener's {lst.name}.acl (choose "
                                                  "another name)")
        elif lst.anonymous_topics:
            yield ConfigIssue(loc + ["anonymousTopics"], "has no effect without allowAnonymous: true on the same "
                                                         "listener")
        for j, rule in enumerate(lst.anonymous_topics):
            yield from _anonymous_topic(loc + ["anonymousTopics", j, "topic"], rule.topic)
        yield from _source_ranges(lst, loc + ["sourceRanges"], exposed)
    for k, rule in enumerate(broker.acl.patterns):
        if anonymous and "%u" not in rule.topic.split("/"):
            yield ConfigIssue(["broker", "acl", "patterns", k, "topic"],
                              f"{rule.topic!r} would also apply to the anonymous clients of broker.listeners"
                              f"[{anonymous[0]}] (mosquitto applies a pattern without %u to clients without a user "
                              "name); key it by %u, or grant anonymous clients their topics in anonymousTopics")


def _anonymous_topic(loc: list, topic: str) -> Issues:
    levels = topic.split("/")
    if grammar.matches_everything_from_depth(topic) is not None:
        yield ConfigIssue(loc, f"{topic!r} would let every anonymous client reach every topic (name the sensors' "
                               "own topics, e.g. legacy/#)")
    elif levels[0] in ("+", "#"):
        yield ConfigIssue(loc, f"{topic!r} starts with a wildcard, so anonymous clients would reach every tree "
                               "of that shape, other devices' commands included (root it in the sensors' own "
                               "topics, e.g. legacy/#)")
    elif levels[0].startswith("$"):
        yield ConfigIssue(loc, f"{topic!r} is not allowed for anonymous clients ($ topics are the broker's own, "
                               "e.g. $SYS; name the sensors' topics, e.g. legacy/#)")
    elif any(token in levels for token in ("%u", "%c")):
        yield ConfigIssue(loc, f"{topic!r} is not allowed for anonymous clients: they have no user name, and a "
                               "client id is whatever the client says (name the topics, e.g. legacy/line-1/#)")


def _named_networks(loc: list, ranges: list[str], verb: str, advice: str, example: str) -> Issues:
    """CIDR lists that must name networks: no range, and no set of ranges, covering every address; none twice."""
    open_ranges = [j for j, cidr in enumerate(ranges) if grammar.is_open_cidr(cidr)]
    for j in open_ranges:
        yield ConfigIssue(loc + [j], f"{ranges[j]!r} {verb}s every address ({advice}, {example})")
    if not open_ranges and grammar.ranges_cover_everything(ranges):
        yield ConfigIssue(loc, f"together {verb} every address ({advice})")
    yield from listed_twice(loc, ranges)


def _source_ranges(lst: Listener, loc: list, exposed: Optional[str]) -> Issues:
    """A listener's sourceRanges name networks: never everyone, and only where the source address survives."""
    ranges = lst.source_ranges
    yield from _named_networks(loc, ranges, "admit", "name the networks that may connect",
                               "e.g. the sensors' 10.30.0.0/24")
    if ranges and exposed == "broker.service.type":
        # a NetworkPolicy may see the node's or the load balancer's address instead of the client's (Kubernetes
        # docs, kubernetes/website content/en/docs/concepts/services-networking/network-policies.md:157-166)
        yield ConfigIssue(loc, "is not allowed on a listener behind broker.service.type: LoadBalancer (the Service "
                               "may rewrite client addresses before the NetworkPolicy sees them); use "
                               "broker.service.loadBalancerSourceRanges")


def _persistence(estate: Estate) -> Issues:
    persistence = estate.broker.persistence
    if persistence.nfs and persistence.storage_class:
        yield ConfigIssue(["broker", "persistence", "storageClass"], "is not allowed with nfs (volumes are bound by "
                                                                     "name)")
    if not persistence.enabled:
        for key in sorted(persistence.model_fields_set - {"enabled"}):
            if key == "backup" and persistence.backup.enabled:
                continue  # _backup says what a backup needs
            yield ConfigIssue(["broker", "persistence", _camel(key)], "has no effect with enabled: false")
    if persistence.nfs and ".." in persistence.nfs.path.split("/"):
        yield ConfigIssue(["broker", "persistence", "nfs", "path"], f"{persistence.nfs.path!r} is not allowed "
                                                                    "(no '..' in export paths)")


def _resources(estate: Estate) -> Issues:
    preset = estate.preset
    broker = estate.broker.resources
    yield from _requests_within_limits(["broker", "resources"], broker, {
        "cpu": (preset.cpu_request, preset.cpu_limit), "memory": (preset.memory_request, preset.memory_limit)})
    if estate.frontend_enabled:
        yield from _requests_within_limits(["frontend", "resources"], estate.frontend.resources, FRONTEND_RESOURCES)
        memory = grammar.parse_quantity(estate.frontend.resources.memory_limit or FRONTEND_RESOURCES["memory"][1])
        if estate.frontend.maxconn * FRONTEND_CONNECTION_MEMORY > memory:
            yield ConfigIssue(["frontend", "maxconn"], f"{estate.frontend.maxconn} connections need about "
                                                       f"{_mib(estate.frontend.maxconn * FRONTEND_CONNECTION_MEMORY)} "
                                                       f"(~4 KiB each), more than the frontend's memory limit of "
                                                       f"{_mib(memory)}; use at most "
                                                       f"{int(memory // FRONTEND_CONNECTION_MEMORY)} or raise "
                                                       "frontend.resources.memoryLimit")


FRONTEND_CONNECTION_MEMORY = 4 * 1024
"""Our estimate of HAProxy's own state per idle proxied connection (not read in HAProxy's source, not measured here:
it only refuses counts that cannot possibly fit, such as a million connections in 512 MiB)."""


def _requests_within_limits(loc: list, res: Resources, defaults: dict) -> Issues:
    for field, message in requests_above_limits(res.model_dump(), defaults):
        yield ConfigIssue(loc + [_camel(field)], message)


def memory_limit_bytes(estate: Estate) -> Decimal:
    return grammar.parse_quantity(estate.broker.resources.memory_limit or estate.preset.memory_limit)


def _limits(estate: Estate) -> Issues:
    """A single client's queue, or the connection count, must fit in the broker's memory limit."""
    limits = estate.broker.limits
    memory = memory_limit_bytes(estate)
    queued = limits.max_queued_messages * limits.max_packet_size
    if limits.max_queued_bytes is not None:
        queued = min(queued, limits.max_queued_bytes)
    if limits.max_queued_bytes is not None and limits.max_queued_bytes < limits.max_packet_size:
        yield ConfigIssue(["broker", "limits", "maxQueuedBytes"], f"{limits.max_queued_bytes} is below maxPacketSize "
                                                                  f"{limits.max_packet_size}: a largest message could "
                                                                  "never be queued for an offline client (use at least "
                                                                  "maxPacketSize)")
    per_client = queued + limits.max_inflight_messages * limits.max_packet_size
    if per_client > memory:
        cap = int(memory // 2 // MiB) * MiB
        yield ConfigIssue(["broker", "limits"], f"one client's queue may hold {_mib(per_client)} "
                                                f"(maxQueuedMessages x maxPacketSize, plus in-flight), more than the "
                                                f"broker's memory limit of {_mib(memory)}; set maxQueuedBytes to at "
                                                f"most {cap} ({_mib(cap)}), or lower maxQueuedMessages or "
                                                "maxPacketSize")
    connections = limits.max_connections or estate.preset.max_connections
    if connections * CONNECTION_MEMORY > memory:
        fit = int(memory // CONNECTION_MEMORY)
        yield ConfigIssue(["broker", "limits", "maxConnections"],
                          f"{connections} connections need about {_mib(connections * CONNECTION_MEMORY)} "
                          f"(~64 KiB each with TLS), more than the memory limit of {_mib(memory)}; use at most "
                          f"{fit}, or raise broker.resources.memoryLimit")


def _mib(value) -> str:
    return f"{Decimal(value) / MiB:.0f} MiB"


def _users(estate: Estate) -> Issues:
    broker = estate.broker
    mtls = any(lst.require_certificate for lst in broker.listeners)
    zones = broker.acl.factory.zones if broker.acl.factory else None
    groups = broker.acl.sparkplug.groups if broker.acl.sparkplug else None
    reserved = internal_users(broker.name)
    seen: dict[str, str] = {}
    for i, user in enumerate(estate.users):
        loc = ["users", i]
        repeated = already_used(loc + ["name"], user.name, seen, f"users[{i}]", "names")
        if repeated:
            yield repeated
        elif user.name in reserved:
            yield ConfigIssue(loc + ["name"], f"{user.name!r} is the identity of {reserved[user.name]} "
                                              "(choose another name: it would share that identity's ACL)")
        if user.auth != "password" and not mtls:
            yield ConfigIssue(loc + ["auth"], f"{user.auth!r} needs a listener with requireCertificate: true "
                                              "(or use password)")
        if user.zone is not None:
            if user.role != "device":
                yield ConfigIssue(loc + ["zone"], f"has no effect for role {user.role!r} (zones place devices)")
            elif zones is None:
                yield ConfigIssue(loc + ["zone"], "needs broker.acl.factory to be set")
            elif user.zone not in zones:
                yield ConfigIssue(loc + ["zone"], f"{user.zone!r} is not allowed (use one of "
                                                  f"broker.acl.factory.zones: {', '.join(zones)})")
        if user.groups and user.role not in ("edge-node", "host-application"):
            yield ConfigIssue(loc + ["groups"], f"has no effect for role {user.role!r} (Sparkplug groups are for "
                                                "edge-node and host-application users)")
        for j, group in enumerate(user.groups):
            if groups is None:
                yield ConfigIssue(loc + ["groups", j], "needs broker.acl.sparkplug to be set")
            elif group not in groups:
                yield ConfigIssue(loc + ["groups", j], f"{group!r} is not allowed (use one of "
                                                       f"broker.acl.sparkplug.groups: {', '.join(groups)})")
        if user.role == "edge-node" and not user.groups:
            yield ConfigIssue(loc + ["groups"], "an edge-node needs at least one Sparkplug group")


def _secrets(estate: Estate, secrets: Mapping[str, Optional[str]]) -> Issues:
    users = {u.name: u for u in estate.users}
    for key in sorted(secrets):
        if not key.startswith(SECRET_KEY_PREFIX):
            continue
        user = users.get(key[len(SECRET_KEY_PREFIX):])
        if user is None:
            yield ConfigIssue([key], f"names no user in users (known: {', '.join(users) or 'none'})")
        elif user.auth == "certificate":
            yield ConfigIssue([key], f"has no effect: {user.name} logs in by certificate only (auth: certificate)")
        elif isinstance(secrets[key], str):
            problem = supplied_password_problem(user.name, secrets[key], estate.broker.auth.password_iterations,
                                                _password_context(estate, user))
            if problem:
                yield ConfigIssue([key], problem)
    given = [key for key in CA_SECRET_KEYS if key in secrets]
    if estate.pki.existing_ca:
        for key in CA_SECRET_KEYS:
            if key not in secrets:
                yield ConfigIssue(["pki", "existingCa"], f"true needs the secret key {PROJECT}:{key}")
        if "ca_key" in estate.pki.model_fields_set:
            yield ConfigIssue(["pki", "caKey"], "has no effect with existingCa: true (the brought CA has its own key)")
    elif given:
        for key in given:
            yield ConfigIssue([key], "has no effect unless pki.existingCa is true")


def _password_context(estate: Estate, user) -> list[str]:
    """Words of this estate an attacker would try first in a guess."""
    return [estate.namespace.name, estate.broker.name, estate.pki.organization, user.role, *([user.zone] if
            user.zone else []), *user.groups, *estate.pki.extra_dns_names]


def _pki(estate: Estate, secrets: Mapping[str, Optional[str]]) -> Issues:
    pki = estate.pki
    renewal = pki.early_renewal_hours
    if renewal * 2 > pki.leaf_validity_hours:
        yield ConfigIssue(["pki", "earlyRenewalHours"], f"{renewal} is more than half of leafValidityHours "
                                                        f"{pki.leaf_validity_hours}: certificates would be re-issued "
                                                        f"on almost every `pulumi up` (use at most "
                                                        f"{pki.leaf_validity_hours // 2})")
    if pki.leaf_validity_hours >= pki.ca_validity_hours and not pki.existing_ca:
        yield ConfigIssue(["pki", "caValidityHours"], f"{pki.ca_validity_hours} does not outlive leaf certificates "
                                                      f"({pki.leaf_validity_hours} h) (make the CA live longer)")
    if pki.existing_ca and all(isinstance(secrets.get(k), str) for k in CA_SECRET_KEYS):
        for key, message in check_existing_ca(secrets["caCertPem"], secrets["caKeyPem"], pki.leaf_validity_hours,
                                              server_names(estate)):
            yield ConfigIssue([key], message)


def server_names(estate: Estate) -> list[str]:
    """Every name clients are told to use: the broker Service and pods, the frontend Service (TLS passes through it,
    so the broker's certificate is what clients see there), and the names given for a LoadBalancer. The server
    certificate carries them (stacks/build.py), and a brought CA must permit them."""
    name, namespace = estate.broker.name, estate.namespace.name
    frontend = service_dns_names(frontend_name(name), namespace) if estate.frontend_enabled else []
    return pod_dns_names(name, namespace, estate.max_replicas) + frontend + list(estate.pki.extra_dns_names)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _bridges(estate: Estate, secrets: Mapping[str, Optional[str]]) -> Issues:
    """Each bridge against its provider's profile (components/bridge_rules.py), and the bridges against each other,
    the users and the estate's limits."""
    seen_names: dict[str, str] = {}
    seen_identities: dict[tuple, int] = {}
    users = {u.name for u in estate.users}
    limit = estate.broker.limits.max_packet_size
    own_names = {name.lower() for name in server_names(estate)}
    for i, bridge in enumerate(estate.bridges):
        loc = ["bridges", i]
        repeated = already_used(loc + ["name"], bridge.name, seen_names, f"bridges[{i}]", "names")
        if repeated:
            yield repeated
        identity = cloud_bridge_name(estate.broker.name, bridge.name)
        if identity in users:
            yield ConfigIssue(loc + ["name"], f"makes the bridge identity {identity!r}, which is also a user's name "
                                              "(rename the bridge or the user)")
        if len(identity) > STATEFULSET_NAME_MAX:
            yield ConfigIssue(loc + ["name"], f"makes the bridge workload {identity!r}, {len(identity)} characters "
                                              f"(a StatefulSet name takes at most {STATEFULSET_NAME_MAX}: shorten it)")
        # one connection per identity: AWS keys it on the thing (one account), Azure on hub and device
        hub = azure_host(bridge.azure.hub_name) if bridge.azure else ""
        endpoint = {"aws-iot-core": "", "azure-iot-hub": (bridge.endpoint or hub).lower()}.get(
            bridge.provider, (bridge.endpoint or "").lower())
        key = (bridge.provider, endpoint, bridge.client_id)
        if key in seen_identities:
            yield ConfigIssue(loc + ["clientId"], f"{bridge.client_id!r} is bridges[{seen_identities[key]}]'s identity "
                                                  "at the same endpoint too: the cloud keeps one connection per client "
                                                  "id and would drop them in turn, for ever")
        seen_identities.setdefault(key, i)
        wanted = {"aws-iot-core": "aws", "azure-iot-hub": "azure", "mqtt": "mqtt"}[bridge.provider]
        for section in ("aws", "azure", "mqtt"):
            if getattr(bridge, section) is not None and section != wanted:
                yield ConfigIssue(loc + [section], f"has no effect with provider {bridge.provider} (use {wanted})")
        if bridge.provider == "azure-iot-hub" and bridge.azure is None:
            yield ConfigIssue(loc + ["azure"], "is required with provider azure-iot-hub (at least hubName)")
            continue
        if bridge.endpoint and bridge.endpoint.lower().rstrip(".") in own_names:
            yield ConfigIssue(loc + ["endpoint"], f"{bridge.endpoint} is this estate: every message would come back "
                                                  "in and go out again, for ever")
        if bridge.azure is not None and grammar.duration_seconds(bridge.azure.sas_validity) < MIN_SAS_VALIDITY:
            yield ConfigIssue(loc + ["azure", "sasValidity"],
                              f"{bridge.azure.sas_validity} is too short: a token is renewed only by `pulumi up` "
                              "once half of it has passed (use at least 2d)")
        for path, message in bridge_rules.problems(bridge.model_dump()):
            yield ConfigIssue(loc + [_camel(p) if isinstance(p, str) else p for p in path], message)
        payload = bridge_rules.max_payload(bridge.provider)
        if payload and limit > payload:
            yield ConfigIssue(["broker", "limits", "maxPacketSize"],
                              f"{limit} is larger than bridges[{i}]'s cloud takes ({payload} bytes): a device's "
                              f"bigger message would pass the broker and vanish at the bridge (use at most {payload})")
        yield from _bridge_secrets(loc, bridge, secrets)
        yield from _bridge_buffer(loc, bridge)
    for key in sorted(secrets):
        for prefix in BRIDGE_SECRET_PREFIXES:
            if key.startswith(prefix) and key[len(prefix):] not in seen_names:
                yield ConfigIssue([key], f"names no bridge in bridges (known: {', '.join(seen_names) or 'none'})")


MIN_SAS_VALIDITY = 2 * 86400


def _bridge_secrets(loc: list, bridge, secrets: Mapping[str, Optional[str]]) -> Issues:
    key_name, password_name = f"{BRIDGE_KEY_PREFIX}{bridge.name}", f"{BRIDGE_PASSWORD_PREFIX}{bridge.name}"
    sas = bridge.provider == "azure-iot-hub" and bridge.azure is not None and bridge.azure.auth == "sas"
    if sas and key_name not in secrets:
        yield ConfigIssue(loc + ["azure", "auth"], f"sas needs the device key as the secret {PROJECT}:{key_name} "
                                                   "(`pulumi config set --secret ...` with the device's primary key)")
    elif sas and isinstance(secrets[key_name], str):
        from ..components.azure_sas import key_problem
        problem = key_problem(secrets[key_name])
        if problem:
            yield ConfigIssue([key_name], problem)
    elif key_name in secrets and not sas:
        yield ConfigIssue([key_name], "has no effect unless the bridge is azure-iot-hub with azure.auth: sas")
    username = bridge.mqtt.username if bridge.mqtt else None
    if password_name in secrets and not (bridge.provider == "mqtt" and username):
        yield ConfigIssue([password_name], "has no effect without an mqtt bridge with mqtt.username")
    elif bridge.provider == "mqtt" and username and password_name not in secrets:
        yield ConfigIssue(loc + ["mqtt", "username"], f"needs its password as the secret {PROJECT}:{password_name}")
    elif isinstance(secrets.get(password_name), str):
        try:
            conf_value(secrets[password_name], "the password", spaces=True)
        except ValueError as problem:
            yield ConfigIssue([password_name], str(problem))


def _bridge_buffer(loc: list, bridge) -> Issues:
    """mosquitto keeps its whole queue in memory and writes it whole to the volume (a new file, then a rename, so
    twice its size at the moment of a save)."""
    buffer = bridge.buffer
    memory = grammar.parse_quantity(buffer.memory_limit)
    storage = grammar.parse_quantity(buffer.storage)
    if memory is not None and buffer.max_queued_bytes + 64 * MiB > memory:
        yield ConfigIssue(loc + ["buffer", "maxQueuedBytes"],
                          f"{buffer.max_queued_bytes} does not fit buffer.memoryLimit {buffer.memory_limit} with "
                          f"64Mi to spare (raise the limit to at least {_mib(buffer.max_queued_bytes + 64 * MiB)})")
    if storage is not None and 2 * buffer.max_queued_bytes > storage:
        yield ConfigIssue(loc + ["buffer", "storage"],
                          f"{buffer.storage} cannot hold two snapshots of maxQueuedBytes {buffer.max_queued_bytes} "
                          f"(use at least {_mib(2 * buffer.max_queued_bytes)})")



def _monitoring(estate: Estate) -> Issues:
    monitoring = estate.monitoring
    for key, message in monitoring_rules.problems(monitoring.scrape_interval, monitoring.alert_after,
                                                  monitoring.selector_labels, monitoring.runbook_url, _camel):
        yield ConfigIssue(["monitoring", _camel(key)], message)
    for key, namespace in (("prometheusNamespace", monitoring.prometheus_namespace),
                           ("dashboardsNamespace", monitoring.dashboards_namespace)):
        if namespace in SYSTEM_NAMESPACES:
            yield ConfigIssue(["monitoring", key], f"{namespace!r} is a Kubernetes system namespace (Prometheus and "
                              "Grafana run in a namespace of their own, usually monitoring)")


BACKUP = ["broker", "persistence", "backup"]


def _backup(estate: Estate) -> Issues:
    """The backup against persistence, the bucket's provisioning and the broker count; the rules shared with the
    component's arguments come from components/backup_rules.py (snake_case paths there, camelCase here)."""
    backup = estate.broker.persistence.backup
    if backup is None or not backup.enabled:
        return
    if not estate.broker.persistence.enabled:
        yield ConfigIssue(BACKUP, "needs broker.persistence.enabled: true (without persistence mosquitto keeps no "
                                  "database to back up)")
    bucket = backup.bucket
    if bucket.provision and bucket.endpoint:
        yield ConfigIssue(BACKUP + ["bucket", "endpoint"], "cannot be used with provision: true (pulumi-aws makes the "
                                                           "bucket on AWS; an S3-compatible store's bucket is brought: "
                                                           "set provision: false)")
    lock = backup.retention.lock
    if lock is not None:
        problem = backup_rules.lock_problem(lock.days, backup.retention.days, "retention.days")
        if problem:
            yield ConfigIssue(BACKUP + ["retention", "lock", "days"], problem)
    for path, message in backup_rules.problems(backup.model_dump(exclude_unset=True), estate.broker.name,
                                               estate.max_replicas, _camel_path):
        # the first two parts are the model's keys; a third is an annotation's own key, kept as written
        yield ConfigIssue(BACKUP + [_camel(part) if i < 2 else part for i, part in enumerate(path)], message)


def _camel_path(path: str) -> str:
    """`credentials.secret_name` -> `credentials.secretName` (a key named in a message)."""
    return ".".join(_camel(part) for part in path.split("."))

