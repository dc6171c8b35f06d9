"""k8s-secrets-mutable: the estate's Secrets sit on a kubernetes provider that updates them in place.

On really rendered resources, with each resource's provider handed to the pack as CrossGuard hands it over: the
program's own `pulumi:providers:kubernetes` resource, or the default provider the engine makes from the stack's
`kubernetes:` config. The shipped and test stacks (default provider, `kubernetes:enableSecretMutable: true` from
Pulumi.yaml) and examples/edge-site (its own provider with enable_secret_mutable=True) pass; a program whose
provider lacks the setting, and the default provider without the config key, fail with a line saying what to set.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs

from mqtt_estate.estate.engine import Registry
from mqtt_estate.estate.policy_run import _resources, default_name, mandatory, run_policies
from mqtt_estate.estate.program import load_program
from mqtt_estate.estate.render import evaluate
from tests.conftest import ROOT
from tests.test_program_option import STACK, copy_example, estate

POLICY = "k8s-secrets-mutable"
MUTABLE = "kubernetes:enableSecretMutable"
PROVIDER_LINE = 'provider = k8s.Provider("k8s", enable_secret_mutable=True)\n'
BOUND = ", opts=pulumi.ResourceOptions(providers=[provider])"
SET_ON_PROVIDER = "set `enable_secret_mutable=True` on that provider (enableSecretMutable: true)"
SET_IN_CONFIG = "set `kubernetes:enableSecretMutable: true` in the stack config (Pulumi.yaml or Pulumi.<stack>.yaml)"


@pytest.fixture(autouse=True)
def _no_mutable_environment(monkeypatch):
    # the Python SDK reads this into an explicit provider's inputs when the argument is not given
    monkeypatch.delenv("PULUMI_K8S_ENABLE_SECRET_MUTABLE", raising=False)


def found(registry: Registry, stack: str) -> list:
    return [v for v in run_policies(registry, stack) if v.policy == POLICY]


def estate_secrets(registry: Registry) -> set[str]:
    """The Secrets the components made (labelled part-of mqtt-estate), by metadata name."""
    return {r.inputs["metadata"]["name"] for r in registry.of_type("kubernetes:core/v1:Secret")
            if r.inputs["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "mqtt-estate"}


def edge_site(root: Path, main=lambda text: text, stack_extra: str = "") -> Path:
    """A copy of examples/edge-site with its __main__.py changed by `main` and lines added to Pulumi.edge.yaml."""
    copy_dir = copy_example(root)
    program = copy_dir / "__main__.py"
    program.write_text(main(program.read_text()))
    with (copy_dir / f"Pulumi.{STACK}.yaml").open("a") as stack_file:
        stack_file.write(stack_extra)
    return copy_dir


def edge_registry(tmp_path: Path, **changes) -> Registry:
    return evaluate(STACK, state_dir=tmp_path / "state", program=load_program(edge_site(tmp_path, **changes)))[1]


def replaced(old: str, new: str):
    def change(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)
    return change


# --- what passes --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["prod", "dev", "ha", "ha-standby"])
def test_shipped_and_test_stacks_pass(rendered, stack):
    registry = rendered(stack).registry
    assert estate_secrets(registry)  # there is something to judge
    assert found(registry, stack) == []


@pytest.mark.parametrize("stack", ["anonymous", "flood"])
def test_other_test_stacks_pass(state_dir, stack):
    _, registry = evaluate(stack, ROOT / "tests" / "stacks" / f"{stack}.yaml", state_dir)
    assert estate_secrets(registry) and mandatory(run_policies(registry, stack)) == []


def test_the_example_passes_on_its_own_provider(tmp_path):
    registry = edge_registry(tmp_path)
    assert estate_secrets(registry) == {"mosquitto-auth", "mosquitto-tls", "mosquitto-client-certs-0"}
    assert found(registry, STACK) == []


# --- the provider, as CrossGuard hands it over ----------------------------------------------------------------

def _provider_of_secret(registry: Registry, stack: str, name: str):
    return next(row[5] for row in _resources(registry, stack) if row[1] == name)


def test_default_provider_is_made_from_the_stack_config(rendered):
    """The repository's own program uses the default provider: `pulumi:providers:kubernetes`, named after the
    version the SDK asked for, its inputs the stack's `kubernetes:` keys (text) and that version."""
    registry = rendered("prod").registry
    secret = next(r for r in registry.resources if r.name == "mosquitto-auth")
    assert secret.provider == "" and secret.version  # the mock monitor sees no default provider
    provider = _provider_of_secret(registry, "prod", "mosquitto-auth")
    name = default_name(secret.version)
    assert (provider.resource_type, provider.name, provider.urn) == (
        "pulumi:providers:kubernetes", name, f"urn:pulumi:prod::mqtt-estate::pulumi:providers:kubernetes::{name}")
    assert provider.props == {"enableSecretMutable": "true", "version": secret.version}
    # one default provider per package: tls resources get tls's, with no `tls:` config
    key = _provider_of_secret(registry, "prod", "mosquitto-pki-ca-key")
    assert (key.resource_type, key.props) == ("pulumi:providers:tls", {"version": key.props["version"]})


def test_explicit_provider_is_the_programs_own_resource(tmp_path):
    registry = edge_registry(tmp_path)
    own = next(r for r in registry.resources if r.type == "pulumi:providers:kubernetes")
    provider = _provider_of_secret(registry, STACK, "mosquitto-auth")
    assert (provider.resource_type, provider.name, provider.urn) == (own.type, "k8s", own.urn)
    assert provider.props == {"enableSecretMutable": "true", "version": own.version}
    assert _provider_of_secret(registry, STACK, "k8s") is None  # a provider resource has no provider


def test_a_provider_the_program_did_not_register_has_no_inputs(tmp_path):
    """A reference to a provider the record lacks: its type and name from the URN, no inputs (so no setting)."""
    registry = edge_registry(tmp_path)
    registry.resources = [r for r in registry.resources if r.type != "pulumi:providers:kubernetes"]
    provider = _provider_of_secret(registry, STACK, "mosquitto-auth")
    assert (provider.resource_type, provider.name, provider.props) == ("pulumi:providers:kubernetes", "k8s", {})
    assert len(found(registry, STACK)) == 3


@pytest.mark.parametrize("version, name", [("4.34.2", "default_4_34_2"), ("", "default"),
                                           ("1.2.3-alpha.1+build.5", "default_1_2_3_alpha_1_build_5")])
def test_default_provider_names_as_pulumi_makes_them(version, name):
    assert default_name(version) == name


# --- what fails ---------------------------------------------------------------------------------------------

def test_default_provider_without_the_config_fails(rendered):
    registry = copy.deepcopy(rendered("prod").registry)
    del registry.config[MUTABLE]
    violations = found(registry, "prod")
    assert {v.resource_name for v in violations} == {"mosquitto-auth", "mosquitto-tls", "mosquitto-bridge",
                                                      "mosquitto-client-certs-0", "mosquitto-frontend-stats",
                                                      "mosquitto-frontend-check-tls"}
    assert mandatory(violations) == violations
    auth = next(v for v in violations if v.resource_name == "mosquitto-auth")
    version = next(r for r in registry.resources if r.name == "mosquitto-auth").version
    assert auth.message == (
        f"Secret mosquitto-auth is on the default kubernetes provider ({default_name(version)}), whose enableSecretMutable is not set, so a change replaces the Secret (deleting it first: its name is "
        f"fixed) instead of updating it in place; {SET_IN_CONFIG}")


@pytest.mark.parametrize("value, now", [("false", "is 'false', not true"), ("True", "is 'True', not true")])
def test_default_provider_with_another_value_fails(rendered, value, now):
    """The provider takes exactly "true" (provider.go:714-716): "True" in the stack config is not it."""
    registry = copy.deepcopy(rendered("dev").registry)
    registry.config[MUTABLE] = value
    violations = found(registry, "dev")
    assert {v.resource_name for v in violations} == {"mosquitto-auth", "mosquitto-tls"}
    assert all(f"whose enableSecretMutable {now}, so a change replaces" in v.message for v in violations)


def test_a_program_whose_provider_lacks_it_fails(tmp_path):
    registry = edge_registry(tmp_path, main=replaced(PROVIDER_LINE, 'provider = k8s.Provider("k8s")\n'))
    violations = found(registry, STACK)
    assert [v.resource_name for v in sorted(violations, key=lambda v: v.resource_name)] == [
        "mosquitto-auth", "mosquitto-client-certs-0", "mosquitto-tls"]
    assert violations[0].message.startswith(f"Secret {violations[0].resource_name} is on kubernetes provider k8s, "
                                            "whose enableSecretMutable is not set, so a change replaces the Secret ")
    assert all(v.message.endswith(SET_ON_PROVIDER) for v in violations)


def test_a_program_on_the_default_provider_needs_the_config(tmp_path):
    """Without a provider of its own, the program's Secrets go through the default provider: refused without
    `kubernetes:enableSecretMutable: true`, accepted with it in the stack file."""
    unbound = lambda text: replaced(BOUND, "")(replaced(PROVIDER_LINE, "")(text))  # noqa: E731
    without = edge_registry(tmp_path / "without", main=unbound)
    violations = found(without, STACK)
    assert len(violations) == 3 and all(v.message.endswith(SET_IN_CONFIG) for v in violations)
    assert all("on the default kubernetes provider (default_" in v.message for v in violations)
    with_config = edge_registry(tmp_path / "with", main=unbound, stack_extra=f"  {MUTABLE}: true\n")
    assert found(with_config, STACK) == []


def test_cli_refuses_the_program_whose_provider_lacks_it(tmp_path):
    program = edge_site(tmp_path, main=replaced(PROVIDER_LINE, 'provider = k8s.Provider("k8s")\n'))
    unset = {"PULUMI_K8S_ENABLE_SECRET_MUTABLE": ""}  # the SDK takes "" as not given
    proc = estate("policy", "--program", str(program), "--stack", STACK, env=unset)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == "mandatory violations: 3"
    assert lines[2].startswith(f"  [{POLICY}] kubernetes:core/v1:Secret mosquitto-auth: Secret mosquitto-auth is on "
                               "kubernetes provider k8s") and lines[2].endswith(SET_ON_PROVIDER)
    render = estate("render", "--program", str(program), "--stack", STACK, "--out", str(tmp_path / "out"), env=unset)
    assert render.returncode == 3 and "refusing: 3 mandatory policy violation(s)" in render.stderr
    assert not (tmp_path / "out").exists()


def test_an_immutable_estate_secret_fails_even_on_a_mutable_provider(rendered):
    """An immutable Secret is replaced on every change whatever the provider says (diff.go:28)."""
    registry = copy.deepcopy(rendered("dev").registry)
    next(r for r in registry.resources if r.name == "mosquitto-tls").inputs["immutable"] = True
    assert [(v.resource_name, v.message) for v in found(registry, "dev")] == [
        ("mosquitto-tls", "Secret mosquitto-tls is immutable: the provider replaces it on every change, "
                          "enableSecretMutable or not (remove `immutable`)")]


def test_only_the_estates_secrets_are_judged(rendered):
    """A Secret of the program's own (no part-of mqtt-estate label) is not the components' business."""
    registry = copy.deepcopy(rendered("dev").registry)
    del registry.config[MUTABLE]
    for resource in registry.of_type("kubernetes:core/v1:Secret"):
        resource.inputs["metadata"]["labels"]["app.kubernetes.io/part-of"] = "billing"
    assert found(registry, "dev") == []


def test_no_provider_given_is_not_a_pass(rendered):
    """An older pulumi CLI may hand the pack no provider: the policy cannot tell, and says so (fail closed)."""
    from mqtt_estate.estate.policy_run import load_policies

    policy = next(p for p in load_policies() if p.name == POLICY)
    secret = next(r for r in rendered("dev").registry.resources if r.name == "mosquitto-auth")
    reported = []
    policy.validate(ResourceValidationArgs(secret.type, secret.inputs, secret.urn, secret.name,
                                           PolicyResourceOptions(False, [], None, [], None, [], None), None),
                    lambda message, urn=None: reported.append(message))
    assert reported == ["Secret mosquitto-auth: Pulumi passed no provider with it, so whether it is updated in place "
                        "cannot be told (use a pulumi CLI that gives policy packs each resource's provider)"]
