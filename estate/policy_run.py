"""`estate policy`: run the CrossGuard pack's own policy objects on what the program registered.

The same ResourceValidationPolicy / StackValidationPolicy objects that `pulumi preview --policy-pack policy`
loads are called here with argument objects built from the offline render, so both give the same verdicts.

A policy that raises on a resource (odd props it did not expect) does not stop the run: it is reported as
"policy X could not judge <type> <name>: <error>" at that policy's enforcement level, so a mandatory policy
that cannot judge a resource blocks `render`/`up` exactly as a violation would (a check that could not be made
is not a pass), and an advisory one only warns. Every other policy and resource is still judged.

Each resource's provider reaches the policies as CrossGuard hands it over (ResourceValidationArgs.provider and
PolicyResource.provider, a PolicyProviderResource: the provider resource's type, URN, name and inputs): the
program's own provider resource, or the default provider the engine makes from the stack's `<package>:` config
(default_provider).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pulumi_policy import (EnforcementLevel, PolicyCustomTimeouts, PolicyProviderResource, PolicyResource,
                           PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs, StackValidationPolicy)

from .engine import Registered, Registry
from ..stacks.errors import ConfigIssue, StackConfigError

LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY,
          "disabled": EnforcementLevel.DISABLED, "remediate": EnforcementLevel.REMEDIATE}


@dataclass
class Violation:
    policy: str
    level: EnforcementLevel
    resource_type: str
    resource_name: str
    message: str
    judged: bool = True
    """False when the policy raised instead of judging; `message` is then the whole line."""

    def line(self) -> str:
        if not self.judged:
            return self.message
        return f"[{self.policy}] {self.resource_type} {self.resource_name}: {self.message}"


def _could_not_judge(policy, level, typ: str, name: str, exc: Exception) -> Violation:
    error = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(error) > 300:
        error = error[:297] + "..."
    return Violation(policy.name, level, typ, name, f"policy {policy.name} could not judge {typ} {name}: {error}",
                     judged=False)


def load_policies() -> list:
    from ..policy.estate_policies import POLICIES  # the pack's own list

    return POLICIES


def _options(parent: Optional[str]) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
                                 parent=parent)


Row = tuple[str, str, str, dict, Optional[str], Optional[PolicyProviderResource]]


def _resources(registry: Registry, stack: str) -> list[Row]:
    """(type, name, urn, props, parent, provider) for every custom resource and the stack (its public outputs)."""
    providers = Providers(registry, stack)
    rows: list[Row] = [(r.type, r.name, r.urn, r.inputs, r.parent, providers.of(r))
                       for r in registry.resources if r.custom]
    name = registry.stack_name(stack)
    rows.append(("pulumi:pulumi:Stack", name, f"urn:pulumi:{stack}::{registry.project}::pulumi:pulumi:Stack::{name}",
                 registry.public_outputs(), None, None))
    return rows


PROVIDER_TYPE = "pulumi:providers:"


def default_name(version: str) -> str:
    """A default provider's name, as the engine makes it (pulumi/pulumi pkg/resource/deploy/providers/provider.go:
    107-138, ProviderRequest.DefaultName): `default`, then each part of the version the SDK asked for, joined by
    `_` (4.34.2 -> default_4_34_2)."""
    core, _, build = version.partition("+")
    core, _, pre = core.partition("-")
    parts = [part for text in (core, pre, build) if text for part in text.split(".")]
    return "_".join(["default", *parts])


class Providers:
    """The provider of each resource, as the Pulumi engine hands it to the policy pack.

    The engine passes the provider resource's URN, type, name and inputs (pulumi/pulumi 1b59498
    pkg/resource/deploy/step_generator.go:3476-3484, getProviderResource at 3144-3160); the analyzer drops the
    `__internal` keys (pkg/resource/plugin/analyzer_plugin.go:770-778). A resource without an explicit provider is
    bound to its package's default provider (source_eval.go:2563-2584 and 714-729), which the engine registers as
    `pulumi:providers:<package>` named by DefaultName, with the stack's `<package>:` config keys as its inputs,
    keys without the namespace and values as text (default_providers.go:139-169, target.go:45-72), plus `version`
    when the SDK asked for one (default_providers.go:148-150; an explicit provider gets it too,
    source_eval.go:2669-2676). Offline, the mock monitor sees no default provider at all (the resource's provider
    reference is ""), so it is made here from the config the program ran with."""

    def __init__(self, registry: Registry, stack: str):
        self.registry, self.stack = registry, stack
        self.explicit = {r.urn: r for r in registry.resources if r.type.startswith(PROVIDER_TYPE)}
        self.cache: dict[tuple[str, str], PolicyProviderResource] = {}

    def of(self, resource: Registered) -> Optional[PolicyProviderResource]:
        if resource.type.startswith(PROVIDER_TYPE):
            return None  # a provider has none (source_eval.go:2563)
        explicit = resource.provider.rsplit("::", 1)[0]  # a reference is `<urn>::<id>`
        key = ("", explicit) if explicit else (resource.type.split(":", 1)[0], resource.version)
        if key not in self.cache:
            self.cache[key] = self._explicit(explicit) if explicit else self._default(*key)
        return self.cache[key]

    def _explicit(self, urn: str) -> PolicyProviderResource:
        found = self.explicit.get(urn)
        if found is None:  # not registered by this program: what the reference says, no inputs
            _, typ, name = urn.rsplit("::", 2)
            return PolicyProviderResource(typ.rsplit("$", 1)[-1], {}, urn, name)
        return PolicyProviderResource(found.type, _with_version(found.inputs, found.version), found.urn, found.name)

    def _default(self, package: str, version: str) -> PolicyProviderResource:
        inputs = {key.split(":", 1)[1]: value for key, value in self.registry.config.items()
                  if key.split(":", 1)[0] == package}
        name = default_name(version)
        urn = f"urn:pulumi:{self.stack}::{self.registry.project}::{PROVIDER_TYPE}{package}::{name}"
        return PolicyProviderResource(f"{PROVIDER_TYPE}{package}", _with_version(inputs, version), urn, name)


def _with_version(inputs: dict, version: str) -> dict:
    return {**inputs, "version": version} if version else dict(inputs)


def level_of(policy, overrides: dict) -> EnforcementLevel:
    override = overrides.get(policy.name)
    if isinstance(override, str):
        return LEVELS[override]
    if isinstance(override, dict) and "enforcementLevel" in override:
        return LEVELS[override["enforcementLevel"]]
    return policy.enforcement_level or EnforcementLevel.ADVISORY


def run_policies(registry: Registry, stack: str, overrides: Optional[dict] = None,
                 policies: Optional[list] = None) -> list[Violation]:
    overrides = overrides or {}
    rows = _resources(registry, stack)
    by_urn = {urn: (typ, name) for typ, name, urn, *_ in rows}
    # built once, not per policy: ~40 policies x 20,000 resources made a million of each at 10,000 devices (4 s)
    options = [_options(parent) for _, _, _, _, parent, _ in rows]
    stack_resources = [PolicyResource(typ, props, urn, name, opts, provider, None, [], {})
                       for (typ, name, urn, props, _, provider), opts in zip(rows, options)]
    violations: list[Violation] = []
    for policy in policies if policies is not None else load_policies():
        level = level_of(policy, overrides)
        if level == EnforcementLevel.DISABLED:
            continue
        config = {k: v for k, v in (overrides.get(policy.name) or {}).items() if k != "enforcementLevel"} \
            if isinstance(overrides.get(policy.name), dict) else {}
        if isinstance(policy, StackValidationPolicy):
            resources = list(stack_resources)

            def report(message, urn=None, _policy=policy, _level=level):
                typ, name = by_urn.get(urn, ("stack", stack))
                violations.append(Violation(_policy.name, _level, typ, name, message))

            try:
                policy.validate(StackValidationArgs(resources, config), report)
            except Exception as exc:  # noqa: BLE001 -- reported at the policy's level, see the module docstring
                violations.append(_could_not_judge(policy, level, "pulumi:pulumi:Stack", registry.stack_name(stack),
                                                   exc))
            continue
        for (typ, name, urn, props, _, provider), opts in zip(rows, options):
            def report(message, _urn=None, _policy=policy, _level=level, _typ=typ, _name=name):
                violations.append(Violation(_policy.name, _level, _typ, _name, message))

            try:
                policy.validate(ResourceValidationArgs(typ, props, urn, name, opts, provider, config), report)
            except Exception as exc:  # noqa: BLE001 -- reported at the policy's level, see the module docstring
                violations.append(_could_not_judge(policy, level, typ, name, exc))
    return violations


def read_overrides(path: Optional[Path]) -> dict:
    """Pulumi's policy-pack config format: {"policy-name": "advisory" | {"enforcementLevel": ..., key: value}}.

    A file that cannot be used is a configuration error (exit 2), one line per problem."""
    if not path:
        return {}
    levels = ", ".join(LEVELS)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StackConfigError(path.name, [ConfigIssue(None, f"no such policy config file: {path}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StackConfigError(path.name, [ConfigIssue(None, f"cannot be read ({exc})")]) from None
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StackConfigError(path.name, [ConfigIssue(None, f"line {exc.lineno}: not valid JSON ({exc.msg})")]) \
            from None
    if not isinstance(overrides, dict):
        raise StackConfigError(path.name, [ConfigIssue(None, "must be a JSON object of policy name to "
                                                             f"enforcement level ({levels}) or settings")])
    issues = []
    for name, value in overrides.items():
        level = value.get("enforcementLevel") if isinstance(value, dict) else value
        where = f"{name}.enforcementLevel" if isinstance(value, dict) else name
        if isinstance(value, dict) and "enforcementLevel" not in value:
            continue
        if not isinstance(level, str) or level not in LEVELS:
            issues.append(ConfigIssue(None, f"{where}: {json.dumps(level)} is not allowed (use {levels}"
                                            + (", or an object of settings)" if not isinstance(value, dict) else ")")))
    if issues:
        raise StackConfigError(path.name, issues)
    return overrides


def checked_resources(registry: Registry) -> int:
    """What the pack looks at: every custom resource and the stack itself."""
    return len([r for r in registry.resources if r.custom]) + 1


def report_text(violations: list[Violation], policy_count: int, resource_count: int) -> str:
    lines = [f"Policies: {policy_count} from the mqtt-estate pack over {resource_count} resources"]
    for level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY):
        found = [v for v in violations if v.level == level]
        lines.append(f"{level.value} violations: {len(found)}")
        for v in sorted(found, key=lambda v: (v.policy, v.resource_type, v.resource_name, v.message)):
            lines.append(f"  {v.line()}")
    return "\n".join(lines)


def mandatory(violations: list[Violation]) -> list[Violation]:
    return [v for v in violations if v.level == EnforcementLevel.MANDATORY]
