"""`estate policy`: run the CrossGuard pack's own policy objects on what the program registered.

The same ResourceValidationPolicy / StackValidationPolicy objects that `pulumi preview --policy-pack policy`
loads are called here with argument objects built from the offline render, so both give the same verdicts.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pulumi_policy import (EnforcementLevel, PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions,
                           ResourceValidationArgs, StackValidationArgs, StackValidationPolicy)

from estate.engine import Registry

POLICY_DIR = Path(__file__).resolve().parent.parent / "policy"
LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY,
          "disabled": EnforcementLevel.DISABLED, "remediate": EnforcementLevel.REMEDIATE}


@dataclass
class Violation:
    policy: str
    level: EnforcementLevel
    resource_type: str
    resource_name: str
    message: str


def load_policies() -> list:
    if str(POLICY_DIR) not in sys.path:
        sys.path.insert(0, str(POLICY_DIR))
    from estate_policies import POLICIES  # the pack's own list

    return POLICIES


def _options(parent: Optional[str]) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
                                 parent=parent)


def _resources(registry: Registry, stack: str) -> list[tuple[str, str, str, dict, Optional[str]]]:
    """(type, name, urn, props, parent) for every custom resource and the stack (its public outputs)."""
    rows = [(r.type, r.name, r.urn, r.inputs, r.parent) for r in registry.resources if r.custom]
    outputs = {k: ("[secret]" if k in registry.secret_outputs else v) for k, v in registry.stack_outputs.items()}
    rows.append(("pulumi:pulumi:Stack", f"mqtt-estate-{stack}", f"urn:pulumi:{stack}::mqtt-estate::pulumi:pulumi:Stack::"
                 f"mqtt-estate-{stack}", outputs, None))
    return rows


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
    by_urn = {urn: (typ, name) for typ, name, urn, _, _ in rows}
    violations: list[Violation] = []
    for policy in policies if policies is not None else load_policies():
        level = level_of(policy, overrides)
        if level == EnforcementLevel.DISABLED:
            continue
        config = {k: v for k, v in (overrides.get(policy.name) or {}).items() if k != "enforcementLevel"} \
            if isinstance(overrides.get(policy.name), dict) else {}
        if isinstance(policy, StackValidationPolicy):
            resources = [PolicyResource(typ, props, urn, name, _options(parent), None, None, [], {})
                         for typ, name, urn, props, parent in rows]

            def report(message, urn=None, _policy=policy, _level=level):
                typ, name = by_urn.get(urn, ("stack", stack))
                violations.append(Violation(_policy.name, _level, typ, name, message))

            policy.validate(StackValidationArgs(resources, config), report)
            continue
        for typ, name, urn, props, parent in rows:
            def report(message, _urn=None, _policy=policy, _level=level, _typ=typ, _name=name):
                violations.append(Violation(_policy.name, _level, _typ, _name, message))

            policy.validate(ResourceValidationArgs(typ, props, urn, name, _options(parent), None, config), report)
    return violations


def read_overrides(path: Optional[Path]) -> dict:
    """Pulumi's policy-pack config format: {"policy-name": "advisory" | {"enforcementLevel": ..., key: value}}."""
    return json.loads(path.read_text()) if path else {}


def checked_resources(registry: Registry) -> int:
    """What the pack looks at: every custom resource and the stack itself."""
    return len([r for r in registry.resources if r.custom]) + 1


def report_text(violations: list[Violation], policy_count: int, resource_count: int) -> str:
    lines = [f"Policies: {policy_count} from the mqtt-estate pack over {resource_count} resources"]
    for level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY):
        found = [v for v in violations if v.level == level]
        lines.append(f"{level.value} violations: {len(found)}")
        for v in sorted(found, key=lambda v: (v.policy, v.resource_type, v.resource_name, v.message)):
            lines.append(f"  [{v.policy}] {v.resource_type} {v.resource_name}: {v.message}")
    return "\n".join(lines)


def mandatory(violations: list[Violation]) -> list[Violation]:
    return [v for v in violations if v.level == EnforcementLevel.MANDATORY]
