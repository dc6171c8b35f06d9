"""HAProxy frontend and bridge rules: timeouts against keepalive, limits, stats auth, passthrough, bridge TLS."""

from __future__ import annotations

import re

from typing import Optional

from .policy_kit import (ADVISORY, CONFIG_MAP, MANDATORY, TLS_ORDER, WORKLOADS, as_int, as_list, as_map, as_text, atoi,
                        labels_of, mosquitto_confs, mosquitto_fragments, name_of, namespace_of, object_data, pod_spec,
                        resource_policy, setting, stack_policy)
from ..stacks.grammar import is_open_cidr, matches_everything_from_depth, ranges_cover_everything



def _haproxy_cfgs(resources):
    for r in resources:
        if r.resource_type == CONFIG_MAP:
            text = object_data(r.props).get("haproxy.cfg")
            if text:
                yield r, text


def _seconds(value: str) -> Optional[float]:
    """An HAProxy time (default unit ms; us, ms, s, m, h, d), or None when it is not one."""
    match = re.match(r"^(\d+)(us|ms|s|m|h|d)?$", value)
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2) or "ms"
    return number * {"us": 0.000001, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def timeouts(resources, cfg):
    keepalives = [atoi(setting(conf, "max_keepalive"), 65535) if setting(conf, "max_keepalive") else 65535
                  for r in resources if r.resource_type == CONFIG_MAP for conf in mosquitto_confs(r.props).values()]
    factor = cfg.get("keepaliveFactor") or 1.5
    needed = factor * max(keepalives or [60])
    for resource, text in _haproxy_cfgs(resources):
        for kind in ("client", "server"):
            match = re.search(rf"timeout {kind} (\S+)", text)
            if not match:
                yield resource, f"haproxy.cfg sets no timeout {kind}"
            elif _seconds(match.group(1)) is None:
                yield resource, f"timeout {kind} {match.group(1)!r} is not an HAProxy time"
            elif _seconds(match.group(1)) < needed:
                yield resource, f"timeout {kind} {match.group(1)} is below {factor} x the brokers' " \
                                f"max keepalive ({needed:.0f} s): idle clients would be cut"


def maxconn(props, _cfg):
    text = object_data(props).get("haproxy.cfg")
    if text and not any(re.match(r"^maxconn \d+$", line) for line in _sections(text).get("global", [])):
        yield "haproxy.cfg has no global maxconn"


def stats_auth(props, _cfg):
    """The stats frontend answers only with credentials, which come from a Secret through the environment: a
    userlist whose user and password are environment variables, and an `http-request auth` rule before anything
    else answers (the Prometheus endpoint's `use-service` runs during the http-request rules, so `stats auth`
    alone does not cover /metrics)."""
    text = object_data(props).get("haproxy.cfg") or ""
    stats = _sections(text).get("frontend stats")
    if stats is None:
        return
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["user"] and not re.fullmatch(r'user "\$\w+" insecure-password "\$\w+"', line.strip()):
            yield "stats credentials are written in the config; take them from a Secret through the environment"
        if words[:2] == ["stats", "auth"]:
            yield "stats auth does not cover the Prometheus endpoint; use a userlist and `http-request auth`"
    rules = [line for line in stats if line.startswith("http-request")]
    if not rules or not re.fullmatch(r"http-request auth( realm \S+)? unless \{ http_auth\(\S+\) \}", rules[0]):
        yield "the stats and metrics endpoint has no authentication (its first http-request rule must be " \
              "`http-request auth ... unless { http_auth(<userlist>) }`)"


def passthrough(resources, _cfg):
    mtls = any(lst.mtls for r in resources if r.resource_type == CONFIG_MAP
               for conf in mosquitto_confs(r.props).values() for lst in conf.listeners)
    for resource, text in _haproxy_cfgs(resources):
        if re.search(r"^\s+bind \S+ .*\bssl\b", text, re.M) and mtls:
            yield resource, "HAProxy terminates TLS but brokers authenticate clients by certificate: pass TLS through"
        if re.search(r"^\s+mode http", text, re.M) and "frontend stats" not in text.split("mode http")[0][-200:]:
            yield resource, "MQTT must be proxied in mode tcp"


def frontend_replicas(props, _cfg):
    replicas = as_int(as_map(props.get("spec")).get("replicas"), 1)
    if labels_of(props).get("app.kubernetes.io/name") == "haproxy" and (replicas is None or replicas < 2):
        yield f"{name_of(props)}: a single HAProxy replica is a single point of failure"


def bridge_tls(props, _cfg):
    for key, conf in mosquitto_fragments(props).items():
        for bridge in conf.bridges:
            name = bridge["connection"][0]
            if "bridge_cafile" not in bridge and "bridge_capath" not in bridge:
                yield f"{key}: bridge {name} does not verify the remote broker (no bridge_cafile)"
            if bridge.get("bridge_insecure", ["false"])[-1] != "false":
                yield f"{key}: bridge {name} skips host name verification (bridge_insecure)"
            if TLS_ORDER.get(bridge.get("bridge_tls_version", ["tlsv1.2"])[-1], 0) < TLS_ORDER["tlsv1.2"]:
                yield f"{key}: bridge {name} allows TLS older than 1.2"


def bridge_topics(props, _cfg):
    for key, conf in mosquitto_fragments(props).items():
        for bridge in conf.bridges:
            addresses = " ".join(bridge.get("address", [])).split()
            internal = bool(addresses) and all(a.rsplit(":", 1)[0].endswith(".svc.cluster.local") for a in addresses)
            for topic in bridge.get("topic", []):
                # conf.c v2.0.20 lines 2041-2111: topic [direction (any case) [qos [local prefix [remote prefix]]]]
                parts = topic.split()
                direction = parts[1].lower() if len(parts) > 1 else "out"
                if parts and matches_everything_from_depth(parts[0]) is not None and direction == "both" \
                        and not internal:
                    yield f"{key}: bridge {bridge['connection'][0]} mirrors every topic both ways to an outside broker"
                if len(parts) > 2 and atoi(parts[2]) == 2 and not internal:
                    yield f"{key}: bridge {bridge['connection'][0]} uses QoS 2, which cloud brokers do not support"


def bridge_client_ids(resources, _cfg):
    seen: dict[str, str] = {}
    for r in resources:
        if r.resource_type != CONFIG_MAP:
            continue
        for key, conf in mosquitto_fragments(r.props).items():
            for bridge in conf.bridges:
                for client_id in bridge.get("remote_clientid", []):
                    if client_id in seen:
                        yield r, f"{key}: bridge client id {client_id} is also used by {seen[client_id]}"
                    seen[client_id] = key


def _sections(text: str) -> dict[str, list[str]]:
    """Every top-level haproxy.cfg section by its header ('frontend mqtt') -> its rules, stripped, no comments."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = " ".join(line.split())
            found[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            found[current].append(" ".join(line.split()))
    return found


def _client_frontends(sections: dict[str, list[str]]):
    """(name, rules) of every section that takes client connections and forwards them to servers."""
    for header, rules in sections.items():
        kind, _, name = header.partition(" ")
        if kind in ("frontend", "listen") and any(rule.startswith(("default_backend ", "use_backend ", "server "))
                                                   for rule in rules):
            yield name, rules


TRACK = re.compile(r"^tcp-request connection track-sc([0-2]) src(?: table (\S+))?(?: (if|unless) (.*))?$")
ACCEPT = re.compile(r"^tcp-request connection accept(?: (if|unless) (.*))?$")
REJECT = re.compile(r"^tcp-request connection reject if (.*)$")


def _named_sources(condition: str) -> Optional[list[str]]:
    """The networks of a condition that is only `{ src <cidr>... }` (else None)."""
    match = re.fullmatch(r"\{ src ((?:[0-9A-Fa-f.:/]+ ?)+) \}", condition.strip())
    return match.group(1).split() if match else None


def _names_some_sources(words: Optional[str], condition: Optional[str], wanted: str) -> bool:
    """Whether a rule's condition is `<wanted> { src <networks> }` with networks that leave some addresses out."""
    sources = _named_sources(condition or "") if words == wanted else None
    return bool(sources) and not any(is_open_cidr(c) for c in sources) and not ranges_cover_everything(sources)


def _limits(condition: str, counter: str) -> dict[str, int]:
    """{'rate': N, 'cur': N} refused above, from `{ sc0_conn_rate gt N } || ...` over the tracked counter."""
    found: dict[str, int] = {}
    for term in re.split(r"\|\||\bor\b", condition):
        match = re.fullmatch(rf"\s*\{{ (?:sc{counter}_conn_(rate|cur)(?:\(\S*\))?|"
                             rf"sc_conn_(rate|cur)\({counter}(?:,\S*)?\)) (gt|ge) (\d+) \}}\s*", term)
        if match:
            kind = match.group(1) or match.group(2)
            limit = int(match.group(4)) - (1 if match.group(3) == "ge" else 0)
            found[kind] = min(limit, found.get(kind, limit))
    return found


def _table(sections: dict[str, list[str]], name: str) -> Optional[str]:
    """The `stick-table` line of the section named `name` (None when it has none)."""
    for header, rules in sections.items():
        if header.split(" ", 1)[-1] == name and header.split(" ", 1)[0] in ("backend", "frontend", "listen"):
            return next((rule for rule in rules if rule.startswith("stick-table ")), None)
    return None


def _flood_problem(name: str, rules: list[str], sections, cfg) -> Optional[str]:
    """What a client frontend lacks of a per-source rate and concurrent limit (None when it has both)."""
    counter = table = None
    limits: dict[str, int] = {}
    for rule in rules:
        accept, track, reject = ACCEPT.match(rule), TRACK.match(rule), REJECT.match(rule)
        if accept and not limits.keys() >= {"rate", "cur"} and not _names_some_sources(*accept.groups(), "if"):
            return f"'{rule}' lets sources past the per-source limits without naming them (exempt named networks only)"
        if track and counter is None:
            if track.group(3) and not _names_some_sources(track.group(3), track.group(4), "unless"):
                return f"'{rule}' tracks only some sources (track every source; exempt named networks with an accept)"
            counter, table = track.group(1), track.group(2) or name
        elif reject and counter is not None:
            for kind, limit in _limits(reject.group(1), counter).items():
                limits[kind] = min(limit, limits.get(kind, limit))
    if counter is None:
        return "does not track source addresses (add 'tcp-request connection track-sc0 src table <t>')"
    stick = _table(sections, table) or ""
    period = re.search(r"\bconn_rate\(([^)]*)\)", stick)
    if not period or not re.search(r"\bconn_cur\b", stick) or not re.search(r"\btype (ip|ipv6)\b", stick):
        return f"tracks sources in table {table!r}, which does not keep conn_rate and conn_cur per address"
    seconds = _seconds(period.group(1))
    for kind, what in (("rate", "connection rate"), ("cur", "open connections")):
        if kind not in limits:
            return f"refuses no source for its {what} (after the tracking, add 'tcp-request connection reject if " \
                   f"{{ sc{counter}_conn_{kind} gt N }}')"
    if not seconds or seconds > cfg["maximumRatePeriodSeconds"]:
        return f"averages the connection rate over {period.group(1)!r}, longer than " \
               f"{cfg['maximumRatePeriodSeconds']} s (a long window allows long bursts)"
    if limits["rate"] / seconds > cfg["maximumConnectionRate"]:
        return f"lets a source open {limits['rate']} connections per {period.group(1)}, more than " \
               f"{cfg['maximumConnectionRate']} per second"
    if limits["cur"] > cfg["maximumConcurrentConnections"]:
        return f"lets a source hold {limits['cur']} connections, more than {cfg['maximumConcurrentConnections']}"
    return None


def flood_protection(props, cfg):
    text = object_data(props).get("haproxy.cfg")
    if not text:
        return
    sections = _sections(text)
    for name, rules in _client_frontends(sections):
        problem = _flood_problem(name, rules, sections, cfg)
        if problem:
            yield f"haproxy.cfg frontend {name}: {problem}"


def _tracks_sources(text: str) -> bool:
    return any(TRACK.match(rule) for rules in _sections(text).values() for rule in rules)


def client_addresses(resources, _cfg):
    """LoadBalancer Services in front of HAProxy pods that limit per source must keep client addresses."""
    limiting = {name_of(r.props) for r, text in _haproxy_cfgs(resources) if _tracks_sources(text)}
    pods = []
    for r in resources:
        if str(r.resource_type or "").startswith(WORKLOADS):
            volumes = as_list(pod_spec(r.props).get("volumes"))
            if any(as_text(as_map(as_map(v).get("configMap")).get("name")) in limiting for v in volumes):
                template = as_map(as_map(as_map(r.props).get("spec")).get("template"))
                pods.append((namespace_of(r.props), as_map(as_map(template.get("metadata")).get("labels"))))
    for r in resources:
        spec = as_map(as_map(r.props).get("spec"))
        if r.resource_type != "kubernetes:core/v1:Service" or as_text(spec.get("type")) != "LoadBalancer":
            continue
        selector = as_map(spec.get("selector"))
        if selector and any(namespace == namespace_of(r.props) and all(labels.get(k) == v for k, v in selector.items())
                            for namespace, labels in pods) \
                and as_text(spec.get("externalTrafficPolicy"), "Cluster") != "Local":
            yield r, f"{name_of(r.props)}: HAProxy limits connections per source address behind this LoadBalancer, " \
                     "but externalTrafficPolicy Cluster replaces client addresses with node addresses, so many " \
                     "devices count as one"


POLICIES = [
    stack_policy("frontend-timeouts-cover-keepalive", "HAProxy client/server timeouts exceed the brokers' keepalive.",
                 MANDATORY, "The component sets timeouts to 1.5 x broker.limits.maxKeepalive.", timeouts,
                 {"keepaliveFactor": {"type": "number", "default": 1.5}}),
    resource_policy("frontend-maxconn", "HAProxy caps its connections.", MANDATORY, "Set frontend.maxconn.",
                    [CONFIG_MAP], maxconn),
    resource_policy("frontend-stats-auth-from-secret", "The stats page needs credentials that come from a Secret.",
                    MANDATORY, "Use the component: credentials are generated and injected by secretKeyRef.",
                    [CONFIG_MAP], stats_auth),
    stack_policy("frontend-tls-passthrough", "With certificate-authenticated brokers, HAProxy passes TLS through.",
                 MANDATORY, "Keep the frontend in mode tcp without ssl on MQTT binds.", passthrough),
    resource_policy("frontend-flood-protection", "Every HAProxy client frontend tracks source addresses and refuses a "
                    "source above a connection-rate and a concurrent-connection limit.", MANDATORY,
                    "Leave frontend.floodProtection enabled; exempt NAT gateways in exemptSources and keep the limits "
                    "within the pack's maximums.", [CONFIG_MAP], flood_protection,
                    {"maximumConnectionRate": {"type": "number", "default": 5},
                     "maximumRatePeriodSeconds": {"type": "number", "default": 60},
                     "maximumConcurrentConnections": {"type": "integer", "default": 1000}}),
    stack_policy("frontend-client-addresses-kept", "A LoadBalancer in front of HAProxy pods that limit per source "
                 "keeps client addresses (externalTrafficPolicy Local).", ADVISORY,
                 "Use the component, which sets externalTrafficPolicy: Local on the frontend's LoadBalancer.",
                 client_addresses),
    resource_policy("frontend-replicas", "The frontend runs at least two replicas.", MANDATORY,
                    "Set frontend.replicas >= 2.", WORKLOADS, frontend_replicas),
    resource_policy("bridge-tls-verified", "Bridges verify the remote broker over TLS 1.2+.", MANDATORY,
                    "Set bridge_cafile, bridge_insecure false and bridge_tls_version tlsv1.2.", [CONFIG_MAP],
                    bridge_tls),
    resource_policy("bridge-topic-limits", "Bridges to outside brokers mirror no catch-all both ways and use QoS <= 1.",
                    MANDATORY, "Bridge explicit topics in one direction at QoS 0 or 1 to cloud brokers.",
                    [CONFIG_MAP], bridge_topics),
    stack_policy("bridge-unique-client-ids", "Every bridge connects with its own client id.", MANDATORY,
                 "Give each bridge a unique remote_clientid (the component derives it from the pod).",
                 bridge_client_ids),
]
