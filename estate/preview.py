"""`estate diff`: what a change will do, shown like `pulumi preview --diff`, as markdown for a pull-request comment,
or as JSON.

The verdicts come from estate/provider_diff.py (pulumi-kubernetes' own rules, each cited there). Secret values are
never shown: a Secret's data, and every value of a resource that has a secret input, print as [secret].
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .engine import Registry
from .manifests import kubernetes_object
from .provider_diff import (CREATE, DELETE, REPLACE, SAME, UPDATE, Change, field_changes, format_path,
                            WORKLOAD_KINDS, kubernetes_resources, normalize, plan)

SECRET = "[secret]"
SYMBOLS = {CREATE: "+ ", UPDATE: "~ ", REPLACE: "+-", DELETE: "- ", SAME: "  "}
"""The step symbols of `pulumi preview` (pulumi/pulumi v3.259.0 pkg/resource/deploy/step.go:2335-2372: create
"+ ", update "~ ", replace "+-", delete "- "); its summary lines read "+ 1 to create", "+-1 to replace"
(pkg/backend/display/diff.go:271-345)."""
ORDER = (CREATE, UPDATE, REPLACE, DELETE)
WORDS = {CREATE: "to create", UPDATE: "to update", REPLACE: "to replace", DELETE: "to delete"}


@dataclass(frozen=True)
class FieldLine:
    path: str
    before: str
    after: str


@dataclass(frozen=True)
class Step:
    change: Change
    namespace: str
    type: str
    fields: tuple[FieldLine, ...]

    @property
    def label(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{where}{self.change.name}"


def _lookup(document: Any, path: tuple) -> Any:
    for part in path:
        try:
            document = document[part]
        except (KeyError, IndexError, TypeError):
            return _ABSENT
    return document


_ABSENT = object()


def _shown(value: Any, other: Any, masked: bool, after: bool) -> str:
    """A value for a field line: JSON, shortened; text of several lines as its line count (and, after the change,
    how many lines were added and removed)."""
    if value is _ABSENT or value is None:
        return "(absent)"
    if masked:
        return SECRET
    if isinstance(value, str) and "\n" in value.strip("\n"):
        size = f"{len(value.splitlines())} lines"
        if not after or not isinstance(other, str):
            return f"({size})"
        diff = list(difflib.ndiff(other.splitlines(), value.splitlines()))
        added, removed = sum(line.startswith("+ ") for line in diff), sum(line.startswith("- ") for line in diff)
        return f"({size}: +{added} -{removed})"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _masked(kind: str, path: tuple, secret_inputs: bool) -> bool:
    return secret_inputs and path[:1] != ("metadata",) or kind == "Secret" and path[:1] in (("data",), ("stringData",))


def steps(old: Registry, new: Registry, provider_config: Optional[dict] = None) -> list[Step]:
    """Every Kubernetes resource's predicted step with its changed fields (old -> new), secrets masked."""
    before, after = kubernetes_resources(old), kubernetes_resources(new)
    out = []
    for change in plan(old, new, provider_config):
        res_old, res_new = before.get(change.urn), after.get(change.urn)
        obj_old = normalize(kubernetes_object(res_old)) if res_old else {}
        obj_new = normalize(kubernetes_object(res_new)) if res_new else {}
        secret = bool((res_old and res_old.secret) or (res_new and res_new.secret))
        fields = []
        if change.action in (UPDATE, REPLACE):
            for field in field_changes(obj_old, obj_new):
                masked = _masked(change.kind, field.path, secret)
                old_value, new_value = _lookup(obj_old, field.path), _lookup(obj_new, field.path)
                path = format_path(field.path)
                fields.append(FieldLine(path, _shown(old_value, new_value, masked, False),
                                        _shown(new_value, old_value, masked, True)))
        meta = (obj_new or obj_old).get("metadata") or {}
        resource = res_new or res_old
        out.append(Step(change, meta.get("namespace", "") if change.kind not in ("Namespace",) else "",
                        resource.type, tuple(fields)))
    return out


def counts(all_steps: Iterable[Step]) -> dict[str, int]:
    found: dict[str, int] = {}
    for step in all_steps:
        found[step.change.action] = found.get(step.change.action, 0) + 1
    return found


def rolling(all_steps: Iterable[Step]) -> list[Step]:
    return [s for s in all_steps if s.change.rolls_pods]


def _replace_note(change: Change) -> str:
    order = "delete-before-replace" if change.delete_before_replace else "create-before-delete"
    return f"{order}" + (f", was {change.previous_name}" if change.previous_name else "")


def text(all_steps: list[Step], title: str) -> str:
    lines = [title, ""]
    for step in all_steps:
        change = step.change
        if change.action == SAME:
            continue
        extra = f" ({_replace_note(change)})" if change.action == REPLACE else ""
        roll = "  [pods roll]" if change.rolls_pods else ""
        lines.append(f"  {SYMBOLS[change.action]}{step.type}  {step.label}  {change.action}{extra}{roll}")
        for field in step.fields:
            lines.append(f"        ~ {field.path}: {_arrow(field)}")
        for reason in reasons(change):
            lines.append(f"        why: {reason}")
    found = counts(all_steps)
    lines += ["", "Resources:"]
    lines += [f"    {SYMBOLS[a]}{found[a]} {WORDS[a]}" for a in ORDER if found.get(a)]
    lines.append(f"    {found.get(SAME, 0)} unchanged")
    rolls = rolling(all_steps)
    lines.append("Pods that restart: " + (", ".join(f"{s.change.kind} {s.label}" for s in rolls) if rolls else "none"))
    return "\n".join(lines) + "\n"


def reasons(change: Change) -> list[str]:
    """Why the step is what it is: each force-new path with the changed fields that matched it (grouped), and why
    pods restart."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for reason in change.reasons:
        grouped.setdefault((reason.force_new, reason.source), []).append(reason.path)
    out = [f"{', '.join(paths)} changed: {force_new} forces replacement ({source})"
           for (force_new, source), paths in grouped.items()]
    if change.rolls_pods:
        out.append("the workload is replaced and its pods with it" if change.action == REPLACE
                   else "the pod template changed: the controller rolls the pods")
    elif change.action == REPLACE and change.kind in WORKLOAD_KINDS:
        out.append("its pods are orphaned (pulumi.com/deletionPropagationPolicy: orphan) and adopted by the new "
                   "one with the same template: none restarts")
    return out


def _arrow(field: FieldLine) -> str:
    return SECRET if field.before == field.after == SECRET else f"{field.before} => {field.after}"


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown(all_steps: list[Step], title: str) -> str:
    found = counts(all_steps)
    rolls = rolling(all_steps)
    summary = ", ".join(f"{found[a]} {WORDS[a]}" for a in ORDER if found.get(a)) or "no changes"
    lines = [f"### {title}", "", f"**{summary}**, {found.get(SAME, 0)} unchanged. "
             + (f"**Pods restart:** {', '.join(f'`{s.change.kind} {s.label}`' for s in rolls)}." if rolls else "No pod restarts."),
             ""]
    changed = [s for s in all_steps if s.change.action != SAME]
    if not changed:
        return "\n".join(lines) + "\n"
    lines += ["| | Resource | Action | Pods restart | Why |", "|---|---|---|---|---|"]
    for step in changed:
        change = step.change
        action = change.action + (f" ({_replace_note(change)})" if change.action == REPLACE else "")
        why = "; ".join(reasons(change))
        lines.append(f"| `{SYMBOLS[change.action].strip()}` | `{step.change.kind} {step.label}` | {action} | "
                     f"{'yes' if change.rolls_pods else 'no'} | {_cell(why)} |")
    lines += ["", "<details><summary>Changed fields</summary>", "", "```diff"]
    for step in changed:
        if not step.fields:
            continue
        lines.append(f"{SYMBOLS[step.change.action].strip()} {step.change.kind} {step.label}")
        for field in step.fields:
            lines.append(f"~   {field.path}: {_arrow(field)}")
    lines += ["```", "", "</details>"]
    return "\n".join(lines) + "\n"


def as_json(all_steps: list[Step]) -> str:
    document = {
        "summary": {**{a: counts(all_steps).get(a, 0) for a in ORDER}, SAME: counts(all_steps).get(SAME, 0)},
        "podsRestart": [f"{s.change.kind} {s.label}" for s in rolling(all_steps)],
        "steps": [{"urn": s.change.urn, "type": s.type, "kind": s.change.kind, "namespace": s.namespace,
                   "name": s.change.name, "action": s.change.action,
                   "deleteBeforeReplace": s.change.delete_before_replace, "previousName": s.change.previous_name,
                   "rollsPods": s.change.rolls_pods,
                   "reasons": [{"path": r.path, "forceNew": r.force_new, "source": r.source} for r in s.change.reasons],
                   "why": reasons(s.change),
                   "fields": [{"path": f.path, "before": f.before, "after": f.after} for f in s.fields]}
                  for s in all_steps if s.change.action != SAME],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
