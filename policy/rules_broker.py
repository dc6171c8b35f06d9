"""Mosquitto configuration rules, read from the ConfigMaps (mosquitto.conf) and Secrets (passwd, ACL)."""

from __future__ import annotations

import re

from policy_kit import (ADVISORY, CONFIG_MAP, MANDATORY, SECRET, TLS_ORDER, is_loopback, mosquitto_confs, object_data,
                        resource_policy, setting)



def _listeners(props):
    for key, conf in mosquitto_confs(props).items():
        for lst in conf.listeners:
            yield key, lst


def no_anonymous(props, _cfg):
    for key, lst in _listeners(props):
        if lst.settings.get("allow_anonymous") == "true" and not is_loopback(lst.bind):
            yield f"{key}: listener {lst.port} allows anonymous clients on a non-loopback address"


def tls_everywhere(props, _cfg):
    for key, lst in _listeners(props):
        if not lst.tls and not is_loopback(lst.bind):
            yield f"{key}: listener {lst.port} ({lst.name or lst.protocol}) carries MQTT without TLS"


def tls_version(props, cfg):
    minimum = cfg["minimumTlsVersion"]
    for key, lst in _listeners(props):
        version = lst.settings.get("tls_version")
        if lst.tls and TLS_ORDER.get(version or "tlsv1", 0) < TLS_ORDER[minimum]:
            yield f"{key}: listener {lst.port} accepts {version or 'any TLS version'} (minimum {minimum})"


def mtls_coherent(props, _cfg):
    for key, lst in _listeners(props):
        if lst.settings.get("require_certificate") == "true":
            if "cafile" not in lst.settings and "capath" not in lst.settings:
                yield f"{key}: listener {lst.port} requires client certificates but names no CA"
            if lst.settings.get("use_identity_as_username") != "true" and \
                    lst.settings.get("use_subject_as_username") != "true":
                yield f"{key}: listener {lst.port} requires certificates but does not use them as the identity"


def acl_present(props, _cfg):
    for key, lst in _listeners(props):
        if lst.settings.get("allow_anonymous") != "true" or not is_loopback(lst.bind):
            if "acl_file" not in lst.settings and "plugin" not in lst.settings:
                yield f"{key}: listener {lst.port} has no ACL: every user may use every topic"


def limits(props, _cfg):
    for key, conf in mosquitto_confs(props).items():
        for name in ("max_packet_size", "max_queued_messages", "max_keepalive"):
            if setting(conf, name) is None:
                yield f"{key}: {name} is not set"
        for lst in conf.listeners:
            value = lst.settings.get("max_connections", "-1")
            if not is_loopback(lst.bind) and int(value) <= 0:
                yield f"{key}: listener {lst.port} has no connection limit (max_connections {value})"


def persistence(props, cfg):
    for key, conf in mosquitto_confs(props).items():
        if setting(conf, "persistence") != "true":
            yield f"{key}: persistence is off: retained messages and sessions are lost on restart"
            continue
        location = setting(conf, "persistence_location") or ""
        if not location.startswith(cfg["dataPath"]):
            yield f"{key}: persistence_location {location or '(working directory)'} is not on the data volume " \
                  f"{cfg['dataPath']}"
        if int(setting(conf, "autosave_interval") or "1800") <= 0:
            yield f"{key}: autosave_interval must be > 0"
        if setting(conf, "persistent_client_expiration") is None:
            yield f"{key}: persistent_client_expiration is not set: abandoned sessions are kept forever"


def sys_interval(props, _cfg):
    for key, conf in mosquitto_confs(props).items():
        if int(setting(conf, "sys_interval") or "10") <= 0:
            yield f"{key}: sys_interval is 0: no $SYS metrics for probes and exporters"


def password_hashes(props, cfg):
    text = object_data(props).get("passwd")
    if text is None:
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        user, _, hashed = line.partition(":")
        match = re.match(r"^\$7\$(\d+)\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$", hashed)
        if not match:
            yield f"passwd line {number} ({user}): not a $7$ PBKDF2-SHA512 hash"
        elif int(match.group(1)) < cfg["minimumIterations"]:
            yield f"passwd line {number} ({user}): {match.group(1)} PBKDF2 iterations (minimum {cfg['minimumIterations']})"


def _acl_users(text):
    """(role, user, [(keyword, rest)]) per `user` block; the role comes from the `# role:` line before it."""
    blocks, role = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# role:"):
            role = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("user "):
            blocks.append((role, stripped[5:].strip(), []))
            role = None
        elif stripped and not stripped.startswith("#") and blocks:
            keyword, _, rest = stripped.partition(" ")
            blocks[-1][2].append((keyword, rest))
    return blocks


def acl_wildcards(props, cfg):
    text = object_data(props).get("acl")
    if text is None:
        return
    allowed = set(cfg["wildcardRoles"])
    for role, user, rules in _acl_users(text):
        for keyword, rest in rules:
            if keyword == "topic" and rest.split()[-1] == "#" and rest.split()[0] in ("#", "readwrite", "write"):
                if role not in allowed:
                    yield f"acl: user {user} (role {role or 'unknown'}) may write to every topic ('{rest}')"


def acl_patterns_by_username(props, _cfg):
    text = object_data(props).get("acl")
    for line in (text or "").splitlines():
        if line.strip().startswith("pattern ") and "%c" in line and "%u" not in line:
            yield f"acl: '{line.strip()}' keys devices by client id, which any client can choose; use %u"


DATA_PATH = {"dataPath": {"type": "string", "default": "/mosquitto/data"}}

POLICIES = [
    resource_policy("broker-no-anonymous", "Brokers refuse anonymous clients on every non-loopback listener.",
                    MANDATORY, "Set broker.auth.allowAnonymous: false; the health listener stays on 127.0.0.1.",
                    [CONFIG_MAP], no_anonymous),
    resource_policy("broker-tls-on-network-listeners", "Every non-loopback listener speaks TLS.", ADVISORY,
                    "Give each listener tls: true (keep plain MQTT to development stacks).",
                    [CONFIG_MAP], tls_everywhere),
    resource_policy("broker-tls-minimum-version", "TLS listeners refuse versions older than the minimum.", MANDATORY,
                    "Set tlsVersion: tlsv1.2 or tlsv1.3 on every TLS listener.", [CONFIG_MAP], tls_version,
                    {"minimumTlsVersion": {"type": "string", "enum": ["tlsv1.2", "tlsv1.3"], "default": "tlsv1.2"}}),
    resource_policy("broker-mtls-coherent", "Listeners that require certificates name a CA and use the certificate "
                    "as the identity.", MANDATORY,
                    "Use requireCertificate: true on a tls listener; the component adds cafile and "
                    "use_identity_as_username.", [CONFIG_MAP], mtls_coherent),
    resource_policy("broker-acl-present", "Every authenticated listener is governed by an ACL.", MANDATORY,
                    "Keep acl_file on each listener (the component writes it).", [CONFIG_MAP], acl_present),
    resource_policy("broker-limits", "Connection, packet, queue and keepalive limits are set.", MANDATORY,
                    "Set broker.limits (or a preset) so one client cannot exhaust the broker.", [CONFIG_MAP], limits),
    resource_policy("broker-persistence", "Persistence lives on the data volume with autosave and session expiry.",
                    MANDATORY, "Keep broker.persistence.enabled with autosaveInterval > 0 and a sessionExpiry.",
                    [CONFIG_MAP], persistence, DATA_PATH),
    resource_policy("broker-sys-metrics", "$SYS metrics are published (probes, exporters).", ADVISORY,
                    "Keep sys_interval > 0.", [CONFIG_MAP], sys_interval),
    resource_policy("broker-password-hashes", "Password files hold $7$ PBKDF2-SHA512 hashes with enough iterations.",
                    MANDATORY, "Raise broker.auth.passwordIterations (mosquitto_passwd's own default is 101).",
                    [SECRET], password_hashes,
                    {"minimumIterations": {"type": "integer", "minimum": 1, "default": 210000}}),
    resource_policy("broker-acl-no-device-wildcards", "Only admin and bridge identities may write to every topic.",
                    MANDATORY, "Grant devices their own topics (factory or Sparkplug templates) instead of '#'.",
                    [SECRET], acl_wildcards,
                    {"wildcardRoles": {"type": "array", "items": {"type": "string"}, "default": ["admin", "bridge"]}}),
    resource_policy("broker-acl-patterns-by-username", "Pattern rules key devices by user name (%u), not client id.",
                    ADVISORY, "Write pattern rules with %u; client ids are chosen by the client.",
                    [SECRET], acl_patterns_by_username),
]
