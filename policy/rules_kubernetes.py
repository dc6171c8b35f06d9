"""Kubernetes rules: restricted pods, pinned images, resources, probes, exposure, network and disruption."""

from __future__ import annotations

import re

from policy_kit import (ADVISORY, CONFIG_MAP, MANDATORY, WORKLOADS, containers, labels_of, name_of, object_data,
                        pod_spec, resource_policy, stack_policy)

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_?KEY)", re.I)
SECRET_TEXT = re.compile(r"(PRIVATE KEY-----|\$7\$\d+\$|\$6\$|password\s*[:=]\s*\S+)", re.I)
NAMESPACED_SKIP = ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:PersistentVolume",
                   "kubernetes:storage.k8s.io", "kubernetes:rbac.authorization.k8s.io/v1:Cluster")


def restricted(props, _cfg):
    pod = pod_spec(props)
    pod_ctx = pod.get("securityContext") or {}
    for c in containers(props):
        ctx = c.get("securityContext") or {}
        if not (ctx.get("runAsNonRoot") or pod_ctx.get("runAsNonRoot")):
            yield f"container {c['name']}: runAsNonRoot is not set"
        if ctx.get("allowPrivilegeEscalation") is not False:
            yield f"container {c['name']}: allowPrivilegeEscalation is not false"
        if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
            yield f"container {c['name']}: capabilities are not dropped (drop: [ALL])"
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"container {c['name']}: no RuntimeDefault seccomp profile"
        if ctx.get("privileged"):
            yield f"container {c['name']}: privileged"
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        yield "pod shares host namespaces"


def read_only_root(props, _cfg):
    for c in containers(props):
        if not (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
            yield f"container {c['name']}: root filesystem is writable"


def pinned_images(props, cfg):
    registries = cfg["allowedRegistries"]
    for c in containers(props):
        image = c.get("image", "")
        if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            yield f"container {c['name']}: image {image!r} is not pinned to a version or digest"
        if registries and not any(image.startswith(prefix) for prefix in registries):
            yield f"container {c['name']}: image {image!r} is not from an allowed registry ({', '.join(registries)})"


def requests_limits(props, _cfg):
    for c in containers(props):
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in (res.get(kind) or {}):
                    yield f"container {c['name']}: no {what} {kind[:-1]}"


def probes(props, _cfg):
    for c in (pod_spec(props).get("containers") or []):
        for probe in ("readinessProbe", "livenessProbe"):
            if not c.get(probe):
                yield f"container {c['name']}: no {probe}"


def no_token(props, _cfg):
    if pod_spec(props).get("automountServiceAccountToken") is not False:
        yield "pod mounts a service-account token it does not need (automountServiceAccountToken: false)"


def no_secrets_in_config_maps(props, _cfg):
    for key, text in object_data(props).items():
        if SECRET_TEXT.search(text):
            yield f"data {key!r} looks like a secret (private key, password hash or password)"


def no_secret_env(props, _cfg):
    for c in containers(props):
        for env in c.get("env") or []:
            if "value" in env and SECRET_NAME.search(env["name"]):
                yield f"container {c['name']}: env {env['name']} carries a literal value; use secretKeyRef"


def exposure(props, _cfg):
    spec = props.get("spec") or {}
    if spec.get("type") in ("LoadBalancer", "NodePort"):
        if labels_of(props).get("app.kubernetes.io/component") not in ("frontend", "broker"):
            yield f"service {name_of(props)} of type {spec['type']} exposes something other than the MQTT entry point"
        if spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerSourceRanges"):
            yield f"service {name_of(props)} is a LoadBalancer open to every address (set loadBalancerSourceRanges)"
        if spec.get("type") == "NodePort":
            yield f"service {name_of(props)} opens a port on every node"


def not_default_namespace(props, _cfg):
    namespace = (props.get("metadata") or {}).get("namespace")
    if namespace in (None, "", "default"):
        yield f"{props.get('kind', 'object')} {name_of(props)} is in the default namespace"


def namespace_pss(props, _cfg):
    label = labels_of(props).get("pod-security.kubernetes.io/enforce")
    if label != "restricted":
        yield f"namespace {name_of(props)} does not enforce the restricted pod security standard ({label})"


def nfs_volumes(props, _cfg):
    spec = props.get("spec") or {}
    if "nfs" in spec:
        options = spec.get("mountOptions") or []
        if "hard" not in options or "soft" in options:
            yield f"volume {name_of(props)}: NFS must be mounted hard (a soft mount corrupts mosquitto.db on hiccups)"
        if not any(o.startswith(("nfsvers=", "vers=")) for o in options):
            yield f"volume {name_of(props)}: no nfsvers mount option"
        if spec.get("persistentVolumeReclaimPolicy") != "Retain":
            yield f"volume {name_of(props)}: reclaim policy is not Retain"


def no_inline_volumes(props, _cfg):
    for volume in pod_spec(props).get("volumes") or []:
        for kind in ("nfs", "hostPath"):
            if kind in volume:
                yield f"volume {volume['name']}: inline {kind} volumes bypass claims and reclaim policy"


def app_labels(props, _cfg):
    if "app.kubernetes.io/name" not in labels_of(props):
        yield f"{props.get('kind', 'object')} {name_of(props)} has no app.kubernetes.io/name label"


def storage_class(props, _cfg):
    for claim in (props.get("spec") or {}).get("volumeClaimTemplates") or []:
        if "storageClassName" not in (claim.get("spec") or {}):
            yield f"claim template {claim['metadata']['name']}: no storageClassName (the cluster default decides)"


# --- stack-wide rules --------------------------------------------------------------------------------

def _k8s(resources, kind_suffix):
    return [r for r in resources if r.resource_type.endswith(kind_suffix)]


def _selected(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def _workloads(resources):
    return [r for r in resources if r.resource_type in WORKLOADS]


def network_policies(resources, _cfg):
    policies = _k8s(resources, ":NetworkPolicy")
    for workload in _workloads(resources):
        labels = ((workload.props.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        namespace = workload.props.get("metadata", {}).get("namespace")
        covering = [p for p in policies if p.props.get("metadata", {}).get("namespace") == namespace
                    and _selected(((p.props.get("spec") or {}).get("podSelector") or {}).get("matchLabels"), labels)]
        types = {t for p in covering for t in (p.props.get("spec") or {}).get("policyTypes") or []}
        if not {"Ingress", "Egress"} <= types:
            yield workload, f"{name_of(workload.props)}: no NetworkPolicy restricts both its ingress and egress"
    namespaces = {name_of(n.props) for n in _k8s(resources, "core/v1:Namespace")}
    for namespace in namespaces:
        if not any(p.props.get("metadata", {}).get("namespace") == namespace
                   and not ((p.props.get("spec") or {}).get("podSelector") or {}).get("matchLabels")
                   and set((p.props.get("spec") or {}).get("policyTypes") or []) >= {"Ingress", "Egress"}
                   for p in policies):
            yield None, f"namespace {namespace}: no default-deny NetworkPolicy"


def _replicated(workload, resources) -> bool:
    spec = workload.props.get("spec") or {}
    autoscaled = any(((h.props.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == name_of(workload.props)
                     for h in _k8s(resources, ":HorizontalPodAutoscaler"))
    return autoscaled or int(spec.get("replicas", 1)) > 1


def disruption(resources, _cfg):
    budgets = _k8s(resources, ":PodDisruptionBudget")
    for workload in _workloads(resources):
        if not _replicated(workload, resources):
            continue
        labels = ((workload.props.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        if not any(_selected(((b.props.get("spec") or {}).get("selector") or {}).get("matchLabels"), labels)
                   for b in budgets):
            yield workload, f"{name_of(workload.props)}: replicated but no PodDisruptionBudget"


def anti_affinity(resources, _cfg):
    for workload in _workloads(resources):
        if _replicated(workload, resources) and not (pod_spec(workload.props).get("affinity") or {}).get(
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
    resource_policy("k8s-no-secrets-in-configmaps", "ConfigMaps hold no keys, hashes or passwords.", MANDATORY,
                    "Move secrets to Secrets.", [CONFIG_MAP], no_secrets_in_config_maps),
    resource_policy("k8s-no-secret-env-values", "Secret-looking environment variables come from Secrets.",
                    MANDATORY, "Use valueFrom.secretKeyRef.", WORKLOADS, no_secret_env),
    resource_policy("k8s-only-entry-point-exposed", "Only the MQTT entry point is exposed, and only to source ranges.",
                    MANDATORY, "Expose the frontend (or a lone broker) as a LoadBalancer with loadBalancerSourceRanges.",
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
