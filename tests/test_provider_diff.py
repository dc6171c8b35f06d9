"""estate.provider_diff on real renders: the prod stack rendered twice (same seed), once with one change.

Each scenario writes two stack files (Pulumi.prod.yaml's text, the second one modified) and renders both with
the same state directory, so every key, password and certificate is identical and only the change differs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mqtt_estate.estate.provider_diff import (CREATE, DELETE, REPLACE, SAME, UPDATE, Change, kubernetes_config, plan,
                                  provider_options)
from mqtt_estate.estate.render import evaluate
from tests.conftest import ROOT

MUTABLE_KEY = "kubernetes:enableSecretMutable"
NEW_USER = "    - name: dashboard-01\n      role: dashboard\n"


def prod_text() -> str:
    """Pulumi.prod.yaml with `kubernetes:enableSecretMutable: "true"` (added when the file lacks it)."""
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    if not re.search(rf"^\s*{re.escape(MUTABLE_KEY)}:", text, re.MULTILINE):
        text = text.replace("config:\n", f'config:\n  {MUTABLE_KEY}: "true"\n', 1)
    return text


def edited(text: str, old: str, new: str) -> str:
    assert old in text, f"Pulumi.prod.yaml no longer contains {old!r}"
    return text.replace(old, new, 1)


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """renders(label, text) -> (StackFile, Registry); one seed for all, each text rendered once."""
    state = tmp_path_factory.mktemp("provider-diff-state")
    stacks = tmp_path_factory.mktemp("provider-diff-stacks")
    cache: dict[str, tuple] = {}

    def get(label: str, text: str):
        if label not in cache:
            path = stacks / f"{label}.yaml"
            path.write_text(text)
            cache[label] = evaluate("prod", path, state)
        return cache[label]

    return get


@pytest.fixture(scope="module")
def base(renders):
    return renders("base", prod_text())[1]


@pytest.fixture(scope="module")
def user_added(renders):
    text = prod_text().rstrip("\n") + "\n" + NEW_USER
    return renders("user-added", text)


def by_name(changes: list[Change], kind: str, name: str) -> Change:
    matches = [c for c in changes if c.kind == kind and c.name == name]
    assert len(matches) == 1, (kind, name, [(c.kind, c.name) for c in changes])
    return matches[0]


def destructive(changes: list[Change]) -> list[Change]:
    """The property a routine change must keep: nothing deleted, nothing replaced."""
    return [c for c in changes if c.action in (DELETE, REPLACE)]


def test_unchanged_stack_plans_nothing(base, renders):
    again = renders("base-again", prod_text())[1]
    assert {c.action for c in plan(base, again, {})} == {SAME}


def test_adding_a_user_with_mutable_secrets_only_updates_in_place(base, user_added):
    stack_file, new = user_added
    config = kubernetes_config(stack_file.pulumi_config)
    assert provider_options(config).enable_secret_mutable  # read from the stack file, as the provider would
    changes = plan(base, new, config)

    assert destructive(changes) == []
    assert {c.action for c in changes} <= {SAME, UPDATE, CREATE}
    auth = by_name(changes, "Secret", "mosquitto-auth")
    assert auth.action == UPDATE and {"data.passwd", "data.acl"} <= set(auth.changed_paths)
    # the reloader sidecar applies it: the pod template is untouched, no pod restarts
    assert by_name(changes, "StatefulSet", "mosquitto").action == SAME
    assert not any(c.rolls_pods for c in changes)


def test_adding_a_user_without_mutable_secrets_replaces_the_auth_secret_delete_first(base, user_added):
    # The stack reader insists on the option, so the render keeps it and the provider default (off) is given here.
    _, new = user_added
    changes = plan(base, new, {"enableSecretMutable": "false"})
    assert plan(base, new, {}) == changes  # off is the default (provider.go:712-726)

    offenders = destructive(changes)
    assert [(c.kind, c.name) for c in offenders] == [("Secret", "mosquitto-auth")]  # the property above fails
    auth = offenders[0]
    assert auth.action == REPLACE and auth.delete_before_replace
    assert {r.force_new for r in auth.reasons} == {".data"}
    assert {r.path for r in auth.reasons} >= {"data.passwd"}
    assert all(r.source.endswith("diff.go:28-29") for r in auth.reasons)


def test_storage_size_replaces_the_statefulset_for_its_claim_template(base, renders):
    text = edited(prod_text(), "      sessionExpiry: 7d\n", "      sessionExpiry: 7d\n      size: 64Gi\n")
    changes = plan(base, renders("size", text)[1], {MUTABLE_KEY: "true"})

    broker = by_name(changes, "StatefulSet", "mosquitto")
    assert broker.action == REPLACE and broker.delete_before_replace
    assert {r.force_new for r in broker.reasons} == {".spec.volumeClaimTemplates"}
    assert [r.path for r in broker.reasons] == ["spec.volumeClaimTemplates[0].spec.resources.requests.storage"]
    # orphan propagation: the new StatefulSet adopts the running pods, and their template did not change
    assert not broker.rolls_pods
    assert [c for c in changes if c.action != SAME] == [broker]


def test_listener_port_swaps_the_hash_named_configmap_and_rolls_the_brokers(base, renders):
    text = edited(prod_text(), "port: 9443", "port: 9444")
    changes = plan(base, renders("port", text)[1], {MUTABLE_KEY: "true"})

    config = next(c for c in changes if c.kind == "ConfigMap" and c.name.startswith("mosquitto-config-"))
    # the same Pulumi resource gets a new name: created under the new name first, then the old one is deleted
    assert config.action == REPLACE and not config.delete_before_replace
    assert config.previous_name and config.previous_name != config.name
    assert ".metadata.name" in {r.force_new for r in config.reasons}

    broker = by_name(changes, "StatefulSet", "mosquitto")
    assert broker.action == UPDATE and broker.rolls_pods
    assert "spec.template.spec.volumes[0].configMap.name" in broker.changed_paths
    assert any(p.endswith(".containerPort") for p in broker.changed_paths)
    assert by_name(changes, "Service", "mosquitto").action == UPDATE
    assert [c for c in changes if c.delete_before_replace or c.action == DELETE] == []


@pytest.mark.parametrize("config, mutable", [
    ({}, False), ({"enableSecretMutable": "true"}, True), ({"enableSecretMutable": True}, True),
    ({MUTABLE_KEY: "true"}, True), ({"enableSecretMutable": "True"}, False), ({"enableSecretMutable": "false"}, False),
])
def test_option_is_on_only_for_true(config, mutable):
    # provider.go:714-716 compares with the exact string "true"; a YAML boolean arrives JSON-encoded as "true"
    assert provider_options(config).enable_secret_mutable is mutable


def test_environment_counts_only_when_config_is_silent():
    env = {"PULUMI_K8S_ENABLE_SECRET_MUTABLE": "true"}
    assert provider_options({}, env).enable_secret_mutable
    assert not provider_options({"enableSecretMutable": "false"}, env).enable_secret_mutable
    assert not provider_options({}).enable_secret_mutable
