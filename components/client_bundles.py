"""Client certificate bundles: every certificate user's certificate and key, grouped into a few Opaque Secrets.

Nothing in the cluster mounts these Secrets: they exist so a plant engineer can hand each device its files. One
Secret per device (the old layout) made a Kubernetes object and a Pulumi resource per device; grouping makes a
few dozen per thousand devices instead.

Key scheme (one Secret holds many users):

    ca.crt            the estate CA, once per Secret
    <user>.tls.crt    the user's certificate (its CN is the MQTT user name)
    <user>.tls.key    its private key

User names match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ (stacks/model.py UserName), so every key is a valid Secret key:
`[-._a-zA-Z0-9]+`, at most 253 characters, no `.`/`..` prefix (kubernetes/apimachinery
pkg/util/validation/validation.go:405-418, IsConfigMapKey, commit eed236c). No user's key can be `ca.crt`: every
user key ends in `.tls.crt` or `.tls.key` (a user named `ca` gets `ca.tls.crt`), and two users' keys differ
because their names do. The annotation `mqtt-estate.io/users` lists the Secret's users (sorted, one space
apart), so a device's files are found with

    kubectl get secrets -n NS -l app.kubernetes.io/component=client-certificates \\
      -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.annotations.mqtt-estate\\.io/users}{"\\n"}{end}' \\
      | awk -v u=cell-00042 '{for (i = 2; i <= NF; i++) if ($i == u) print $1}'
    kubectl get secret -n NS <that secret> -o jsonpath='{.data.cell-00042\\.tls\\.crt}' | base64 -d > cell-00042.crt
    kubectl get secret -n NS <that secret> -o jsonpath='{.data.cell-00042\\.tls\\.key}' | base64 -d > cell-00042.key

Grouping. The number of Secrets k is the smallest power of two that keeps the mean at most USERS_PER_SECRET users;
a user's Secret is `<broker>-client-certs-<j>` with j = jump_hash(sha256(user name), k) (Lamping & Veach, "A Fast,
Minimal Memory, Consistent Hash Algorithm", arXiv:1406.2294): O(log k) per user (rendezvous hashing would cost
n x k hashes, 5 million at 10,000 devices), deterministic across runs and Python versions, and minimal in
movement. So:
- adding or removing a device changes exactly one Secret (its own), unless it crosses a power of two;
- when k doubles (32 -> 33 certificate devices, 64 -> 65, ...) each user moves with probability 1/2, and only ever
  into one of the new Secrets: nothing moves between existing Secrets. Halving (removing devices across a power
  of two) folds the upper half back the same way;
- a Secret holding more than MAX_USERS_PER_SECRET users (which hashing makes vanishingly unlikely, but user names
  are not chosen at random) doubles k again, so no Secret ever carries more than that many users.

Size. Kubernetes refuses a Secret whose data values total more than MaxSecretSize = 1 MiB (kubernetes/api
core/v1/types.go:8284 and 8322, commit 10b39a3). The largest leaf this estate issues is RSA-4096 signed by an
RSA-4096 CA with a 64-character CN and organization: 2,204 bytes of certificate and 3,243 of key, ~5.4 KB per user
(measured with `cryptography`). MAX_USERS_PER_SECRET x 5.4 KB + the CA is 343 KiB, about a third of the limit;
the fullest Secret at 500 certificate devices (40 users) would hold ~215 KiB with RSA-4096 and holds 38 KiB with
the default ECDSA P-256 leaves. Apply rendered manifests server-side (`kubectl apply --server-side`, what Pulumi does by
default): client-side apply copies the whole object into the last-applied-configuration annotation, and all
annotations of an object are limited to 256 KiB (kubernetes/apimachinery pkg/api/validation/objectmeta.go:39).

What the real provider does with a changed bundle. With the provider's default `enableSecretMutable: false`, a
change to a Secret's data REPLACES it, and because the name is explicit the replacement deletes first
(pulumi-kubernetes provider/pkg/provider/diff.go:28-29 and provider.go:1645-1658, HEAD 9497796 after v4.32.0):
the bundle would be missing for a moment on every device added. The stack config requires
`kubernetes:enableSecretMutable: true`, under which a data change is an in-place update (diff.go:155-157: only
`.type` replaces); a program of your own must set it on its provider. Nothing mounts these Secrets, so no pod
rolls either way.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from .pki import ClientCertificate

USERS_PER_SECRET = 32
"""k is chosen so that the mean number of users per Secret is at most this (between half of it and it)."""
MAX_USERS_PER_SECRET = 2 * USERS_PER_SECRET
"""Hard cap on one Secret's users: RSA-4096 worst case 64 x 5,447 + 2,204 bytes = 343 KiB, about a third of
Kubernetes' 1 MiB MaxSecretSize. Random hashing alone exceeds it for about one Secret in five million (Poisson
tail at a mean of 32)."""
USERS_ANNOTATION = "mqtt-estate.io/users"
COMPONENT = "client-certificates"
CA_KEY = "ca.crt"
_MASK = (1 << 64) - 1


def cert_key(user: str) -> str:
    return f"{user}.tls.crt"


def key_key(user: str) -> str:
    return f"{user}.tls.key"


def bundle_name(broker: str, index: int) -> str:
    return f"{broker}-client-certs-{index}"


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash of a 64-bit key into [0, buckets) (Lamping & Veach 2014, figure 1)."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def user_key(user: str) -> int:
    return int.from_bytes(hashlib.sha256(f"mqtt-estate/client-bundle/v1\0{user}".encode()).digest()[:8], "big")


def bundle_count(users: int) -> int:
    """Smallest power of two k with users / k <= USERS_PER_SECRET (1 for none)."""
    k = 1
    while k * USERS_PER_SECRET < users:
        k *= 2
    return k


def group_users(users: Sequence[str]) -> list[list[str]]:
    """Users split into k groups (each sorted); group j goes to Secret j. Empty groups stay empty (their Secret is
    still made, holding the CA only, so Secret names never depend on which groups happen to be empty)."""
    keys = {user: user_key(user) for user in users}
    k = bundle_count(len(keys))
    while True:
        groups: list[list[str]] = [[] for _ in range(k)]
        for user in sorted(keys):
            groups[jump_hash(keys[user], k)].append(user)
        if max((len(g) for g in groups), default=0) <= MAX_USERS_PER_SECRET:
            return groups
        k *= 2


def client_bundles(broker: str, namespace: str, labels: Mapping[str, str], ca_cert_pem: pulumi.Input[str],
                   certificates: Mapping[str, ClientCertificate], opts: pulumi.ResourceOptions
                   ) -> list[k8s.core.v1.Secret]:
    """One Opaque Secret per group of certificate users (none without certificate users)."""
    if not certificates:
        return []
    bundles = []
    for index, group in enumerate(group_users(list(certificates))):
        data: dict[str, pulumi.Input[str]] = {CA_KEY: ca_cert_pem}
        for user in group:
            data[cert_key(user)] = certificates[user]["cert_pem"]
            data[key_key(user)] = pulumi.Output.secret(certificates[user]["key_pem"])
        name = bundle_name(broker, index)
        bundles.append(k8s.core.v1.Secret(
            name, metadata={"name": name, "namespace": namespace, "labels": dict(labels),
                            "annotations": {USERS_ANNOTATION: " ".join(group)}},
            type="Opaque", string_data=data, opts=opts))
    return bundles


def bundle_users(secret: Mapping) -> list[str]:
    """The users a rendered bundle Secret holds (from its annotation); [] for any other object."""
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    if secret.get("kind") != "Secret" or USERS_ANNOTATION not in annotations:
        return []
    return annotations[USERS_ANNOTATION].split()
