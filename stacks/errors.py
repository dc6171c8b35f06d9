"""Configuration errors as one line each: `<file>: mqtt-estate:<key path>: <what is wrong and what is allowed>`."""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import pulumi

PROJECT = "mqtt-estate"


def safe_text(text: Any, limit: int = 60) -> str:
    """A key from the user's file as it may be printed: no control characters (a key must not forge a line or
    steer the terminal) and not longer than `limit`."""
    text = str(text)
    if text.isprintable() and len(text) <= limit:
        return text
    shown = repr(text)[1:-1] if not text.isprintable() else text
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def key_path(loc: Sequence[Any]) -> str:
    """('broker', 'listeners', 1, 'tlsVersion') -> 'broker.listeners[1].tlsVersion'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + safe_text(part)
    return out


class ConfigIssue:
    """One invalid value: where it is and what is allowed instead.

    `loc` is a key path under `mqtt-estate:`; a file-level problem (bad YAML, a key of another form) passes
    `loc=None` and names its place in the message itself.
    """

    def __init__(self, loc: Optional[Sequence[Any]], message: str):
        self.path = key_path(loc) if loc is not None else None
        self.message = message

    def line(self, source: str) -> str:
        if self.path is None:
            return f"{source}: {self.message}"
        return f"{source}: {PROJECT}:{self.path}: {self.message}"


def already_used(loc: Sequence[Any], value, seen: dict, label: str, what: str) -> Optional[ConfigIssue]:
    """The issue when `value` was taken by an earlier entry (`seen`: value -> its label, e.g. listeners[0]);
    otherwise records it as taken by `label`."""
    if value in seen:
        return ConfigIssue(loc, f"{value!r} is already used by {seen[value]} ({what} must be unique)")
    seen[value] = label
    return None


def name_taken(loc: Sequence[Any], name: str, seen: dict, label: str, reserved: Mapping[str, str],
               what: str) -> Iterator[ConfigIssue]:
    """A name used by an earlier entry, or one the estate makes for itself."""
    repeated = already_used(loc, name, seen, label, what)
    if repeated:
        yield repeated
    elif name in reserved:
        yield ConfigIssue(loc, f"{name!r} is reserved for {reserved[name]} (choose another name)")


def listed_twice(loc: Sequence[Any], values: Iterable) -> Iterator[ConfigIssue]:
    """Each entry of a list that repeats an earlier one."""
    seen: dict = {}
    for i, value in enumerate(values):
        if value in seen:
            yield ConfigIssue([*loc, i], f"{value!r} is already given as [{seen[value]}] (list it once)")
        seen.setdefault(value, i)


MAX_LINES = 50
"""A file with more problems than this is not a stack file with typos; the rest is summed up in one line."""


class StackConfigError(pulumi.RunError):
    """Raised for invalid stack configuration; Pulumi prints a RunError without a traceback."""

    def __init__(self, source: str, issues: Iterable[ConfigIssue]):
        self.source = source
        self.issues = list(issues)
        lines = [issue.line(source) for issue in self.issues]
        if len(lines) > MAX_LINES:
            lines = lines[:MAX_LINES] + [f"{source}: ... and {len(lines) - MAX_LINES} more problems"]
        self.lines = lines
        super().__init__("\n".join(self.lines))


def _short(value: Any) -> str:
    """A value as the user wrote it in YAML: 'text', true, null, {"a": 1}."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, sort_keys=True)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


PATTERN_HINTS: dict[str, str] = {}
"""regex -> what to write instead; filled by stacks.model next to each pattern."""


def describe_pydantic_error(err: dict, allowed_keys: Sequence[str] = ()) -> str:
    """Turn one pydantic error dict into 'what is wrong (what is allowed)'."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "literal_error":
        return f"{_short(value)} is not allowed (use {ctx['expected'].replace(chr(39), '')})"
    if kind == "extra_forbidden":
        return f"unknown key (allowed: {', '.join(allowed_keys)})" if allowed_keys else "unknown key"
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch":
        return f"{_short(value)} is not allowed ({PATTERN_HINTS.get(ctx['pattern'], 'must match ' + ctx['pattern'])})"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}[kind]
        return f"{_short(value)} is out of range (must be {bound} {next(iter(ctx.values()))})"
    if kind.startswith("int_"):
        return f"{_short(value)} is not allowed (use a whole number)"
    if kind.startswith("bool_"):
        return f"{_short(value)} is not allowed (use true or false)"
    if kind.startswith("string_"):
        return f"{_short(value)} is not allowed (use a string{_limits(ctx)})"
    if kind in ("list_type", "too_short", "too_long"):
        return f"{_short(value)} is not allowed (use a list{_limits(ctx)})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{_short(value)} is not allowed (use a mapping of keys)"
    return err["msg"]


def _limits(ctx: dict) -> str:
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in ctx.items() if k in ("min_length", "max_length")]
    return (" with " + ", ".join(parts)) if parts else ""
