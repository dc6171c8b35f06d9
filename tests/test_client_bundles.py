"""Client certificates grouped into a few Secrets: key scheme, small diffs, bounded size, and a lookup that works."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest
import yaml

from mqtt_estate.components import client_bundles as cb
from mqtt_estate.components.broker import MosquittoBroker
from mqtt_estate.components.pki import Pki
from tests.harness import run_components
from tests.test_components import SETTINGS

SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
"""kubernetes/apimachinery pkg/util/validation/validation.go:405-418 (IsConfigMapKey), at most 253 characters."""


def build(cert_users: list[str]):
    def body():
        pki = Pki("b-pki", {"client_names": cert_users})
        MosquittoBroker("b", {
            "namespace": "ns", "replicas": 1, "settings": SETTINGS,
            "users": [{"name": "admin", "role": "admin"}] + [{"name": u, "password_login": False} for u in cert_users],
            "ca_cert_pem": pki.ca_cert_pem, "server_cert_pem": pki.server_cert_pem,
            "server_key_pem": pki.server_key_pem, "client_certificates": pki.clients})
    return run_components(body)


def bundles(registry) -> dict[str, dict]:
    return {r.name: r for r in registry.resources if r.type == "kubernetes:core/v1:Secret"
            and r.inputs["metadata"]["labels"]["app.kubernetes.io/component"] == cb.COMPONENT}


@pytest.fixture(scope="module")
def forty():
    return build([f"dev-{i:02d}" for i in range(39)] + ["ca"])


def test_key_scheme_holds_every_user_once_and_the_ca_per_secret(forty):
    found = bundles(forty)
    assert sorted(found) == ["b-client-certs-0", "b-client-certs-1"]  # 40 users: two Secrets of about 20
    seen = []
    for res in found.values():
        meta, data = res.inputs["metadata"], res.inputs["stringData"]
        assert res.inputs["type"] == "Opaque" and res.secret  # the keys arrive marked secret
        users = meta["annotations"][cb.USERS_ANNOTATION].split()
        assert users == sorted(users) and users
        assert set(data) == {"ca.crt"} | {f"{u}.tls.crt" for u in users} | {f"{u}.tls.key" for u in users}
        assert all(SECRET_KEY.match(key) and len(key) <= 253 for key in data)
        assert "BEGIN CERTIFICATE" in data["ca.crt"]
        for user in users:
            assert "BEGIN CERTIFICATE" in data[f"{user}.tls.crt"] and "PRIVATE KEY" in data[f"{user}.tls.key"]
        seen += users
    assert sorted(seen) == sorted([f"dev-{i:02d}" for i in range(39)] + ["ca"])


def test_a_user_named_ca_does_not_touch_the_ca_key(forty):
    holder = next(r for r in bundles(forty).values()
                  if "ca" in r.inputs["metadata"]["annotations"][cb.USERS_ANNOTATION].split())
    data = holder.inputs["stringData"]
    assert data["ca.tls.crt"] != data["ca.crt"] and "ca.tls.key" in data
    ca_pem = next(r for r in forty.resources if r.name == "b-pki-ca-cert").outputs["certPem"]
    assert data["ca.crt"] == ca_pem


def test_adding_a_device_changes_one_secret(forty):
    after = build([f"dev-{i:02d}" for i in range(39)] + ["ca", "dev-new"])
    before, now = bundles(forty), bundles(after)
    assert sorted(before) == sorted(now)
    changed = [name for name in now if now[name].inputs != before[name].inputs]
    assert len(changed) == 1
    assert "dev-new" in now[changed[0]].inputs["metadata"]["annotations"][cb.USERS_ANNOTATION].split()


def test_no_per_user_objects_remain(forty):
    names = {r.name for r in forty.resources if r.type.startswith("kubernetes:")}
    assert not any(n.startswith("b-client-dev") for n in names)


def test_grouping_moves_few_users():
    users = [f"cell-{i:05d}" for i in range(1000)]
    base = cb.group_users(users)
    where = {u: j for j, group in enumerate(base) for u in group}
    assert len(base) == 32  # 1000 / 32 -> 32 Secrets of about 31
    # grow without crossing a power of two: only the new users' Secrets change
    grown = cb.group_users(users + [f"cell-{i:05d}" for i in range(1000, 1010)])
    assert sum(1 for a, b in zip(base, grown) if a != b) <= 10
    assert all(u in grown[where[u]] for u in users)
    # cross one (1025 users: 64 Secrets): about half the users move, and only into the new Secrets
    doubled = cb.group_users(users + [f"cell-{i:05d}" for i in range(1000, 1025)])
    assert len(doubled) == 64
    moved = [u for u in users if u not in doubled[where[u]]]
    assert 0.4 < len(moved) / len(users) < 0.6
    assert all(next(j for j, g in enumerate(doubled) if u in g) >= 32 for u in moved)


def test_rendering_is_deterministic_and_order_free():
    users = [f"cell-{i:05d}" for i in range(300)]
    assert cb.group_users(users) == cb.group_users(list(reversed(users)))
    assert cb.jump_hash(cb.user_key("cell-00042"), 64) == cb.jump_hash(cb.user_key("cell-00042"), 64)


@pytest.mark.parametrize("devices,secrets", [(0, 1), (1, 1), (32, 1), (33, 2), (500, 16), (1000, 32), (10_000, 512)])
def test_secret_count_follows_the_device_count(devices, secrets):
    assert cb.bundle_count(devices) == secrets


def test_no_secret_exceeds_the_user_cap_even_with_unlucky_names():
    # names chosen so all fall into one Secret at the count their number asks for
    k = cb.bundle_count(cb.MAX_USERS_PER_SECRET + 1)
    unlucky = [n for n in (f"x{i}" for i in range(20_000)) if cb.jump_hash(cb.user_key(n), k) == 0]
    unlucky = unlucky[:cb.MAX_USERS_PER_SECRET + 1]
    groups = cb.group_users(unlucky)
    assert len(groups) > k and max(len(g) for g in groups) <= cb.MAX_USERS_PER_SECRET


def test_worst_case_secret_stays_far_below_kubernetes_limit():
    # RSA-4096 leaf signed by an RSA-4096 CA, 64-character CN and organization: 2,204 + 3,243 bytes (measured with
    # `cryptography`; see components/client_bundles.py); MaxSecretSize is 1 MiB (kubernetes/api core/v1/types.go:8322)
    worst = cb.MAX_USERS_PER_SECRET * (2204 + 3243) + 2204
    assert worst < 0.34 * (1 << 20)  # 343 KiB
    fullest = max(len(g) for g in cb.group_users([f"cell-{i:05d}" for i in range(10_000)]))
    assert fullest <= cb.USERS_PER_SECRET * 2


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_documented_lookup_finds_a_device(forty, tmp_path):
    """The kubectl commands of components/client_bundles.py, run with `kubectl label --local` on the Secrets as the
    API server would store them (stringData folded into base64 data). Offline kubectl prints each object of a List
    file on its own, so the listing uses the body of the documented `{range .items[*]}...{end}`."""
    items = []
    for res in bundles(forty).values():
        obj = {k: v for k, v in res.inputs.items() if k != "stringData"}
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in res.inputs["stringData"].items()}
        items.append(obj)
    listing = tmp_path / "list.yaml"
    listing.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    table = subprocess.run(
        ["kubectl", "label", "--local", "-f", str(listing), "checked=yes", "-o",
         "jsonpath={.metadata.name}{\" \"}{.metadata.annotations.mqtt-estate\\.io/users}{\"\\n\"}"],
        capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    found = subprocess.run(["awk", "-v", "u=dev-07", "{for (i = 2; i <= NF; i++) if ($i == u) print $1}"],
                           input=table.stdout, capture_output=True, text=True, timeout=10).stdout.split()
    assert len(found) == 1
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump(next(i for i in items if i["metadata"]["name"] == found[0])))
    cert = subprocess.run(["kubectl", "label", "--local", "-f", str(one), "checked=yes", "-o",
                           "jsonpath={.data.dev-07\\.tls\\.crt}"], capture_output=True, text=True, timeout=60)
    assert cert.returncode == 0, cert.stderr
    pem = base64.b64decode(cert.stdout).decode()
    expected = next(r for r in forty.resources if r.name == "b-pki-client-dev-07-cert").outputs["certPem"]
    assert pem == expected
    json.dumps(pem)  # plain text
