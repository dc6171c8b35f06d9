"""Read a Pulumi stack file (Pulumi.<stack>.yaml) into the values the program and the validator need."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacks.errors import PROJECT, ConfigIssue, StackConfigError
from stacks.load import validate_estate
from stacks.model import CA_SECRET_KEYS, SECRET_KEY_PREFIX, Estate


@dataclass
class StackFile:
    path: Path
    estate: Estate
    pulumi_config: dict[str, str]
    """Every key as the Pulumi runtime holds it: 'project:key' -> string (objects as JSON)."""
    secret_keys: list[str]


def is_secret_key(key: str) -> bool:
    return key.startswith(SECRET_KEY_PREFIX) or key in CA_SECRET_KEYS


def read_stack_file(path: Path) -> StackFile:
    source = path.name
    if not path.is_file():
        raise StackConfigError(source, [ConfigIssue(["(file)"], f"no such stack file: {path}")])
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StackConfigError(source, [ConfigIssue(["(file)"], f"{where}not valid YAML ({problem})")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}) or {}, dict):
        raise StackConfigError(source, [ConfigIssue(["config"], "must be a mapping of 'project:key' to values")])
    values: dict[str, Any] = {}
    pulumi_config: dict[str, str] = {}
    secret_keys: list[str] = []
    issues: list[ConfigIssue] = []
    for full_key, value in (document.get("config") or {}).items():
        namespace, _, key = str(full_key).partition(":")
        if not key:
            issues.append(ConfigIssue([full_key], f"keys must look like '{PROJECT}:<key>'"))
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            issues.append(ConfigIssue([key], "encrypted values need the Pulumi CLI to decrypt; for offline runs "
                                             "give a plain value in a local file passed with --config"))
            continue
        if namespace != PROJECT:
            pulumi_config[full_key] = value if isinstance(value, str) else json.dumps(value)
            continue
        if is_secret_key(key):
            if not isinstance(value, str):
                issues.append(ConfigIssue([key], "is not allowed (use a string)"))
                continue
            secret_keys.append(full_key)
        else:
            values[key] = value
        pulumi_config[full_key] = value if isinstance(value, str) else json.dumps(value)
    if issues:
        raise StackConfigError(source, issues)
    present = {k.split(":", 1)[1]: True for k in secret_keys}
    estate = validate_estate(values, present, source)
    return StackFile(path, estate, pulumi_config, secret_keys)
