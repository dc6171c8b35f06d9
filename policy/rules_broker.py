"""Mosquitto configuration rules, read from the ConfigMaps (mosquitto.conf) and Secrets (passwd, ACL)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from .policy_kit import (ADVISORY, CONFIG_MAP, MANDATORY, SECRET, TLS_ORDER, WORKLOADS, as_int, as_list, as_map,
                        as_text, atoi, containers, is_loopback, metadata, mosquitto_confs, name_of, namespace_of,
                        object_data, passwd_lines, pod_spec, resource_policy, setting, stack_policy)
from ..stacks.grammar import is_open_cidr, matches_everything_from_depth, ranges_cover_everything, topic_matches


def _listeners(props):
    for key, conf in mosquitto_confs(props).items():
        for lst in conf.listeners:
            yield key, lst


def _anonymous(lst) -> bool:
    return lst.settings.get("allow_anonymous") == "true" and not is_loopback(lst.bind)


def no_anonymous(props, _cfg):
    """Anonymous clients only on a listener made for them: one that reads an ACL file no other listener reads, so
    its anonymous rules are written for it alone (with per_listener_settings each listener loads its own
    acl_file; mosquitto_conf._listener_block cites where mosquitto reads the anonymous rules)."""
    for key, conf in mosquitto_confs(props).items():
        readers: dict[str, int] = {}
        for lst in conf.listeners:
            if lst.settings.get("acl_file"):
                readers[lst.settings["acl_file"]] = readers.get(lst.settings["acl_file"], 0) + 1
        for lst in conf.listeners:
            if _anonymous(lst) and readers.get(lst.settings.get("acl_file"), 0) != 1:
                yield (f"{key}: listener {lst.port} allows anonymous clients on a non-loopback address without an "
                       "ACL file of its own")


def tls_everywhere(props, _cfg):
    for key, lst in _listeners(props):
        if not lst.tls and not is_loopback(lst.bind):
            yield f"{key}: listener {lst.port} ({lst.name or lst.protocol}) carries MQTT without TLS"


def tls_version(props, cfg):
    minimum = as_text(cfg.get("minimumTlsVersion"), "tlsv1.2")
    wanted = TLS_ORDER.get(minimum, TLS_ORDER["tlsv1.2"])
    for key, lst in _listeners(props):
        version = lst.settings.get("tls_version")
        if lst.tls and TLS_ORDER.get(version or "tlsv1", 0) < wanted:
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
            if not is_loopback(lst.bind) and atoi(value, -1) <= 0:
                yield f"{key}: listener {lst.port} has no connection limit (max_connections {value})"


def bridge_only(conf) -> bool:
    """A mosquitto with bridges and no client listener besides loopback ones (the cloud bridge's health listener):
    its only persistent sessions are its bridges' own."""
    return bool(conf.bridges) and all(is_loopback(lst.bind) for lst in conf.listeners)


def persistence(props, cfg):
    """Persistence on the data volume with autosave; session expiry where clients keep sessions.

    A bridge-only mosquitto (the cloud bridge: bridges, and a loopback health listener whose probe uses clean
    sessions) must NOT set persistent_client_expiration: a disconnected bridge whose session has an expiry goes on
    mosquitto's expiry list and loses its queue when the remote stays away that long (eclipse/mosquitto v2.0.11
    src/context.c:218-231); without one, a never-expiring session is not listed at all (src/session_expiry.c:50-56)."""
    data_path = as_text(cfg.get("dataPath"), "/mosquitto/data")
    for key, conf in mosquitto_confs(props).items():
        if setting(conf, "persistence") != "true":
            yield f"{key}: persistence is off: retained messages and sessions are lost on restart"
            continue
        location = setting(conf, "persistence_location") or ""
        if not location.startswith(data_path):
            yield f"{key}: persistence_location {location or '(working directory)'} is not on the data volume " \
                  f"{data_path}"
        if atoi(setting(conf, "autosave_interval") or "1800") <= 0:
            yield f"{key}: autosave_interval must be > 0"
        expiration = setting(conf, "persistent_client_expiration")
        if bridge_only(conf):
            if expiration is not None:
                yield (f"{key}: persistent_client_expiration {expiration} on a bridge-only mosquitto: a bridge whose "
                       "remote stays away that long loses its session and every message queued for it (remove it)")
        elif expiration is None:
            yield f"{key}: persistent_client_expiration is not set: abandoned sessions are kept forever"


def sys_interval(props, _cfg):
    for key, conf in mosquitto_confs(props).items():
        if atoi(setting(conf, "sys_interval") or "10") <= 0:
            yield f"{key}: sys_interval is 0: no $SYS metrics for probes and exporters"


# --- ACL files, read as mosquitto reads them ----------------------------------------------------------------
#
# eclipse/mosquitto v2.0.20 src/security_default.c, aclfile__parse() (lines 508-640): a line whose first
# character is '#' is a comment (550); `topic [read|write|readwrite|deny] <topic>` and the same for `pattern`
# (555-606): without an access word the one word left is the topic and access is read+write (577-581, 590),
# the topic is the rest of the line with blanks trimmed; `user <name>` (607-626) makes every later `topic` line
# that user's, and `topic` lines before any `user` line belong to anonymous clients. add__acl() (lines 205-299)
# looks the user name up in the list built so far and APPENDS the rules to an existing entry (lines 227-230):
# two `user X` blocks are one user X with the rules of both. `pattern` lines (add__acl_pattern, 301-366) apply
# to every client, with %u / %c replaced by its user name / client id wherever they occur
# (mosquitto_acl_check_default, lines 469-486; names with + or # are refused there, 436-444).

READ, WRITE = 1, 2
ACCESS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": 0}


@dataclass
class AclRule:
    kind: str          # topic or pattern
    access: int        # READ | WRITE bits; 0 = deny
    topic: str
    line: int

    @property
    def text(self) -> str:
        word = {READ: "read", WRITE: "write", READ | WRITE: "readwrite", 0: "deny"}[self.access]
        return f"{self.kind} {word} {self.topic}"


@dataclass
class AclBlock:
    user: Optional[str]          # None: the anonymous rules before any `user` line
    role: Optional[str]
    line: int
    rules: list[AclRule] = field(default_factory=list)


@dataclass
class AclFile:
    blocks: list[AclBlock] = field(default_factory=list)
    patterns: list[AclRule] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_acl(text: str) -> AclFile:
    """An ACL file as mosquitto 2.0 reads it; `# role: x` comments (as components/acl.py writes them) name roles."""
    acl = AclFile()
    anonymous = AclBlock(None, None, 0)
    current, role = anonymous, None
    for number, raw in enumerate(as_text(text).splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("#"):
            if line.startswith("# role:"):
                role = line.split(":", 1)[1].strip() or None
            continue
        parts = line.split(None, 1)
        if not parts:
            continue
        keyword, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        if keyword in ("topic", "pattern"):
            words = rest.split(None, 1)
            if not words:
                acl.errors.append(f"line {number}: empty {keyword}")
                continue
            if len(words) == 1:
                access, topic = READ | WRITE, words[0].strip()
            elif words[0] in ACCESS:
                access, topic = ACCESS[words[0]], words[1].strip()
            else:  # mosquitto refuses the file: "Invalid topic access type"
                acl.errors.append(f"line {number}: invalid access type {words[0]!r}")
                continue
            rule = AclRule(keyword, access, topic, number)
            (acl.patterns if keyword == "pattern" else current.rules).append(rule)
        elif keyword == "user":
            current = AclBlock(rest.strip(), role, number)
            acl.blocks.append(current)
            role = None
        else:
            acl.errors.append(f"line {number}: invalid line")
    if anonymous.rules:
        acl.blocks.insert(0, anonymous)
    return acl


SPARKPLUG_PROBES = ("spBv1.0/g-7qx/NBIRTH/n-7qx", "spBv1.0/g-7qx/NDATA/n-7qx", "spBv1.0/g-7qx/NCMD/n-7qx",
                    "spBv1.0/g-7qx/DDATA/n-7qx/d-7qx", "spBv1.0/g-7qx/DCMD/n-7qx/d-7qx", "spBv1.0/STATE/h-7qx")
"""Sparkplug B 3.0 topics (spBv1.0/group/type/node[/device], spBv1.0/STATE/host) with names nobody uses: a
filter that matches all of them pins neither group, message type nor node -- the whole namespace."""
SUBSTITUTE = "x-7qx"
"""What %u / %c become when judging a pattern: one level of text (mosquitto refuses names with + or #)."""


def _judged(topic: str) -> str:
    """mosquitto 2.0.20 replaces %u and %c wherever they occur (security_default.c lines 469-486)."""
    return topic.replace("%u", SUBSTITUTE).replace("%c", SUBSTITUTE)


def _matches(topic_filter: str, topic: str) -> bool:
    try:
        return topic_matches(topic_filter, topic)
    except ValueError:  # not a valid filter: mosquitto refuses the file (mosquitto_sub_topic_check)
        return False


def catch_all_depth(topic_filter: str) -> Optional[int]:
    """Depth from which the filter matches every topic ('#', '+/#' -> 1; '+/+/#' -> 2), else None."""
    return matches_everything_from_depth(_judged(topic_filter))


def whole_sparkplug(topic_filter: str) -> bool:
    judged = _judged(topic_filter)
    return all(_matches(judged, probe) for probe in SPARKPLUG_PROBES)


def _verb(access: int) -> str:
    return {READ: "read", WRITE: "write to", READ | WRITE: "read and write"}[access]


def _grant_problem(rule: AclRule, write_all: bool, read_all: bool, host: bool) -> Optional[str]:
    """What a grant amounts to when it is more than its holder may have, else None."""
    if rule.access == 0:
        return None
    depth = catch_all_depth(rule.topic)
    if depth is not None and (rule.access & WRITE and not write_all or not rule.access & WRITE and not read_all):
        scope = "every topic" if depth <= 1 else f"every topic of {depth} or more levels"
        return f"may {_verb(rule.access)} {scope} ('{rule.text}')"
    if depth is None and whole_sparkplug(rule.topic) and not write_all \
            and (rule.access & WRITE or not (host or read_all)):
        return f"may {_verb(rule.access)} the whole Sparkplug namespace ('{rule.text}')"
    return None


def acl_wildcards(props, cfg):
    """Every ACL file of a Secret: the shared `acl` and each listener's own `<listener>.acl`."""
    writers = set(as_list(cfg.get("wildcardRoles")))
    readers = writers | set(as_list(cfg.get("readEverythingRoles")))
    hosts = writers | set(as_list(cfg.get("sparkplugHostRoles")))
    for key, text in sorted(object_data(props).items()):
        if key != "acl" and not key.endswith(".acl"):
            continue
        acl = parse_acl(text)
        for block in acl.blocks:
            who = "anonymous clients" if block.user is None else f"user {block.user} (role {block.role or 'unknown'})"
            role = block.role if block.user is not None else None
            for rule in block.rules:
                problem = _grant_problem(rule, role in writers, role in readers, role in hosts)
                if problem:
                    yield f"{key} line {rule.line}: {who} {problem}"
        for rule in acl.patterns:  # a pattern applies to every client, whatever its role
            problem = _grant_problem(rule, False, False, False)
            if problem:
                yield f"{key} line {rule.line}: every client {problem}"


OTHERS = ("spBv1.0/{1}/NBIRTH/n-7qx", "spBv1.0/{1}/NDATA/n-7qx", "spBv1.0/{1}/NDEATH/n-7qx",
          "spBv1.0/{1}/DDATA/n-7qx/d-7qx", "spBv1.0/{1}/NCMD/n-7qx", "spBv1.0/{1}/DCMD/n-7qx/d-7qx",
          "spBv1.0/STATE/h-7qx", "factory/{1}/u-7qx/data/x", "factory/{1}/u-7qx/cmd/x")
"""Topics that belong to somebody else: another edge node's births, data and commands, a host's STATE, another
device's telemetry and commands ({1} is the group or zone the filter names, so a grant over a whole group counts)."""


def _speaks_for_others(topic_filter: str) -> Optional[str]:
    levels = topic_filter.split("/")
    place = levels[1] if len(levels) > 1 and levels[1] not in ("+", "#") else "g-7qx"
    for template in OTHERS:
        probe = template.replace("{1}", place)
        if _matches(_judged(topic_filter), probe):
            return probe.replace("n-7qx", "<another node>").replace("h-7qx", "<a host>").replace(
                "u-7qx", "<another device>").replace("d-7qx", "<a device>").replace("g-7qx", "<any group>")
    return None


def acl_impersonation(props, cfg):
    """Devices and edge nodes write only as themselves: commands, births and host STATE of others are refused."""
    text = object_data(props).get("acl")
    if text is None:
        return
    roles = set(as_list(cfg.get("ownTopicsRoles")))
    for block in parse_acl(text).blocks:
        if block.user is None or block.role not in roles:
            continue
        for rule in block.rules:
            if rule.access & WRITE and catch_all_depth(rule.topic) is None:
                other = _speaks_for_others(rule.topic)
                if other:
                    yield (f"acl line {rule.line}: user {block.user} (role {block.role}) may write as another "
                           f"client ('{rule.text}' covers {other})")


def acl_patterns_by_username(props, _cfg):
    text = object_data(props).get("acl")
    for rule in parse_acl(text or "").patterns:
        if "%c" in rule.topic and "%u" not in rule.topic:
            yield f"acl: 'pattern {rule.topic}' keys devices by client id, which any client can choose; use %u"
        elif rule.topic.split("/")[0] in ("%u", "%c") and rule.access:
            yield (f"acl: 'pattern {rule.topic}' makes the name the topic root: a user named like a namespace "
                   "(spBv1.0, factory) would own it; put a fixed prefix first, e.g. devices/%u/#")


SESSION_UNITS = {"h": 1, "d": 24, "w": 24 * 7, "m": 24 * 30, "y": 24 * 365}


def session_expiry(props, cfg):
    """Sessions of clients that never come back hold their queues until they expire."""
    limit = atoi(cfg.get("maximumSessionHours"), 24 * 365)
    for key, conf in mosquitto_confs(props).items():
        value = (setting(conf, "persistent_client_expiration") or "").strip()
        if value[:-1].isdigit() and value[-1:] in SESSION_UNITS:
            hours = int(value[:-1]) * SESSION_UNITS[value[-1]]
            if hours > limit:
                yield (f"{key}: persistent_client_expiration {value} keeps an abandoned session and its queue for "
                       f"{hours} h (at most {limit} h)")


# --- one name, one identity ----------------------------------------------------------------------------------

def _certificates(text: str):
    """Every X.509 certificate in a PEM text (bundles and cert+key files too); unreadable blocks are skipped."""
    from cryptography import x509

    for block in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S):
        try:
            yield x509.load_pem_x509_certificate(block.encode())
        except Exception:  # noqa: BLE001 - a malformed block is judged by pki-ca-in-use, not here
            continue


def _client_identity(cert) -> Optional[str]:
    """The CN mosquitto takes as user name (use_identity_as_username), if the certificate may be a client's."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            return None
    except x509.ExtensionNotFound:
        pass
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            return None
    except x509.ExtensionNotFound:
        pass
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _mounted_secrets(resources):
    """(secret name, namespace, workload name, mount path) for every Secret volume a workload mounts."""
    for r in resources:
        if not str(r.resource_type).startswith(("kubernetes:apps/", "kubernetes:batch/")):
            continue
        props = as_map(r.props)
        namespace = as_map(props.get("metadata")).get("namespace")
        spec = as_map(as_map(as_map(props.get("spec")).get("template")).get("spec"))
        mounts = {}
        for c in as_list(spec.get("containers")) + as_list(spec.get("initContainers")):
            for m in as_list(as_map(c).get("volumeMounts")):
                mounts.setdefault(as_map(m).get("name"), as_text(as_map(m).get("mountPath")))
        for volume in as_list(spec.get("volumes")):
            volume = as_map(volume)
            sources = [as_map(volume.get("secret")).get("secretName")]
            sources += [as_map(as_map(s).get("secret")).get("name")
                        for s in as_list(as_map(volume.get("projected")).get("sources"))]
            for secret_name in sources:
                if isinstance(secret_name, str):
                    yield secret_name, namespace, name_of(props), mounts.get(volume.get("name"), "")


def internal_identities(resources) -> dict[str, str]:
    """Certificate identities of the estate's own clients -> where they live: the client certificates the
    workloads mount (the bridges' certificate, the frontend's health-check certificate)."""
    secrets = {(name_of(r.props), as_map(as_map(r.props).get("metadata")).get("namespace")): r
               for r in resources if r.resource_type == SECRET}
    found: dict[str, str] = {}
    for secret_name, namespace, workload, path in _mounted_secrets(resources):
        secret = secrets.get((secret_name, namespace))
        if secret is None:
            continue
        for key, text in object_data(secret.props).items():
            if key == "ca.crt" or "-----BEGIN CERTIFICATE-----" not in text:
                continue
            for cert in _certificates(text):
                identity = _client_identity(cert)
                if identity:
                    found.setdefault(identity, f"the client certificate in Secret {secret_name} ({key}), "
                                               f"mounted by {workload} at {path or '?'}")
    return found


def _acl_rules_of(resources, user: str) -> list[str]:
    rules = []
    for r in resources:
        if r.resource_type == SECRET:
            for block in parse_acl(object_data(r.props).get("acl") or "").blocks:
                if block.user == user:
                    rules += [rule.text for rule in block.rules]
    return rules


def unique_identities(resources, _cfg):
    for r in resources:
        if r.resource_type != SECRET:
            continue
        data = object_data(r.props)
        if "acl" in data:
            lines: dict[str, list[int]] = {}
            for block in parse_acl(data["acl"]).blocks:
                if block.user is not None:
                    lines.setdefault(block.user, []).append(block.line)
            for user, where in lines.items():
                if len(where) > 1:
                    yield r, (f"acl: user {user} has {len(where)} blocks (lines {', '.join(map(str, where))}); "
                              f"mosquitto merges blocks of one name, so every holder of the name {user} gets "
                              f"the rules of all of them")
    identities = None
    for r in resources:
        if r.resource_type != SECRET or "passwd" not in object_data(r.props):
            continue
        if identities is None:
            identities = internal_identities(resources)
        for number, user, _ in passwd_lines(object_data(r.props)["passwd"]):
            if user and user in identities:
                rules = _acl_rules_of(resources, user)
                granted = f" and with it the ACL rules of that identity ({'; '.join(rules[:3])})" if rules else ""
                yield r, (f"passwd line {number}: password user {user} has the name of an internal certificate "
                          f"identity, {identities[user]}: a password login as {user} would be that identity"
                          f"{granted}")


# --- anonymous listeners only admit named networks -----------------------------------------------------------
#
# Who reaches a broker port is what the NetworkPolicies that select its pods admit together: policies "are
# additive" (kubernetes/website content/en/docs/concepts/services-networking/network-policies.md:36), and in
# k8s.io/api networking/v1 types.go a NetworkPolicyIngressRule whose `from` is "empty or missing ... matches all
# sources", one whose `ports` is empty or missing matches all ports. Pods as peers (the frontend) pass the question
# on to what those pods forward: an HAProxy frontend whose backend servers use the port admits every source
# unless it rejects the others by `src` first (components/haproxy_cfg.py cites HAProxy's documentation).

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _mounting(resources, config_map: str, namespace) -> list:
    """The workloads in `namespace` whose pods mount the ConfigMap named `config_map`."""
    return [w for w in resources if w.resource_type in WORKLOADS and namespace_of(w.props) == namespace
            and any(as_map(as_map(v).get("configMap")).get("name") == config_map
                    for v in as_list(pod_spec(w.props).get("volumes")))]


def _template_labels(workload) -> dict:
    return dict(as_map(metadata(as_map(as_map(workload.props).get("spec")).get("template")).get("labels")))


def _selects(selector, labels: dict) -> bool:
    """matchLabels against pod labels; a selector with matchExpressions is taken to select (fail closed)."""
    return all(labels.get(k) == v for k, v in as_map(as_map(selector).get("matchLabels")).items())


def _port_names(workload, port: int) -> set[str]:
    return {as_text(as_map(p).get("name")) for c in containers(workload.props)
            for p in as_list(as_map(c).get("ports")) if as_int(as_map(p).get("containerPort")) == port}


def _admits_port(rule, port: int, names: set[str]) -> bool:
    """Whether an ingress rule covers the port: no `ports` covers all; an entry by number (up to endPort) or name."""
    entries = [as_map(entry) for entry in as_list(as_map(rule).get("ports"))]
    if not entries:
        return True
    for entry in entries:
        text = as_text(entry.get("port")).strip()
        if not text or text in names:
            return True
        if text.isdigit() and int(text) <= port <= (as_int(entry.get("endPort")) or int(text)):
            return True
    return False


def _ranges_problem(ranges: list[str], where: str) -> Optional[str]:
    if any(is_open_cidr(r) for r in ranges) or ranges_cover_everything(ranges):
        return f"{where} admits every address ({', '.join(ranges)})"
    return None


def _haproxy_forwarding(text: str, port: int) -> Optional[str]:
    """None when every HAProxy frontend that forwards to `port` rejects all but named sources first."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            current = " ".join(line.split()[:2])
            sections[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            sections[current].append(line.strip())
    for header, lines in sections.items():
        if not header.startswith(("frontend ", "listen ")):
            continue
        backends = [line.split()[1] for line in lines if line.startswith(("default_backend ", "use_backend "))]
        servers = [line for b in backends for line in sections.get(f"backend {b}", []) if line.startswith("server ")]
        servers += [line for line in lines if line.startswith("server ")]
        if not any(len(s.split()) > 2 and s.split()[2].rsplit(":", 1)[-1] == str(port) for s in servers):
            continue
        # the first connection rule decides (rules run in order, 13133-13134 of HAProxy's configuration.txt)
        first = next((line for line in lines if line.startswith("tcp-request connection ")), "")
        check = re.match(r"^tcp-request connection reject unless \{ src (.+) \}$", first)
        if check is None:
            return f"HAProxy {header} forwards it from every source, with no `tcp-request connection reject " \
                   "unless { src ... }`"
        problem = _ranges_problem(check.group(1).split(), f"HAProxy {header}'s source check")
        if problem:
            return problem
    return None


def _source_problem(resources, workloads, namespace, port: int) -> Optional[str]:
    """Why anyone may reach `port` on these workloads' pods, or None when only named networks can."""
    if not workloads:
        return "no workload mounts its ConfigMap, so no NetworkPolicy can be matched to it"
    policies = [p for p in resources if p.resource_type == NETWORK_POLICY and namespace_of(p.props) == namespace]
    for workload in workloads:
        labels = _template_labels(workload)
        names = _port_names(workload, port)
        covering = [p for p in policies if _selects(as_map(as_map(p.props).get("spec")).get("podSelector"), labels)
                    and "Ingress" in (as_list(as_map(as_map(p.props).get("spec")).get("policyTypes")) or ["Ingress"])]
        if not covering:
            return f"no NetworkPolicy limits who connects to {name_of(workload.props)}'s pods"
        ranges: list[str] = []
        for policy in covering:
            for rule in as_list(as_map(as_map(policy.props).get("spec")).get("ingress")):
                if not _admits_port(rule, port, names):
                    continue
                peers = [as_map(peer) for peer in as_list(as_map(rule).get("from"))]
                if not peers:
                    return f"NetworkPolicy {name_of(policy.props)} admits every source on it"
                for peer in peers:
                    if peer.get("ipBlock") is not None:
                        ranges.append(as_text(as_map(peer.get("ipBlock")).get("cidr")))
                    elif peer.get("namespaceSelector") is not None:
                        return f"NetworkPolicy {name_of(policy.props)} admits pods of other namespaces on it"
                    else:  # pods of this namespace: named sources, unless they proxy the port onwards
                        for proxy in _proxies(resources, namespace, peer.get("podSelector")):
                            problem = _haproxy_forwarding(proxy, port)
                            if problem:
                                return problem
        problem = _ranges_problem(ranges, "its NetworkPolicy ipBlocks together")
        if problem:
            return problem
    return None


def _proxies(resources, namespace, selector) -> list[str]:
    """The haproxy.cfg of every workload in `namespace` whose pods `selector` selects (frontend pods as peers)."""
    config_maps = {name_of(r.props): object_data(r.props).get("haproxy.cfg") for r in resources
                   if r.resource_type == CONFIG_MAP and namespace_of(r.props) == namespace}
    found = []
    for workload in resources:
        if workload.resource_type in WORKLOADS and namespace_of(workload.props) == namespace \
                and _selects(selector, _template_labels(workload)):
            for volume in as_list(pod_spec(workload.props).get("volumes")):
                text = config_maps.get(as_map(as_map(volume).get("configMap")).get("name"))
                if text:
                    found.append(text)
    return found


def anonymous_restricted(resources, _cfg):
    """Every non-loopback anonymous listener of every mosquitto.conf, judged on the pods that mount it."""
    for config_map in [r for r in resources if r.resource_type == CONFIG_MAP]:
        namespace = namespace_of(config_map.props)
        workloads = None
        for key, conf in mosquitto_confs(config_map.props).items():
            for lst in filter(_anonymous, conf.listeners):
                if workloads is None:
                    workloads = _mounting(resources, name_of(config_map.props), namespace)
                problem = _source_problem(resources, workloads, namespace, lst.port)
                if problem:
                    yield config_map, (f"{key}: listener {lst.port} allows anonymous clients from every address: "
                                       f"{problem} (name the networks in the listener's sourceRanges)")


DATA_PATH = {"dataPath": {"type": "string", "default": "/mosquitto/data"}}

POLICIES = [
    resource_policy("broker-no-anonymous", "Brokers refuse anonymous clients on every non-loopback listener, "
                    "except a listener made for them: one with an ACL file of its own, whose anonymous rules are "
                    "written for that listener alone.", MANDATORY,
                    "Remove broker.auth.allowAnonymous; for legacy sensors set allowAnonymous and anonymousTopics on "
                    "the one listener that needs it. The health listener stays on 127.0.0.1.",
                    [CONFIG_MAP], no_anonymous),
    stack_policy("broker-anonymous-listener-restricted",
                 "A non-loopback listener that allows anonymous clients admits only named networks: the "
                 "NetworkPolicy rules for its port have ipBlock peers that are not open, or, where the frontend "
                 "carries the port, the HAProxy frontend rejects every other source.", MANDATORY,
                 "Set sourceRanges on the listener (the sensors' networks, never 0.0.0.0/0 or ::/0).",
                 anonymous_restricted),
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
    resource_policy("broker-persistence", "Persistence lives on the data volume with autosave and session expiry "
                    "(none on a bridge-only mosquitto such as the cloud bridge, whose bridge sessions must never "
                    "expire).", MANDATORY, "Keep broker.persistence.enabled with autosaveInterval > 0 and a "
                    "sessionExpiry; a cloud bridge's mosquitto.conf sets no persistent_client_expiration.",
                    [CONFIG_MAP], persistence, DATA_PATH),
    resource_policy("broker-session-expiry-bounded", "Abandoned sessions expire within a year.", ADVISORY,
                    "Set broker.persistence.sessionExpiry to the longest outage a device may have (e.g. 7d-90d).",
                    [CONFIG_MAP], session_expiry,
                    {"maximumSessionHours": {"type": "integer", "minimum": 1, "default": 24 * 365}}),
    resource_policy("broker-sys-metrics", "$SYS metrics are published (probes, exporters).", ADVISORY,
                    "Keep sys_interval > 0.", [CONFIG_MAP], sys_interval),
    resource_policy("broker-acl-no-device-wildcards",
                    "No ACL grant amounts to a catch-all: '#', '+/#', '+/+/#' and the like, or a whole Sparkplug "
                    "namespace, in user blocks (by role), anonymous rules and pattern lines (which apply to every "
                    "client). Only admin and bridge identities may use every topic.",
                    MANDATORY, "Grant devices their own topics (factory or Sparkplug templates, pattern "
                    "devices/%u/#) instead of catch-alls; only Sparkplug host applications read spBv1.0/#.",
                    [SECRET], acl_wildcards,
                    {"wildcardRoles": {"type": "array", "items": {"type": "string"}, "default": ["admin", "bridge"]},
                     "readEverythingRoles": {"type": "array", "items": {"type": "string"},
                                             "default": ["host-application", "dashboard"]},
                     "sparkplugHostRoles": {"type": "array", "items": {"type": "string"},
                                            "default": ["host-application"]}}),
    resource_policy("broker-acl-no-impersonation",
                    "Devices and edge nodes write only their own topics: no grant covers another edge node's "
                    "births, data or commands, a host application's STATE, or another device's factory topics.",
                    MANDATORY, "Use the factory and Sparkplug templates, which grant each device its own topics; "
                    "commands belong to host applications.", [SECRET], acl_impersonation,
                    {"ownTopicsRoles": {"type": "array", "items": {"type": "string"},
                                        "default": ["device", "edge-node"]}}),
    resource_policy("broker-acl-patterns-by-username", "Pattern rules key devices by user name (%u), not client id.",
                    ADVISORY, "Write pattern rules with %u; client ids are chosen by the client.",
                    [SECRET], acl_patterns_by_username),
    stack_policy("broker-acl-unique-identities",
                 "Each identity has one name: no user name has two ACL blocks (mosquitto merges them), and no "
                 "password user is named like an internal certificate identity (the bridges', the frontend's "
                 "health check), whose ACL rules a password login would inherit.", MANDATORY,
                 "Rename the user: internal identities (<broker>-bridge, <broker>-frontend-check) are reserved, and "
                 "each user appears once in users.", unique_identities),
]
