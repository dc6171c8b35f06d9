"""Kubernetes rules: restricted pods, pinned images, resources, probes, exposure, network and disruption."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional

from .policy_kit import (ADVISORY, CONFIG_MAP, MANDATORY, SECRET, WORKLOADS, as_bool, as_int, as_list, as_map,
                        as_text, container_name, containers, labels_of, metadata, name_of, namespace_of, object_data,
                        plain, pod_spec, resource_policy, stack_policy)
from ..components.kube import PART_OF
from ..stacks.grammar import is_open_cidr, ranges_cover_everything

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_?KEY)", re.I)
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
PASSWORD_HASH = re.compile(r"\$(?:7|6|5|2[aby]?|1)\$[./A-Za-z0-9+=]+\$[./A-Za-z0-9+=]{16,}|\$argon2(?:id|i|d)\$")
"""crypt-style hashes: mosquitto's $7$ (PBKDF2-SHA512), $6$/$5$ (SHA-crypt), $2y$ (bcrypt), $1$ (MD5), argon2."""
SAS_TOKEN = re.compile(r"SharedAccessSignature|SharedAccessKey\s*=|AccountKey\s*=", re.I)
ASSIGNED_SECRET = re.compile(r"(?i)([\w.-]*(?:password|passwd|secret|token|api[_-]?key|psk)[\w.-]*)\s*[:=]\s*"
                             r"[\"']?[^\s\"'$%{<]")
"""`name = value` / `name: value` with a secret-sounding name and a literal value (not $VAR, ${...}, {{ }})."""
SECRET_WORDS = re.compile(r"(?i)(password|passwd|secret|token|psk|credential|api_?key)")
NOT_A_SECRET = {"password_file", "psk_file", "psk_hint", "bridge_identity"}
"""mosquitto options whose names sound secret but whose values are not: paths and the public PSK identity/hint."""
NOT_A_SECRET_SUFFIXES = ("_file", "_path", "_dir", "_hint", "_identity", "_hasher", "_iterations", "_algorithm",
                         "_length", "_keylen", "_cost", "_encoding", "_format", "_type", "_url", "_uri")
"""Options named after a secret that hold something else (auth_opt_password_file, auth_opt_token_url, ...)."""
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@", re.I)
"""scheme://user:password@host: credentials in a URL, whatever the option is called."""
NAMESPACED_SKIP = ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:PersistentVolume",
                   "kubernetes:storage.k8s.io", "kubernetes:rbac.authorization.k8s.io/v1:Cluster")


def _set(value) -> bool:
    """A flag that is present and not false (unreadable values count as set: fail closed)."""
    return value is not None and as_bool(value) is not False


def restricted(props, _cfg):
    pod = pod_spec(props)
    pod_ctx = as_map(pod.get("securityContext"))
    for c in containers(props):
        ctx = as_map(c.get("securityContext"))
        name = container_name(c)
        non_root = as_bool(ctx.get("runAsNonRoot"))
        if not (non_root is True or (ctx.get("runAsNonRoot") is None and as_bool(pod_ctx.get("runAsNonRoot")))):
            yield f"container {name}: runAsNonRoot is not set"
        if as_bool(ctx.get("allowPrivilegeEscalation")) is not False:
            yield f"container {name}: allowPrivilegeEscalation is not false"
        if "ALL" not in as_list(as_map(ctx.get("capabilities")).get("drop")):
            yield f"container {name}: capabilities are not dropped (drop: [ALL])"
        seccomp = as_map(ctx.get("seccompProfile") or pod_ctx.get("seccompProfile")).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"container {name}: no RuntimeDefault seccomp profile"
        if _set(ctx.get("privileged")):
            yield f"container {name}: privileged"
    if any(_set(pod.get(key)) for key in ("hostNetwork", "hostPID", "hostIPC")):
        yield "pod shares host namespaces"


def read_only_root(props, _cfg):
    for c in containers(props):
        if as_bool(as_map(c.get("securityContext")).get("readOnlyRootFilesystem")) is not True:
            yield f"container {container_name(c)}: root filesystem is writable"


def pinned_images(props, cfg):
    registries = [r for r in as_list(cfg.get("allowedRegistries")) if isinstance(r, str)]
    for c in containers(props):
        image = as_text(c.get("image"))
        if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            yield f"container {container_name(c)}: image {image!r} is not pinned to a version or digest"
        if registries and not any(image.startswith(prefix) for prefix in registries):
            yield f"container {container_name(c)}: image {image!r} is not from an allowed registry " \
                  f"({', '.join(registries)})"


def requests_limits(props, _cfg):
    for c in containers(props):
        res = as_map(c.get("resources"))
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in as_map(res.get(kind)):
                    yield f"container {container_name(c)}: no {what} {kind[:-1]}"


def probes(props, _cfg):
    for c in as_list(pod_spec(props).get("containers")):
        c = as_map(c)
        for probe in ("readinessProbe", "livenessProbe"):
            if not c.get(probe):
                yield f"container {container_name(c)}: no {probe}"


def no_token(props, _cfg):
    if as_bool(pod_spec(props).get("automountServiceAccountToken")) is not False:
        yield "pod mounts a service-account token it does not need (automountServiceAccountToken: false)"


def _secret_option(option: str) -> bool:
    """Whether a config option name says its value is a secret (remote_password, bridge_psk, auth_opt_*secret*)."""
    name = option.lower()
    return not (name in NOT_A_SECRET or name.endswith(NOT_A_SECRET_SUFFIXES) or not SECRET_WORDS.search(name))


def _conf_secrets(key: str, text: str):
    """(line, message) for every `option value` line of a mosquitto.conf whose option holds a secret, or whose
    value is an Azure shared access signature. mosquitto reads `remote_password`/`password`, `local_password`,
    `bridge_psk` and plugin options verbatim from the config (conf.c v2.0.20 lines 1761, 1497, 1129, 838)."""
    lines = [(number, raw.strip()) for number, raw in enumerate(text.splitlines(), 1)]
    users: dict[Optional[str], tuple[int, str]] = {}
    bridge = None
    for number, line in lines:
        parts = line.split(None, 1)
        if parts and parts[0] == "connection":
            bridge = parts[1].strip() if len(parts) > 1 else "?"
        elif parts and parts[0] in ("remote_username", "username") and len(parts) > 1:
            users[bridge] = (number, parts[1].strip())
    bridge = None
    for number, line in lines:
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        option, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        if option == "connection":
            bridge = value or "?"
            continue
        if not value:
            continue
        where = f"data {key!r} line {number}: {option}" + (f" (bridge {bridge})" if bridge else "")
        if _secret_option(option):
            login = users.get(bridge) if "password" in option.lower() else None
            paired = f", the password of remote_username {login[1]} (line {login[0]})" if login else ""
            yield number, f"{where} carries a secret in plain text{paired}"
        elif SAS_TOKEN.search(value):
            yield number, f"{where} carries an Azure shared access signature or key"


def _assigned_secret(line: str) -> bool:
    for match in ASSIGNED_SECRET.finditer(line):
        if _secret_option(match.group(1).replace("-", "_")):
            return True
    return False


def no_secrets_in_config_maps(props, _cfg):
    for key, text in object_data(props).items():
        reported = set()
        if key.endswith(".conf"):
            for number, message in _conf_secrets(key, text):
                reported.add(number)
                yield message
        if PRIVATE_KEY.search(text):
            yield f"data {key!r} holds a private key"
        if PASSWORD_HASH.search(text):
            yield f"data {key!r} holds a password hash"
        for number, line in enumerate(text.splitlines(), 1):
            if number in reported:
                continue
            if SAS_TOKEN.search(line):
                yield f"data {key!r} line {number}: an Azure shared access signature or key"
            elif URL_PASSWORD.search(line):
                yield f"data {key!r} line {number}: a URL with a password in it"
            elif _assigned_secret(line):
                yield f"data {key!r} line {number}: a password or secret assigned in plain text"


def no_secret_env(props, _cfg):
    for c in containers(props):
        for env in as_list(c.get("env")):
            env = as_map(env)
            name = as_text(env.get("name"))
            if env.get("value") not in (None, "") and SECRET_NAME.search(name):
                yield f"container {container_name(c)}: env {name} carries a literal value; use secretKeyRef"


SECRET_MUTABLE = "enableSecretMutable"


def _updates_secrets_in_place(provider_props) -> bool:
    # pulumi-kubernetes takes the setting only when it is exactly "true" (provider/pkg/provider/provider.go:712-726);
    # the engine hands it a boolean input JSON-encoded, as "true" (pulumi/pulumi
    # sdk/go/common/resource/plugin/provider_plugin.go:1078-1089)
    value = plain(as_map(provider_props).get(SECRET_MUTABLE))
    return value is True or value == "true"


def secrets_mutable(props, _cfg, provider):
    """The estate's Secrets (labelled part-of mqtt-estate by components/kube.py labels()) must be updated in place.

    pulumi-kubernetes replaces a changed Secret unless its provider has enableSecretMutable, and an immutable
    Secret always (provider/pkg/provider/diff.go:28-29); the components name their Secrets, so the replacement
    deletes the old one first (provider.go:1645-1658) and a pod starting in between cannot mount it. The provider
    also reads PULUMI_K8S_ENABLE_SECRET_MUTABLE from its environment when the setting is absent (provider.go:
    718-720); that depends on the shell of whoever deploys, so only the setting counts here."""
    if labels_of(props).get("app.kubernetes.io/part-of") != PART_OF:
        return
    name = name_of(props)
    if _set(props.get("immutable")):
        yield f"Secret {name} is immutable: the provider replaces it on every change, enableSecretMutable or not " \
              "(remove `immutable`)"
    if provider is None:
        yield f"Secret {name}: Pulumi passed no provider with it, so whether it is updated in place cannot be told " \
              "(use a pulumi CLI that gives policy packs each resource's provider)"
        return
    provider_props = as_map(getattr(provider, "props", None))
    if _updates_secrets_in_place(provider_props):
        return
    found = provider_props.get(SECRET_MUTABLE)
    now = "is not set" if found is None else f"is {as_text(found)!r}, not true"
    replaced = f"{now}, so a change replaces the Secret (deleting it first: its name is fixed) instead of " \
               "updating it in place"
    provider_name = as_text(getattr(provider, "name", None), "?")
    if provider_name.startswith("default"):  # Pulumi's own test (sdk/go/common/providers/reference.go:48-51)
        yield f"Secret {name} is on the default kubernetes provider ({provider_name}), whose {SECRET_MUTABLE} " \
              f"{replaced}; set `kubernetes:{SECRET_MUTABLE}: true` in the stack config (Pulumi.yaml or " \
              "Pulumi.<stack>.yaml)"
    else:
        yield f"Secret {name} is on kubernetes provider {provider_name}, whose {SECRET_MUTABLE} {replaced}; set " \
              f"`enable_secret_mutable=True` on that provider ({SECRET_MUTABLE}: true)"


def exposure(props, _cfg):
    spec = as_map(props.get("spec"))
    kind = spec.get("type")
    if kind in ("LoadBalancer", "NodePort"):
        if labels_of(props).get("app.kubernetes.io/component") not in ("frontend", "broker"):
            yield f"service {name_of(props)} of type {kind} exposes something other than the MQTT entry point"
        ranges = spec.get("loadBalancerSourceRanges")
        ranges = [ranges] if isinstance(ranges, str) else as_list(ranges)
        if kind == "LoadBalancer":
            open_ranges = [r for r in ranges if is_open_cidr(as_text(r))]
            if not ranges:
                yield f"service {name_of(props)} is a LoadBalancer open to every address (set loadBalancerSourceRanges)"
            elif open_ranges:
                yield f"service {name_of(props)} is a LoadBalancer open to every address: loadBalancerSourceRanges " \
                      f"{', '.join(map(as_text, open_ranges))} admits everyone (name the client networks)"
            elif ranges_cover_everything(as_text(r) for r in ranges):
                yield f"service {name_of(props)} is a LoadBalancer open to every address: its loadBalancerSourceRanges " \
                      f"together admit everyone (name the client networks)"
        if kind == "NodePort":
            yield f"service {name_of(props)} opens a port on every node"


def not_default_namespace(props, _cfg):
    namespace = metadata(props).get("namespace")
    if namespace in (None, "", "default"):
        yield f"{as_text(props.get('kind'), 'object') or 'object'} {name_of(props)} is in the default namespace"


def namespace_pss(props, _cfg):
    label = labels_of(props).get("pod-security.kubernetes.io/enforce")
    if label != "restricted":
        yield f"namespace {name_of(props)} does not enforce the restricted pod security standard ({label})"


def nfs_volumes(props, _cfg):
    spec = as_map(props.get("spec"))
    if "nfs" in spec:
        options = [as_text(o) for o in as_list(spec.get("mountOptions"))]
        if "hard" not in options or "soft" in options:
            yield f"volume {name_of(props)}: NFS must be mounted hard (a soft mount corrupts mosquitto.db on hiccups)"
        if not any(o.startswith(("nfsvers=", "vers=")) for o in options):
            yield f"volume {name_of(props)}: no nfsvers mount option"
        if spec.get("persistentVolumeReclaimPolicy") != "Retain":
            yield f"volume {name_of(props)}: reclaim policy is not Retain"


def no_inline_volumes(props, _cfg):
    for volume in as_list(pod_spec(props).get("volumes")):
        volume = as_map(volume)
        for kind in ("nfs", "hostPath"):
            if kind in volume:
                yield f"volume {as_text(volume.get('name'), '?')}: inline {kind} volumes bypass claims and " \
                      f"reclaim policy"


def app_labels(props, _cfg):
    if "app.kubernetes.io/name" not in labels_of(props):
        yield f"{as_text(props.get('kind'), 'object') or 'object'} {name_of(props)} has no app.kubernetes.io/name label"


def storage_class(props, _cfg):
    for claim in as_list(as_map(props.get("spec")).get("volumeClaimTemplates")):
        claim = as_map(claim)
        if "storageClassName" not in as_map(claim.get("spec")):
            yield f"claim template {name_of(claim)}: no storageClassName (the cluster default decides)"


# --- stack-wide rules --------------------------------------------------------------------------------

def _k8s(resources, kind_suffix):
    return [r for r in resources if str(r.resource_type).endswith(kind_suffix)]


def _selected(selector, labels) -> bool:
    labels = as_map(labels)
    return all(labels.get(k) == v for k, v in as_map(selector).items())


def _workloads(resources):
    return [r for r in resources if r.resource_type in WORKLOADS]


def _template_labels(workload) -> Mapping:
    return as_map(metadata(as_map(as_map(workload.props).get("spec")).get("template")).get("labels"))


def _spec(resource) -> Mapping:
    return as_map(as_map(resource.props).get("spec"))


def network_policies(resources, _cfg):
    policies = _k8s(resources, ":NetworkPolicy")
    for workload in _workloads(resources):
        labels = _template_labels(workload)
        namespace = namespace_of(workload.props)
        covering = [p for p in policies if namespace_of(p.props) == namespace
                    and _selected(as_map(_spec(p).get("podSelector")).get("matchLabels"), labels)]
        types = {t for p in covering for t in as_list(_spec(p).get("policyTypes"))}
        if not {"Ingress", "Egress"} <= types:
            yield workload, f"{name_of(workload.props)}: no NetworkPolicy restricts both its ingress and egress"
    namespaces = {name_of(n.props) for n in _k8s(resources, "core/v1:Namespace")}
    for namespace in sorted(namespaces):
        if not any(namespace_of(p.props) == namespace
                   and not as_map(as_map(_spec(p).get("podSelector")).get("matchLabels"))
                   and set(as_list(_spec(p).get("policyTypes"))) >= {"Ingress", "Egress"}
                   for p in policies):
            yield None, f"namespace {namespace}: no default-deny NetworkPolicy"


def _replicated(workload, resources) -> bool:
    autoscaled = any(as_map(_spec(h).get("scaleTargetRef")).get("name") == name_of(workload.props)
                     for h in _k8s(resources, ":HorizontalPodAutoscaler"))
    return autoscaled or (as_int(_spec(workload).get("replicas"), 1) or 0) > 1


def disruption(resources, _cfg):
    budgets = _k8s(resources, ":PodDisruptionBudget")
    for workload in _workloads(resources):
        if not _replicated(workload, resources):
            continue
        labels = _template_labels(workload)
        if not any(_selected(as_map(_spec(b).get("selector")).get("matchLabels"), labels) for b in budgets):
            yield workload, f"{name_of(workload.props)}: replicated but no PodDisruptionBudget"


def anti_affinity(resources, _cfg):
    for workload in _workloads(resources):
        if _replicated(workload, resources) and not as_map(pod_spec(workload.props).get("affinity")).get(
                "podAntiAffinity"):
            yield workload, f"{name_of(workload.props)}: replicas may all land on one node (no podAntiAffinity)"


K8S = ("kubernetes:",)
NAMESPACED = ("kubernetes:apps/", "kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:Secret",
              "kubernetes:core/v1:Service", "kubernetes:core/v1:ServiceAccount", "kubernetes:networking.k8s.io/",
              "kubernetes:policy/", "kubernetes:autoscaling/")

POLICIES = [
    resource_policy("k8s-restricted-pod-security", "Pods meet the restricted Pod Security Standard.", MANDATORY,
                    "runAsNonRoot, allowPrivilegeEscalation: false, drop ALL capabilities, seccomp RuntimeDefault.",
                    WORKLOADS, restricted),
    resource_policy("k8s-read-only-root-filesystem", "Containers run with a read-only root filesystem.", MANDATORY,
                    "Set readOnlyRootFilesystem: true and mount writable paths as volumes.", WORKLOADS, read_only_root),
    resource_policy("k8s-pinned-images", "Images are pinned to a version or digest from allowed registries.",
                    MANDATORY, "Use name:version or name@sha256:...; never latest.", WORKLOADS, pinned_images,
                    {"allowedRegistries": {"type": "array", "items": {"type": "string"}, "default": []}}),
    resource_policy("k8s-requests-and-limits", "Containers declare CPU and memory requests and limits.", MANDATORY,
                    "Choose a preset or set broker.resources / frontend.resources.", WORKLOADS, requests_limits),
    resource_policy("k8s-probes", "Containers have readiness and liveness probes.", MANDATORY,
                    "Keep the components' probes (exec on the loopback health listener for brokers).",
                    WORKLOADS, probes),
    resource_policy("k8s-no-service-account-token", "Pods do not mount a service-account token.", MANDATORY,
                    "Set automountServiceAccountToken: false.", WORKLOADS, no_token),
    resource_policy("k8s-no-secrets-in-configmaps", "ConfigMaps hold no keys, hashes or passwords: no private key "
                    "or password hash anywhere, and no config line (mosquitto.conf: remote_password, bridge_psk, "
                    "auth_opt_*password*, any option named password/psk/secret/token) carrying a secret or an "
                    "Azure SharedAccessSignature.", MANDATORY,
                    "Move secrets to Secrets; mosquitto reads bridge credentials only from its config, so render "
                    "that config into a Secret (or use certificate authentication for bridges).", [CONFIG_MAP],
                    no_secrets_in_config_maps),
    resource_policy("k8s-no-secret-env-values", "Secret-looking environment variables come from Secrets.",
                    MANDATORY, "Use valueFrom.secretKeyRef.", WORKLOADS, no_secret_env),
    resource_policy("k8s-secrets-mutable", "The estate's Secrets (password files, ACLs, TLS material: fixed names, "
                    "pods rolled by content hash) are on a kubernetes provider that updates them in place instead "
                    "of deleting and recreating them (enableSecretMutable: true).", MANDATORY,
                    "Set `kubernetes:enableSecretMutable: true` in the stack config for the default provider, or "
                    "`enable_secret_mutable=True` on the kubernetes.Provider the components use.", [SECRET],
                    secrets_mutable, with_provider=True),
    resource_policy("k8s-only-entry-point-exposed", "Only the MQTT entry point is exposed, and only to source ranges "
                    "(0.0.0.0/0, ::/0 and other open ranges count as none).",
                    MANDATORY, "Expose the frontend (or a lone broker) as a LoadBalancer with loadBalancerSourceRanges "
                    "naming the client networks.",
                    ["kubernetes:core/v1:Service"], exposure),
    resource_policy("k8s-not-default-namespace", "Objects live in a dedicated namespace.", MANDATORY,
                    "Set namespace.name.", NAMESPACED, not_default_namespace),
    resource_policy("k8s-namespace-pod-security", "Namespaces enforce the restricted Pod Security Standard.",
                    MANDATORY, "Label the namespace pod-security.kubernetes.io/enforce: restricted.",
                    ["kubernetes:core/v1:Namespace"], namespace_pss),
    resource_policy("k8s-nfs-hard-retain", "NFS volumes are mounted hard with nfsvers and Retained.", MANDATORY,
                    "Use NfsStorage, which sets hard, nfsvers and Retain.",
                    ["kubernetes:core/v1:PersistentVolume"], nfs_volumes),
    resource_policy("k8s-no-inline-nfs-or-hostpath", "Pods use claims, not inline NFS or hostPath volumes.",
                    MANDATORY, "Use volumeClaimTemplates (and NfsStorage for NFS).", WORKLOADS, no_inline_volumes),
    resource_policy("k8s-app-labels", "Objects carry app.kubernetes.io labels.", ADVISORY,
                    "Add app.kubernetes.io/name and instance labels.", NAMESPACED, app_labels),
    resource_policy("k8s-explicit-storage-class", "Volume claims name their storage class.", ADVISORY,
                    "Set broker.persistence.storageClass (or nfs).", WORKLOADS, storage_class),
    stack_policy("k8s-network-policies", "Every workload is covered by ingress and egress NetworkPolicy, and every "
                 "created namespace has a default deny.", MANDATORY,
                 "Keep the components' NetworkPolicies (namespace.create: true adds the default deny).",
                 network_policies),
    stack_policy("k8s-disruption-budgets", "Replicated workloads have a PodDisruptionBudget.", MANDATORY,
                 "Keep the components' PodDisruptionBudgets.", disruption),
    stack_policy("k8s-anti-affinity", "Replicated workloads spread across nodes.", ADVISORY,
                 "Keep podAntiAffinity on replicated workloads.", anti_affinity),
]
