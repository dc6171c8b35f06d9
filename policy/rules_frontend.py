"""HAProxy frontend and bridge rules: timeouts against keepalive, limits, stats auth, passthrough, bridge TLS."""

from __future__ import annotations

import re

from typing import Optional

from policy_kit import (CONFIG_MAP, MANDATORY, TLS_ORDER, WORKLOADS, as_int, as_map, atoi, labels_of, mosquitto_confs,
                        mosquitto_fragments, name_of, object_data, resource_policy, setting, stack_policy)
from stacks.grammar import matches_everything_from_depth



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


def _section(text: str, name: str) -> list[str]:
    """The indented lines of one top-level haproxy.cfg section."""
    lines, inside = [], False
    for line in text.splitlines():
        if line and not line[0].isspace():
            inside = line.split()[0] == name
        elif inside:
            lines.append(line.strip())
    return lines


def maxconn(props, _cfg):
    text = object_data(props).get("haproxy.cfg")
    if text and not any(re.match(r"^maxconn \d+$", line) for line in _section(text, "global")):
        yield "haproxy.cfg has no global maxconn"


def stats_auth(props, _cfg):
    text = object_data(props).get("haproxy.cfg") or ""
    for line in text.splitlines():
        if line.strip().startswith("stats auth") and not re.search(r'"\$\w+":"\$\w+"', line):
            yield "stats credentials are written in the config; take them from a Secret through the environment"
    if "stats enable" in text and "stats auth" not in text:
        yield "stats page has no authentication"


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
