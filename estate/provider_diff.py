"""Predict what the real pulumi-kubernetes provider does to each Kubernetes object between two offline renders.

`plan(old, new, provider_config)` takes two `Registry`s of the same program (see estate.engine) and returns one
`Change` per Kubernetes resource, keyed by URN: `create`, `update`, `replace` (with delete-before-replace and the
field paths that forced it), `delete` or `same`, the changed field paths as the provider's detailed diff names
them, and whether a workload's pods roll.

The rules mirror the provider's own Diff. Every rule cites the source it copies the behaviour from:
pulumi/pulumi-kubernetes at 94977969d641 (main after v4.32.0; the pinned 4.34.x was not in the stored
snapshot), paths relative to that repository.

What the offline prediction cannot see (so it assumes there is none):
- drift: the provider diffs the *live* object pruned to the old inputs' shape (provider.go:1494), we diff the
  old inputs;
- the typed round-trip normalisation the provider applies to built-in kinds (clients/unstructured.go:70-92),
  e.g. quantity canonicalisation ("1000m" vs "1");
- resource options (ignoreChanges, deleteBeforeReplace, replaceOnChanges): the Registry does not record them.
"""

from __future__ import annotations

import base64
import binascii
import copy
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Optional

from .engine import Registered, Registry
from .manifests import kubernetes_object

CREATE, UPDATE, REPLACE, DELETE, SAME = "create", "update", "replace", "delete", "same"

DIFF_GO = "provider/pkg/provider/diff.go"
PROVIDER_GO = "provider/pkg/provider/provider.go"


# ----------------------------------------------------------------------------------------------------------------
# Result types
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reason:
    """Why a resource is replaced: a changed path matched one of the provider's force-new paths."""
    path: str
    """The changed path, as in `Change.changed_paths`."""
    force_new: str
    """The provider's force-new JSONPath it matched, e.g. `.spec.volumeClaimTemplates`."""
    source: str
    """Where the provider declares that force-new path (file:line)."""

    def __str__(self) -> str:
        return f"{self.path} (force-new {self.force_new}, {self.source})"


@dataclass(frozen=True)
class Change:
    urn: str
    kind: str
    name: str
    """metadata.name of the object after the change (before it, for a delete)."""
    action: str
    """create | update | replace | delete | same"""
    delete_before_replace: bool = False
    reasons: tuple[Reason, ...] = ()
    changed_paths: tuple[str, ...] = ()
    """Detailed-diff paths, formatted like the provider (`metadata.annotations["a.b/c"]`, `spec.ports[0].port`)."""
    rolls_pods: bool = False
    previous_name: Optional[str] = None
    """metadata.name before the change, when it differs (a renamed object is a create-before-delete replace)."""


@dataclass(frozen=True)
class ProviderOptions:
    """The provider settings that change what a diff means (everything else about the provider does not)."""
    enable_secret_mutable: bool = False
    enable_configmap_mutable: bool = False


# ----------------------------------------------------------------------------------------------------------------
# Provider options
# ----------------------------------------------------------------------------------------------------------------

# provider.go:696-726: config variable `kubernetes:config:<key>` wins over the environment variable; both count only
# when the value is exactly "true"; the default is false. The engine turns stack config `kubernetes:<key>` into that
# variable, JSON-encoding non-strings (pulumi/pulumi sdk/go/common/resource/plugin/provider_plugin.go:1078-1089).
_OPTION_KEYS = {
    "enable_secret_mutable": ("enableSecretMutable", "PULUMI_K8S_ENABLE_SECRET_MUTABLE"),
    "enable_configmap_mutable": ("enableConfigMapMutable", "PULUMI_K8S_ENABLE_CONFIGMAP_MUTABLE"),
}


def kubernetes_config(pulumi_config: Mapping[str, Any]) -> dict[str, Any]:
    """The `kubernetes:` namespace of a stack's config (StackFile.pulumi_config), keys without the namespace."""
    return {key.split(":", 1)[1]: value for key, value in pulumi_config.items() if key.startswith("kubernetes:")}


def _is_true(value: Any) -> bool:
    # provider.go:714-716 compares the variable with "true"; a YAML/JSON boolean reaches it JSON-encoded as "true".
    return value is True or value == "true"


def provider_options(provider_config: Mapping[str, Any],
                     environ: Optional[Mapping[str, str]] = None) -> ProviderOptions:
    """ProviderOptions from the `kubernetes:` config (keys with or without the `kubernetes:` prefix).

    `environ` is consulted only for keys the config does not set, like the provider does; pass `os.environ` to
    predict a run from this shell. The default (None) ignores the environment so a plan is reproducible.
    """
    config = {**provider_config, **kubernetes_config(provider_config)}
    values = {}
    for option, (key, env_var) in _OPTION_KEYS.items():
        if key in config:
            values[option] = _is_true(config[key])
        else:
            values[option] = environ is not None and environ.get(env_var) == "true"
    return ProviderOptions(**values)


# ----------------------------------------------------------------------------------------------------------------
# Force-new tables, copied from diff.go
# ----------------------------------------------------------------------------------------------------------------

def _selector(prefix: str) -> tuple[str, ...]:
    # diff.go:243-251 labelSelectorForceNewProperties
    return (f"{prefix}.matchExpressions", f"{prefix}.matchExpressions.key", f"{prefix}.matchExpressions.operator",
            f"{prefix}.matchExpressions.values", f"{prefix}.matchLabels")


def _containers(*prefixes: str) -> tuple[str, ...]:
    # diff.go:214-241 containerForceNewProperties
    fields = ("args", "command", "env", "env.value", "image", "imagePullPolicy", "lifecycle", "livenessProbe",
              "ports", "readinessProbe", "resources", "securityContext", "stdin", "stdinOnce",
              "terminationMessagePath", "terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts",
              "workingDir")
    return tuple(f"{prefix}.{name}" for prefix in prefixes for name in fields)


METADATA_FORCE_NEW = (".metadata.name", ".metadata.namespace")  # diff.go:25, 207-212
METADATA_SOURCE = f"{DIFF_GO}:207-212"

# diff.go:196-205
_STATEFUL_SET = ((".spec.podManagementPolicy", ".spec.revisionHistoryLimit", ".spec.selector", ".spec.serviceName",
                  ".spec.volumeClaimTemplates") + _selector(".spec.selector"), f"{DIFF_GO}:196-205")
_DEPLOYMENT = ((".spec.selector",) + _selector(".spec.selector"), f"{DIFF_GO}:171-176")
_DAEMON_SET = ((".spec.selector",) + _selector(".spec.selector"), f"{DIFF_GO}:164-169")
_JOB = ((".spec.completions", ".spec.parallelism", ".spec.selector", ".spec.template") + _selector(".spec.selector"),
        f"{DIFF_GO}:178-186")
_ROLE_BINDING = ((".roleRef",), f"{DIFF_GO}:192-194")

# diff.go:85-162 (`core`, listed under both "core" and "", diff.go:58-61)
_CORE_V1 = {
    "PersistentVolume": (tuple(f".spec.{source}" for source in (
        "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume", "flocker",
        "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs", "photonPersistentDisk",
        "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume")), f"{DIFF_GO}:87-110"),
    "PersistentVolumeClaim": ((".spec.accessModes", ".spec.selector", ".spec.storageClassName", ".spec.volumeName")
                              + _selector(".spec.selector"), f"{DIFF_GO}:111-118"),
    "Pod": (tuple(f".spec.{name}" for name in (
        "affinity", "automountServiceAccountToken", "dnsConfig", "dnsPolicy", "enableServiceLinks", "hostAliases",
        "hostIPC", "hostNetwork", "hostPID", "hostname", "imagePullSecrets", "nodeName", "nodeSelector", "overhead",
        "preemptionPolicy", "priority", "priorityClassName", "readinessGates", "restartPolicy", "runtimeClassName",
        "schedulerName", "securityContext", "serviceAccount", "serviceAccountName", "shareProcessNamespace",
        "subdomain", "terminationGracePeriodSeconds", "volumes"))
            + _containers(".spec.containers[*]", ".spec.initContainers[*]"), f"{DIFF_GO}:119-151"),
    "ResourceQuota": ((".spec.scopes",), f"{DIFF_GO}:152-154"),
    "Secret": ((".type",), f"{DIFF_GO}:155-157"),
    "Service": ((".spec.clusterIP",), f"{DIFF_GO}:158-160"),
}

FORCE_NEW: dict[str, dict[str, dict[str, tuple[tuple[str, ...], str]]]] = {
    "apps": {  # diff.go:46-57
        "v1beta1": {"StatefulSet": _STATEFUL_SET},
        "v1beta2": {"DaemonSet": _DAEMON_SET, "Deployment": _DEPLOYMENT, "StatefulSet": _STATEFUL_SET},
        "v1": {"DaemonSet": _DAEMON_SET, "Deployment": _DEPLOYMENT, "StatefulSet": _STATEFUL_SET},
    },
    "core": {"v1": _CORE_V1},
    "": {"v1": _CORE_V1},
    # diff.go:62-64: only policy/v1beta1 PDBs replace on a spec change; policy/v1 is not listed (updates in place).
    "policy": {"v1beta1": {"PodDisruptionBudget": ((".spec",), f"{DIFF_GO}:188-190")}},
    "rbac.authorization.k8s.io": {  # diff.go:65-69
        version: {"ClusterRoleBinding": _ROLE_BINDING, "RoleBinding": _ROLE_BINDING}
        for version in ("v1alpha1", "v1beta1", "v1")},
    "storage.k8s.io": {"v1": {"StorageClass": ((".parameters", ".provisioner"), f"{DIFF_GO}:70-77")}},
    "batch": {version: {"Job": _JOB} for version in ("v1beta1", "v1", "v2alpha1")},  # diff.go:78-82
}

# diff.go:28-29 and 32-33: data of a Secret/ConfigMap is force-new unless the provider allows mutation and the
# object is not `immutable: true` (clients/clients.go:334-337 reads the new inputs).
_SECRET_DATA = ((".type", ".stringData", ".data"), f"{DIFF_GO}:28-29")
_CONFIG_MAP_DATA = ((".binaryData", ".data"), f"{DIFF_GO}:32-33")

WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet")

# provider/pkg/kinds/kinds.go:188-223 lists the namespaced kinds; everything the estate may use that is not
# namespaced is below. Unknown kinds are assumed namespaced, as the provider does (provider.go:1498-1505).
CLUSTER_SCOPED = frozenset({
    "Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PriorityClass", "IngressClass", "RuntimeClass", "CSIDriver", "CSINode", "VolumeAttachment", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "CertificateSigningRequest", "Node"})


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def is_patch_resource(resource_type: str, kind: str) -> bool:
    # provider/pkg/kinds/util.go:9-13: `<Kind>Patch` resources only replace on a new identity (provider.go:1559-1566).
    return resource_type.rsplit(":", 1)[-1] == f"{kind}Patch"


def force_new_paths(obj: Mapping[str, Any], options: ProviderOptions,
                    resource_type: str = "") -> list[tuple[str, str]]:
    """(force-new JSONPath, source) pairs for the new object, exactly as diff.go:23-38 selects them."""
    paths = [(path, METADATA_SOURCE) for path in METADATA_FORCE_NEW]
    kind = obj.get("kind", "")
    if is_patch_resource(resource_type, kind):
        return paths
    group, version = _group_version(obj.get("apiVersion", ""))
    kinds = FORCE_NEW.get(group, {}).get(version)
    if kinds is None:
        return paths
    immutable = obj.get("immutable") is True
    core = group in ("", "core")
    if core and kind == "Secret" and (not options.enable_secret_mutable or immutable):
        chosen = _SECRET_DATA
    elif kind in kinds:
        chosen = kinds[kind]
    elif core and kind == "ConfigMap" and (not options.enable_configmap_mutable or immutable):
        chosen = _CONFIG_MAP_DATA
    else:
        return paths
    return paths + [(path, chosen[1]) for path in chosen[0]]


# ----------------------------------------------------------------------------------------------------------------
# Normalisation (what the provider compares)
# ----------------------------------------------------------------------------------------------------------------

_READ_ONLY_METADATA = ("creationTimestamp", "deletionGracePeriodSeconds", "deletionTimestamp", "generation",
                       "managedFields", "resourceVersion", "uid")


def _normalize_secret(obj: dict) -> None:
    # clients/unstructured.go:117-155: stringData is base64-encoded into data (overwriting equal keys) and removed;
    # without stringData, data values are re-encoded (unstructured.go:159-188).
    string_data = obj.get("stringData")
    data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
    if isinstance(string_data, dict) and string_data:
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
        del obj["stringData"]
        return
    for key, value in data.items():
        if isinstance(value, str):
            try:
                data[key] = base64.b64encode(base64.b64decode(value, validate=False)).decode()
            except (binascii.Error, ValueError):
                pass


def _canonical_namespace(obj: dict) -> None:
    # provider.go:1511-1519: "" becomes "default" for namespaced kinds; cluster-scoped kinds lose any namespace.
    metadata = obj.setdefault("metadata", {})
    if obj.get("kind") in CLUSTER_SCOPED:
        metadata.pop("namespace", None)
    else:
        metadata["namespace"] = metadata.get("namespace") or "default"


def normalize(obj: Mapping[str, Any]) -> dict:
    """The object as the provider's Diff sees it (provider.go:2983-3003, 1486-1519)."""
    out = copy.deepcopy(dict(obj))
    if out.get("kind") == "Secret" and _group_version(out.get("apiVersion", ""))[0] in ("", "core"):
        _normalize_secret(out)
    for key in _READ_ONLY_METADATA:
        out.get("metadata", {}).pop(key, None)
    _canonical_namespace(out)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Detailed diff (provider.go:3190-3452)
# ----------------------------------------------------------------------------------------------------------------

ADD, UPDATE_FIELD, DELETE_FIELD = "add", "update", "delete"
_MISSING = object()


@dataclass(frozen=True)
class FieldChange:
    path: tuple
    """Keys (str) and list indexes (int) from the object root."""
    kind: str
    """add | update | delete"""
    value: Any
    """The new value (None for a delete)."""


def _same_scalar(old: Any, new: Any) -> bool:
    # provider.go:3225-3250, 3327: equal values, or equal numbers of different types.
    if isinstance(old, bool) or isinstance(new, bool):
        return old is new
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return float(old) == float(new)
    return old == new


def field_changes(old: Any, new: Any, path: tuple = ()) -> Iterator[FieldChange]:
    """Leaf-most differences between old and new inputs, like the provider's patch-to-diff conversion.

    A key only in `new` is one `add` (not recursed into), a key only in `old` one `delete`, maps and lists present
    on both sides are compared member by member, anything else that differs is an `update`
    (provider.go:3281-3341, 3392-3452).
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            before, after = old.get(key, _MISSING), new.get(key, _MISSING)
            if after is _MISSING:
                yield FieldChange(path + (key,), DELETE_FIELD, None)
            elif before is _MISSING:
                yield FieldChange(path + (key,), ADD, after)
            else:
                yield from field_changes(before, after, path + (key,))
    elif isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            if index >= len(old):
                yield FieldChange(path + (index,), ADD, new[index])
            elif index >= len(new):
                yield FieldChange(path + (index,), DELETE_FIELD, None)
            else:
                yield from field_changes(old[index], new[index], path + (index,))
    elif not _same_scalar(old, new):
        yield FieldChange(path, UPDATE_FIELD, new)


def format_path(path: Iterable) -> str:
    """A path as the provider's detailed diff prints it (provider.go:3359-3373)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif any(ch in part for ch in '."[]'):
            escaped = part.replace('"', '\\"')
            text += f'["{escaped}"]'
        else:
            text = f"{text}.{part}" if text else part
    return text


# ----------------------------------------------------------------------------------------------------------------
# Force-new matching (openapi/match.go:29-49 on the patch slice of provider.go:3205-3223)
# ----------------------------------------------------------------------------------------------------------------

def patch_slice(path: tuple, value: Any) -> Any:
    """Only `path` with its new value, arrays as one-element lists (provider.go:3205-3223 makePatchSlice)."""
    for part in reversed(path):
        value = [value] if isinstance(part, int) else {part: value}
    return value


def _jsonpath_segments(expr: str) -> list[str]:
    segments = []
    for part in expr.lstrip(".").split("."):
        if part.endswith("[*]"):
            segments += [part[:-3], "[*]"]
        else:
            segments.append(part)
    return segments


def jsonpath_found(document: Any, expr: str) -> bool:
    """Whether a force-new JSONPath such as `.spec.containers[*].image` resolves in `document`.

    Mirrors client-go's jsonpath with missing keys disallowed, as match.go:33-42 uses it: a field resolves only on
    a map that has the key (a present null counts), `[*]` spreads a list, and the path is found when any branch
    resolves to the end.
    """
    current = [document]
    for segment in _jsonpath_segments(expr):
        following = []
        for value in current:
            if segment == "[*]":
                if isinstance(value, list):
                    following.extend(value)
            elif isinstance(value, dict) and segment in value:
                following.append(value[segment])
        if not following:
            return False
        current = following
    return True


def replace_reasons(changes: Iterable[FieldChange], force_new: list[tuple[str, str]]) -> list[Reason]:
    """Every (changed path, force-new path) pair that makes the provider plan a replacement (provider.go:3343-3357)."""
    reasons = []
    for change in changes:
        document = patch_slice(change.path, change.value)
        reasons += [Reason(format_path(change.path), expr, source)
                    for expr, source in force_new if jsonpath_found(document, expr)]
        if change.path == ("metadata",) and change.kind == DELETE_FIELD:
            reasons.append(Reason("metadata", "metadata (deleted)", f"{PROVIDER_GO}:1613-1616"))
    return reasons


# ----------------------------------------------------------------------------------------------------------------
# Replacement order and pod rollouts
# ----------------------------------------------------------------------------------------------------------------

AUTONAMED = "pulumi.com/autonamed"


def _is_autonamed(obj: Mapping[str, Any]) -> bool:
    # metadata/naming.go:27-54, 67-70: no metadata.name means Check autonames it (annotation pulumi.com/autonamed).
    metadata = obj.get("metadata") or {}
    return not metadata.get("name") or (metadata.get("annotations") or {}).get(AUTONAMED) == "true"


def delete_before_replace(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """provider.go:1645-1658: a replaced object that keeps its user-given name and namespace is deleted first."""
    if _is_autonamed(new):
        return False
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return old_meta.get("name") == new_meta.get("name") and old_meta.get("namespace") == new_meta.get("namespace")


DELETION_PROPAGATION = "pulumi.com/deletionPropagationPolicy"


def deletion_propagation(old: Mapping[str, Any]) -> str:
    """Foreground (default), Background or Orphan, as metadata/overrides.go:68-79 reads the annotation.

    Delete gets the OLD state's inputs (provider.go:2544, 2613), so a policy added in the same `up` that replaces
    the object does not apply to that replacement."""
    value = ((old.get("metadata") or {}).get("annotations") or {}).get(DELETION_PROPAGATION, "")
    return {"orphan": "Orphan", "background": "Background"}.get(str(value).lower(), "Foreground")


def _template_changed(changes: Iterable[FieldChange]) -> bool:
    return any(change.path[:2] == ("spec", "template") or change.path == ("spec",) for change in changes)


def rolls_pods(kind: str, action: str, old: Optional[Mapping[str, Any]], new: Optional[Mapping[str, Any]],
               changes: Iterable[FieldChange]) -> bool:
    """Whether the workload's existing pods get restarted.

    Update: any change under spec.template makes a new revision the controller rolls out, unless a StatefulSet or
    DaemonSet uses the OnDelete strategy. Replace: the old workload's pods are deleted with it (Foreground or
    Background propagation), or, when orphaned, adopted by the new workload and rolled only if the template changed.
    """
    if kind not in WORKLOAD_KINDS or action not in (UPDATE, REPLACE):
        return False
    changes = list(changes)
    if action == REPLACE and deletion_propagation(old or {}) != "Orphan":
        return True
    strategy = ((new or {}).get("spec") or {}).get("updateStrategy") or {}
    if kind in ("StatefulSet", "DaemonSet") and strategy.get("type") == "OnDelete":
        return False
    return _template_changed(changes)


# ----------------------------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------------------------

def kubernetes_resources(registry: Registry) -> dict[str, Registered]:
    """The registry's Kubernetes objects (custom resources with a kind), by URN."""
    return {r.urn: r for r in registry.resources
            if r.custom and r.type.startswith("kubernetes:") and isinstance(r.inputs, dict) and "kind" in r.inputs}


def _name(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def diff_resource(old: Registered, new: Registered, options: ProviderOptions) -> Change:
    """The provider's verdict for one resource present in both renders."""
    before, after = normalize(kubernetes_object(old)), normalize(kubernetes_object(new))
    if _is_autonamed(after) and _is_autonamed(before):
        # metadata/naming.go:27-54: Check marks an unnamed object with the autonamed annotation, and 56-65: it
        # adopts its previous autoname, so the names never differ (and a replacement still creates first)
        metadata = after.setdefault("metadata", {})
        metadata["name"] = _name(before)
        metadata["annotations"] = {**(metadata.get("annotations") or {}), AUTONAMED: "true"}
    changes = list(field_changes(before, after))
    kind = after.get("kind", "")
    if not changes:
        return Change(new.urn, kind, _name(after), SAME)
    reasons = replace_reasons(changes, force_new_paths(after, options, new.type))
    action = REPLACE if reasons else UPDATE
    return Change(
        urn=new.urn, kind=kind, name=_name(after), action=action,
        delete_before_replace=action == REPLACE and delete_before_replace(before, after),
        reasons=tuple(reasons), changed_paths=tuple(format_path(c.path) for c in changes),
        rolls_pods=rolls_pods(kind, action, before, after, changes),
        previous_name=_name(before) if _name(before) != _name(after) else None)


def created(new: Registered) -> Change:
    obj = kubernetes_object(new)
    return Change(new.urn, obj.get("kind", ""), _name(obj), CREATE)


def deleted(old: Registered) -> Change:
    obj = kubernetes_object(old)
    return Change(old.urn, obj.get("kind", ""), _name(obj), DELETE)


def plan(old: Registry, new: Registry, provider_config: Optional[Mapping[str, Any]] = None) -> list[Change]:
    """One Change per Kubernetes resource in either render: new-render order first, then deletions in old order.

    `provider_config` is the stack's `kubernetes:` config, e.g. `{"enableSecretMutable": "true"}` or
    `kubernetes_config(stack_file.pulumi_config)`.
    """
    options = provider_options(provider_config or {})
    before, after = kubernetes_resources(old), kubernetes_resources(new)
    changes = [diff_resource(before[urn], res, options) if urn in before else created(res)
               for urn, res in after.items()]
    changes += [deleted(res) for urn, res in before.items() if urn not in after]
    return changes


def summary(changes: Iterable[Change]) -> dict[str, int]:
    """Counts per action, for a one-line report."""
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    return counts
